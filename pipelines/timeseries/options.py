"""What a user may ask of the AR(p) pipeline: its limits and defaults, read by the tab and the pipeline."""

from __future__ import annotations

from pipelines.core.limits import Range

LAGS = Range(1, 30, 2)  # p: how many previous values each prediction reads
FORECAST_STEPS = Range(1, 200, 30)
MAX_VALUES = 100_000
MAX_SERIES_CHARACTERS = 4_000_000  # the pasted text, checked before it is parsed
MAX_MAGNITUDE = 1e12  # larger values overflow the least-squares fit's sums of squares
MAX_CORRELATION_LAGS = 40  # lags shown in the autocorrelation plots
CONFIDENCE = 0.95  # of the coefficients' intervals and the forecast band
PRESETS = ("AR(1)", "AR(2)", "Seed 000 §8 (an MA(1))", "Sunspots")


def minimum_length(p: int) -> int:
    """Values a series needs for AR(p): p to start from, and enough rows left to estimate p + 1 numbers."""
    return 2 * p + 10
