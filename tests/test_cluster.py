"""Cluster mode on a local Ray started inside the test (2 CPUs, small deployments): every deployment answers,
served outputs are the in-process bytes, a replica killed mid-load is replaced with nothing hanging, and the app
in client mode serves the same page and results. `make test-cluster` runs these (they need requirements-cluster.txt);
`make test` leaves them out."""

from __future__ import annotations

import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch

ray = pytest.importorskip("ray", reason="the cluster tests need requirements-cluster.txt (make test-cluster)")

from deploy import cluster  # noqa: E402 (needs ray)
from pipelines.core.registry import BUILTIN_MODELS, ModelRegistry  # noqa: E402
from pipelines.serving.options import SERVE_URL_VARIABLE  # noqa: E402
from pipelines.serving.remote import load_remote  # noqa: E402
from pipelines.serving.transport import ServingError  # noqa: E402
from pipelines.text.generation import SamplingSettings  # noqa: E402
from tools.app_process import free_port, get_json, launched_app  # noqa: E402

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(900)]

# One replica each (no autoscaling), so the test knows which replica it kills; 1.6 of the 2 CPUs, leaving room
# for a replacement replica while the killed one is still being cleaned up.
ONE_REPLICA = {"num_replicas": 1, "autoscaling_config": None}
SMALL = {name: ONE_REPLICA for name in ("Gateway", "GAN", "VAE", "TextToImage", "Text")}
DEPLOYMENTS = set(SMALL)


def same_pixels(first, second) -> bool:
    return len(first) == len(second) and all(
        (np.asarray(a) == np.asarray(b)).all() and a.mode == b.mode for a, b in zip(first, second)
    )


@pytest.fixture(scope="module")
def serve_url():
    """The Serve application on a local Ray (num_cpus=2) for this module; Ray is always shut down."""
    try:
        url = cluster.start(num_cpus=2, port=free_port(), overrides=SMALL)
        os.environ.pop(SERVE_URL_VARIABLE, None)  # this process compares with the in-process models
        yield url
    finally:
        os.environ.pop(SERVE_URL_VARIABLE, None)
        cluster.stop()


@pytest.fixture(scope="module")
def in_process():
    return ModelRegistry(BUILTIN_MODELS)


def deployments_now(url: str) -> dict:
    return get_json(f"{url}/healthz")[1]["deployments"]


def test_every_deployment_answers(serve_url):
    status, body = get_json(f"{serve_url}/healthz")
    assert status == 200 and body["status"] == "ok"
    assert set(body["deployments"]) == DEPLOYMENTS
    assert all(d["status"] == "HEALTHY" and d["replicas"] == {"RUNNING": 1} for d in body["deployments"].values())
    for path in ("gan/healthz", "vae/healthz?model=vae-digits", "text-to-image/healthz", "text/healthz"):
        status, probe = get_json(f"{serve_url}/{path}")
        assert status == 200 and probe["state"] == "ok", path
    assert "smollm2-135m" in [m["id"] for m in get_json(f"{serve_url}/v1/models")[1]["data"]]


def test_served_faces_and_vae_outputs_are_the_in_process_pixels(serve_url, in_process):
    gan, local_gan = load_remote("gan-faces", "gan", serve_url), in_process.load("gan-faces")
    assert same_pixels(gan.sample(42, 16, 1.5), local_gan.sample(42, 16, 1.5))
    assert same_pixels(gan.interpolate(3, 4, 12, 0.7), local_gan.interpolate(3, 4, 12, 0.7))
    edit = (7, [1, 3], [0, 6], 8, [0.0, 1.0, 2.0], 1.5, 16)
    assert same_pixels(gan.attribute_edit(*edit), local_gan.attribute_edit(*edit))

    faces, local_faces = load_remote("vae-faces", "vae", serve_url), in_process.load("vae-faces")
    a, b = local_gan.sample(1, 2, 1.5)
    served, local = faces.interpolate(a, b, 10, "slerp"), local_faces.interpolate(a, b, 10, "slerp")
    assert same_pixels(served.frames, local.frames) and torch.equal(served.latents, local.latents)
    digits, local_digits = load_remote("vae-digits", "vae", serve_url), in_process.load("vae-digits")
    assert same_pixels(digits.sample_prior(5, 16), local_digits.sample_prior(5, 16))
    # The latent map is fitted on the examples' served encodings: the same map, the same decoded point.
    assert np.array_equal(digits.latent_map.points, local_digits.latent_map.points)
    assert same_pixels([digits.decode_map_point(0.5, -1.0)], [local_digits.decode_map_point(0.5, -1.0)])
    examples = local_digits.example_images()
    edited = digits.attribute_edit(examples[:3], examples[3:6], examples[7], [0.0, 2.0])
    assert same_pixels(edited, local_digits.attribute_edit(examples[:3], examples[3:6], examples[7], [0.0, 2.0]))


