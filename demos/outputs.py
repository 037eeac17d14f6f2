"""Files the tabs hand to Gradio (GIFs, PNGs, downloads): one folder for the process, old files swept."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

OUTPUT_DIR = Path(tempfile.mkdtemp(prefix="genai-playground-"))
MAX_AGE_SECONDS = 3600  # Gradio copies each file into its own cache on return, so ours can go
# A sweep reads the whole folder, which holds an hour of a workshop's files: at most one a minute.
SWEEP_INTERVAL_SECONDS = 60
_last_sweep = {"at": float("-inf")}


def sweep_old_files(now: float | None = None) -> None:
    """Delete files and folders older than MAX_AGE_SECONDS."""
    now = time.time() if now is None else now
    cutoff = now - MAX_AGE_SECONDS
    for old in OUTPUT_DIR.iterdir():
        try:
            if old.stat().st_mtime < cutoff:
                shutil.rmtree(old) if old.is_dir() else old.unlink()
        except FileNotFoundError:  # another request swept it first
            pass


def _sweep_if_due() -> None:
    now = time.time()
    if now - _last_sweep["at"] >= SWEEP_INTERVAL_SECONDS:
        _last_sweep["at"] = now
        sweep_old_files(now)


def output_path(suffix: str, prefix: str = "output-") -> Path:
    """A new empty file for one response; files older than an hour are swept first (once a minute)."""
    _sweep_if_due()
    handle = tempfile.NamedTemporaryFile(prefix=prefix, suffix=suffix, dir=OUTPUT_DIR, delete=False)
    handle.close()
    return Path(handle.name)


def output_folder(prefix: str = "output-") -> Path:
    """A new empty folder for one response's files whose names matter (downloads); swept like the files."""
    _sweep_if_due()
    return Path(tempfile.mkdtemp(prefix=prefix, dir=OUTPUT_DIR))
