"""Client mode without Ray (pipelines/serving): the wire format, the registry's backend switch, the OpenAI-compatible
request checks and responses, and the OpenAI client against a local server speaking that protocol."""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from PIL import Image

from pipelines.core import registry
from pipelines.core.registry import BUILTIN_MODELS, ModelRegistry
from pipelines.serving import openai_server, wire
from pipelines.serving.health import backend_report
from pipelines.serving.openai_text import OpenAITextGenerator
from pipelines.serving.options import OPENAI_MODELS_VARIABLE, OPENAI_URL_VARIABLE, SERVE_URL_VARIABLE
from pipelines.serving.transport import ServingError
from pipelines.text.generation import Generation, SamplingSettings, TokenChoice
from tools.app_process import free_port

# ---------------------------------------------------------------------------------------------
# The wire format


def test_images_travel_as_their_exact_pixels():
    rng = np.random.default_rng(0)
    for mode, shape in (("RGB", (5, 7, 3)), ("L", (5, 7)), ("RGBA", (5, 7, 4))):
        images = [Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)) for _ in range(3)]
        back, metadata = wire.unpack_images(wire.pack_images(images, note="x"))
        assert metadata["note"] == "x" and [b.mode for b in back] == [mode] * 3
        assert all((np.asarray(a) == np.asarray(b)).all() for a, b in zip(images, back))


def test_tensors_travel_exactly_and_a_non_safetensors_body_is_refused():
    latents = torch.randn(4, 100, 1, 1)
    tensors, metadata = wire.unpack(wire.pack({"latents": latents}, seed=3))
    assert torch.equal(tensors["latents"], latents) and metadata == {"seed": 3}
    with pytest.raises(ValueError):
        wire.unpack(b"\x00")
    with pytest.raises(ValueError, match="share one size"):
        wire.pack_images([Image.new("RGB", (2, 2)), Image.new("RGB", (3, 3))])


# ---------------------------------------------------------------------------------------------
# The registry's backend switch


def test_client_mode_hands_out_proxies_for_the_served_families_only(monkeypatch):
    models = ModelRegistry(BUILTIN_MODELS)
    assert not models.spec("gan-faces").remote  # in-process by default
    monkeypatch.setenv(SERVE_URL_VARIABLE, "http://127.0.0.1:9/")
    for model_id in ("gan-faces", "vae-faces", "vae-digits", "shapes-world", "smollm2-135m"):
        spec = models.spec(model_id)
        assert spec.remote and not spec.builtin, model_id  # a lost connection is retried, never switched off
    assert not models.spec("ngram").remote  # counted per request, here
    assert models.is_loaded("smollm2-135m")  # nothing loads in this process: the tab shows no "loading" note
    assert [name for name, _ in models.choices("vae")] == [
        name for name, _ in ModelRegistry(BUILTIN_MODELS).choices("vae")
    ]


def test_an_unreachable_model_server_gives_a_clear_message_and_is_tried_again(monkeypatch):
    monkeypatch.setenv(SERVE_URL_VARIABLE, f"http://127.0.0.1:{free_port()}")
    monkeypatch.setattr("pipelines.serving.transport.RETRY_PAUSE_SECONDS", 0.01)
    models = ModelRegistry(BUILTIN_MODELS)
    started = time.monotonic()
    for _ in range(2):  # the second try asks again instead of repeating a switched-off message
        with pytest.raises(ServingError, match="The VAE deployment at http://127.0.0.1:.* cannot be reached"):
            models.load("vae-faces")
    assert time.monotonic() - started < 30
    faces = models.load("gan-faces")  # the GAN proxy needs no answer to be built; its first call does
    with pytest.raises(ServingError, match="The GAN deployment .* cannot be reached"):
        faces.sample(1, 1)


def test_healthz_names_the_backend(monkeypatch):
    monkeypatch.delenv(SERVE_URL_VARIABLE, raising=False)
    assert backend_report() == ({"backend": "in-process"}, True)
    monkeypatch.setenv(SERVE_URL_VARIABLE, f"http://127.0.0.1:{free_port()}")
    report, healthy = backend_report(max_age=0)
    assert not healthy and report["backend"] == "ray-serve" and report["serve_status"] == "unreachable"


