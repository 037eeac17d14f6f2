"""Output files handed to Gradio live in one folder and do not pile up."""

from __future__ import annotations

import os
import time

from PIL import Image

from demos import outputs, text_to_image, vae_interpolation


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


def test_output_folders_are_new_and_swept_with_their_files():
    old, fresh = outputs.output_folder("test-"), outputs.output_folder("test-")
    assert old != fresh and old.parent == outputs.OUTPUT_DIR and not any(old.iterdir())
    (old / "image.png").write_bytes(b"x")
    hours_ago = time.time() - outputs.MAX_AGE_SECONDS - 60
    os.utime(old, (hours_ago, hours_ago))
    outputs.sweep_old_files()
    assert not old.exists() and fresh.exists()


def test_the_tabs_write_their_downloads_into_the_swept_folder(tmp_path):
    # Text -> Image PNGs and VAE GIFs once went to the system's temporary folder and were never deleted.
    *_, pngs, _ = text_to_image.text_to_image("a red circle", steps=1, seed=1, progress=lambda *a, **k: None)
    assert all(os.path.dirname(os.path.dirname(png)) == str(outputs.OUTPUT_DIR) for png in pngs)

    face = tmp_path / "face.png"
    Image.new("RGB", (64, 64), (180, 140, 120)).save(face)
    _, details = vae_interpolation.vae_interpolate(str(face), str(face), 2, "faces")
    _, gif, _, _ = vae_interpolation.show_interpolation_details(details)
    assert os.path.dirname(gif) == str(outputs.OUTPUT_DIR)