def test_served_text_to_image_gives_the_in_process_images_and_strip(serve_url, in_process):
    from pipelines.diffusion.text_to_image import generate

    steps = []
    arguments = ("a small red circle on the left", "", 6, 5.0, 11, "DDPM", 2)
    served = generate(
        load_remote("shapes-world", "diffusion", serve_url), *arguments, on_step=lambda d, n: steps.append(d)
    )
    local = generate(in_process.load("shapes-world"), *arguments)
    assert steps == [1, 2, 3, 4, 5, 6]  # progress streamed from the replica, step by step
    assert same_pixels(served.images, local.images) and same_pixels(served.strip, local.strip)
    assert (served.steps_shown, served.strip_label) == (local.steps_shown, local.strip_label)
    with pytest.raises(TimeoutError, match="Stopped after"):  # the pipeline's time limit, worded as in-process
        generate(
            load_remote("shapes-world", "diffusion", serve_url), "a blue square", "", 100, 5.0, 1, "DDIM", 4, None, 0.5
        )


@pytest.mark.parametrize("chat", [True, False])
def test_served_text_is_the_in_process_text_and_explained_alike(serve_url, in_process, chat):
    settings = SamplingSettings(max_new_tokens=12, temperature=0.8, seed=21, chat=chat)
    served_model, local_model = load_remote("smollm2-135m", "text", serve_url), in_process.load("smollm2-135m")
    assert served_model.name == in_process.spec("smollm2-135m").name  # the tab's summary names it as in-process
    served = served_model.generate("Write about the sea.", settings)
    local = local_model.generate("Write about the sea.", settings)
    assert served.text == local.text and served.new_ids == local.new_ids and served.prompt_ids == local.prompt_ids
    served_choices, local_choices = served_model.explain(served), local_model.explain(local)
    assert [c.text for c in served_choices] == [c.text for c in local_choices]
    for mine, theirs in zip(served_choices, local_choices):
        assert mine.probability == pytest.approx(theirs.probability, rel=1e-9, abs=1e-12)
        assert [t for t, _ in mine.alternatives] == [t for t, _ in theirs.alternatives]
    # Continuing an answer so far (the tab's branching): vLLM's continue_final_message in chat mode gives the
    # in-process continuation; completion mode sends prompt and prefix as one text.
    served_branch = served_model.generate("Write about the sea.", settings, prefix="Waves")
    local_branch = local_model.generate("Write about the sea.", settings, prefix="Waves")
    assert served_branch.text.startswith("Waves") and len(served_branch.text) > len("Waves")
    if chat:
        assert served_branch.text == local_branch.text and served_branch.new_ids == local_branch.new_ids


def sse_chunks(response: httpx.Response) -> list[dict]:
    chunks = []
    for line in response.iter_lines():
        if line.startswith("data:") and line.strip() != "data: [DONE]":
            chunks.append(json.loads(line[5:]))
    return chunks


def test_the_openai_routes_stream_and_answer_alike_with_logprobs(serve_url):
    body = {
        "model": "smollm2-135m",
        "messages": [{"role": "user", "content": "Name a fruit."}],
        "max_tokens": 10,
        "temperature": 0,
        "logprobs": True,
        "top_logprobs": 3,
    }
    whole = httpx.post(f"{serve_url}/v1/chat/completions", json=body, timeout=120).json()
    answer = whole["choices"][0]["message"]["content"]
    with httpx.stream("POST", f"{serve_url}/v1/chat/completions", json=body | {"stream": True}, timeout=120) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        chunks = sse_chunks(r)
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == answer
    streamed_logprobs = [e for c in chunks for e in (c["choices"][0]["logprobs"] or {}).get("content", [])]
    assert streamed_logprobs == whole["choices"][0]["logprobs"]["content"]
    assert (
        len(streamed_logprobs) == whole["usage"]["completion_tokens"] and len(streamed_logprobs[0]["top_logprobs"]) == 3
    )
    completion = httpx.post(
        f"{serve_url}/v1/completions",
        json={"model": "smollm2-135m", "prompt": "The sea is", "max_tokens": 5, "temperature": 0, "logprobs": 2},
        timeout=120,
    ).json()
    assert (
        len(completion["choices"][0]["logprobs"]["tokens"]) == 5
        and completion["choices"][0]["finish_reason"] == "length"
    )
    refused = httpx.post(f"{serve_url}/v1/chat/completions", json=body | {"max_tokens": 0, "stream": True}, timeout=60)
    assert (
        refused.status_code == 400
        and "max_tokens must be a whole number from 1 to 1024" in refused.json()["error"]["message"]
    )
    unknown = httpx.post(f"{serve_url}/v1/completions", json={"model": "gpt-4o", "prompt": "x"}, timeout=60)
    assert unknown.status_code == 400 and unknown.json()["error"]["code"] == "model_not_found"


