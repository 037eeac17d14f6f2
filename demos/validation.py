"""Input checks shared by the tabs: each refusal is a gr.Error that names the allowed range."""

from __future__ import annotations

import math
import random

import gradio as gr

MAX_SEED = 2**32 - 1


def whole_number(value, name: str, low: int, high: int) -> int:
    """An integer in [low, high], accepting 3, 3.0 and "3" but not 3.5 or "three"."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise gr.Error(f"{name} must be a whole number from {low} to {high} (got {value!r}).") from None
    if not math.isfinite(number) or number != int(number):
        raise gr.Error(f"{name} must be a whole number from {low} to {high} (got {value!r}).")
    if not low <= number <= high:
        raise gr.Error(f"{name} must be from {low} to {high} (got {int(number)}).")
    return int(number)


def number_in_range(value, name: str, low: float, high: float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise gr.Error(f"{name} must be a number from {low} to {high} (got {value!r}).") from None
    if not (math.isfinite(number) and low <= number <= high):
        raise gr.Error(f"{name} must be from {low} to {high} (got {value!r}).")
    return number


def seed(value, name: str = "Seed") -> int:
    return whole_number(value, name, 0, MAX_SEED)


def random_seed() -> int:
    """For the dice buttons: a fresh seed the user can read, share and reuse."""
    return random.randint(0, 999_999)
