"""Load test: many gradio_client users at once against the app on this machine (loopback only).

`python -m benchmarks.loadtest` launches `python app.py` on a free loopback port, warms every model with one
request each, then runs N client threads that each send M requests mixing every tab's endpoints with small
settings. It reports served / refused-busy / failed counts, p50/p95 latency per endpoint, throughput and the
server's peak RSS. `--memory-requests 1000` then sends that many cheap requests and compares the server's RSS
before and after. `--url http://127.0.0.1:PORT/` targets an app already running (add `--pid` for its RSS).
`python -m benchmarks benchmarks.loadtest` (`make loadtest`) writes the 40 x 2 run and the 1,000-request run
into BENCHMARKS.md. `--cluster` runs the same load against the app in client mode with its models on a local Ray;
`make loadtest-cluster` writes that section (benchmarks/loadtest_cluster.py).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
from PIL import Image

from benchmarks.timing import format_seconds
from tools.app_process import free_port, wait_for_http

REPO_ROOT = Path(__file__).resolve().parent.parent
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
MAX_CLIENTS = 200
MAX_REQUESTS_PER_CLIENT = 50
MAX_MEMORY_REQUESTS = 5000

CORPUS = (
    "The sea is never still. The boats wait for the tide, and the gulls walk between them. "
    "When the tide comes in the boats lift and turn toward the open sea. At night the sea is dark and loud."
)

# A request is (api_name, keyword arguments). Settings are small, as a workshop attendee's first click would be.
Request = tuple[str, dict]


def mixed_requests(seed: int, images: tuple[str, str]) -> list[Request]:
    """One request for every endpoint of every tab; `seed` varies the content between requests."""
    from gradio_client import handle_file

    return [
        ("/sample_faces", dict(seed=seed, count=4, truncation=1.5)),
        ("/interpolate_faces", dict(seed_a=seed, seed_b=seed + 1, frames=8, truncation=1.5)),
        (
            "/vae_interpolate",
            dict(
                image_a=handle_file(images[0]), image_b=handle_file(images[1]), frames=6, model="faces", method="slerp"
            ),
        ),
        ("/vae_sample_prior", dict(model="digits", seed=seed, count=8)),
        ("/generate_text", dict(prompt="Name a colour.", max_new_tokens=8, seed=seed, mode="Chat")),
        ("/ngram_generate", dict(corpus=CORPUS, n=3, prompt="The sea", max_words=30, seed=seed)),
        (
            "/text_to_image",
            dict(
                prompt="a small red circle on the left",
                negative_prompt="",
                steps=4,
                guidance_scale=4.0,
                seed=seed,
                scheduler="DPM-Solver++",
                count=1,
            ),
        ),
    ]


def cheap_requests(seed: int) -> list[Request]:
    """The cheapest requests that still run a model and write output files (for the memory run)."""
    return [
        ("/sample_faces", dict(seed=seed, count=1, truncation=1.5)),
        ("/ngram_generate", dict(corpus=CORPUS, n=2, prompt="The", max_words=10, seed=seed)),
    ]


def write_input_images(folder: Path) -> tuple[str, str]:
    """Two seeded 64x64 pictures to upload as the VAE's images A and B."""
    paths = []
    for seed in (1, 2):
        pixels = np.random.default_rng(seed).integers(0, 256, (8, 8, 3), dtype=np.uint8)
        path = folder / f"loadtest-input-{seed}.png"
        Image.fromarray(pixels).resize((64, 64), Image.Resampling.BILINEAR).save(path)
        paths.append(str(path))
    return paths[0], paths[1]


# ---------------------------------------------------------------------------------------------
# Server memory


def process_tree(pid: int) -> list[int]:
    """`pid` and all its descendants, from /proc (Linux)."""
    children: dict[int, list[int]] = defaultdict(list)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parent = int(stat.rsplit(")", 1)[1].split()[1])  # the name in (...) may hold spaces
            children[parent].append(int(entry.name))
    tree, frontier = [], [pid]
    while frontier:
        current = frontier.pop()
        tree.append(current)
        frontier.extend(children.get(current, []))
    return tree


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU time a process and its children have used (from /proc/<pid>/stat)."""
    ticks = 0
    for member in process_tree(pid):
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the process ended between listing and reading
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def tree_rss_bytes(pid: int) -> int:
    """Resident memory of a process and its children (VmRSS from /proc/<pid>/status)."""
    total = 0
    for member in process_tree(pid):
        try:
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            continue  # the process ended between listing and reading
    return total


class RssSampler:
    """Samples a process tree's RSS in a thread; `peak` is the largest seen since `start`."""

    def __init__(self, pid: int, interval: float = 0.2):
        self.pid, self.interval = pid, interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss_bytes(self.pid))
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, tree_rss_bytes(self.pid))


