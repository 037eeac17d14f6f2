"""Gradio's picture cache, as the app installs it: a picture returned again is not rewritten in place (a browser
still downloading the first copy got a truncated file and a broken image in the whole-app phone test)."""

from __future__ import annotations

import io
import os

import gradio as gr
import numpy as np
import pytest
from gradio import processing_utils
from PIL import Image

from demos import image_cache


@pytest.fixture
def installed(monkeypatch):
    monkeypatch.setattr(processing_utils, "save_pil_to_cache", processing_utils.save_pil_to_cache)
    image_cache.install()


def picture(seed: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (32, 32, 3), dtype=np.uint8))


def test_the_same_picture_twice_keeps_the_first_file(installed, tmp_path, monkeypatch):
    first = processing_utils.save_pil_to_cache(picture(1), str(tmp_path), format="png")
    before = os.stat(first)
    os.utime(first, (before.st_atime - 600, before.st_mtime - 600))  # as if returned ten minutes ago
    opened_for_writing = []
    real_open = io.open

    def watching_open(file, mode="r", *args, **kwargs):
        if any(flag in mode for flag in "wa+") and os.path.realpath(file) == os.path.realpath(first):
            opened_for_writing.append(mode)  # Gradio's own writer truncates the file here, mid-download
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(io, "open", watching_open)
    again = processing_utils.save_pil_to_cache(picture(1), str(tmp_path), format="png")
    monkeypatch.setattr(io, "open", real_open)
    assert again == first and opened_for_writing == []
    after = os.stat(again)
    assert after.st_ino == before.st_ino and after.st_size == before.st_size  # not rewritten...
    assert after.st_mtime > before.st_mtime - 600  # ...but touched, so the hourly cleaning keeps it
    assert np.array_equal(np.asarray(Image.open(again)), np.asarray(picture(1)))
    assert not [p for p in os.listdir(os.path.dirname(first)) if p.startswith(".")]  # no temporary file left


def test_different_pictures_and_a_cleaned_file_are_written_whole(installed, tmp_path):
    one = processing_utils.save_pil_to_cache(picture(1), str(tmp_path), format="png")
    two = processing_utils.save_pil_to_cache(picture(2), str(tmp_path), format="png")
    assert one != two
    os.remove(one)  # Gradio's hourly cleaning took it
    assert processing_utils.save_pil_to_cache(picture(1), str(tmp_path), format="png") == one
    assert np.array_equal(np.asarray(Image.open(one)), np.asarray(picture(1)))


def test_image_and_gallery_outputs_go_through_it(installed, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(
        processing_utils,
        "save_pil_to_cache",
        lambda img, cache_dir, **kw: calls.append(kw) or image_cache.save_pil_to_cache_once(img, cache_dir, **kw),
    )
    image = gr.Image(type="pil")
    image.postprocess(picture(3))
    gr.Gallery().postprocess([picture(4), np.asarray(picture(5))])
    assert len(calls) == 3


def test_the_app_installs_it():
    import app  # noqa: F401 (building the app installs the cache writer)

    assert processing_utils.save_pil_to_cache is image_cache.save_pil_to_cache_once
