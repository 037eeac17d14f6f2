"""The tab kit: the pieces every tab is built from, so a new tab copies nothing from an old one.

Every tab module (`demos/<tab>.py`) has the same interface, which `app.py` reads:

    TAB_TITLE: str       the tab's label
    TAB_ID: str          its id (browser tests and links use it)
    HOW_IT_WORKS: str    Markdown for the "How it works" panel that `app.py` puts at the foot of the tab
    build() -> None      builds the tab's components and wires its events, inside the caller's gr.Tab

Conventions: a numeric control is a `slider` over a `Range` from the family's `pipelines/<family>/options.py`
(the handler checks the same range with `demos.validation.in_range`); a seed is a `seed_row`; a model menu is a
`model_menu` over the registry's choices; events that run the same model share one `concurrency` group,
declared once at the top of the tab module.
"""

from __future__ import annotations

import gradio as gr

from demos import validation
from pipelines.core import registry
from pipelines.core.limits import SEED, Range


def concurrency(group: str, limit: int) -> dict:
    """Event keyword arguments: at most `limit` runs at once across every event of `group` (one model)."""
    return dict(concurrency_id=group, concurrency_limit=limit)


def slider(limits: Range, label: str, **kwargs) -> validation.CheckedSlider:
    """A slider over a parameter's range, starting at its default; API callers get the range in refusals."""
    value = kwargs.pop("value", limits.default)
    return validation.CheckedSlider(limits.low, limits.high, value=value, step=limits.step, label=label, **kwargs)


def seed_row(value: int = SEED.default, label: str = "Seed", **number_kwargs) -> gr.Number:
    """A seed box and a "Random seed" button that fills it with a fresh, shareable seed."""
    with gr.Row():
        # No precision or minimum: Gradio would round 1.5 silently and fail on "abc" with a generic error;
        # the handlers refuse both with a clear message (validation.seed).
        seed = gr.Number(value=value, label=label, step=1, scale=3, **number_kwargs)
        dice = gr.Button("Random seed", scale=1, min_width=80)
    dice.click(validation.random_seed, outputs=seed, api_visibility="private")
    return seed


class ModelMenu(gr.Dropdown):
    """A gr.Dropdown of registry models (shown by name, sent as id) that also accepts the values earlier
    versions of the API used ("faces" for "vae-faces"), so scripts written against them keep working."""

    is_template = True

    def preprocess(self, payload):
        return super().preprocess(registry.MODELS.canonical_id(payload))


def model_menu(family: str, value: str, label: str = "Model", **kwargs) -> ModelMenu:
    """The registry's models of one family: built-in first, then allow-listed Hub ids."""
    return ModelMenu(registry.choices(family), value=value, label=label, **kwargs)


def how_it_works(markdown: str) -> None:
    """The tab's explanation, closed until asked for, in the same place on every tab."""
    with gr.Accordion("How it works", open=False):
        gr.Markdown(markdown)


def strength_ladder(strength: float, steps: int = 5) -> list[float]:
    """Strengths from 0 to `strength` in equal steps: a feature vector shown growing on a face."""
    return [strength * k / (steps - 1) for k in range(steps)]
