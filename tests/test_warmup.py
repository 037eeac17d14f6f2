"""Background warm-up of every model: its states, that loads take turns and a request waits at most for the load
under way and its own, that a library's load-time patches never leak into another load, /healthz, and
(on a real app with an empty cache) that the page is up before warm-up ends."""

from __future__ import annotations

import sys
import threading
import time

import pytest
import torch

from pipelines.core import health, registry, warmup
from pipelines.core.registry import ModelRegistry, ModelSpec
from tools.app_process import get_json, launched_app


def fake_registry(release: threading.Event, loads: list[str]) -> ModelRegistry:
    def slow():
        loads.append("slow")
        release.wait(30)
        return "slow model"

    def fast():
        loads.append("fast")
        return "fast model"

    def broken():
        raise OSError("weights missing")

    probed = []
    return ModelRegistry(
        [
            ModelSpec("slow", "Slow", "text", load=slow, probe=probed.append),
            ModelSpec("fast", "Fast", "gan", load=fast, probe=probed.append),
            ModelSpec("broken", "Broken", "vae", load=broken),
            ModelSpec("counts", "Counts", "text", load=lambda: None, needs_loading=False),
        ],
        hub_models={},
    )


def test_warmup_loads_every_model_in_turn_and_reports_each_state(monkeypatch):
    monkeypatch.delenv("GENAI_PLAYGROUND_WARMUP", raising=False)
    release, loads = threading.Event(), []
    models = fake_registry(release, loads)
    warming = warmup.Warmup(models)
    assert warming.snapshot()["state"] == "off"
    assert warming.start() and not warming.start()  # once per process
    deadline = time.monotonic() + 10
    while warming.state_of("slow") != "warming" and time.monotonic() < deadline:
        time.sleep(0.01)
    snapshot = warming.snapshot()
    assert snapshot["state"] == "running" and set(snapshot["models"]) == {"slow", "fast", "broken"}
    assert [snapshot["models"][i]["state"] for i in ("slow", "fast", "broken")] == ["warming", "waiting", "waiting"]
    # A request for another model meanwhile waits for the load under way (loads take turns: see
    # pipelines/core/building.py), then loads its own model before the warm-up reaches it.
    results = []
    request = threading.Thread(target=lambda: results.append(models.load("fast")))
    request.start()
    time.sleep(0.2)
    assert not results
    release.set()
    request.join(30)
    assert results == ["fast model"]
    assert warming.wait(30)
    snapshot = warming.snapshot()
    assert snapshot["state"] == "done" and snapshot["seconds"] >= 0
    states = {i: m["state"] for i, m in snapshot["models"].items()}
    assert states == {"slow": "warm", "fast": "warm", "broken": "failed"}
    assert "switched off" in snapshot["models"]["broken"]["detail"]  # the registry's message, with the cause
    assert loads == ["slow", "fast"]  # the fast model loaded once, by the request; warm-up found it loaded


def test_a_request_for_the_model_warming_up_joins_that_load(monkeypatch):
    monkeypatch.delenv("GENAI_PLAYGROUND_WARMUP", raising=False)
    release, loads = threading.Event(), []
    models = fake_registry(release, loads)
    warming = warmup.Warmup(models)
    warming.start()
    results = []
    request = threading.Thread(target=lambda: results.append(models.load("slow")))
    request.start()
    time.sleep(0.2)
    assert not results  # it waits for the load in progress...
    release.set()
    request.join(30)
    assert results == ["slow model"] and loads.count("slow") == 1  # ...and gets that model, loaded once
    warming.wait(30)


def test_warmup_can_be_turned_off(monkeypatch):
    monkeypatch.setenv("GENAI_PLAYGROUND_WARMUP", "0")
    warming = warmup.Warmup(fake_registry(threading.Event(), []))
    assert not warming.start() and warming.snapshot() == {"state": "off", "seconds": None, "models": {}}


def test_health_names_models_still_warming(monkeypatch):
    monkeypatch.delenv("GENAI_PLAYGROUND_WARMUP", raising=False)
    release, loads = threading.Event(), []
    models = fake_registry(release, loads)
    warming = warmup.Warmup(models)
    monkeypatch.setattr(warmup, "WARMUP", warming)
    warming.start()
    try:
        report = health.probe_model(models.spec("fast"), models)
        assert report.state == "not loaded" and report.detail == "warming up in the background"
        assert health.HealthReport((report,), time.time()).as_json()["warmup"]["state"] == "running"
    finally:
        release.set()
        warming.wait(30)
    assert health.probe_model(models.spec("fast"), models).state == "ok"


@pytest.mark.slow
def test_the_page_is_up_before_warmup_ends_and_healthz_follows_it(tmp_path):
    """A fresh cache (the text model's file not converted yet), as on a Space that just woke up."""
    with launched_app([sys.executable, "app.py"], tmp_path / "app.log", GENAI_PLAYGROUND_CACHE=str(tmp_path)) as url:
        status, first = get_json(f"{url}healthz")  # the page answers now; warm-up starts right after
        for _ in range(50):
            if first["warmup"]["state"] != "off":
                break
            time.sleep(0.2)
            status, first = get_json(f"{url}healthz")
        assert first["warmup"]["state"] == "running"
        assert first["models"]["smollm2-135m"]["state"] in ("not loaded", "ok")
        deadline = time.monotonic() + 900
        body = first
        while body["warmup"]["state"] == "running" and time.monotonic() < deadline:
            time.sleep(2)
            status, body = get_json(f"{url}healthz")
        warmed = body["warmup"]["models"]
        assert body["warmup"]["state"] == "done"
        builtin = [spec.id for spec in registry.MODELS.builtin_specs() if spec.needs_loading and not spec.remote]
        assert set(warmed) == set(builtin)
        for model_id in ("smollm2-135m", "gan-faces", "vae-faces", "vae-digits", "shapes-world"):
            assert warmed[model_id]["state"] == "warm", warmed[model_id]
            assert body["models"][model_id]["state"] == "ok"


