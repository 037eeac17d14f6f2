"""AR(p): each value is a constant plus a weighted sum of the p values before it, plus noise.

    x_t = c + phi_1 x_(t-1) + ... + phi_p x_(t-p) + e_t

statsmodels' `AutoReg` estimates c and the phis by least squares; a forecast feeds each predicted value back in
as the newest "previous value", one step at a time, exactly as a language model feeds back each token. Series
come from pasted text (numbers separated by commas, spaces or lines, or a CSV column), or from the presets:
simulated AR(1) and AR(2) series, seed 000 §8's example, and the yearly sunspot numbers shipped with statsmodels.
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass

import numpy as np

from pipelines.timeseries.options import (
    CONFIDENCE,
    FORECAST_STEPS,
    LAGS,
    MAX_CORRELATION_LAGS,
    MAX_MAGNITUDE,
    MAX_SERIES_CHARACTERS,
    MAX_VALUES,
    PRESETS,
    minimum_length,
)

SEPARATORS = re.compile(r"[\s,;]+")
TABLE_DELIMITERS = (",", ";", "\t")
PRESET_LENGTH = 300
PRESET_SEED = 0
AR1_PHI = (0.8,)
AR2_PHI = (1.2, -0.5)  # a damped oscillation: the ACF waves, the PACF stops after lag 2
SEED_EXAMPLE_THETA = 0.6  # seed 000 §8 writes y_t = x_t + 0.6 x_(t-1): a moving average, MA(1)


class SeriesError(ValueError):
    """A series that cannot be fitted; the message says what is wrong and what is allowed."""


# ----------------------------------------------------------------------------- reading a series


@dataclass
class Series:
    values: np.ndarray  # float64
    description: str  # where the numbers came from, for the reader ("column 'value' of a CSV table")


def _number(token: str, where: str) -> float:
    try:
        value = float(token)
    except ValueError:
        shown = token if len(token) <= 30 else token[:27] + "..."
        raise SeriesError(
            f"{shown!r} ({where}) is not a number. Paste numbers separated by commas, spaces or new lines, "
            "or a CSV table with a header row."
        ) from None
    if not math.isfinite(value):
        raise SeriesError(f"{token!r} ({where}) is not a finite number: remove it or fill it in.")
    return value


def _is_number(token: str) -> bool:
    try:
        return math.isfinite(float(token))
    except ValueError:
        return False


def _table(lines: list[str]) -> tuple[str, list[list[str]]] | None:
    """(delimiter, rows) when every line splits into the same number (2 or more) of fields; else None."""
    for delimiter in TABLE_DELIMITERS:
        rows = [[field.strip() for field in row] for row in csv.reader(lines, delimiter=delimiter)]
        widths = {len(row) for row in rows}
        if len(widths) == 1 and widths.pop() >= 2:
            return delimiter, rows
    return None


def _pick_column(header: list[str] | None, width: int, column: str) -> int:
    """The index of the column named (case-insensitively) or numbered (from 1) by `column`; the last if empty."""
    column = column.strip()
    if not column:
        return width - 1
    if header is not None:
        names = [name.strip().lower() for name in header]
        if column.lower() in names:
            return names.index(column.lower())
    if column.isdigit() and 1 <= int(column) <= width:
        return int(column) - 1
    named = f" ({', '.join(repr(name) for name in header)})" if header else ""
    raise SeriesError(f"There is no column {column!r}: give a column name{named} or a number from 1 to {width}.")


def parse_series(text: str, column: str = "") -> Series:
    """Numbers from pasted text: separated by commas, semicolons, spaces or lines; or one column of a CSV table.

    A table is read when its first row is a header (names, not numbers) or when `column` is given; its column
    is `column` (a name or a number from 1), or the last one.
    """
    if not isinstance(text, str) or not text.strip():
        raise SeriesError("The series is empty: paste some numbers or pick a preset.")
    if len(text) > MAX_SERIES_CHARACTERS:
        raise SeriesError(f"The text is {len(text):,} characters long, over the limit of {MAX_SERIES_CHARACTERS:,}.")
    column = column or ""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    header_first = not all(_is_number(token) for token in SEPARATORS.split(lines[0]) if token)
    table = _table(lines) if len(lines) >= 2 and (header_first or column.strip()) else None
    if table is not None:
        delimiter, rows = table
        header = rows[0] if header_first else None
        body = rows[1:] if header_first else rows
        index = _pick_column(header, len(rows[0]), column)
        first_line = 2 if header_first else 1
        values = [_number(row[index], f"line {first_line + i}") if row[index] else None for i, row in enumerate(body)]
        missing = [first_line + i for i, value in enumerate(values) if value is None]
        if missing:
            raise SeriesError(f"Line {missing[0]} has no value in that column: fill it in or remove the line.")
        name = header[index] if header else str(index + 1)
        description = f"column {name!r} of a table with {len(rows[0])} columns"
    elif header_first and len(lines) >= 2 and all(_is_number(line) for line in lines[1:]):
        values = [float(line) for line in lines[1:]]  # one column under a header
        description = f"column {lines[0]!r}"
    else:
        if column.strip():
            raise SeriesError("A column was named, but the text is not a table with a header row.")
        values = []
        for number, line in enumerate(lines, start=1):
            values += [_number(token, f"line {number}") for token in SEPARATORS.split(line) if token]
        description = "numbers separated by commas, spaces or lines"
    series = np.asarray(values, dtype=np.float64)
    if len(series) > MAX_VALUES:
        raise SeriesError(f"The series has {len(series):,} values, over the limit of {MAX_VALUES:,}.")
    return Series(series, description)


# ----------------------------------------------------------------------------- presets


def simulate_ar(phis: tuple[float, ...], length: int, seed: int, burn_in: int = 200) -> np.ndarray:
    """An AR(p) series with standard normal noise, started far back so the start leaves no trace."""
    noise = np.random.default_rng(seed).normal(size=length + burn_in)
    values = np.zeros_like(noise)
    for t in range(len(noise)):
        values[t] = noise[t] + sum(phi * values[t - i] for i, phi in enumerate(phis, start=1) if t - i >= 0)
    return values[burn_in:]


def seed_example_series() -> np.ndarray:
    """Seed 000 §8's series exactly as its code makes it (y_0 is left at 0): an MA(1), not an AR(1)."""
    x = np.random.RandomState(1).normal(size=1000)  # what its np.random.seed(1) then np.random.normal give
    y = np.zeros_like(x)
    y[1:] = x[1:] + SEED_EXAMPLE_THETA * x[:-1]
    return y


