"""Argument checks shared by the pipelines: a bad value is refused with a ValueError that names the range.

Pipelines are called from notebooks and scripts as well as from the tabs (which check first, with gr.Error):
a NaN truncation, a float step count or a count of 10**9 must be refused here, not turn into NaN images,
a torch error deep inside a model, or a loop that never ends.
"""

from __future__ import annotations

import math
import numbers


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
        raise ValueError(f"{name} must be {kind} between {low} and {high} (got {value!r}).")
    return int(value) if whole else float(value)