def test_the_hosts_openai_compatible_server_is_offered_in_the_text_menu(monkeypatch):
    monkeypatch.setenv(OPENAI_URL_VARIABLE, "http://gpu-host:8000/v1")
    monkeypatch.setenv(OPENAI_MODELS_VARIABLE, "Qwen/Qwen2.5-7B-Instruct, meta-llama/Llama-3.1-8B-Instruct")
    choices = ModelRegistry(BUILTIN_MODELS).choices("text")
    assert (
        "Qwen/Qwen2.5-7B-Instruct (OpenAI-compatible server at gpu-host:8000)",
        "openai:Qwen/Qwen2.5-7B-Instruct",
    ) in choices
    assert choices[0][1] == "smollm2-135m"  # the built-in model stays first (the tab's default)
    generator = ModelRegistry(BUILTIN_MODELS).load("openai:meta-llama/Llama-3.1-8B-Instruct")
    assert (generator.base_url, generator.served_model) == (
        "http://gpu-host:8000/v1",
        "meta-llama/Llama-3.1-8B-Instruct",
    )
    monkeypatch.delenv(OPENAI_URL_VARIABLE)
    assert all(not model_id.startswith("openai:") for _, model_id in registry.choices("text"))


# ---------------------------------------------------------------------------------------------
# OpenAI-compatible requests and responses, over a stand-in generator with the TextGenerator interface


@dataclass
class ScriptedTokenizer:
    eos_token_id: int = 0

    def apply_chat_template(self, messages, add_generation_prompt, tokenize, continue_final_message=False):
        return "".join(f"<{m['role']}>{m['content']}" for m in messages) + (
            "<assistant>" if add_generation_prompt else ""
        )


class ScriptedGenerator:
    """Writes a fixed answer token by token (ids 1, 2, 3, then end of text), recording what it was asked."""

    name = "scripted"
    tokenizer = ScriptedTokenizer()
    tokens = ("The", " sea", " is")

    def __init__(self):
        self.calls = []

    def stream(
        self, prompt: str, settings: SamplingSettings, stop_event: threading.Event | None = None, prefix: str = ""
    ) -> Iterator:
        settings.validate()
        if not prompt.strip():
            raise ValueError("The prompt is empty.")
        self.calls.append((prompt, settings, prefix))
        result = Generation(self.name, prompt_ids=[7, 8], text=prefix)
        for index, token in enumerate(self.tokens[: settings.max_new_tokens]):
            if stop_event is not None and stop_event.is_set():
                break
            result.text += token
            result.new_ids.append(index + 1)
            yield result
        if len(result.new_ids) < settings.max_new_tokens:
            result.new_ids.append(self.tokenizer.eos_token_id)
        yield result

    def explain(self, generation: Generation, alternatives: int = 5) -> list[TokenChoice]:
        texts = [self.tokens[i - 1] if i else "<end>" for i in generation.new_ids]
        return [
            TokenChoice(text, 0.5 / (i + 1), [(text, 0.5 / (i + 1)), ("other", 0.25), ("never", 0.0)][:alternatives])
            for i, text in enumerate(texts)
        ]


def chat_body(**changes) -> dict:
    return {"model": "scripted", "messages": [{"role": "user", "content": "Hi"}], **changes}


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"model": "gpt-9"}, "does not exist here; this server serves: scripted"),
        ({"max_tokens": 5000}, "max_tokens must be a whole number from 1 to 1024"),
        ({"temperature": 3}, "temperature must be a number from 0.0 to 2.0"),
        ({"n": 2}, "n must be 1"),
        ({"stop": ["\n"]}, "Stop sequences are not supported"),
        ({"messages": []}, "messages must be a non-empty list"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "needs a role"),
        ({"top_logprobs": 3}, "top_logprobs needs logprobs set to true"),
        ({"logprobs": True, "top_logprobs": 50}, "top_logprobs must be a whole number from 0 to 20"),
    ],
)
def test_requests_outside_the_limits_are_refused_naming_the_field(changes, message):
    with pytest.raises(openai_server.RequestError, match=message) as refused:
        openai_server.parse_request("chat", chat_body(**changes), ["scripted"])
    assert refused.value.as_json()["error"]["type"] == "invalid_request_error"


def test_one_user_message_is_the_apps_chat_mode_and_longer_chats_use_the_template():
    generator = ScriptedGenerator()
    request = openai_server.parse_request("chat", chat_body(seed=9, temperature=0), ["scripted"])
    openai_server.complete(generator, request)
    prompt, settings, _ = generator.calls[-1]
    assert (prompt, settings.chat, settings.seed, settings.temperature) == ("Hi", True, 9, 0.0)
    conversation = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    openai_server.complete(
        generator, openai_server.parse_request("chat", chat_body(messages=conversation), ["scripted"])
    )
    prompt, settings, _ = generator.calls[-1]
    assert (prompt, settings.chat) == ("<system>Be brief.<user>Hi<assistant>", False)


