"""Load test in cluster mode: the app in client mode, its models on a local Ray (deploy/serve_config.yaml).

`python -m benchmarks benchmarks.loadtest_cluster` (`make loadtest-cluster`) starts Ray and the Serve application in
this process, launches `python app.py` pointed at it, and runs the same mixed load as `make loadtest` (40 clients x 2
requests, then 32 one-face requests one by one and at once). Then, against Serve directly, it measures each family's
throughput with one replica, the GAN with two replicas on the same cores, and `@serve.batch` against the pipelines'
own batching. This machine has 2 cores: every replica shares them, so what N replicas would give is inferred
from the one-replica figures, not measured.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from benchmarks.loadtest import RssSampler, Settings, launched_app, load_test, megabytes, tree_rss_bytes
from benchmarks.timing import format_seconds
from pipelines.serving.options import SERVE_URL_VARIABLE
from tools.app_process import get_json

ONE_REPLICA = {"num_replicas": 1, "autoscaling_config": None}


@contextmanager
def app_on_local_cluster(folder: Path) -> Iterator[tuple[str, int, str]]:
    """The Serve application on a local Ray in this process (deploy/serve_config.yaml as it is) and `python app.py`
    in client mode: yields (app URL, app pid, Serve URL); stops both afterwards."""
    from deploy import cluster

    try:
        serve_url = cluster.start()
        with launched_app(folder / "app.log") as (app_url, app_pid):  # the app inherits GENAI_PLAYGROUND_SERVE_URL
            yield app_url, app_pid, serve_url
    finally:
        os.environ.pop(SERVE_URL_VARIABLE, None)
        cluster.stop()


def closed_loop(call, clients: int, requests_per_client: int) -> float:
    """Requests per second when `clients` threads each send `requests_per_client` calls, one after another."""

    def client(index: int) -> None:
        for number in range(requests_per_client):
            call(index * 1000 + number)

    started = time.monotonic()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, range(clients)))
    return clients * requests_per_client / (time.monotonic() - started)


def family_throughput(url: str) -> list[tuple[str, int, float]]:
    """(what, concurrent clients, requests/s) for each family with one replica, through the gateway."""
    from pipelines.serving.remote import load_remote
    from pipelines.text.generation import SamplingSettings

    gan = load_remote("gan-faces", "gan", url)
    digits = load_remote("vae-digits", "vae", url)
    images = load_remote("shapes-world", "diffusion", url)
    text = load_remote("smollm2-135m", "text", url)
    from pipelines.diffusion.text_to_image import generate

    cases = [
        ("GAN `sample`, 4 faces", 16, 6, lambda seed: gan.sample(seed, 4, 1.5)),
        ("VAE decode (`sample_prior`, 8 digits)", 8, 6, lambda seed: digits.sample_prior(seed, 8)),
        (
            "text-to-image, 4 steps, 1 image",
            2,
            3,
            lambda seed: generate(images, "a small red circle", "", 4, 4.0, seed, "DPM-Solver++", 1),
        ),
        (
            "text, 8 new tokens (chat, greedy)",
            2,
            3,
            lambda seed: text.generate("Name a colour.", SamplingSettings(max_new_tokens=8, temperature=0, seed=seed)),
        ),
    ]
    results = []
    for name, clients, requests, call in cases:
        call(0)  # warm
        results.append((name, clients, closed_loop(call, clients, requests)))
    return results


def single_faces(url: str, requests: int = 32, repeats: int = 3) -> list[float]:
    """Seconds for `requests` concurrent one-face GAN requests, straight to Serve, `repeats` times."""
    from pipelines.serving.remote import load_remote

    gan = load_remote("gan-faces", "gan", url)
    gan.sample(0, 1)
    times = []
    for _ in range(repeats):
        started = time.monotonic()
        with ThreadPoolExecutor(requests) as pool:
            list(pool.map(lambda seed: gan.sample(seed, 1, 1.5), range(requests)))
        times.append(time.monotonic() - started)
    return times


def text_to_image_batching(repeats: int = 3) -> tuple[float, float]:
    """In-process, the replica's code: seconds for 2 images as one call (a batch of 2) and as 2 concurrent calls.

    Both run in worker threads, as in the replica: on a busy machine torch ran several times slower in the main
    thread than in others, which would flatter whichever variant ran in threads."""
    from pipelines.core.registry import BUILTIN_MODELS, ModelRegistry
    from pipelines.diffusion.text_to_image import generate

    pipeline = ModelRegistry(BUILTIN_MODELS).load("shapes-world")
    arguments = ("a small red circle", "", 8, 4.0)
    generate(pipeline, *arguments, 0, "DPM-Solver++", 1)
    batched, concurrent = [], []
    for _ in range(repeats):
        started = time.monotonic()
        batch = threading.Thread(target=generate, args=(pipeline, *arguments, 1, "DPM-Solver++", 2))
        batch.start()
        batch.join()
        batched.append(time.monotonic() - started)
        started = time.monotonic()
        threads = [threading.Thread(target=generate, args=(pipeline, *arguments, s, "DPM-Solver++", 1)) for s in (1, 2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        concurrent.append(time.monotonic() - started)
    return statistics.median(batched), statistics.median(concurrent)


def run() -> str:
    """The BENCHMARKS.md section."""
    from ray import serve

    from deploy import cluster
    from deploy.serve_app import build_application

    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="loadtest-cluster-") as folder:
        with RssSampler(os.getpid()) as cluster_rss, app_on_local_cluster(Path(folder)) as (app_url, app_pid, url):
            load = load_test(app_url, app_pid, Settings(clients=40, requests_per_client=2, single_faces=True))
            client_rss = tree_rss_bytes(app_pid)
            deployments = get_json(f"{url}/healthz")[1]["deployments"]
            replicas = {name: state["replicas"] for name, state in deployments.items()}
            application = cluster.load_config()["applications"][0]

            def redeploy(overrides: dict) -> None:
                options = cluster.deployment_options(application)
                for name, changes in overrides.items():
                    merged = {**options.get(name, {}), **changes}
                    options[name] = {k: v for k, v in merged.items() if v is not None}
                serve.run(build_application(options), name=application["name"], route_prefix="/")

            one = {name: ONE_REPLICA for name in ("Gateway", "GAN", "VAE", "TextToImage", "Text")}
            redeploy(one)
            per_family = family_throughput(url)
            # Alternated, so a change in the machine's other load falls on both alike (a user_config change
            # reconfigures the running replica).
            serve_times, pipeline_times = [], []
            for _ in range(3):
                redeploy(one | {"GAN": ONE_REPLICA | {"user_config": {"serve_batching": True}}})
                serve_times += single_faces(url)
                redeploy(one | {"GAN": ONE_REPLICA | {"user_config": {"serve_batching": False}}})
                pipeline_times += single_faces(url)
            with_serve_batch, with_pipeline_batching = statistics.median(serve_times), statistics.median(pipeline_times)
            redeploy(one | {"GAN": {"num_replicas": 2, "autoscaling_config": None}})
            two_gan = family_throughput_gan(url)
    batched, concurrent = text_to_image_batching()
    machine_load = (load_before, os.getloadavg()[0])
    return describe(
        load,
        cluster_rss.peak,
        client_rss,
        replicas,
        per_family,
        with_serve_batch,
        with_pipeline_batching,
        two_gan,
        batched,
        concurrent,
        machine_load,
    )


def family_throughput_gan(url: str) -> float:
    from pipelines.serving.remote import load_remote

    gan = load_remote("gan-faces", "gan", url)
    gan.sample(0, 4)
    return closed_loop(lambda seed: gan.sample(seed, 4, 1.5), 16, 6)


def describe(
    load,
    cluster_peak,
    client_rss,
    replicas,
    per_family,
    serve_batch,
    pipeline_batch,
    two_gan,
    batched,
    concurrent,
    machine_load,
) -> str:
    cores = os.cpu_count()
    gan_one = per_family[0][2]
    if serve_batch < 0.9 * pipeline_batch:
        batching_verdict = "`@serve.batch` pays here, and the config keeps it on."
    elif pipeline_batch < 0.9 * serve_batch:
        batching_verdict = "The pipeline's own batching was faster here; `serve_batching: false` selects it."
    else:
        batching_verdict = (
            "Neither is clearly faster here; the config keeps `@serve.batch`, which forms batches on the replica's "
            "event loop instead of holding a thread per waiting request."
        )
    lines = [
        "## Load test, cluster mode (`make loadtest-cluster`)",
        "",
        f"The same load as `make loadtest`, against `python app.py` in client mode, with the models served by Ray "
        f"Serve on a local Ray head in the benchmark's process (deploy/serve_config.yaml as it is: each deployment "
        f"autoscales from 1 to 4 replicas). **This machine has {cores} cores**: the app, the gradio_client threads, "
        f"Ray's own processes and every replica share them, so this shows what the extra hop costs and that "
        f"nothing breaks, not what a cluster gains. The machine's 1-minute load average, from other work on it "
        f"too: {machine_load[0]:.1f} at the start, {machine_load[1]:.1f} at the end.",
        "",
        load,
        "",
        f"Memory: the app in client mode {megabytes(client_rss)} (no model loaded in it); Ray with every replica, "
        f"peak {megabytes(cluster_peak)}. Replicas at the end of the run: "
        + ", ".join(f"{name} {states}" for name, states in replicas.items())
        + ".",
        "",
        "**Per-replica throughput** (one replica each, straight to Serve through the gateway, closed loop):",
        "",
        "| deployment, request | clients | requests/s, 1 replica |",
        "| --- | --- | --- |",
        *[f"| {name} | {clients} | {rate:.2f} |" for name, clients, rate in per_family],
        "",
        f"The GAN with **2 replicas on the same {cores} cores: {two_gan:.2f} requests/s** against {gan_one:.2f} "
        f"with one, measured one after the other while the machine's other load changed: two replicas on one "
        f"machine share its cores, so this is no measure of scale. On a cluster, N replicas on N machines (or N "
        f"GPUs) of this kind would serve about N times the one-replica rate as long as the gateway and the network "
        f"keep up "
        f"(e.g. 8 x {gan_one:.1f} = {8 * gan_one:.0f} GAN requests/s of 4 faces); that is an inference from the "
        f"figure above, not a measurement.",
        "",
        "**`@serve.batch` or the pipelines' own batching** (32 concurrent one-face GAN requests, median of 9 "
        "runs, the two modes alternated): "
        f"`@serve.batch` {format_seconds(serve_batch)}, the pipeline's thread batching in the replica "
        f"{format_seconds(pipeline_batch)} ({pipeline_batch / serve_batch:.2f}x). {batching_verdict}",
        "",
        f"**Text-to-image batching** (the replica's code, in one process, 8 steps): 2 images in one call "
        f"{format_seconds(batched)}, 2 single-image calls at once {format_seconds(concurrent)}: "
        + (
            "batching is faster, worth a `@serve.batch` of prompts."
            if batched < 0.9 * concurrent
            else "no clear gain, so the text-to-image deployment does not batch with Serve."
        ),
    ]
    return "\n".join(lines)