def test_loads_take_turns_so_a_loaders_patches_never_reach_another_load(tmp_path):
    """transformers turns `tie_weights` off while it builds a model: a text model loaded meanwhile in another
    thread lost its tied output head (the built-in model was switched off in CI). Loads now take turns."""
    from transformers import LlamaConfig, LlamaForCausalLM
    from transformers.initialization import no_tie_weights

    config = LlamaConfig(
        vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=2, tie_word_embeddings=True,
    )  # fmt: skip
    LlamaForCausalLM(config).save_pretrained(tmp_path)
    entered, release = threading.Event(), threading.Event()

    def library_load_in_progress():  # another model's loader, paused half-way through its patched section
        with no_tie_weights():
            entered.set()
            release.wait(30)
        return "other model"

    models = ModelRegistry(
        [
            ModelSpec("other", "Other", "vae", load=library_load_in_progress),
            ModelSpec("tied", "Tied", "text", load=lambda: LlamaForCausalLM.from_pretrained(tmp_path)),
        ],
        hub_models={},
    )
    first = threading.Thread(target=models.load, args=("other",))
    first.start()
    assert entered.wait(30)
    loaded = []
    second = threading.Thread(target=lambda: loaded.append(models.load("tied")))
    second.start()
    time.sleep(0.3)
    assert not loaded  # it waits for the other load...
    release.set()
    first.join(30)
    second.join(60)
    model = loaded[0]
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()  # ...and is tied
    assert model.lm_head.weight.device.type != "meta"


def test_a_training_run_built_during_a_load_gets_its_seeded_weights():
    """diffusers' and transformers' loaders turn torch.nn.init off while they build: a run's networks are built
    under the same lock, so the same seed gives the same starting weights whatever else is loading."""
    from transformers.initialization import no_init_weights

    from pipelines.core.building import MODEL_BUILDING
    from pipelines.gan.toy_training import GANSettings, ToyGANRun

    alone = ToyGANRun(GANSettings(seed=3))
    entered, release, built = threading.Event(), threading.Event(), []

    def loader():
        with MODEL_BUILDING, no_init_weights():
            entered.set()
            release.wait(30)

    loading = threading.Thread(target=loader)
    loading.start()
    assert entered.wait(30)
    run = threading.Thread(target=lambda: built.append(ToyGANRun(GANSettings(seed=3))))
    run.start()
    time.sleep(0.3)
    assert not built  # the run waits for the load to finish...
    release.set()
    loading.join(30)
    run.join(30)
    for mine, theirs in zip(built[0].g_net.parameters(), alone.g_net.parameters(), strict=True):
        assert torch.equal(mine, theirs)  # ...and starts from the seed's weights


def test_a_models_download_or_conversion_does_not_hold_up_other_loads():
    """Fetching files (a Hub download, the GGUF conversion) builds no network: other models load meanwhile."""
    release, prepared = threading.Event(), []
    models = ModelRegistry(
        [
            ModelSpec("big", "Big", "text", load=lambda: "big model", prepare=lambda: release.wait(30)),
            ModelSpec("small", "Small", "gan", load=lambda: "small model"),
        ],
        hub_models={},
    )
    downloading = threading.Thread(target=lambda: prepared.append(models.load("big")))
    downloading.start()
    time.sleep(0.2)
    assert models.load("small") == "small model" and not prepared  # loaded while the other still downloads
    release.set()
    downloading.join(30)
    assert prepared == ["big model"]


def test_an_import_error_is_not_taken_for_broken_weights():
    """A library half-imported by another thread raised ImportError once: the model must load on the next try."""
    attempts = []

    def flaky():
        attempts.append(1)
        if len(attempts) == 1:
            raise ImportError("cannot import name 'x' from partially initialized module 'accelerate'")
        return "model"

    models = ModelRegistry([ModelSpec("flaky", "Flaky", "text", load=flaky)], hub_models={})
    with pytest.raises(registry.ModelSourceError, match="try again"):
        models.load("flaky")
    assert models.load("flaky") == "model" and models.state("flaky") == ("model", None)


def test_networks_built_at_first_use_wait_for_a_load_under_way():
    """Not every network is built inside a registry load: the text-to-image model's text encoder loads on the
    first prompt. It takes the same lock, so it cannot be built while another model's loader patches torch."""
    from pipelines.core.building import MODEL_BUILDING
    from pipelines.diffusion.text_to_image import load_text_encoder

    entered, release, built = threading.Event(), threading.Event(), []

    def loader():
        with MODEL_BUILDING:
            entered.set()
            release.wait(30)

    loading = threading.Thread(target=loader)
    loading.start()
    assert entered.wait(30)
    load_text_encoder.cache_clear()
    first_prompt = threading.Thread(target=lambda: built.append(load_text_encoder(torch.device("cpu"), torch.float32)))
    first_prompt.start()
    time.sleep(0.5)
    assert not built  # it waits...
    release.set()
    loading.join(30)
    first_prompt.join(60)
    assert built and all(p.device.type == "cpu" for p in built[0][1].parameters())  # ...and has real weights
