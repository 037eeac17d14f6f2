"""Training you can watch: the toy GAN's mode coverage on the ring (defaults and the collapse preset, several
seeds), run times of every default run with and without drawing its plots, one torch thread against the default,
the VAE's two loss terms at three betas, the character model's losses, and AR(p) fits."""

from __future__ import annotations

import io
import statistics
import time
from dataclasses import replace

import torch

from benchmarks.timing import format_seconds
from demos import training as tab
from pipelines.core.training_runs import one_cpu_thread
from pipelines.gan.toy_training import MODE_COLLAPSE, GANSettings, ToyGANRun, final_snapshot
from pipelines.text.char_model import CharSettings, train_char_model
from pipelines.text.sample_texts import SAMPLE_TEXTS
from pipelines.timeseries.autoregressive import fit_autoregressive, preset_values, simulate_ar
from pipelines.timeseries.options import CONFIDENCE
from pipelines.vae.live_training import VAESettings, train_vae_live

SEEDS = (42, 0, 1, 2, 3, 4)  # 42 is the tab's default seed
STEP_SAMPLES = 200  # GAN steps timed for the thread comparison


def timed(function):
    """(result, wall seconds, CPU seconds of this thread)."""
    wall, cpu = time.perf_counter(), time.thread_time()
    result = function()
    return result, time.perf_counter() - wall, time.thread_time() - cpu


def coverage_rows(name: str, base: GANSettings) -> tuple[list[str], list[float]]:
    rows, seconds = [], []
    for seed in SEEDS:
        snapshot, wall, _ = timed(lambda s=seed: final_snapshot(replace(base, seed=s, snapshot_every=base.steps)))
        coverage = snapshot.coverage
        seconds.append(wall)
        rows.append(
            f"| {name} | {seed} | {coverage.modes_covered} of 8 | {coverage.near_share:.0%} | "
            f"{'met' if coverage.meets_target() else 'not met'} | {format_seconds(wall)} |"
        )
    return rows, seconds


def gan_step_seconds(one_thread: bool) -> float:
    """Median seconds a default GAN step takes, on one thread or on torch's default count."""
    run = ToyGANRun(GANSettings(seed=0))
    times = []
    for _ in range(STEP_SAMPLES):
        start = time.perf_counter()
        if one_thread:
            with one_cpu_thread():
                run.train_step()
        else:
            run.train_step()
        times.append(time.perf_counter() - start)
    return statistics.median(times[10:])


def through_the_tab(handler, **arguments) -> tuple[float, int]:
    """Wall seconds of a whole run as the tab streams it (figures drawn and encoded as Gradio does), and frames."""
    frames = 0
    start = time.perf_counter()
    for outputs in handler(**arguments):
        frames += 1
        for output in outputs:
            if hasattr(output, "savefig"):
                output.savefig(io.BytesIO(), format="webp")
    return time.perf_counter() - start, frames