def test_a_chat_answer_carries_its_logprobs_token_ids_and_usage():
    request = openai_server.parse_request(
        "chat", chat_body(logprobs=True, top_logprobs=2, return_token_ids=True), ["scripted"]
    )
    response = openai_server.complete(ScriptedGenerator(), request)
    choice = response["choices"][0]
    assert choice["message"] == {"role": "assistant", "content": "The sea is"}
    assert choice["finish_reason"] == "stop" and choice["token_ids"] == [1, 2, 3, 0]
    first = choice["logprobs"]["content"][0]
    assert first["token"] == "The" and math.isclose(first["logprob"], math.log(0.5))
    assert [t["token"] for t in first["top_logprobs"]] == ["The", "other"]
    assert response["usage"] == {"prompt_tokens": 2, "completion_tokens": 4, "total_tokens": 6}


def test_a_stream_is_its_answer_in_pieces_with_logprobs_in_the_last_chunk():
    body = chat_body(stream=True, logprobs=True, stream_options={"include_usage": True}, max_tokens=2)
    chunks = list(
        openai_server.stream_chunks(ScriptedGenerator(), openai_server.parse_request("chat", body, ["scripted"]))
    )
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == "The sea"
    final = chunks[-2]["choices"][0]
    assert final["finish_reason"] == "length" and len(final["logprobs"]["content"]) == 2
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 2


def test_completions_report_logprobs_in_openais_completion_layout():
    request = openai_server.parse_request(
        "completion", {"model": "scripted", "prompt": "Go", "logprobs": 1}, ["scripted"]
    )
    choice = openai_server.complete(ScriptedGenerator(), request)["choices"][0]
    assert choice["text"] == "The sea is"
    assert choice["logprobs"]["tokens"] == ["The", " sea", " is", "<end>"]
    assert choice["logprobs"]["text_offset"] == [2, 5, 9, 12]  # offsets count from the prompt's start, as OpenAI's
    assert choice["logprobs"]["top_logprobs"][1] == {" sea": math.log(0.25)}


# ---------------------------------------------------------------------------------------------
# The OpenAI client (the text tab's generator for any OpenAI-compatible server), against a local server


