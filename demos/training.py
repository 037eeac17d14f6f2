"""Training tab: watch a GAN, a VAE and a character-level model learn, live, and fit AR(p) to a series of numbers."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

import gradio as gr
import matplotlib
import numpy as np
from matplotlib import patheffects
from matplotlib.figure import Figure
from matplotlib.patches import Circle

from demos import common, validation
from pipelines.core.training_runs import stretch
from pipelines.gan.options import (
    TOY_DATASETS,
    TOY_DISCRIMINATOR_STEPS,
    TOY_LEARNING_RATE,
    TOY_LOSSES,
    TOY_MAX_SECONDS,
    TOY_STEPS,
)
from pipelines.gan.toy_training import (
    MODE_COLLAPSE,
    MODE_RADIUS,
    MODE_SHARE,
    GANSettings,
    GANSnapshot,
    plane_extent,
    ring_centres,
    train_toy_gan,
)
from pipelines.text.char_model import CharModel, CharSettings, CharSnapshot, check_corpus, train_char_model
from pipelines.text.options import (
    CHAR_CELLS,
    CHAR_HIDDEN,
    CHAR_LEARNING_RATE,
    CHAR_MAX_SECONDS,
    CHAR_SAMPLE_LENGTH,
    CHAR_STEPS,
    CHAR_TEMPERATURES,
    MAX_NEW_TOKENS,
    TEMPERATURE,
)
from pipelines.text.sample_texts import SAMPLE_TEXTS
from pipelines.timeseries.autoregressive import (
    SEED_EXAMPLE_THETA,
    ARFit,
    SeriesError,
    fit_autoregressive,
    is_seed_example,
    ma1_lag1_autocorrelation,
    parse_series,
    preset_values,
    series_text,
    simulated_preset,
)
from pipelines.timeseries.options import CONFIDENCE, FORECAST_STEPS, LAGS, PRESETS
from pipelines.vae.live_training import VAESettings, VAESnapshot, train_vae_live
from pipelines.vae.options import LIVE_BETA, LIVE_LEARNING_RATE, LIVE_MAX_SECONDS, LIVE_STEPS

matplotlib.use("Agg")  # a server draws into files, never a window

TAB_TITLE = "Training"
TAB_ID = "training"

RUNS_AT_ONCE = 2  # training runs of one model at the same time; each holds one core while it runs
# Gradio lets a few more requests into the handler than may run, so the extra ones hear "busy" at once
# instead of waiting unseen in the queue for minutes.
GAN_EVENTS = common.concurrency("training-gan", RUNS_AT_ONCE + 4)
VAE_EVENTS = common.concurrency("training-vae", RUNS_AT_ONCE + 4)
CHAR_EVENTS = common.concurrency("training-char", RUNS_AT_ONCE + 4)
AR_EVENTS = common.concurrency("training-ar", 4)
SNAPSHOTS = 20  # plot updates in a run: each costs a fraction of a second to draw
FONT = 14  # readable on a projector, and on a phone where a 500-px figure is shown about 340 px wide
OWN_TEXT = "(your own text)"
CHARACTERS_PER_TOKEN = 4  # about, in English: the Side by side view asks the models for similar lengths
REAL_COLOUR, FAKE_COLOUR = "#1a1a1a", "#ff7f0e"

HOW_IT_WORKS = """
### A GAN: two networks playing against each other
The **discriminator** D (a small MLP) learns to output the probability that a point is real; the
**generator** G (another MLP) turns random noise z into points and learns to make D say "real". Each step,
as in seed 000's loop: D takes a step on a batch of real points and a batch of G's points (detached, so
only D moves), then G takes a step through D. The **heat-map** is D's opinion of every place in the plane:
G's points slide uphill on it. The losses:
- **minimax**: G minimises log(1 − D(G(z))), the original game. When D is sure a point is fake this is
  flat, so G learns slowly at the start (it *saturates*).
- **non-saturating**: G minimises −log D(G(z)): the same goal, steep exactly where G is worst.
- **Wasserstein** (WGAN-GP): D becomes a *critic* that scores points (any number, not a probability);
  G raises the critic's score of its points, and a gradient penalty keeps the critic smooth. The critic
  is trained 5 times per generator step.

**Mode collapse**: G learns to make only one or a few kinds of output. The *Mode collapse* preset keeps
the default loss but lets G learn 10× faster than D: every G step carries all its points to the one spot D
currently likes best, D is too slow to spread them out again, and they hop from mode to mode. With equal
learning rates D keeps up, and its surface pushes points off crowded modes towards empty ones.

### A VAE: reconstruction against KL
The encoder maps a digit to a mean μ and a variance σ² in a 2-D latent space; z = μ + σ·ε (the
*reparameterisation trick* lets gradients reach μ and σ); the decoder turns z back into a digit. The loss is
**reconstruction** (how badly the decoded digit matches, in nats) **+ β · KL**(q(z|x) ‖ N(0, I)); β = 1 is the
negative ELBO. Larger β packs the codes closer to N(0, I), so samples from the prior look like digits, at the
cost of blurrier reconstructions; β = 0 is a plain autoencoder whose map leaves gaps where the prior's
samples decode to nonsense.

### A character-level recurrent model: memory
An **LSTM** (or **GRU**) reads the text one character at a time and keeps a hidden state, its *memory*, from
which it predicts the next character. Between the n-gram model (which counts what follows the last n − 1 words)
and the transformer (which attends to every earlier token) it is the step of the 1990s–2010s: its gates let
gradients survive over more steps than a plain RNN's, whose gradients vanish. It trains on random 64-character
windows of the corpus, its last tenth held out: when the held-out loss rises while the training loss falls, the
model is memorising its corpus. Temperature divides its scores before the softmax, as in the text tab.