def run() -> str:
    default_rows, default_seconds = coverage_rows("defaults", GANSettings())
    collapse_rows, _ = coverage_rows("mode collapse", MODE_COLLAPSE)
    one, default_threads = gan_step_seconds(True), gan_step_seconds(False)
    gan_tab, gan_frames = through_the_tab(tab.train_gan)

    vae_rows = []
    for beta in (0.0, 1.0, 4.0):
        final, wall, _ = timed(
            lambda b=beta: list(train_vae_live(VAESettings(beta=b, seed=42, snapshot_every=1000)))[-1]
        )
        vae_rows.append(
            f"| β = {beta:g} | {final.held_out_reconstruction:.1f} | {final.held_out_kl:.2f} | {format_seconds(wall)} |"
        )
    vae_tab, vae_frames = through_the_tab(tab.train_vae)

    sea = SAMPLE_TEXTS["The sea"]
    char, char_wall, _ = timed(lambda: list(train_char_model(CharSettings(sea, seed=42, snapshot_every=50)))[-1])
    best_step, best_held_out = min(char.held_out_loss, key=lambda pair: pair[1])
    char_tab, char_frames = through_the_tab(tab.train_char)

    sunspots = preset_values("Sunspots")
    _, sunspots_wall, _ = timed(lambda: fit_autoregressive(sunspots, 2, 30))
    long_series = simulate_ar((0.6, -0.2), 100_000, seed=1)
    _, long_wall, _ = timed(lambda: fit_autoregressive(long_series, 30, 200))
    seed_fit = fit_autoregressive(preset_values("Seed 000 §8 (an MA(1))"), 1, 1)

    threads = torch.get_num_threads()
    lines = [
        "## Training you can watch (Training tab)",
        "",
        "Every run on one CPU thread (set for the training thread only, `pipelines/core/training_runs.py`). "
        "Wall-clock times: other work on the machine slows them, so read them as an order of magnitude.",
        "",
        "**GAN on the 8-Gaussian ring**, 2,000 generator steps, non-saturating loss, both learning rates 0.0005 "
        "(the defaults), against the mode-collapse preset (generator 0.002, discriminator 0.0002). Target: at "
        "least 6 of the 8 modes covered (a mode is covered when at least 2% of 1,000 samples lie within 0.5 of "
        "its centre) and at least half the samples near a mode.",
        "",
        "| settings | seed | modes covered | samples near a mode | target | training time (no plots) |",
        "| --- | --- | --- | --- | --- | --- |",
        *default_rows,
        *collapse_rows,
        "",
        "| what | figure |",
        "| --- | --- |",
        f"| one default GAN step, 1 torch thread (median of {STEP_SAMPLES - 10}) | {format_seconds(one)} |",
        f"| the same with torch's default {threads} threads | {format_seconds(default_threads)} |",
        f"| default GAN run without plots (median of {len(SEEDS)} seeds above) | "
        f"{format_seconds(statistics.median(default_seconds))} |",
        f"| default GAN run through the tab: {gan_frames} plot updates of 2 figures | {format_seconds(gan_tab)} |",
        f"| default VAE run through the tab: {vae_frames} updates of 3 figures | {format_seconds(vae_tab)} |",
        f"| default character-model run through the tab: {char_frames} updates with samples | "
        f"{format_seconds(char_tab)} |",
        f"| AR(2) fit of the 309 sunspot numbers with a 30-step forecast | {format_seconds(sunspots_wall)} |",
        f"| AR(30) fit of 100,000 values (the limit) with a 200-step forecast | {format_seconds(long_wall)} |",
        "",
        "**VAE** on the digits (2-D latent, 1,000 steps of 64, seed 42), on the 300 held-out digits, nats per "
        "digit (reconstruction decodes the latent means):",
        "",
        "| β | reconstruction | KL | training time (no plots) |",
        "| --- | --- | --- | --- |",
        *vae_rows,
        "",
        f"**Character model** (LSTM, 128 units, {char.parameters:,} parameters) on the sample text *The sea* "
        f"(600 steps, seed 42, {format_seconds(char_wall)} with its samples): training loss "
        f"{statistics.mean(char.loss[-20:]):.2f} nats per character over the last 20 steps (from "
        f"{char.loss[0]:.2f}); held-out last tenth lowest {best_held_out:.2f} at step {best_step}, "
        f"{char.held_out_loss[-1][1]:.2f} at the end: past that step it memorises its corpus.",
        "",
        f"**Seed 000 §8's example** (an MA(1) with θ = 0.6) fitted with AR(1): φ̂₁ = {seed_fit.coefficients[0]:.3f}, "
        f"{CONFIDENCE:.0%} interval {seed_fit.intervals[1][0]:.3f} to {seed_fit.intervals[1][1]:.3f}; "
        "θ/(1 + θ²) = 0.441.",
    ]
    return "\n".join(lines)