@pytest.fixture
def openai_url():
    """A local OpenAI-compatible server over the scripted generator (the same functions as the text deployment)."""
    import uvicorn

    api = FastAPI()
    generator = ScriptedGenerator()

    def route(kind: str):
        async def answer(request: Request):
            try:
                parsed = openai_server.parse_request(kind, await request.json(), ["scripted"])
            except openai_server.RequestError as error:
                return JSONResponse(error.as_json(), status_code=400)
            if not parsed.stream:
                return JSONResponse(openai_server.complete(generator, parsed))
            events = (f"data: {json.dumps(c)}\n\n" for c in openai_server.stream_chunks(generator, parsed))
            return StreamingResponse((*events, "data: [DONE]\n\n"), media_type="text/event-stream")

        return answer

    api.post("/v1/chat/completions")(route("chat"))
    api.post("/v1/completions")(route("completion"))
    api.get("/v1/models")(lambda: openai_server.model_list(["scripted"]))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(api, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/v1"
    server.should_exit = True
    thread.join(timeout=10)


def test_the_client_streams_an_answer_and_explains_it_from_the_servers_logprobs(openai_url):
    generator = OpenAITextGenerator(openai_url, "scripted")
    pieces = [g.text for g in generator.stream("Hi", SamplingSettings(max_new_tokens=8, seed=3))]
    final = generator.generate("Hi", SamplingSettings(max_new_tokens=8, seed=3))
    assert pieces[-1] == final.text == "The sea is" and "The" in pieces
    assert final.new_ids == [1, 2, 3, 0] and final.prompt_ids == [7, 8]  # the server's token ids
    choices = generator.explain(final)
    assert [c.text for c in choices] == ["The", " sea", " is", "<end>"]
    assert math.isclose(choices[1].probability, 0.25) and choices[0].alternatives[1] == ("other", 0.25)
    completion = generator.generate("Once", SamplingSettings(max_new_tokens=2, chat=False))
    assert completion.text == "The sea" and [c.text for c in generator.explain(completion)] == ["The", " sea"]
    generator.probe()


def test_the_client_refuses_what_the_tab_refuses_and_passes_on_the_servers_refusals(openai_url):
    generator = OpenAITextGenerator(openai_url, "scripted")
    with pytest.raises(ValueError, match="The prompt is empty"):
        generator.generate("  ", SamplingSettings())
    with pytest.raises(ValueError, match="temperature must be"):
        generator.generate("Hi", SamplingSettings(temperature=5))
    with pytest.raises(ValueError, match="does not exist here"):
        OpenAITextGenerator(openai_url, "other-model").generate("Hi", SamplingSettings())
    with pytest.raises(ServingError, match="no longer lists other-model"):
        OpenAITextGenerator(openai_url, "other-model").probe()


def test_the_client_continues_an_answer_so_far_as_the_app_does(openai_url):
    """Branching from an alternative token continues a prefix: vLLM's continue_final_message, served here."""
    generator = OpenAITextGenerator(openai_url, "scripted")
    branch = generator.generate("Hi", SamplingSettings(max_new_tokens=2), prefix="A boat:")
    assert branch.text == "A boat:The sea"  # the text starts with the prefix, as in-process
    with pytest.raises(ServingError, match="needs its tokenizer in the app's own process"):
        generator.tokenizer.decode([1])


def test_stopping_the_client_closes_the_stream_early(openai_url):
    stop = threading.Event()
    stream = OpenAITextGenerator(openai_url, "scripted").stream("Hi", SamplingSettings(), stop)
    next(stream)
    stop.set()
    assert len(list(stream)) <= 1  # no further chunks are read: only the closing summary


# ---------------------------------------------------------------------------------------------
# The deployment files


def test_the_kuberay_manifest_carries_the_serve_config_and_pins_sessions_with_a_cookie():
    import yaml

    from tools.app_process import REPO_ROOT

    config = yaml.safe_load((REPO_ROOT / "deploy" / "serve_config.yaml").read_text())
    documents = {d["kind"]: d for d in yaml.safe_load_all((REPO_ROOT / "deploy" / "rayservice.yaml").read_text())}
    served = yaml.safe_load(documents["RayService"]["spec"]["serveConfigV2"])
    local, cluster = config["applications"][0], served["applications"][0]
    assert {k: v for k, v in local.items() if k != "deployments"} == {
        k: v for k, v in cluster.items() if k != "deployments"
    }

    def without_resources(deployments):
        return [{k: v for k, v in d.items() if k != "ray_actor_options"} for d in deployments]

    assert without_resources(local["deployments"]) == without_resources(cluster["deployments"])  # only GPUs differ
    gpus = {d["name"]: d["ray_actor_options"].get("num_gpus", 0) for d in cluster["deployments"]}
    assert gpus["TextToImage"] > 0 and gpus["Text"] > 0 and gpus["GAN"] == 0
    app_env = {
        e["name"]: e["value"] for e in documents["Deployment"]["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert app_env[SERVE_URL_VARIABLE] == f"http://{documents['RayService']['metadata']['name']}-serve-svc:8000"
    assert documents["Ingress"]["metadata"]["annotations"]["nginx.ingress.kubernetes.io/affinity"] == "cookie"
    from deploy.cluster import deployment_options

    assert set(deployment_options(local)) == {"Gateway", "GAN", "VAE", "TextToImage", "Text"}


def test_the_attention_after_a_served_generation_is_a_note_not_a_pop_up(monkeypatch):
    """A model on an OpenAI-compatible server writes text, but its weights are not in this process: the attention
    view that follows each generation says so in its note instead of raising over the answer."""
    from demos import text_generation

    monkeypatch.setenv(OPENAI_URL_VARIABLE, "http://gpu-host:8000/v1")
    monkeypatch.setenv(OPENAI_MODELS_VARIABLE, "Qwen/Qwen2.5-7B-Instruct")
    models = ModelRegistry(BUILTIN_MODELS)
    monkeypatch.setattr(registry, "MODELS", models)
    outputs = text_generation._attention_after_generation(
        "Name a colour.", 1, 0, "Blue.", "Chat", "openai:Qwen/Qwen2.5-7B-Instruct"
    )
    assert outputs[0] is None and outputs[1].startswith("Attention: ") and "runs on a model server" in outputs[1]