### AR(p): autoregression on numbers
x_t = c + φ₁·x_(t−1) + … + φ_p·x_(t−p) + noise. statsmodels' `AutoReg` estimates c and the φ's by least
squares; the forecast feeds each prediction back in as the newest previous value, one step at a time, like a
language model feeding back its tokens, and the band widens because every step adds noise. p plays the role
of the n-gram's context length (n − 1): how far back the model looks. The **partial autocorrelation** of an
AR(p) series stops after lag p, which is how p is usually chosen.
"""

GAN_PRESETS = {
    "Learns every mode (the defaults)": GANSettings(),
    "Mode collapse (G learns 10x faster than D)": MODE_COLLAPSE,
}
GAN_PRESET_NOTES = {
    "Learns every mode (the defaults)": (
        "**Learns every mode**: equal learning rates, so the discriminator keeps up with the generator; its "
        "surface pushes points off crowded modes towards empty ones, and all eight modes fill."
    ),
    "Mode collapse (G learns 10x faster than D)": (
        "**Mode collapse**: the same loss, but the generator learns 10× faster than the discriminator. Every "
        "generator step carries *all* its points to the one spot the discriminator currently rates most real, "
        "before the discriminator can learn that spot is fake: the points pile onto one mode, then hop to another."
    ),
}


# ---------------------------------------------------------------------------------------------
# Runs: a few at once per model, refused clearly beyond that; caches of finished character models


class RunSlots:
    """At most `limit` runs of one model at once; one more is refused at once with a message naming the limit."""

    def __init__(self, model: str, limit: int):
        self.model, self.limit = model, limit
        self._free = threading.BoundedSemaphore(limit)

    @contextmanager
    def hold(self) -> Iterator[None]:
        if not self._free.acquire(blocking=False):
            raise gr.Error(
                f"Busy: {self.limit} {self.model} runs are training right now, the most this app runs at once. "
                "Try again in a minute."
            )
        try:
            yield
        finally:
            self._free.release()


GAN_SLOTS = RunSlots("GAN", RUNS_AT_ONCE)
VAE_SLOTS = RunSlots("VAE", RUNS_AT_ONCE)
CHAR_SLOTS = RunSlots("character-model", RUNS_AT_ONCE)


class TrainedCharModels:
    """Character models that finished training, by everything that decided their weights (a few, least recent
    dropped), so the Side by side view reuses the Training tab's model instead of training it again."""

    def __init__(self, size: int = 8):
        self._models: OrderedDict[tuple, CharModel] = OrderedDict()
        self._lock = threading.Lock()
        self.size = size

    @staticmethod
    def key(settings: CharSettings) -> tuple:
        return (settings.corpus, settings.cell, settings.steps, settings.seed, settings.learning_rate, settings.hidden)

    def get(self, settings: CharSettings) -> CharModel | None:
        with self._lock:
            model = self._models.get(self.key(settings))
            if model is not None:
                self._models.move_to_end(self.key(settings))
            return model

    def put(self, settings: CharSettings, model: CharModel) -> None:
        with self._lock:
            self._models[self.key(settings)] = model
            self._models.move_to_end(self.key(settings))
            while len(self._models) > self.size:
                self._models.popitem(last=False)


TRAINED_CHAR_MODELS = TrainedCharModels()


def _choice(value, choices: tuple[str, ...], name: str) -> str:
    if value not in choices:
        raise gr.Error(f"{name} must be one of: {', '.join(choices)} (got {value!r:.60}).")
    return value


def _figure(width: float, height: float, **margins: float) -> Figure:
    """A figure with fixed margins (fractions of its size): an automatic layout would cost as much time to draw
    as the rest of the figure, at every update of a live run."""
    figure = Figure(figsize=(width, height), dpi=100)
    figure.subplots_adjust(**margins)
    return figure


def _time_note(stopped_early: str) -> str:
    return f" Stopped early at {stopped_early}." if stopped_early else ""


# ---------------------------------------------------------------------------------------------
# GAN


def gan_points_figure(snapshot: GANSnapshot) -> Figure:
    """Real and generated points over the discriminator's surface (diagonals: on the plane of the two diagonals,
    with a few real and generated 2x2 images below)."""
    settings = snapshot.settings
    diagonals = settings.dataset == "diagonals"
    if diagonals:
        figure = _figure(5.0, 5.4, left=0.2, right=0.86, top=0.94, bottom=0.03, hspace=0.25)
        axes, images_axes = figure.subplots(2, 1, height_ratios=[4, 1])
    else:
        figure = _figure(5.0, 5.2, left=0.11, right=0.84, top=0.93, bottom=0.07)
        axes = figure.subplots()
    surface = snapshot.surface
    low, high = plane_extent(settings.dataset)
    if surface.probability:
        heat = axes.imshow(
            surface.values, extent=(low, high, low, high), origin="lower", cmap="RdBu", vmin=0, vmax=1, alpha=0.8
        )
        bar_label = "D(x): probability of real"
    else:
        spread = np.percentile(surface.values, [2, 98])
        heat = axes.imshow(
            surface.values, extent=(low, high, low, high), origin="lower", cmap="RdBu", vmin=spread[0],
            vmax=spread[1], alpha=0.8,
        )  # fmt: skip
        bar_label = "critic score, high = real"
    colour_bar = figure.colorbar(heat, ax=axes, fraction=0.05, pad=0.03)
    colour_bar.set_label(bar_label, fontsize=FONT - 1)
    real, fake = snapshot.real_points, snapshot.fake_points
    axes.scatter(real[:, 0], real[:, 1], s=5, c=REAL_COLOUR, label="real", alpha=0.6, linewidths=0)
    axes.scatter(fake[:, 0], fake[:, 1], s=7, c=FAKE_COLOUR, label="generated", alpha=0.8, linewidths=0)
    if settings.dataset == "ring" and snapshot.coverage is not None:
        for centre, share in zip(ring_centres().numpy(), snapshot.coverage.per_mode):
            covered = share >= MODE_SHARE
            axes.add_patch(
                Circle(centre, MODE_RADIUS, fill=False, linestyle="-" if covered else ":", linewidth=1.2,
                       edgecolor="#2ca02c" if covered else "#555555")
            )  # fmt: skip
    axes.set_xlim(low, high)
    axes.set_ylim(low, high)
    axes.set_aspect("equal")
    if diagonals:
        axes.set_xlabel('ink on the "\\" diagonal', fontsize=FONT)
        axes.set_ylabel('ink on the "/" diagonal', fontsize=FONT)
        _draw_pixel_images(images_axes, snapshot.real[:8], snapshot.fake[:8])
    axes.set_title(f"Step {snapshot.step} of {settings.steps}", fontsize=FONT + 1)
    axes.legend(loc="upper right", fontsize=FONT - 2, markerscale=2.5, framealpha=0.9)
    axes.tick_params(labelsize=FONT - 2)
    return figure


