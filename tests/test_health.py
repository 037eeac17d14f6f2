"""The model registry (pipelines/core/registry.py), the health report and the /healthz route of the running app."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest
import torch

from pipelines.core import health, registry
from pipelines.core.device import select_device
from pipelines.core.registry import ModelRegistry, ModelSpec
from pipelines.core.weights import ModelSourceError
from pipelines.gan.faces import DCGANGenerator, health_probe
from tools.app_process import get_json


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

    fakes = ModelRegistry(
        [
            ModelSpec("good", "Good", "gan", load_good, probe, aliases=("good-old-name",)),
            ModelSpec("broken", "Broken", "gan", load_broken, probe),
            ModelSpec("unused", "Unused", "vae", load_good, probe),
        ]
    )
    monkeypatch.setattr(registry, "MODELS", fakes)
    monkeypatch.setattr(health, "_last_report", None)
    return calls


def test_a_model_loads_once_and_is_reused(fake_models):
    assert registry.load("good") == "model"
    assert registry.load("good") == "model"
    assert registry.load("good-old-name") == "model"  # an earlier API value names the same model
    assert fake_models["good"] == 1


def test_menus_list_a_familys_models_by_name_with_their_ids(fake_models):
    assert registry.choices("gan") == [("Good", "good"), ("Broken", "broken")]
    assert registry.choices("vae")[0] == ("Unused", "unused")
    with pytest.raises(ModelSourceError, match="Unknown model 'nobody/nothing'"):
        registry.load("nobody/nothing")


def test_a_failed_load_switches_the_model_off_with_a_message_naming_it(fake_models):
    with pytest.raises(registry.ModelUnavailable, match="Broken is switched off: its weights could not be loaded"):
        registry.load("broken")
    with pytest.raises(ModelSourceError, match="Broken is switched off") as again:
        registry.load("broken")
    assert fake_models["broken"] == 1  # not retried for every user
    assert "/secret/path" not in str(again.value)  # server paths stay in the log


def test_health_is_ok_with_models_not_loaded_and_names_a_failed_one(fake_models):
    report = health.check_health(max_age=0)
    assert report.healthy
    assert {m.id: m.state for m in report.models} == {
        "good": "not loaded",
        "broken": "not loaded",
        "unused": "not loaded",
    }
    assert fake_models["probe"] == 0  # never loads a model to probe it

    registry.load("good")
    with pytest.raises(registry.ModelUnavailable):
        registry.load("broken")
    answer = health.check_health(max_age=0).as_json()
    assert answer["status"] == "unhealthy"
    assert answer["failing"] == ["broken"]
    assert answer["models"]["good"]["state"] == "ok"
    assert answer["models"]["good"]["name"] == "Good"
    assert answer["models"]["broken"]["state"] == "failed to load"
    assert answer["models"]["unused"]["state"] == "not loaded"


def test_health_answers_are_cached_so_probes_cannot_load_the_machine(fake_models):
    registry.load("good")
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
    health_probe(pipeline)  # random weights: finite output, passes
    with torch.no_grad():
        generator.main[0].weight.fill_(float("nan"))
    models = ModelRegistry([ModelSpec("gan", "GAN", "gan", lambda: pipeline, health_probe)])
    models.load("gan")
    result = health.probe_model(models.spec("gan"), models)
    assert result.state == "failing"
    assert "RuntimeError" in result.detail


def test_the_ngram_probe_runs_without_loading_anything():
    result = health.probe_model(registry.spec("ngram"), registry.MODELS)
    assert result.state == "ok"


def test_healthz_lists_every_model_and_probes_a_loaded_one(app_url, client):
    status, answer = get_json(app_url + "healthz")
    assert status == 200
    assert answer["status"] == "ok"
    assert set(answer["models"]) == {spec.id for spec in registry.MODELS.builtin_specs()}
    assert all(model["state"] in ("ok", "not loaded") for model in answer["models"].values())

    client.predict(1, 1, 1.0, api_name="/sample_faces")  # loads the GAN
    deadline = time.monotonic() + 60  # the previous answer may be cached for a few seconds
    while True:
        status, answer = get_json(app_url + "healthz")
        if answer["models"]["gan-faces"]["state"] == "ok" or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert status == 200
    assert answer["models"]["gan-faces"]["state"] == "ok"
    assert answer["models"]["gan-faces"]["milliseconds"] >= 0
