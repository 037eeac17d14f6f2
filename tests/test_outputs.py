"""Output files handed to Gradio live in one folder and do not pile up."""

from __future__ import annotations

import os
import time

from demos import outputs


def test_output_paths_are_new_files_in_the_app_folder():
    first, second = outputs.output_path(".gif"), outputs.output_path(".gif")
    assert first != second and first.parent == second.parent == outputs.OUTPUT_DIR
    assert first.suffix == ".gif" and first.exists()


def test_files_older_than_the_limit_are_swept_and_fresh_ones_kept():
    old, fresh = outputs.output_path(".png"), outputs.output_path(".png")
    hours_ago = time.time() - outputs.MAX_AGE_SECONDS - 60
    os.utime(old, (hours_ago, hours_ago))
    outputs.sweep_old_files()
    assert not old.exists() and fresh.exists()


def test_requests_sweep_at_most_once_a_minute(monkeypatch):
    sweeps = []
    monkeypatch.setattr(outputs, "sweep_old_files", lambda now=None: sweeps.append(now))
    monkeypatch.setitem(outputs._last_sweep, "at", time.time() - outputs.SWEEP_INTERVAL_SECONDS - 1)
    for _ in range(5):
        outputs.output_path(".png")
    assert len(sweeps) == 1
