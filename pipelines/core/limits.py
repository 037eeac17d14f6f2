"""Argument limits: a `Range` per numeric parameter, written once in each family's `options.py` and read by
the slider that shows it, the tab that checks it and the pipeline that enforces it.

Pipelines are called from notebooks and scripts as well as from the tabs (which check first, with gr.Error):
a NaN truncation, a float step count or a count of 10**9 must be refused here, not turn into NaN images,
a torch error deep inside a model, or a loop that never ends.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

MAX_SEED = 2**32 - 1  # what torch.Generator.manual_seed accepts on every platform


def is_whole_number(value) -> bool:
    """True for 3, 3.0 and numpy integers; False for 3.5, NaN, infinity, True and non-numbers."""
    return (
        isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value) and value == int(value)
    )


def checked_number(value, name: str, low: float, high: float, whole: bool = True):
    """`value` as an int (or float with whole=False) if it lies in [low, high]; else a ValueError naming the range."""
    valid = is_whole_number(value) if whole else isinstance(value, numbers.Real) and not isinstance(value, bool)
    if not (valid and math.isfinite(value) and low <= value <= high):
        kind = "a whole number" if whole else "a number"
        raise ValueError(f"{name} must be {kind} from {low} to {high} (got {value!r}).")
    return int(value) if whole else float(value)


@dataclass(frozen=True)
class Range:
    """The allowed values of one numeric parameter, its default, and the step its slider moves by."""

    low: float
    high: float
    default: float
    step: float = 1
    whole: bool = True  # whole numbers only (counts, steps, seeds)

    def check(self, value, name: str):
        """`value` as an int (or a float) when it lies in the range; else a ValueError naming the range."""
        return checked_number(value, name, self.low, self.high, whole=self.whole)


SEED = Range(0, MAX_SEED, 42)
