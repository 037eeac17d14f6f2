"""Files the tabs hand to Gradio (GIFs, PNG sheets): one folder for the process, old files swept."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

OUTPUT_DIR = Path(tempfile.mkdtemp(prefix="genai-playground-"))
MAX_AGE_SECONDS = 3600  # Gradio copies each file into its own cache on return, so ours can go


def output_path(suffix: str, prefix: str = "output-") -> Path:
    """A new empty file for one response; files older than an hour are deleted first."""
    cutoff = time.time() - MAX_AGE_SECONDS
    for old in OUTPUT_DIR.iterdir():
        try:
            if old.stat().st_mtime < cutoff:
                old.unlink()
        except FileNotFoundError:  # another request swept it first
            pass
    handle = tempfile.NamedTemporaryFile(prefix=prefix, suffix=suffix, dir=OUTPUT_DIR, delete=False)
    handle.close()
    return Path(handle.name)
