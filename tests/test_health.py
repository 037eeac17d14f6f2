"""The health registry (pipelines/health.py) and the /healthz route of the running app."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest
import torch

from pipelines import health
from pipelines.device import select_device
from pipelines.gan import DCGANGenerator
from pipelines.weights import ModelSourceError
from tests.conftest import get_json


@pytest.fixture
def fake_models(monkeypatch):
    """Replace the built-in models with three fakes: one that loads, one whose load fails, one never used."""
    calls = {"good": 0, "broken": 0, "probe": 0}

    def load_good():
        calls["good"] += 1
        return "model"

    def load_broken():
        calls["broken"] += 1
        raise ModelSourceError("The weights file /secret/path/weights.tar could not be read")

    def probe(model):
        calls["probe"] += 1
        assert model == "model"

    models = {
        "Good": health.TrackedModel("Good", load_good, probe),
        "Broken": health.TrackedModel("Broken", load_broken, probe),
        "Unused": health.TrackedModel("Unused", load_good, probe),
    }
    monkeypatch.setattr(health, "MODELS", models)
    monkeypatch.setattr(health, "_last_report", None)
    return calls


def test_a_model_loads_once_and_is_reused(fake_models):
    assert health.load_model("Good") == "model"
    assert health.load_model("Good") == "model"
    assert fake_models["good"] == 1


def test_a_failed_load_switches_the_model_off_with_a_message_naming_it(fake_models):
    with pytest.raises(health.ModelUnavailable, match="Broken is switched off: its weights could not be loaded"):
        health.load_model("Broken")
    with pytest.raises(ModelSourceError, match="Broken is switched off") as again:
        health.load_model("Broken")
    assert fake_models["broken"] == 1  # not retried for every user
    assert "/secret/path" not in str(again.value)  # server paths stay in the log


def test_health_is_ok_with_models_not_loaded_and_names_a_failed_one(fake_models):
    report = health.check_health(max_age=0)
    assert report.healthy
    assert {m.name: m.state for m in report.models} == {"Good": "not loaded", "Broken": "not loaded", "Unused": "not loaded"}
    assert fake_models["probe"] == 0  # never loads a model to probe it

    health.load_model("Good")
    with pytest.raises(health.ModelUnavailable):
        health.load_model("Broken")
    answer = health.check_health(max_age=0).as_json()
    assert answer["status"] == "unhealthy"
    assert answer["failing"] == ["Broken"]
    assert answer["models"]["Good"]["state"] == "ok"
    assert answer["models"]["Broken"]["state"] == "failed to load"
    assert answer["models"]["Unused"]["state"] == "not loaded"


def test_health_answers_are_cached_so_probes_cannot_load_the_machine(fake_models):
    health.load_model("Good")
    first = health.check_health(max_age=60)
    for _ in range(20):
        assert health.check_health(max_age=60) is first
    assert fake_models["probe"] == 1
    health.check_health(max_age=0)
    assert fake_models["probe"] == 2


def test_the_gan_probe_catches_a_generator_that_outputs_nan():
    choice = select_device()
    generator = DCGANGenerator().to(choice.device, choice.dtype).eval()
    pipeline = SimpleNamespace(device_choice=choice, generator=generator)
    health._probe_gan(pipeline)  # random weights: finite output, passes
    with torch.no_grad():
        generator.main[0].weight.fill_(float("nan"))
    tracked = health.TrackedModel("GAN", lambda: pipeline, health._probe_gan, model=pipeline)
    result = health._probe(tracked)
    assert result.state == "failing"
    assert "RuntimeError" in result.detail


def test_the_ngram_probe_runs_without_loading_anything():
    result = health._probe(health._builtin_models()[health.NGRAM])
    assert result.state == "ok"


def test_healthz_lists_every_model_and_probes_a_loaded_one(app_url, client):
    status, answer = get_json(app_url + "healthz")
    assert status == 200
    assert answer["status"] == "ok"
    assert set(answer["models"]) == set(health.MODELS)
    assert all(model["state"] in ("ok", "not loaded") for model in answer["models"].values())

    client.predict(1, 1, 1.0, api_name="/sample_faces")  # loads the GAN
    deadline = time.monotonic() + 60  # the previous answer may be cached for a few seconds
    while True:
        status, answer = get_json(app_url + "healthz")
        if answer["models"][health.GAN_FACES]["state"] == "ok" or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert status == 200
    assert answer["models"][health.GAN_FACES]["state"] == "ok"
    assert answer["models"][health.GAN_FACES]["milliseconds"] >= 0