def megabytes(size: int) -> str:
    return f"{size / 2**20:,.0f} MB"


# ---------------------------------------------------------------------------------------------
# Running requests


@dataclass
class Outcome:
    api_name: str
    kind: str  # "served", "busy", "failed" or "timed out"
    seconds: float
    message: str = ""


@dataclass
class RunReport:
    clients: int
    requests_per_client: int
    seconds: float
    outcomes: list[Outcome] = field(default_factory=list)
    peak_rss: int | None = None

    def count(self, kind: str) -> int:
        return sum(1 for o in self.outcomes if o.kind == kind)


def classify(error: BaseException) -> str:
    """A refusal because the queue is full (Gradio's QueueError, or the app's own "busy" message) or a failure."""
    text = f"{type(error).__name__}: {error}".lower()
    return "busy" if "queueerror" in text or "queue is full" in text or "busy" in text else "failed"


def send(client, api_name: str, arguments: dict, deadline: float) -> Outcome:
    """Submit one request and wait for its final result, at most until `deadline` (time.monotonic())."""
    started = time.monotonic()
    job = None
    try:
        job = client.submit(api_name=api_name, **arguments)
        job.result(timeout=max(0.1, deadline - time.monotonic()))
        return Outcome(api_name, "served", time.monotonic() - started)
    except TimeoutError:
        if job is not None:
            job.cancel()
        return Outcome(api_name, "timed out", time.monotonic() - started, "no result before the time limit")
    except Exception as error:  # what a user would see: a refusal or an error message
        message = " ".join(str(error).split())[:160]
        return Outcome(api_name, classify(error), time.monotonic() - started, message)


def new_client(url: str):
    from gradio_client import Client

    # Output files stay on the server: the clients share the machine's cores with it and should cost little.
    # A busy server answers its config slowly, hence a timeout longer than gradio_client's 20 s.
    return Client(url, verbose=False, download_files=False, httpx_kwargs={"timeout": 120})


def run_clients(
    url: str,
    clients: int,
    requests_per_client: int,
    requests_for: Callable[[int, int], Request],
    max_seconds: float,
    server_pid: int | None,
) -> RunReport:
    """`clients` threads, each with its own gradio_client session, send `requests_per_client` requests each.

    All threads connect first and then start together; nothing is sent after `max_seconds`.
    """
    outcomes: list[Outcome] = []
    lock = threading.Lock()
    clock = {}

    def start_clock() -> None:  # runs once, when the last thread has connected, before any request
        clock["started"] = time.monotonic()
        clock["deadline"] = clock["started"] + max_seconds

    connected = threading.Barrier(clients + 1, action=start_clock)

    def user(index: int) -> None:
        client, connect_error = None, ""
        try:
            client = new_client(url)
        except Exception as error:  # every request of this user counts as failed
            connect_error = f"could not connect: {error}"
        finally:
            connected.wait()
        for number in range(requests_per_client):
            api_name, arguments = requests_for(index, number)
            if client is None:
                outcome = Outcome(api_name, "failed", 0.0, connect_error)
            elif time.monotonic() >= clock["deadline"]:
                outcome = Outcome(api_name, "timed out", 0.0, "not sent: the run's time limit had passed")
            else:
                outcome = send(client, api_name, arguments, clock["deadline"])
            with lock:
                outcomes.append(outcome)

    threads = [threading.Thread(target=user, args=(i,), daemon=True) for i in range(clients)]
    sampler = RssSampler(server_pid) if server_pid else None
    with sampler or _nothing():
        for thread in threads:
            thread.start()
        connected.wait()
        for thread in threads:
            thread.join(timeout=max(0.0, clock["deadline"] + 30 - time.monotonic()))
        seconds = time.monotonic() - clock["started"]
    with lock:
        report = RunReport(clients, requests_per_client, seconds, list(outcomes))
    report.peak_rss = sampler.peak if sampler else None
    return report


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def warm_up(url: str, requests: list[Request], max_seconds: float) -> list[Outcome]:
    """One request per endpoint, one after another: the first use of each model loads it."""
    client = new_client(url)
    deadline = time.monotonic() + max_seconds
    return [send(client, api_name, arguments, deadline) for api_name, arguments in requests]