def is_seed_example(values: np.ndarray) -> bool:
    """True for seed 000 §8's series (as the preset writes it, to 4 decimals)."""
    return _same_series(values, seed_example_series())


def simulated_preset(values: np.ndarray) -> tuple[float, ...] | None:
    """The true phis when `values` is the AR(1) or AR(2) preset (as written, to 4 decimals); else None."""
    for phis in (AR1_PHI, AR2_PHI):
        if _same_series(values, simulate_ar(phis, PRESET_LENGTH, PRESET_SEED)):
            return phis
    return None


def _same_series(values: np.ndarray, reference: np.ndarray) -> bool:
    return len(values) == len(reference) and bool(np.allclose(values, reference, atol=1e-4))


def ma1_lag1_autocorrelation(theta: float) -> float:
    """corr(y_t, y_(t-1)) for y_t = x_t + theta x_(t-1): what an AR(1) fit's phi estimates."""
    return theta / (1 + theta**2)


def sunspots() -> np.ndarray:
    """Yearly sunspot numbers, 1700 to 2008, from the dataset shipped inside statsmodels."""
    from statsmodels.datasets import sunspots as dataset

    return dataset.load_pandas().data["SUNACTIVITY"].to_numpy(dtype=np.float64)


def preset_values(name: str) -> np.ndarray:
    if name == "AR(1)":
        return simulate_ar(AR1_PHI, PRESET_LENGTH, PRESET_SEED)
    if name == "AR(2)":
        return simulate_ar(AR2_PHI, PRESET_LENGTH, PRESET_SEED)
    if name == "Seed 000 §8 (an MA(1))":
        return seed_example_series()
    if name == "Sunspots":
        return sunspots()
    raise ValueError(f"preset must be one of {', '.join(PRESETS)} (got {name!r}).")


def series_text(values: np.ndarray) -> str:
    """Values as text to paste: comma-separated, ten a line, at most 4 decimals."""
    numbers = [f"{value:.4f}".rstrip("0").rstrip(".") for value in values]
    return "\n".join(", ".join(numbers[i : i + 10]) for i in range(0, len(numbers), 10))


# ----------------------------------------------------------------------------- fitting


@dataclass
class ForecastStep:
    """One step of the forecast written out: the previous values it read and what came out."""

    previous: list[float]  # x_(t-1), ..., x_(t-p): observed or already forecast
    value: float