def test_bad_requests_are_refused_with_the_limit_and_the_deployments_keep_serving(serve_url):
    refused = httpx.post(f"{serve_url}/gan/sample", json={"seed": 1, "count": 65, "truncation": 1.5}, timeout=60)
    assert refused.status_code == 400 and "count must be a whole number from 1 to 64" in refused.json()["detail"]
    assert httpx.post(f"{serve_url}/gan/generate", content=b"not safetensors", timeout=60).status_code == 400
    from pipelines.serving import wire

    wrong = wire.pack({"input": torch.zeros(2, 5)})
    refused = httpx.post(f"{serve_url}/vae/decode?model=vae-digits", content=wrong, timeout=60)
    assert refused.status_code == 400 and "latents of 12 numbers" in refused.json()["detail"]
    refused = httpx.post(
        f"{serve_url}/text-to-image/generate", json={"model": "shapes-world", "prompt": "x", "steps": 0}
    )
    assert refused.status_code == 400 and "Steps must be a whole number from 1 to 100" in refused.json()["detail"]
    assert load_remote("gan-faces", "gan", serve_url).sample(1, 1)  # still serving


def replica_actors(deployment: str) -> set[str]:
    return {
        actor["name"]
        for actor in ray.util.list_named_actors(all_namespaces=True)
        if actor["name"].startswith("SERVE_REPLICA::") and f"#{deployment}#" in actor["name"]
    }


def test_a_replica_killed_mid_load_is_replaced_and_no_request_hangs(serve_url, in_process):
    gan = load_remote("gan-faces", "gan", serve_url)
    (old_replica,) = replica_actors("GAN")

    def request(seed: int):
        started = time.monotonic()
        try:
            return seed, gan.sample(seed, 8, 1.5), time.monotonic() - started
        except ServingError as error:  # refused clearly: said in words, not a hang or a stack trace
            return seed, error, time.monotonic() - started

    started = time.monotonic()
    with ThreadPoolExecutor(12) as pool:
        futures = [pool.submit(request, seed) for seed in range(48)]
        time.sleep(0.3)  # the first requests are in flight
        ray.kill(ray.get_actor(old_replica, namespace="serve"), no_restart=True)
        outcomes = [future.result(timeout=300) for future in futures]
    assert time.monotonic() - started < 300
    served = [(seed, images) for seed, images, _ in outcomes if isinstance(images, list)]
    refused = [error for _, error, _ in outcomes if isinstance(error, ServingError)]
    assert len(served) + len(refused) == len(futures)
    assert all("lost its replica" in str(e) or "cannot be reached" in str(e) for e in refused), refused
    assert len(served) >= len(futures) // 2
    local = in_process.load("gan-faces")
    assert all(same_pixels(images, local.sample(seed, 8, 1.5)) for seed, images in served[:8])

    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        state = deployments_now(serve_url)["GAN"]
        if (
            state["status"] == "HEALTHY"
            and state["replicas"] == {"RUNNING": 1}
            and replica_actors("GAN") - {old_replica}
        ):
            break
        time.sleep(1)
    assert replica_actors("GAN") and old_replica not in replica_actors("GAN")
    assert same_pixels(gan.sample(5, 2, 1.5), local.sample(5, 2, 1.5))


@pytest.fixture(scope="module")
def cluster_app_url(serve_url, tmp_path_factory):
    """`python app.py` in client mode: the tabs call the module's Serve application."""
    log = tmp_path_factory.mktemp("cluster-app") / "app.log"
    with launched_app([sys.executable, "app.py"], log, **{SERVE_URL_VARIABLE: serve_url}) as url:
        yield url


def test_healthz_in_client_mode_names_the_backend_and_each_deployment(cluster_app_url):
    status, body = get_json(f"{cluster_app_url}healthz")
    assert status == 200 and body["backend"] == "ray-serve" and body["status"] == "ok"
    assert set(body["deployments"]) == DEPLOYMENTS
    assert all(d["status"] == "HEALTHY" for d in body["deployments"].values())


def file_bytes(value) -> bytes:
    path = value if isinstance(value, str) else value.get("path") or value.get("image")
    return Path(path).read_bytes()


def test_the_app_in_client_mode_gives_the_in_process_apps_bytes(cluster_app_url, client):
    from gradio_client import Client

    served_client = Client(cluster_app_url, verbose=False)
    calls = [
        ("/sample_faces", dict(seed=9, count=4, truncation=1.2)),
        ("/vae_sample_prior", dict(model="vae-digits", seed=2, count=4)),
        ("/text_to_image", dict(prompt="a large blue square", steps=4, seed=3, scheduler="DDPM")),
    ]
    for api_name, arguments in calls:
        served, local = (
            served_client.predict(**arguments, api_name=api_name),
            client.predict(**arguments, api_name=api_name),
        )
        served_gallery = served[0] if isinstance(served, tuple | list) and isinstance(served[0], list) else served
        local_gallery = local[0] if isinstance(local, tuple | list) and isinstance(local[0], list) else local
        assert [file_bytes(item["image"]) for item in served_gallery] == [
            file_bytes(item["image"]) for item in local_gallery
        ], api_name
    text = dict(prompt="Name a colour.", max_new_tokens=8, temperature=0.0, seed=1, mode="Chat")
    assert served_client.predict(**text, api_name="/generate_text") == client.predict(**text, api_name="/generate_text")