def _draw_pixel_images(axes, real: np.ndarray, fake: np.ndarray) -> None:
    """Two rows of 2x2 images (real above, generated below), dark = ink, as seed 003 draws them."""
    count = len(real)
    canvas = np.full((5, count * 3 + 1), np.nan)
    for i in range(count):
        canvas[0:2, 1 + 3 * i : 3 + 3 * i] = real[i].reshape(2, 2)
        canvas[3:5, 1 + 3 * i : 3 + 3 * i] = fake[i].reshape(2, 2)
    axes.imshow(canvas, cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
    axes.set_yticks([0.5, 3.5], ["real", "generated"], fontsize=FONT - 2)
    axes.set_xticks([])
    axes.set_frame_on(False)


def gan_curves_figure(snapshot: GANSnapshot) -> Figure:
    """D and G losses, and D's mean output on real and generated points, over the steps so far."""
    figure = _figure(5.0, 5.0, left=0.18, right=0.97, top=0.93, bottom=0.12, hspace=0.12)
    losses, outputs = figure.subplots(2, 1, sharex=True)
    losses.set_title("Losses, and D's mean output", fontsize=FONT)
    history = snapshot.history
    steps = [record.step for record in history]
    losses.plot(steps, [r.d_loss for r in history], color="#1f77b4", label="D loss")
    losses.plot(steps, [r.g_loss for r in history], color=FAKE_COLOUR, label="G loss")
    losses.set_ylabel("loss", fontsize=FONT)
    wasserstein = snapshot.settings.loss == "wasserstein"
    outputs.plot(steps, [r.d_real for r in history], color=REAL_COLOUR, label="on real")
    outputs.plot(steps, [r.d_fake for r in history], color=FAKE_COLOUR, label="on generated")
    if wasserstein:
        outputs.set_ylabel("critic score", fontsize=FONT)
    else:
        outputs.set_ylabel("D(x)", fontsize=FONT)
        outputs.set_ylim(-0.02, 1.02)
        outputs.axhline(0.5, color="#888888", linewidth=0.8, linestyle=":")  # where D cannot tell them apart
    outputs.set_xlabel("generator step", fontsize=FONT)
    outputs.set_xlim(0, snapshot.settings.steps)
    for axes in (losses, outputs):
        axes.legend(fontsize=FONT - 2, loc="upper right")
        axes.tick_params(labelsize=FONT - 2)
        axes.grid(alpha=0.3)
    return figure


def gan_status(snapshot: GANSnapshot) -> str:
    settings = snapshot.settings
    state = "Done" if snapshot.done else "Training"
    line = f"**{state}**: step {snapshot.step} of {settings.steps}, {snapshot.seconds:.1f} s."
    if snapshot.coverage is not None:
        coverage = snapshot.coverage
        line += (
            f" **{coverage.modes_covered} of 8 modes** covered (≥ 2% of the points within {MODE_RADIUS} of a "
            f"centre, green circles); {coverage.near_share:.0%} of the points are near a mode."
        )
    if settings.critic_steps > 1:
        line += f" The discriminator takes {settings.critic_steps} steps per generator step."
    return line + _time_note(snapshot.stopped_early)


def train_gan(
    dataset: str = "ring",
    loss: str = "non-saturating",
    steps: int = int(TOY_STEPS.default),
    seed: int = 42,
    generator_lr: float = TOY_LEARNING_RATE.default,
    discriminator_lr: float = TOY_LEARNING_RATE.default,
    discriminator_steps: int = int(TOY_DISCRIMINATOR_STEPS.default),
):
    """Stream the run: the points on D's surface, the curves and a status line; the JSON comes with the last."""
    steps = validation.in_range(steps, TOY_STEPS, "steps")
    settings = GANSettings(
        dataset=_choice(dataset, TOY_DATASETS, "dataset"),
        loss=_choice(loss, TOY_LOSSES, "loss"),
        steps=steps,
        seed=validation.seed(seed, "seed"),
        generator_lr=validation.in_range(generator_lr, TOY_LEARNING_RATE, "generator_lr"),
        discriminator_lr=validation.in_range(discriminator_lr, TOY_LEARNING_RATE, "discriminator_lr"),
        discriminator_steps=validation.in_range(discriminator_steps, TOY_DISCRIMINATOR_STEPS, "discriminator_steps"),
        snapshot_every=stretch(steps, SNAPSHOTS),
    )
    with GAN_SLOTS.hold():
        for snapshot in train_toy_gan(settings, TOY_MAX_SECONDS):
            result = snapshot.as_json() if snapshot.done else (None if snapshot.step == 0 else gr.skip())
            yield gan_points_figure(snapshot), gan_curves_figure(snapshot), gan_status(snapshot), result


def use_gan_preset(name: str):
    settings = GAN_PRESETS.get(name)
    if settings is None:
        return gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
    return (
        settings.dataset,
        settings.loss,
        settings.steps,
        settings.generator_lr,
        settings.discriminator_lr,
        settings.discriminator_steps,
        GAN_PRESET_NOTES[name],
    )


# ---------------------------------------------------------------------------------------------
# VAE


def vae_curves_figure(snapshot: VAESnapshot) -> Figure:
    """The two terms of the loss, separately: reconstruction (nats per digit) and KL (nats per digit)."""
    figure = _figure(5.0, 4.8, left=0.18, right=0.97, top=0.92, bottom=0.12, hspace=0.12)
    reconstruction, kl = figure.subplots(2, 1, sharex=True)
    steps = [record.step for record in snapshot.history]
    reconstruction.plot(steps, [r.reconstruction for r in snapshot.history], color="#1f77b4")
    reconstruction.set_ylabel("reconstruction", fontsize=FONT)
    kl.plot(steps, [r.kl for r in snapshot.history], color="#d62728")
    kl.set_ylabel("KL", fontsize=FONT)
    kl.set_xlabel("step", fontsize=FONT)
    kl.set_xlim(0, snapshot.settings.steps)
    reconstruction.set_title(f"loss = reconstruction + {snapshot.settings.beta:g} × KL", fontsize=FONT)
    for axes in (reconstruction, kl):
        axes.tick_params(labelsize=FONT - 2)
        axes.grid(alpha=0.3)
    return figure


def vae_latent_figure(snapshot: VAESnapshot) -> Figure:
    """Where the encoder puts 300 held-out digits (their means), coloured by digit, with the prior's 1 and 2 sigma."""
    figure = _figure(5.0, 5.0, left=0.14, right=0.97, top=0.93, bottom=0.12)
    axes = figure.subplots()
    means, labels = snapshot.latent_means, snapshot.labels
    colours = matplotlib.colormaps["tab10"]
    for digit in range(10):
        chosen = labels == digit
        axes.scatter(means[chosen, 0], means[chosen, 1], s=22, color=colours(digit), edgecolors="none", alpha=0.8)
    for digit in range(10):  # each digit's name where its codes are, instead of a legend to look up
        centre = np.median(means[labels == digit], axis=0)
        name = axes.text(*centre, str(digit), fontsize=FONT + 4, fontweight="bold", color=colours(digit),
                         ha="center", va="center")  # fmt: skip
        name.set_path_effects([patheffects.withStroke(linewidth=3, foreground="white")])
    for radius in (1, 2):
        axes.add_patch(Circle((0, 0), radius, fill=False, linestyle="--", color="#777777", linewidth=1))
    extent = max(3.0, float(np.percentile(np.abs(means), 99)) * 1.1)
    axes.set_xlim(-extent, extent)
    axes.set_ylim(-extent, extent)
    axes.set_aspect("equal")
    axes.set_xlabel("z₁", fontsize=FONT)
    axes.set_ylabel("z₂", fontsize=FONT)
    axes.set_title(f"Latent means of held-out digits, step {snapshot.step}", fontsize=FONT)
    axes.tick_params(labelsize=FONT - 2)
    return figure


def vae_images_figure(snapshot: VAESnapshot) -> Figure:
    """Held-out digits over their reconstructions, and samples decoded from the same z ~ N(0, I) every time."""
    figure = _figure(5.0, 4.6, left=0.02, right=0.98, top=0.93, bottom=0.02, hspace=0.15)
    pairs, prior = figure.subplots(2, 1, height_ratios=[2, 4])
    pairs.imshow(_tile(np.concatenate([snapshot.originals, snapshot.reconstructions]), columns=8), cmap="gray")
    pairs.set_title("held-out digits (top) and their reconstructions", fontsize=FONT)
    prior.imshow(_tile(snapshot.prior_samples, columns=8), cmap="gray")
    prior.set_title("samples: z drawn from the prior N(0, I), decoded", fontsize=FONT)
    for axes in (pairs, prior):
        axes.set_axis_off()
    return figure


def _tile(images: np.ndarray, columns: int, gap: int = 1) -> np.ndarray:
    """(N, H, W) images in rows of `columns` with a thin white gap."""
    count, height, width = images.shape
    rows = -(-count // columns)
    canvas = np.ones((rows * (height + gap) - gap, columns * (width + gap) - gap))
    for i, image in enumerate(images):
        top, left = (i // columns) * (height + gap), (i % columns) * (width + gap)
        canvas[top : top + height, left : left + width] = image
    return canvas


def vae_status(snapshot: VAESnapshot) -> str:
    state = "Done" if snapshot.done else "Training"
    return (
        f"**{state}**: step {snapshot.step} of {snapshot.settings.steps}, {snapshot.seconds:.1f} s. On 300 "
        f"held-out digits: reconstruction {snapshot.held_out_reconstruction:.1f} nats, KL "
        f"{snapshot.held_out_kl:.2f} nats per digit." + _time_note(snapshot.stopped_early)
    )


def train_vae(
    beta: float = LIVE_BETA.default,
    steps: int = int(LIVE_STEPS.default),
    seed: int = 42,
    learning_rate: float = LIVE_LEARNING_RATE.default,
):
    """Stream the run: the two loss terms, the latent map, reconstructions and prior samples; JSON at the end."""
    steps = validation.in_range(steps, LIVE_STEPS, "steps")
    settings = VAESettings(
        beta=validation.in_range(beta, LIVE_BETA, "beta"),
        steps=steps,
        seed=validation.seed(seed, "seed"),
        learning_rate=validation.in_range(learning_rate, LIVE_LEARNING_RATE, "learning_rate"),
        snapshot_every=stretch(steps, SNAPSHOTS),
    )
    with VAE_SLOTS.hold():
        for snapshot in train_vae_live(settings, LIVE_MAX_SECONDS):
            result = snapshot.as_json() if snapshot.done else (None if snapshot.step == 0 else gr.skip())
            yield (
                vae_curves_figure(snapshot),
                vae_latent_figure(snapshot),
                vae_images_figure(snapshot),
                vae_status(snapshot),
                result,
            )


# ---------------------------------------------------------------------------------------------
# Character model


def char_loss_figure(snapshot: CharSnapshot) -> Figure:
    """Training loss at every step (faint) and its running mean, with the held-out loss at each stretch."""
    figure = _figure(5.0, 4.0, left=0.14, right=0.97, top=0.91, bottom=0.18)
    axes = figure.subplots()
    loss = np.asarray(snapshot.loss)
    if len(loss):
        steps = np.arange(1, len(loss) + 1)
        axes.plot(steps, loss, color="#1f77b4", alpha=0.25, linewidth=0.8)
        window = min(20, len(loss))
        smooth = np.convolve(loss, np.ones(window) / window, mode="valid")
        axes.plot(steps[window - 1 :], smooth, color="#1f77b4", label="training (running mean)")
    if snapshot.held_out_loss:
        held_steps, held_values = zip(*snapshot.held_out_loss)
        axes.plot(held_steps, held_values, "o-", color="#d62728", label="held-out last tenth")
    guessing = np.log(snapshot.vocabulary_size)  # the loss of a uniform guess over the characters
    axes.axhline(guessing, color="#888888", linestyle=":", linewidth=1)
    axes.text(snapshot.settings.steps * 0.03, guessing - 0.08, "guessing", fontsize=FONT - 2, va="top", color="#555")
    axes.set_title("Loss on the next character", fontsize=FONT)
    axes.set_xlim(0, snapshot.settings.steps)
    axes.set_ylim(bottom=0)
    axes.set_xlabel("step", fontsize=FONT)
    axes.set_ylabel("nats per character", fontsize=FONT)
    axes.legend(fontsize=FONT - 2, loc="lower left")
    axes.tick_params(labelsize=FONT - 2)
    axes.grid(alpha=0.3)
    return figure


def char_status(snapshot: CharSnapshot) -> str:
    state = "Done" if snapshot.done else "Training"
    settings = snapshot.settings
    line = (
        f"**{state}**: step {snapshot.step} of {settings.steps}, {snapshot.seconds:.1f} s. "
        f"{settings.cell.upper()} with {settings.hidden} units, {snapshot.parameters:,} parameters, "
        f"{snapshot.vocabulary_size} distinct characters."
    )
    if snapshot.loss:
        line += f" Training loss {np.mean(snapshot.loss[-20:]):.2f} nats per character"
        if snapshot.held_out_loss:
            line += f", held-out {snapshot.held_out_loss[-1][1]:.2f}"
        line += "."
    return line + _time_note(snapshot.stopped_early)


def _sample_history(snapshot: CharSnapshot) -> str:
    """The middle temperature's sample after each stretch, one line each: how the writing changed."""
    middle = snapshot.settings.temperatures[len(snapshot.settings.temperatures) // 2]
    width = len(str(snapshot.settings.steps))
    return "\n".join(
        f"step {s.step:>{width}}: {s.text[:90]}".replace("\n", " ") for s in snapshot.samples if s.temperature == middle
    )


def _char_settings(corpus, steps, seed, cell, learning_rate, hidden, prompt) -> CharSettings:
    corpus = validation.text(corpus, "The corpus")
    try:
        check_corpus(corpus)
    except ValueError as error:
        raise gr.Error(str(error)) from None
    steps = validation.in_range(steps, CHAR_STEPS, "steps")
    return CharSettings(
        corpus=corpus,
        cell=_choice(cell, CHAR_CELLS, "cell"),
        steps=steps,
        seed=validation.seed(seed, "seed"),
        learning_rate=validation.in_range(learning_rate, CHAR_LEARNING_RATE, "learning_rate"),
        hidden=validation.in_range(hidden, CHAR_HIDDEN, "hidden"),
        prompt=validation.text(prompt, "The prompt"),
        snapshot_every=stretch(steps, 12),  # each stretch ends with samples: fewer, longer stretches
    )


def train_char(
    corpus: str = SAMPLE_TEXTS["The sea"],
    steps: int = int(CHAR_STEPS.default),
    seed: int = 42,
    cell: str = "lstm",
    learning_rate: float = CHAR_LEARNING_RATE.default,
    hidden: int = int(CHAR_HIDDEN.default),
    prompt: str = "The ",
):
    """Stream the run: the loss curve, samples at each temperature, their history; the JSON at the end."""
    settings = _char_settings(corpus, steps, seed, cell, learning_rate, hidden, prompt)
    with CHAR_SLOTS.hold():
        for snapshot in train_char_model(settings, CHAR_MAX_SECONDS):
            if snapshot.done and not snapshot.stopped_early:
                TRAINED_CHAR_MODELS.put(settings, snapshot.model)
            result = snapshot.as_json() if snapshot.done else (None if snapshot.step == 0 else gr.skip())
            samples = [settings.prompt + sample.text for sample in snapshot.latest_samples]
            yield (
                char_loss_figure(snapshot),
                *samples,
                _sample_history(snapshot),
                char_status(snapshot),
                result,
            )


def continue_with_char_model(
    prompt: str = "At night the sea",
    corpus: str = SAMPLE_TEXTS["The sea"],
    max_new_tokens: int = int(MAX_NEW_TOKENS.default),
    temperature: float = TEMPERATURE.default,
    seed: int = 42,
):
    """For the Side by side view: the prompt continued by a character model trained on the corpus with the
    Training tab's default settings (once: later calls reuse it), about as long as `max_new_tokens` tokens.
    Streams its training progress first."""
    temperature = validation.in_range(temperature, TEMPERATURE, "temperature")
    max_new_tokens = validation.in_range(max_new_tokens, MAX_NEW_TOKENS, "max_new_tokens")
    characters = min(CHAR_SAMPLE_LENGTH.high, max(CHAR_SAMPLE_LENGTH.low, CHARACTERS_PER_TOKEN * max_new_tokens))
    prompt = validation.text(prompt, "The prompt")
    tab = CharSettings(corpus="")  # the Training tab's defaults
    settings = _char_settings(corpus, tab.steps, seed, tab.cell, tab.learning_rate, tab.hidden, prompt)
    model = TRAINED_CHAR_MODELS.get(settings)
    if model is None:
        with CHAR_SLOTS.hold():
            for snapshot in train_char_model(replace(settings, temperatures=()), CHAR_MAX_SECONDS):
                yield f"(training the character model on this corpus: step {snapshot.step} of {settings.steps})"
                model = snapshot.model
                if snapshot.done and not snapshot.stopped_early:
                    TRAINED_CHAR_MODELS.put(settings, model)
    yield prompt + model.sample(prompt, characters, temperature, settings.seed)


def use_sample_text(name: str):
    return SAMPLE_TEXTS.get(name, gr.skip())


# ---------------------------------------------------------------------------------------------
# AR(p)


def ar_series_figure(fit: ARFit, shown: int = 300) -> Figure:
    """The series (its last `shown` values), the fitted one-step predictions, and the forecast with its band."""
    figure = _figure(5.0, 4.0, left=0.12, right=0.97, top=0.91, bottom=0.18)
    axes = figure.subplots()
    n = len(fit.values)
    start = max(0, n - shown)
    time = np.arange(n)
    axes.plot(time[start:], fit.values[start:], color=REAL_COLOUR, linewidth=1, label="series")
    fitted_time = np.arange(fit.p, n)
    keep = fitted_time >= start
    axes.plot(fitted_time[keep], fit.fitted[keep], color="#1f77b4", linewidth=1, alpha=0.8, label="fitted")
    future = np.arange(n, n + len(fit.forecast))
    axes.plot(future, fit.forecast, color=FAKE_COLOUR, linewidth=2, label="forecast")
    axes.fill_between(future, fit.lower, fit.upper, color=FAKE_COLOUR, alpha=0.25, label=f"{CONFIDENCE:.0%} band")
    axes.set_title("Series, one-step fit and forecast", fontsize=FONT)
    axes.set_xlabel("t" + (f" (last {shown} of {n:,})" if start else ""), fontsize=FONT)
    axes.legend(fontsize=FONT - 2, loc="upper left", ncols=2)
    axes.tick_params(labelsize=FONT - 2)
    axes.grid(alpha=0.3)
    return figure


def ar_correlation_figure(fit: ARFit) -> Figure:
    """Autocorrelation and partial autocorrelation by lag, with the band white noise stays inside."""
    figure = _figure(5.0, 4.8, left=0.2, right=0.97, top=0.93, bottom=0.12, hspace=0.45)
    acf_axes, pacf_axes = figure.subplots(2, 1, sharex=True)
    for axes, values, title in (
        (acf_axes, fit.autocorrelation, "autocorrelation (ACF)"),
        (pacf_axes, fit.partial_autocorrelation, "partial autocorrelation (PACF)"),
    ):
        lags = np.arange(1, len(values))
        axes.vlines(lags, 0, values[1:], color="#1f77b4", linewidth=2)
        axes.scatter(lags, values[1:], s=12, color="#1f77b4")
        axes.axhspan(-fit.correlation_band, fit.correlation_band, color="#888888", alpha=0.2)
        axes.axhline(0, color="#333333", linewidth=0.8)
        axes.axvline(fit.p + 0.5, color=FAKE_COLOUR, linestyle="--", linewidth=1)
        axes.set_ylabel(title.split(" (")[1].rstrip(")"), fontsize=FONT)
        axes.set_title(title, fontsize=FONT - 1)
        axes.tick_params(labelsize=FONT - 2)
    pacf_axes.set_xlabel(f"lag (dashed line: p = {fit.p})", fontsize=FONT)
    return figure


def _coefficient_rows(fit: ARFit) -> list[list]:
    names = ["c (intercept)"] + [f"φ{i}" for i in range(1, fit.p + 1)]
    estimates = [fit.intercept, *fit.coefficients]
    return [
        [name, f"{value:.4f}", f"{low:.4f}", f"{high:.4f}", f"{error:.4f}"]
        for name, value, (low, high), error in zip(names, estimates, fit.intervals, fit.standard_errors)
    ]


def _number(value: float) -> str:
    """3 decimals with a real minus sign, in brackets when negative so that "× (−1.2)" reads well."""
    return f"(−{abs(value):.3f})" if value < 0 else f"{value:.3f}"


def _plain(value: float) -> str:
    return f"{value:.3f}".replace("-", "−")


def _signed(value: float) -> str:
    return f"− {abs(value):.3f}" if value < 0 else f"+ {value:.3f}"


def _ar_notes(fit: ARFit, description: str) -> str:
    terms = " ".join(f"{_signed(phi)}·x(t−{i})" for i, phi in enumerate(fit.coefficients, start=1))
    intercept = _plain(fit.intercept)
    lines = [
        f"**Fitted** on {len(fit.values):,} values ({description}): x(t) = {intercept} {terms} + noise "
        f"(noise variance {fit.sigma2:.3g}).",
        "**The forecast, one step at a time** (each new value becomes the newest previous value):",
    ]
    for h, step in enumerate(fit.steps[:3], start=1):
        reads = " ".join(f"{_signed(phi)} × {_number(x)}" for phi, x in zip(fit.coefficients, step.previous))
        lines.append(f"- step {h}: {intercept} {reads} = **{_plain(step.value)}**")
    lines.append(
        f"Like an n-gram model with a context of n − 1 = {fit.p} words, AR({fit.p}) reads the last {fit.p} values; "
        "it weighs them with fitted numbers instead of counting what followed them. Choose p where the partial "
        "autocorrelation falls inside the grey band."
    )
    true_phis = simulated_preset(fit.values)
    if true_phis is not None and len(true_phis) == fit.p:
        inside = all(low <= phi <= high for phi, (low, high) in zip(true_phis, fit.intervals[1:]))
        truth = ", ".join(f"φ{i} = {phi:g}".replace("-", "−") for i, phi in enumerate(true_phis, start=1))
        verdict = (
            f"the estimates' {CONFIDENCE:.0%} intervals contain the true values."
            if inside
            else f"a true value lies outside its {CONFIDENCE:.0%} interval, as happens to one interval in twenty."
        )
        lines.append(f"**This preset was simulated** with {truth}: {verdict}")
    if fit.p == 1 and is_seed_example(fit.values):
        expected = ma1_lag1_autocorrelation(SEED_EXAMPLE_THETA)
        lines.append(
            f"**Why φ₁ is {fit.coefficients[0]:.3f} and not {SEED_EXAMPLE_THETA}:** seed 000's code makes "
            f"y(t) = x(t) + {SEED_EXAMPLE_THETA}·x(t−1) from fresh noise x: a *moving average*, MA(1), not an "
            f"AR(1). An AR(1) fitted to it estimates the lag-1 correlation of y, θ/(1 + θ²) = "
            f"{expected:.3f}. The plots agree: the ACF stops after lag 1 (the mark of an MA(1)) while the PACF "
            "decays with alternating signs, so no small p fits it exactly."
        )
    return "\n\n".join(lines)


def fit_ar(
    series: str = series_text(preset_values("AR(2)")),
    p: int = int(LAGS.default),
    forecast_steps: int = int(FORECAST_STEPS.default),
    column: str = "",
):
    """Fit AR(p): the notes, the coefficient table, the series and correlation plots, and the JSON."""
    p = validation.in_range(p, LAGS, "p")
    forecast_steps = validation.in_range(forecast_steps, FORECAST_STEPS, "forecast_steps")
    text = validation.text(series, "The series")
    try:
        parsed = parse_series(text, validation.text(column, "The column"))
        fit = fit_autoregressive(parsed.values, p, forecast_steps)
    except SeriesError as error:
        raise gr.Error(str(error)) from None
    notes = _ar_notes(fit, parsed.description)
    return notes, _coefficient_rows(fit), ar_series_figure(fit), ar_correlation_figure(fit), fit.as_json()


PRESET_LAGS = {"AR(1)": 1, "AR(2)": 2, "Seed 000 §8 (an MA(1))": 1, "Sunspots": 2}


def use_ar_preset(name: str):
    if name not in PRESETS:
        return gr.skip(), gr.skip(), gr.skip()
    return series_text(preset_values(name)), PRESET_LAGS[name], ""


# ---------------------------------------------------------------------------------------------
# Layout


def _gan_tab() -> None:
    gr.Markdown(
        "A generator and a discriminator, two small networks, learn against each other on points in the "
        "plane. Watch the generated points (orange) find the real ones (black) while the discriminator's "
        "opinion (the heat-map: blue = real, red = fake) keeps moving."
    )
    with gr.Row():
        with gr.Column(scale=1, min_width=280):
            preset = gr.Radio(list(GAN_PRESETS), value=next(iter(GAN_PRESETS)), label="Preset", elem_id="gan-preset")
            dataset = gr.Radio(list(TOY_DATASETS), value="ring", label="Data", elem_id="gan-dataset",
                               info="ring: 8 tight Gaussians; diagonals: seed 003's 2×2 images")  # fmt: skip
            loss = gr.Radio(list(TOY_LOSSES), value="non-saturating", label="Loss", elem_id="gan-loss")
            steps = common.slider(TOY_STEPS, "Generator steps", elem_id="gan-steps")
            with gr.Row():
                generator_lr = gr.Number(TOY_LEARNING_RATE.default, label="G learning rate", step=0.0001, min_width=120)
                discriminator_lr = gr.Number(
                    TOY_LEARNING_RATE.default, label="D learning rate", step=0.0001, min_width=120
                )
            discriminator_steps = common.slider(
                TOY_DISCRIMINATOR_STEPS, "D steps per G step (0 = 1, or 5 for Wasserstein)"
            )
            seed = common.seed_row(42, "seed")
            with gr.Row():
                train = gr.Button("Train", variant="primary", elem_id="gan-train")
                stop = gr.Button("Stop", variant="stop", elem_id="gan-stop")
            note = gr.Markdown(GAN_PRESET_NOTES[next(iter(GAN_PRESETS))], elem_id="gan-preset-note")
        with gr.Column(scale=2):
            status = gr.Markdown("Press **Train** to start.", elem_id="gan-status")
            with gr.Row():
                points = _plot("Points on the discriminator's surface", "gan-points")
                curves = _plot("Losses and D's outputs", "gan-curves")
            with gr.Accordion("Run data (the JSON the API returns)", open=False):
                result = gr.JSON(elem_id="gan-json")
    preset.change(
        use_gan_preset,
        preset,
        [dataset, loss, steps, generator_lr, discriminator_lr, discriminator_steps, note],
        api_visibility="private",
    )
    event = train.click(
        train_gan,
        [dataset, loss, steps, seed, generator_lr, discriminator_lr, discriminator_steps],
        [points, curves, status, result],
        api_name="train_gan",
        **GAN_EVENTS,
    )
    stop.click(_stopped, None, status, cancels=[event], api_visibility="private", queue=False)


def _plot(label: str, elem_id: str) -> gr.Plot:
    """A figure that carries its own title: Gradio's label would sit over its top edge."""
    return gr.Plot(label=label, show_label=False, elem_id=elem_id, min_width=300)


def _stopped() -> str:
    return "**Stopped.** The plots show the last step drawn; press Train to start again."


def _vae_tab() -> None:
    gr.Markdown(
        "A small VAE with a **2-D latent space** learns the handwritten digits (8×8, shown at 16×16). Watch the "
        "two terms of its loss, the map of where it puts each digit, and samples from the prior improve."
    )
    with gr.Row():
        with gr.Column(scale=1, min_width=280):
            beta = common.slider(LIVE_BETA, "β (weight of the KL term; 1 = the ELBO)", elem_id="vae-beta")
            steps = common.slider(LIVE_STEPS, "Steps (batches of 64 digits)", elem_id="vae-steps")
            learning_rate = gr.Number(LIVE_LEARNING_RATE.default, label="Learning rate", step=0.0001)
            seed = common.seed_row(42, "seed")
            with gr.Row():
                train = gr.Button("Train", variant="primary", elem_id="vae-train")
                stop = gr.Button("Stop", variant="stop", elem_id="vae-stop")
            gr.Markdown(
                "Try β = 0 (an autoencoder: a gappy map, poor samples), 1, then 4 (a round, packed map, "
                "blurrier digits)."
            )
            curves = _plot("The two terms of the loss", "vae-live-curves")
        with gr.Column(scale=2):
            status = gr.Markdown("Press **Train** to start.", elem_id="vae-status")
            with gr.Row():
                latent = _plot("The latent space filling in", "vae-live-latent")
                images = _plot("Reconstructions and samples", "vae-live-images")
            with gr.Accordion("Run data (the JSON the API returns)", open=False):
                result = gr.JSON(elem_id="vae-json")
    event = train.click(
        train_vae,
        [beta, steps, seed, learning_rate],
        [curves, latent, images, status, result],
        api_name="train_vae",
        **VAE_EVENTS,
    )
    stop.click(_stopped, None, status, cancels=[event], api_visibility="private", queue=False)


def _char_tab() -> None:
    gr.Markdown(
        "A recurrent network reads the text **one character at a time**, keeping a memory of what it has read. "
        "Watch its loss fall and its writing go from noise to words to (on a short text) recitation."
    )
    with gr.Row():
        with gr.Column(scale=1, min_width=280):
            sample = gr.Dropdown([*SAMPLE_TEXTS, OWN_TEXT], value="The sea", label="Sample text", elem_id="char-sample")
            corpus = gr.Textbox(
                SAMPLE_TEXTS["The sea"], label="Corpus (100 to 200,000 characters)", lines=6, elem_id="char-corpus"
            )
            cell = gr.Radio(list(CHAR_CELLS), value="lstm", label="Recurrent cell", elem_id="char-cell")
            steps = common.slider(CHAR_STEPS, "Steps (batches of 32 windows of 64 characters)", elem_id="char-steps")
            hidden = common.slider(CHAR_HIDDEN, "Units in the recurrent layer")
            learning_rate = gr.Number(CHAR_LEARNING_RATE.default, label="Learning rate", step=0.0001)
            prompt = gr.Textbox("The ", label="Samples start with", elem_id="char-prompt")
            seed = common.seed_row(42, "seed")
            with gr.Row():
                train = gr.Button("Train", variant="primary", elem_id="char-train")
                stop = gr.Button("Stop", variant="stop", elem_id="char-stop")
        with gr.Column(scale=2):
            status = gr.Markdown("Press **Train** to start.", elem_id="char-status")
            loss_plot = _plot("Loss", "char-loss")
            samples = [
                gr.Textbox(label=f"Sample at temperature {t}", lines=3, interactive=False, elem_id=f"char-sample-{i}")
                for i, t in enumerate(CHAR_TEMPERATURES)
            ]
            history = gr.Textbox(
                label=f"How the writing changed (temperature {CHAR_TEMPERATURES[len(CHAR_TEMPERATURES) // 2]})",
                lines=6,
                max_lines=14,
                interactive=False,
                elem_id="char-history",
            )
            with gr.Accordion("Run data (the JSON the API returns)", open=False):
                result = gr.JSON(elem_id="char-json")
    sample.change(use_sample_text, sample, corpus, api_visibility="private")
    event = train.click(
        train_char,
        [corpus, steps, seed, cell, learning_rate, hidden, prompt],
        [loss_plot, *samples, history, status, result],
        api_name="train_char_model",
        **CHAR_EVENTS,
    )
    stop.click(_stopped, None, status, cancels=[event], api_visibility="private", queue=False)


def _ar_tab(tab: gr.Tab) -> None:
    gr.Markdown(
        "Autoregression on plain numbers: each value predicted from the **p** values before it, "
        "x(t) = c + φ₁·x(t−1) + … + φ_p·x(t−p) + noise, fitted with statsmodels."
    )
    with gr.Row():
        with gr.Column(scale=1, min_width=280):
            preset = gr.Dropdown(list(PRESETS), value="AR(2)", label="Preset series", elem_id="ar-preset")
            series = gr.Textbox(
                series_text(preset_values("AR(2)")),
                label="Series (numbers separated by commas, spaces or lines, or a CSV table with a header row)",
                lines=6,
                max_lines=12,
                elem_id="ar-series",
            )
            column = gr.Textbox("", label="CSV column (name or number; empty = the last)", elem_id="ar-column")
            p = common.slider(LAGS, "p (how many previous values)", elem_id="ar-p")
            forecast_steps = common.slider(FORECAST_STEPS, "Forecast steps")
            fit_button = gr.Button("Fit", variant="primary", elem_id="ar-fit")
        with gr.Column(scale=2):
            notes = gr.Markdown(elem_id="ar-notes")
            coefficients = gr.Dataframe(
                headers=["term", "estimate", f"{CONFIDENCE:.0%} low", f"{CONFIDENCE:.0%} high", "std. error"],
                label="Coefficients",
                interactive=False,
                elem_id="ar-coefficients",
            )
            with gr.Row():
                series_plot = _plot("Series, fit and forecast", "ar-series-plot")
                correlation_plot = _plot("Choosing p", "ar-correlation")
            with gr.Accordion("Fit data (the JSON the API returns)", open=False):
                result = gr.JSON(elem_id="ar-json")
    outputs = [notes, coefficients, series_plot, correlation_plot, result]
    inputs = [series, p, forecast_steps, column]
    fit_button.click(fit_ar, inputs, outputs, api_name="fit_autoregressive", **AR_EVENTS)
    # A fit is on screen as soon as the tab opens, and a preset is fitted as soon as it is picked.
    tab.select(fit_ar, inputs, outputs, api_visibility="private", **AR_EVENTS)
    preset.input(use_ar_preset, preset, [series, p, column], api_visibility="private").then(
        fit_ar, inputs, outputs, api_visibility="private", **AR_EVENTS
    )


def build() -> None:
    gr.Markdown(
        "Start a small training run and **watch it learn** in seconds, on this machine's CPU. The same settings "
        "and seed give the same run. Runs stop by themselves after a minute and a half at most."
    )
    with gr.Tabs():
        with gr.Tab("GAN", id="training-gan"):
            _gan_tab()
        with gr.Tab("VAE", id="training-vae"):
            _vae_tab()
        with gr.Tab("Character model", id="training-char"):
            _char_tab()
        with gr.Tab("AR(p)", id="training-ar") as ar_tab:
            _ar_tab(ar_tab)