@dataclass
class ARFit:
    p: int
    values: np.ndarray
    intercept: float
    coefficients: list[float]  # phi_1 .. phi_p
    intervals: list[tuple[float, float]]  # CONFIDENCE intervals: the intercept's first, then each phi's
    standard_errors: list[float]  # same order
    sigma2: float  # variance of the noise e_t
    aic: float
    fitted: np.ndarray  # one-step predictions of values[p:], each from the real previous values
    forecast: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    steps: list[ForecastStep]  # the first forecast steps, written out
    autocorrelation: np.ndarray  # lags 0..L
    partial_autocorrelation: np.ndarray  # lags 0..L
    correlation_band: float  # |r| above this is unlikely for white noise at CONFIDENCE

    def as_json(self) -> dict:
        def rounded(values) -> list[float]:
            return [round(float(value), 6) for value in values]

        return {
            "p": self.p,
            "n": len(self.values),
            "intercept": round(self.intercept, 6),
            "coefficients": rounded(self.coefficients),
            "intervals": {"level": CONFIDENCE, "intercept": rounded(self.intervals[0])}
            | {f"phi_{i}": rounded(interval) for i, interval in enumerate(self.intervals[1:], start=1)},
            "standard_errors": rounded(self.standard_errors),
            "sigma2": round(self.sigma2, 6),
            "aic": round(self.aic, 4),
            "forecast": rounded(self.forecast),
            "lower": rounded(self.lower),
            "upper": rounded(self.upper),
            "autocorrelation": rounded(self.autocorrelation),
            "partial_autocorrelation": rounded(self.partial_autocorrelation),
        }


def forecast_one_step_at_a_time(values: np.ndarray, intercept: float, coefficients: list[float], steps: int):
    """The forecast loop: predict the next value from the last p, append it, repeat."""
    history = list(values[-len(coefficients) :])
    written: list[ForecastStep] = []
    for _ in range(steps):
        previous = history[::-1][: len(coefficients)]  # x_(t-1) first
        value = intercept + sum(phi * x for phi, x in zip(coefficients, previous))
        written.append(ForecastStep([float(x) for x in previous], float(value)))
        history.append(value)
    return written


def check_values(values: np.ndarray, p: int) -> np.ndarray:
    """The series, if AR(p) can be fitted to it; else a SeriesError naming the limit."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1:
        raise SeriesError("The series must be one list of numbers.")
    if len(values) > MAX_VALUES:
        raise SeriesError(f"The series has {len(values):,} values, over the limit of {MAX_VALUES:,}.")
    if not np.all(np.isfinite(values)):
        raise SeriesError("The series has a missing or infinite value: every value must be a finite number.")
    needed = minimum_length(p)
    if len(values) < needed:
        raise SeriesError(f"The series has {len(values)} values; AR({p}) needs at least {needed} (2p + 10).")
    if np.abs(values).max() > MAX_MAGNITUDE:
        raise SeriesError(f"Values must lie within ±{MAX_MAGNITUDE:g}: rescale the series (e.g. to thousands).")
    if values.max() == values.min():
        raise SeriesError(f"The series is constant (every value is {values[0]:g}): there is nothing to predict.")
    return values


def fit_autoregressive(values: np.ndarray, p: int, forecast_steps: int) -> ARFit:
    """Fit AR(p) with a constant by least squares (statsmodels AutoReg) and forecast `forecast_steps` ahead."""
    from statsmodels.tsa.ar_model import AutoReg
    from statsmodels.tsa.stattools import acf, pacf

    p = LAGS.check(p, "p")
    forecast_steps = FORECAST_STEPS.check(forecast_steps, "forecast_steps")
    values = check_values(values, p)
    try:
        result = AutoReg(values, lags=p, trend="c").fit()
    except np.linalg.LinAlgError as error:
        raise SeriesError(f"AR({p}) cannot be fitted to this series ({error}): try a smaller p.") from None
    params = np.asarray(result.params)
    if not np.all(np.isfinite(params)) or not np.isfinite(result.sigma2):
        raise SeriesError(f"AR({p}) cannot be fitted to this series: try a smaller p or rescale the values.")
    intercept, coefficients = float(params[0]), [float(phi) for phi in params[1:]]
    alpha = 1 - CONFIDENCE
    n = len(values)
    prediction = result.get_prediction(start=n, end=n + forecast_steps - 1)
    band = np.asarray(prediction.conf_int(alpha=alpha))
    steps = forecast_one_step_at_a_time(values, intercept, coefficients, forecast_steps)
    lags = min(MAX_CORRELATION_LAGS, n // 2 - 1)
    return ARFit(
        p=p,
        values=values,
        intercept=intercept,
        coefficients=coefficients,
        intervals=[(float(low), float(high)) for low, high in np.asarray(result.conf_int(alpha=alpha))],
        standard_errors=[float(e) for e in np.asarray(result.bse)],
        sigma2=float(result.sigma2),
        aic=float(result.aic),
        fitted=np.asarray(result.fittedvalues, dtype=np.float64),
        forecast=np.array([step.value for step in steps]),
        lower=band[:, 0],
        upper=band[:, 1],
        steps=steps,
        autocorrelation=acf(values, nlags=lags),
        partial_autocorrelation=pacf(values, nlags=lags),
        correlation_band=float(1.959964 / math.sqrt(n)),
    )
