"""Gradio writes each returned picture to a cache file named by its content, and rewrites that file in place
every time the same picture is returned again. A browser still downloading the first copy then gets a truncated
file ("Too little data for declared Content-Length") and shows a broken image for good. In a workshop the same
picture comes back often (thirty people asking for seed 42's faces; the attention view redrawn for the same
layer). `install()` makes the cache write a picture once, through a temporary file renamed into place.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from gradio import processing_utils
from PIL import Image


def save_pil_to_cache_once(img: Image.Image, cache_dir: str, name: str = "image", format: str = "webp") -> str:
    """Gradio's `save_pil_to_cache`, but a file already there (the same bytes: its folder is their hash) is
    kept, only touched so the hourly cache cleaning counts it as new, and a new one appears whole or not at all."""
    data = processing_utils.encode_pil_to_bytes(img, format)
    folder = Path(cache_dir) / processing_utils.hash_bytes(data)
    folder.mkdir(exist_ok=True, parents=True)
    target = (folder / f"{name}.{format}").resolve()
    if target.exists():
        try:
            os.utime(target)
        except OSError:  # cleaned away meanwhile: written again below
            pass
        else:
            return str(target)
    with tempfile.NamedTemporaryFile(dir=folder, prefix=f".{name}.", delete=False) as partial:
        partial.write(data)
    os.replace(partial.name, target)
    return str(target)


def install() -> None:
    """Every gr.Image, gr.Gallery and gr.AnnotatedImage output goes through processing_utils.save_pil_to_cache
    (arrays too, via save_img_array_to_cache), looked up on the module at each call."""
    processing_utils.save_pil_to_cache = save_pil_to_cache_once