# ---------------------------------------------------------------------------------------------
# Launching the app


@contextmanager
def launched_app(log_path: Path) -> Iterator[tuple[str, int]]:
    """`python app.py` on a free loopback port; yields (url, pid) and stops it afterwards."""
    port = free_port()
    env = dict(
        os.environ, GRADIO_SERVER_NAME="127.0.0.1", GRADIO_SERVER_PORT=str(port), GRADIO_ANALYTICS_ENABLED="False"
    )
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, "app.py"], cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_for_http(url, process)
        yield url, process.pid
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def check_loopback(url: str) -> None:
    host = urlparse(url).hostname or ""
    if host not in LOOPBACK_HOSTS:
        raise SystemExit(f"The load test only targets this machine (127.0.0.1 or localhost), not {host!r}.")


# ---------------------------------------------------------------------------------------------
# Reporting


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile: the smallest value with at least `share` of the values at or below it."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, int(np.ceil(share * len(ordered))) - 1))]


def load_table(report: RunReport) -> list[str]:
    by_endpoint: dict[str, list[Outcome]] = defaultdict(list)
    for outcome in report.outcomes:
        by_endpoint[outcome.api_name].append(outcome)
    lines = [
        "| endpoint | sent | served | refused busy | failed or timed out | p50 latency | p95 latency |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for api_name in sorted(by_endpoint):
        outcomes = by_endpoint[api_name]
        served = [o.seconds for o in outcomes if o.kind == "served"]
        p50 = format_seconds(statistics.median(served)) if served else "-"
        p95 = format_seconds(percentile(served, 0.95)) if served else "-"
        kinds = Counter(o.kind for o in outcomes)
        lines.append(
            f"| `{api_name}` | {len(outcomes)} | {kinds['served']} | {kinds['busy']} | "
            f"{kinds['failed'] + kinds['timed out']} | {p50} | {p95} |"
        )
    served = [o.seconds for o in report.outcomes if o.kind == "served"]
    lines.append(
        f"| **all** | {len(report.outcomes)} | {report.count('served')} | {report.count('busy')} | "
        f"{report.count('failed') + report.count('timed out')} | "
        f"{format_seconds(statistics.median(served)) if served else '-'} | "
        f"{format_seconds(percentile(served, 0.95)) if served else '-'} |"
    )
    return lines


def problems(report: RunReport, limit: int = 5) -> list[str]:
    """The most frequent messages of refused and failed requests, so a failure is explained."""
    messages = Counter(f"{o.api_name} ({o.kind}): {o.message}" for o in report.outcomes if o.kind != "served")
    return [f"- {count} x {message}" for message, count in messages.most_common(limit)]


def describe_load(report: RunReport, warm: list[Outcome]) -> str:
    throughput = report.count("served") / report.seconds if report.seconds else 0.0
    lines = [
        f"**{report.clients} clients x {report.requests_per_client} requests** (threads with their own "
        f"gradio_client session, all started together, each request's endpoint taken in turn from the list "
        f"below). Served {report.count('served')} of {len(report.outcomes)} in {report.seconds:.1f} s: "
        f"**{throughput:.2f} requests/s**. Server peak RSS (app process and children, sampled every 0.2 s): "
        f"**{megabytes(report.peak_rss) if report.peak_rss else 'not measured'}**.",
        "",
        *load_table(report),
    ]
    if warm:
        lines += [
            "",
            "Before the run, one request per endpoint loaded each model (first use, one after another): "
            + ", ".join(f"`{o.api_name}` {format_seconds(o.seconds)} ({o.kind})" for o in warm)
            + ".",
            *[f"- warm-up {o.api_name} ({o.kind}): {o.message}" for o in warm if o.kind != "served"],
        ]
    found = problems(report)
    if found:
        lines += ["", "Messages of requests not served (most frequent first):", *found]
    return "\n".join(lines)


def describe_memory(report: RunReport, baseline: int, after: int) -> str:
    growth = after - baseline
    verdict = "within" if growth <= 200 * 2**20 else "**over**"
    lines = [
        f"**Memory over {len(report.outcomes):,} cheap requests** (`/sample_faces` with 1 face and "
        f"`/ngram_generate` with 10 words, alternating, from {report.clients} clients): server RSS "
        f"{megabytes(baseline)} warm before, {megabytes(after)} after, peak {megabytes(report.peak_rss or 0)}: "
        f"growth **{megabytes(growth)}**, {verdict} the 200 MB target. Served {report.count('served')}, "
        f"refused busy {report.count('busy')}, failed {report.count('failed') + report.count('timed out')}, "
        f"in {report.seconds:.0f} s ({report.count('served') / report.seconds:.1f} requests/s).",
    ]
    found = problems(report)
    if found:
        lines += ["", *found]
    return "\n".join(lines)


def single_faces_through_the_app(url: str, pid: int | None, requests: int = 32, repeats: int = 3) -> str:
    """Seconds for `requests` one-face `/sample_faces` requests: one after another, then all at once.

    The app batches concurrent GAN requests into shared forward passes (pipelines/core/batching.py), so this is
    the issue's "32 concurrent single-face requests vs one at a time", measured end to end. The CPU time
    of one request, the server's and the calling gradio_client's, shows what bounds the concurrent case:
    both share this machine's cores.
    """
    one_by_one, together, server_cpu, client_cpu = [], [], [], []
    client = new_client(url)
    for _ in range(repeats):
        server_before, client_before = tree_cpu_seconds(pid) if pid else 0.0, own_cpu_seconds()
        started = time.monotonic()
        for seed in range(requests):
            client.predict(seed=seed, count=1, truncation=1.5, api_name="/sample_faces")
        one_by_one.append(time.monotonic() - started)
        client_cpu.append((own_cpu_seconds() - client_before) / requests)
        if pid:
            server_cpu.append((tree_cpu_seconds(pid) - server_before) / requests)
        report = run_clients(
            url, requests, 1, lambda i, j: ("/sample_faces", dict(seed=i, count=1, truncation=1.5)), 300, None
        )
        if report.count("served") != requests:
            raise RuntimeError(f"only {report.count('served')} of {requests} concurrent requests were served")
        together.append(report.seconds)
    serial, concurrent = statistics.median(one_by_one), statistics.median(together)
    cpu = f"CPU time of one request, one after another: gradio_client {format_seconds(statistics.median(client_cpu))}"
    if server_cpu:
        cpu += f", the server {format_seconds(statistics.median(server_cpu))}"
    return (
        f"**{requests} one-face `/sample_faces` requests through the app** (median of {repeats}): one after "
        f"another from one client {format_seconds(serial)} ({format_seconds(serial / requests)} each); from "
        f"{requests} clients at once, batched by the app, {format_seconds(concurrent)}: "
        f"**{serial / concurrent:.1f}x** faster. {cpu}."
    )


# ---------------------------------------------------------------------------------------------
# Entry points


@dataclass
class Settings:
    clients: int = 40
    requests_per_client: int = 2
    memory_requests: int = 0
    memory_clients: int = 4
    max_seconds: float = 900.0
    single_faces: bool = False


def load_test(url: str, pid: int | None, settings: Settings) -> str:
    """Warm up, run the mixed load, then (if asked) the memory run; returns the Markdown report."""
    with tempfile.TemporaryDirectory(prefix="loadtest-") as folder:
        images = write_input_images(Path(folder))
        endpoints = len(mixed_requests(0, images))
        warm = warm_up(url, mixed_requests(0, images), settings.max_seconds)
        report = run_clients(
            url,
            settings.clients,
            settings.requests_per_client,
            # Client i's request j: endpoints in turn, so every endpoint gets an even share of the load.
            lambda i, j: mixed_requests(1000 + i * 100 + j, images)[(i * settings.requests_per_client + j) % endpoints],
            settings.max_seconds,
            pid,
        )
        sections = [describe_load(report, warm)]
    if settings.single_faces:
        sections.append(single_faces_through_the_app(url, pid))
    if settings.memory_requests:
        per_client = -(-settings.memory_requests // settings.memory_clients)  # ceiling division
        if pid:
            time.sleep(2)  # let the last responses' buffers go
        baseline = tree_rss_bytes(pid) if pid else 0
        memory = run_clients(
            url,
            settings.memory_clients,
            per_client,
            lambda i, j: cheap_requests(i * per_client + j)[j % 2],
            settings.max_seconds,
            pid,
        )
        if pid:
            time.sleep(2)
            sections.append(describe_memory(memory, baseline, tree_rss_bytes(pid)))
        else:
            sections.append(f"Memory run: {memory.count('served')} served; RSS not measured (pass --pid).")
    return "\n\n".join(sections)


def run() -> str:
    """The BENCHMARKS.md section: 40 clients x 2 requests, then 1,000 cheap requests, on a freshly launched app."""
    settings = Settings(clients=40, requests_per_client=2, memory_requests=1000, single_faces=True)
    with tempfile.TemporaryDirectory(prefix="loadtest-app-") as folder:
        with launched_app(Path(folder) / "app.log") as (url, pid):
            body = load_test(url, pid, settings)
    return "\n".join(
        [
            "## Load test (`make loadtest`)",
            "",
            "A freshly launched `python app.py` on this machine's loopback, driven by gradio_client threads on the "
            "same machine (they share its cores). Requests: `/sample_faces` 4 faces, `/interpolate_faces` "
            "8 frames, `/vae_interpolate` 6 frames from two uploaded PNGs, `/vae_sample_prior` 8 digits, "
            "`/generate_text` 8 new tokens, `/ngram_generate` 30 words, `/text_to_image` 4 steps, 1 image. "
            "Latency is from submitting to the final result, queue wait included; output files are not "
            "downloaded. p95 is the nearest-rank 95th percentile of the served requests.",
            "",
            body,
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="an app already running on this machine (default: launch one)")
    parser.add_argument("--pid", type=int, help="with --url: the app's process id, to sample its RSS")
    parser.add_argument("--clients", type=int, default=40, help=f"concurrent clients (at most {MAX_CLIENTS})")
    parser.add_argument("--requests", type=int, default=2, help="requests per client")
    parser.add_argument("--memory-requests", type=int, default=0, help="then this many cheap requests (e.g. 1000)")
    parser.add_argument("--max-seconds", type=float, default=900.0, help="time limit of each phase")
    parser.add_argument(
        "--single-faces", action="store_true", help="also time 32 one-face requests: one by one, then at once"
    )
    parser.add_argument(
        "--cluster",
        action="store_true",
        help="the app in client mode, its models on a local Ray (needs `make setup-cluster`; docs/deploy-cluster.md)",
    )
    args = parser.parse_args()
    if not 1 <= args.clients <= MAX_CLIENTS:
        parser.error(f"--clients must be from 1 to {MAX_CLIENTS}")
    if not 1 <= args.requests <= MAX_REQUESTS_PER_CLIENT:
        parser.error(f"--requests must be from 1 to {MAX_REQUESTS_PER_CLIENT}")
    if not 0 <= args.memory_requests <= MAX_MEMORY_REQUESTS:
        parser.error(f"--memory-requests must be from 0 to {MAX_MEMORY_REQUESTS}")
    if not 1 <= args.max_seconds <= 3600:
        parser.error("--max-seconds must be from 1 to 3600")
    settings = Settings(
        args.clients, args.requests, args.memory_requests, max_seconds=args.max_seconds, single_faces=args.single_faces
    )
    if args.url:
        check_loopback(args.url)
        print(load_test(args.url, args.pid, settings))
        return
    if args.cluster:
        from benchmarks.loadtest_cluster import app_on_local_cluster

        with tempfile.TemporaryDirectory(prefix="loadtest-cluster-") as folder:
            with app_on_local_cluster(Path(folder)) as (url, pid, serve_url):
                print(f"models served at {serve_url}; app in client mode at {url} (pid {pid}) ...", flush=True)
                print(load_test(url, pid, settings))
        return
    with tempfile.TemporaryDirectory(prefix="loadtest-app-") as folder:
        with launched_app(Path(folder) / "app.log") as (url, pid):
            print(f"app launched at {url} (pid {pid}); warming up and sending requests ...", flush=True)
            print(load_test(url, pid, settings))


if __name__ == "__main__":
    main()
