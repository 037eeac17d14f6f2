"""The page comes up before big models load: building the app must not import the model libraries."""

from __future__ import annotations

import subprocess
import sys

from tools.app_process import REPO_ROOT

HEAVY_LIBRARIES = ("diffusers", "transformers")  # seconds each to import; loaded on a tab's first use


def test_building_the_app_leaves_the_model_libraries_unimported():
    code = f"import sys, app; print('imported:', [name for name in {HEAVY_LIBRARIES!r} if name in sys.modules])"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=600, check=True
    )
    assert result.stdout.strip().splitlines()[-1] == "imported: []"


def test_the_tab_offers_exactly_the_pipelines_schedulers():
    from pipelines.diffusion import options, text_to_image

    assert tuple(text_to_image.SCHEDULERS) == options.SCHEDULER_NAMES
    assert options.DEFAULT_SCHEDULER in text_to_image.SCHEDULERS
