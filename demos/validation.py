"""Input checks shared by the tabs: each refusal is a gr.Error that names the allowed range."""

from __future__ import annotations

import math
import random

import gradio as gr
from PIL import Image

from pipelines.core.limits import SEED, Range

MAX_UPLOAD_MB = 10  # the server refuses bigger uploads before any handler runs (launch's max_file_size)
MAX_UPLOAD_MEGAPIXELS = 20
# PIL warns above this many pixels and refuses twice as many; the VAE tab turns the warning into a refusal,
# so a small file declaring a huge image (a "decompression bomb") is never decoded.
Image.MAX_IMAGE_PIXELS = MAX_UPLOAD_MEGAPIXELS * 1_000_000


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


def text(value, name: str) -> str:
    """A string that is valid Unicode ("" for None). A raw API call can send lone UTF-16 surrogates, on which
    tokenizers and encoders fail with no message for the user."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise gr.Error(f"{name} must be text (got {type(value).__name__}).")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as error:
        message = f"{name} has a character that is not valid text (at position {error.start}): remove it."
        raise gr.Error(message) from None
    return value


def in_range(value, limits: Range, name: str) -> int | float:
    """A value within a parameter's range (see pipelines/<family>/options.py): an int for whole-number ranges."""
    if limits.whole:
        return whole_number(value, name, int(limits.low), int(limits.high))
    return number_in_range(value, name, limits.low, limits.high)


def seed(value, name: str = "Seed") -> int:
    return in_range(value, SEED, name)


def random_seed() -> int:
    """For the dice buttons: a fresh seed the user can read, share and reuse."""
    return random.randint(0, 999_999)


def feature_groups(with_feature, without_feature, size: int, noun: str) -> tuple[list[int], list[int]]:
    """Zero-based picks for an attribute vector (numbers "1".."size"): both groups set, not identical."""
    if not with_feature or not without_feature:
        raise gr.Error(f"Pick at least one {noun} WITH the feature and at least one WITHOUT it.")
    picks_with = [whole_number(i, f"{noun.capitalize()} number", 1, size) - 1 for i in with_feature]
    picks_without = [whole_number(i, f"{noun.capitalize()} number", 1, size) - 1 for i in without_feature]
    if set(picks_with) == set(picks_without):
        raise gr.Error(f"The two groups are the same {noun}s, so their difference is zero: change one.")
    return picks_with, picks_without


class CheckedSlider(gr.Slider):
    """A gr.Slider whose value is checked before Gradio compares it with the range.

    The browser only sends numbers, but an API caller can send anything: gr.Slider fails on None or text
    with an exception the caller sees only as "the app raised an exception". This one refuses anything but a
    finite number in range with a message naming the slider and its range. `is_template` keeps gr.Slider's look in
    the browser and its API schema."""

    is_template = True

    def preprocess(self, payload):
        label = self.label or "This value"
        if isinstance(payload, bool) or not isinstance(payload, (int, float)) or not math.isfinite(payload):
            raise gr.Error(f"{label} must be a number from {self.minimum} to {self.maximum} (got {payload!r:.60}).")
        if not self.minimum <= payload <= self.maximum:
            raise gr.Error(f"{label} must be from {self.minimum} to {self.maximum} (got {payload!r}).")
        return super().preprocess(payload)


class CheckedCheckboxGroup(gr.CheckboxGroup):
    """A gr.CheckboxGroup that takes None as nothing ticked and refuses a value that is not a list clearly
    (gr.CheckboxGroup fails on both with a generic error); the choices themselves are checked by Gradio."""

    is_template = True

    def preprocess(self, payload):
        if payload is None:
            payload = []
        if not isinstance(payload, list):
            choices = ", ".join(str(value) for _, value in self.choices)
            raise gr.Error(
                f"{self.label or 'This value'} must be a list of choices from: {choices} (got {payload!r:.60})."
            )
        return super().preprocess(payload)
