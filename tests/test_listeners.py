"""Views redrawn from their controls show the controls' latest values: a change made while a redraw runs is
drawn next (Gradio's default for a click, a select or a release is to drop it), checked on the built app."""

from __future__ import annotations

import pytest


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
    import app

    redraws = [
        function
        for function in app.demo.fns.values()
        if getattr(function.fn, "__name__", "") == handler and any(name == event for _, name in function.targets)
    ]
    assert redraws, f"no listener runs {handler} on a {event}"
    assert all(function.trigger_mode == "always_last" for function in redraws), handler
