"""Views redrawn from their controls show the controls' latest values: a change made while a redraw runs is
drawn next (Gradio's default for a click, a select or a release is to drop it), checked on the built app."""

from __future__ import annotations

import pytest


def listeners(handler: str, event: str | None = None) -> list:
    """The built app's listeners that run `handler` (on `event`, when given)."""
    import app

    return [
        function
        for function in app.demo.fns.values()
        if getattr(function.fn, "__name__", "") == handler
        and (event is None or any(name == event for _, name in function.targets))
    ]


@pytest.mark.parametrize(
    "handler, event",
    [
        ("mask_from_picks", "change"),  # Diffusion lab: strokes and grid cells -> the mask preview
        ("show_level", "change"),  # Diffusion lab: the attention level -> the maps
        ("draw_latent_map", "release"),  # VAE: the two PCA sliders -> the map and the decoded point
        ("show_grid", "select"),  # GAN faces: opening the arithmetic part (or a new grid) -> faces to pick from
    ],
)
def test_a_change_during_a_redraw_is_drawn_next_not_dropped(handler, event):
    redraws = listeners(handler, event)
    assert redraws, f"no listener runs {handler} on a {event}"
    assert all(function.trigger_mode == "always_last" for function in redraws), handler


def test_mask_previews_run_one_at_a_time_in_the_order_sent():
    """Two mask updates side by side (the server allows two of most events) could finish in either order and
    leave the older mask on show; the preview's listener runs its updates one at a time, first come first served."""
    mask_listeners = listeners("mask_from_picks")
    assert len(mask_listeners) == 1
    assert mask_listeners[0].concurrency_limit == 1 and mask_listeners[0].trigger_mode == "always_last"
