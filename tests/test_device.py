"""Device choice: CUDA in half precision first, then MPS, then CPU in float32."""

from __future__ import annotations

import pytest
import torch

from pipelines.core import device


@pytest.fixture(autouse=True)
def fresh_choice(monkeypatch):
    monkeypatch.delenv("GENAI_PLAYGROUND_DEVICE", raising=False)
    device.select_device.cache_clear()
    yield
    device.select_device.cache_clear()


def test_cuda_is_preferred_in_half_precision(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    choice = device.select_device()
    assert choice.device.type == "cuda" and choice.dtype == torch.float16


def test_mps_comes_next(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert device.select_device().device.type == "mps"


def test_cpu_runs_in_float32_when_nothing_else_exists(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    choice = device.select_device()
    assert (choice.device.type, choice.dtype, choice.label) == ("cpu", torch.float32, "cpu (float32)")


def test_the_environment_can_force_the_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("GENAI_PLAYGROUND_DEVICE", "cpu")
    assert device.select_device().device.type == "cpu"


def test_the_choice_is_made_once(monkeypatch):
    first = device.select_device()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: not torch.cuda.is_available())
    assert device.select_device() is first
