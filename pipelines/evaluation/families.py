"""The model families side by side (seed 000 §10), measured on this machine from the app's own models.

Rows: GAN (the DCGAN), VAE (the faces VAE), diffusion (the shapes-world text-to-image model), and two
autoregressive models, the word n-gram model and the transformer (SmolLM2). Columns: time per sample; quality
(FID where the samples are images, perplexity where they are text); diversity (recall for images, distinct
bigrams for text); whether an exact likelihood exists, with the value measured where it does; and how training
went, from each model card.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from pipelines.core.limits import SEED
from pipelines.core.weights import WEIGHTS_DIR
from pipelines.evaluation.image_metrics import compare_features
from pipelines.evaluation.options import LIVE_STUDY_IMAGES, STUDY_IMAGES

Progress = Callable[[float, str], None]
TEXT_SAMPLE_TOKENS = 48  # one text sample: this many tokens (transformer) or words (n-gram)
TEXT_SAMPLES = 3  # samples a text model writes, for time and diversity
SAMPLE_TEXT = "The sea"  # of pipelines.text.sample_texts: its last paragraph is held out


@dataclass(frozen=True)
class FamilyRow:
    family: str  # "GAN", "VAE", "Diffusion", "Autoregressive (n-gram)", "Autoregressive (transformer)"
    model_id: str  # the registry id
    model: str
    sample: str  # what one sample is
    seconds_per_sample: float
    quality: float | None
    quality_measure: str
    diversity: float | None
    diversity_measure: str
    likelihood: str  # "exact", "a bound (ELBO)", "none", ...
    likelihood_value: str  # what was measured, or why nothing was
    training: str  # from the model card
    bits_per_character: float | None = None  # text models: held-out surprise, comparable across tokenizers


@dataclass(frozen=True)
class FamilyTable:
    rows: list[FamilyRow]
    images: int  # images a compared set
    seed: int
    seconds: float
    machine: str = field(default_factory=lambda: describe_machine())

    def as_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> FamilyTable:
        return cls(**{**data, "rows": [FamilyRow(**row) for row in data["rows"]]})


def describe_machine() -> str:
    """The CPU's name, its cores and torch's threads: what a measured time depends on."""
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} with {torch.get_num_threads()} threads"


def distinct_bigrams(samples: list[list[str]]) -> float:
    """The share of distinct word pairs among all word pairs of the samples: 1 when nothing repeats."""
    pairs = [tuple(words[i : i + 2]) for words in samples for i in range(len(words) - 1)]
    return len(set(pairs)) / len(pairs) if pairs else 0.0


def _card(name: str, file: str) -> dict:
    path = WEIGHTS_DIR / name / file
    return json.loads(path.read_text()) if path.exists() else {}


def _timed(function: Callable[[], object]) -> tuple[object, float]:
    started = time.perf_counter()
    result = function()
    return result, time.perf_counter() - started


class _Progress:
    def __init__(self, parts: int, report: Progress | None):
        self.parts, self.done, self.report = parts, 0, report

    def step(self, what: str) -> None:
        if self.report is not None:
            self.report(self.done / self.parts, what)
        self.done += 1


def measure_families(
    images: int = LIVE_STUDY_IMAGES.default, seed: int = 0, progress: Progress | None = None, transformer: bool = True
) -> FamilyTable:
    """Every row measured now; `images` samples a set for FID and recall (small: FID is biased upwards)."""
    from pipelines.core import registry
    from pipelines.evaluation import studies
    from pipelines.gan.faces import truncated_latents
    from pipelines.gan.options import TRUNCATION
    from pipelines.vae.data import FACES_HELD_OUT_SEED, FACES_TRUNCATION

    images, seed = STUDY_IMAGES.check(images, "images"), SEED.check(seed, "seed")
    started = time.perf_counter()
    report = _Progress(6 if transformer else 5, progress)
    inception = registry.load("fid-inception")
    rows = []

    # GAN: its own untruncated distribution is the reference (its training faces are not shipped).
    report.step("GAN: faces at the tab's truncation against untruncated ones")
    faces, seconds = _timed(lambda: studies.gan_faces(truncated_latents(seed + 1, images, TRUNCATION.default)))
    untruncated = studies.gan_faces(studies.untruncated_latents(seed, images))
    gan = compare_features(*inception.features_of_sets([untruncated, faces]))
    rows.append(
        FamilyRow(
            "GAN",
            "gan-faces",
            registry.spec("gan-faces").name,
            "a 64×64 face",
            seconds / images,
            gan.fid,
            f"FID against {images} untruncated faces of its own (truncation {TRUNCATION.default:g})",
            gan.recall,
            "recall",
            "none",
            "A GAN has no density to evaluate: it only draws samples.",
            "Pretrained elsewhere (the gan-face-generate pack, on DigiFace-1M); no training record was published.",
        )
    )

    # VAE: prior samples against the held-out GAN faces it learned from; the ELBO on those faces.
    report.step("VAE: prior samples against the GAN faces it learned from; its ELBO")
    vae = registry.load("vae-faces")
    reference_faces = studies.gan_faces(truncated_latents(FACES_HELD_OUT_SEED + seed, images, FACES_TRUNCATION))
    latents = torch.randn(images, vae.latent_dim, generator=torch.Generator().manual_seed(seed))
    samples, seconds = _timed(lambda: vae.decode(latents))
    vae_comparison = compare_features(*inception.features_of_sets([reference_faces, samples]))
    elbo = negative_elbo(vae, reference_faces, seed) if hasattr(vae, "model") else None  # None: served elsewhere
    card = _card("vae-faces", "config.json").get("training", {})
    rows.append(
        FamilyRow(
            "VAE",
            "vae-faces",
            registry.spec("vae-faces").name,
            "a 64×64 face",
            seconds / images,
            vae_comparison.fid,
            f"FID of prior samples against {images} held-out GAN faces (its training data's kind)",
            vae_comparison.recall,
            "recall",
            "a bound (the ELBO)",
            f"−ELBO {elbo:,.0f} nats an image on {images} held-out faces: −log p(x) is at most this."
            if elbo is not None
            else "Not measured: the model runs on a model server here, without its weights in this process.",
            f"{card.get('steps', '?')} steps of batch {card.get('batch_size', '?')} in {card.get('minutes', '?')} "
            "minutes on a CPU (model card); no loss curve recorded.",
        )
    )

    # Diffusion: the tab's default sampling against rendered scenes of the same prompts.
    report.step("Diffusion: images at the tab's defaults against rendered scenes of the prompts")
    from pipelines.diffusion.options import DEFAULT_SCHEDULER, GUIDANCE, STEPS

    setting = studies.SamplingSetting(STEPS.default, GUIDANCE.default, DEFAULT_SCHEDULER)
    prompts, scenes = studies.shapes_prompts(images, seed)
    pipeline = registry.load("shapes-world")
    generated, seconds = _timed(lambda: studies.generate_images(pipeline, prompts, setting, seed))
    diffusion = compare_features(*inception.features_of_sets([scenes, generated]))
    card = _card("text-to-image", "training.json").get("training", {})
    rows.append(
        FamilyRow(
            "Diffusion",
            "shapes-world",
            registry.spec("shapes-world").name,
            f"a 64×64 image, {setting.label}",
            seconds / images,
            diffusion.fid,
            f"FID against {images} rendered scenes of the same prompts",
            diffusion.recall,
            "recall",
            "a bound (the diffusion ELBO)",
            "Not computed here: this model was trained on a weighted loss, not on the bound.",
            f"{card.get('steps', '?')} steps of batch {card.get('batch_size', '?')} in {card.get('minutes', '?')} "
            f"minutes on a CPU, final loss {card.get('final_loss', '?')} (model card); no loss curve recorded.",
        )
    )

    # Autoregressive: a counted n-gram model and the transformer, on the held-out paragraph of a sample text.
    from pipelines.evaluation.text_metrics import held_out_sentences
    from pipelines.text.inspection import ngram_perplexity, transformer_perplexity
    from pipelines.text.ngram import NgramModel
    from pipelines.text.sample_texts import SAMPLE_TEXTS

    held_out = held_out_sentences(SAMPLE_TEXTS[SAMPLE_TEXT])
    characters = len(held_out.held_out_text)
    report.step("n-gram: count, sample, perplexity of the held-out paragraph")
    counting_times = []
    for _ in range(3):
        model, seconds = _timed(lambda: NgramModel.fit(held_out.training_text, 3))
        counting_times.append(seconds)
    prompt = held_out.prompts[0]
    ngram_samples, ngram_times = [], []
    for sample_seed in range(seed, seed + TEXT_SAMPLES):
        generation, seconds = _timed(lambda s=sample_seed: model.generate(prompt, TEXT_SAMPLE_TOKENS, s))
        ngram_samples.append(generation.words)
        ngram_times.append(seconds)
    ngram = ngram_perplexity(model, held_out.held_out_text)
    rows.append(
        FamilyRow(
            "Autoregressive (n-gram)",
            "ngram",
            "trigram model",
            f"up to {TEXT_SAMPLE_TOKENS} words (it stops where its text ended)",
            statistics.median(ngram_times),
            ngram.perplexity,
            f"perplexity per word of the held-out paragraph of “{SAMPLE_TEXT}”",
            distinct_bigrams(ngram_samples),
            f"distinct word pairs in {TEXT_SAMPLES} samples",
            "exact",
            f"{ngram.total_bits / characters:.2f} bits a character on the held-out paragraph (smoothed counts).",
            f"Counted in {statistics.median(counting_times) * 1000:.1f} ms (one pass over the other paragraphs): "
            "nothing to diverge.",
            ngram.total_bits / characters,
        )
    )

    if transformer:
        report.step("Transformer: sample, perplexity of the held-out paragraph")
        from pipelines.text.generation import SamplingSettings
        from pipelines.text.ngram import split_words

        generator = registry.load("smollm2-135m")
        transformer_samples, transformer_times = [], []
        for sample_seed in range(seed, seed + TEXT_SAMPLES):
            settings = SamplingSettings(max_new_tokens=TEXT_SAMPLE_TOKENS, seed=sample_seed, chat=False)
            generation = generator.generate(prompt, settings)
            transformer_samples.append(split_words(generation.text))
            transformer_times.append(generation.seconds)
        surprisal = transformer_perplexity(generator, held_out.held_out_text)
        rows.append(
            FamilyRow(
                "Autoregressive (transformer)",
                "smollm2-135m",
                registry.spec("smollm2-135m").name,
                f"up to {TEXT_SAMPLE_TOKENS} tokens",
                statistics.median(transformer_times),
                surprisal.perplexity,
                f"perplexity per token of the held-out paragraph of “{SAMPLE_TEXT}”",
                distinct_bigrams(transformer_samples),
                f"distinct word pairs in {TEXT_SAMPLES} samples",
                "exact",
                f"{surprisal.total_bits / characters:.2f} bits a character on the held-out paragraph.",
                "Pretrained by Hugging Face (SmolLM2-135M-Instruct); no training record here.",
                surprisal.total_bits / characters,
            )
        )
    report.step("done")
    return FamilyTable(rows, images, seed, time.perf_counter() - started)


@torch.inference_mode()
def negative_elbo(vae, images, seed: int) -> float:
    """Mean −ELBO (reconstruction cross-entropy + KL, nats an image) of images under a VAE trained here, with
    one seeded draw of z per image."""
    from pipelines.vae.data import pil_to_tensor
    from pipelines.vae.model import kl_divergence, reparameterise

    pixels = torch.stack([pil_to_tensor(vae.prepare(image)) for image in images])
    pixels = pixels.to(vae.device_choice.device, vae.device_choice.dtype)
    mu, logvar = vae.model.encode(pixels)
    z = reparameterise(mu, logvar, torch.Generator(device=mu.device).manual_seed(seed))
    logits = vae.model.decode_logits(z)
    reconstruction = torch.nn.functional.binary_cross_entropy_with_logits(logits, pixels, reduction="none")
    return float((reconstruction.flatten(1).sum(1) + kl_divergence(mu, logvar)).mean())


FAMILY_PLOTS = ("speed", "images", "text")  # the names of pipelines.evaluation.plots.families_figures


def shipped_families() -> tuple[FamilyTable, list[Path], str] | None:
    """The table measured by training/precompute_evaluation.py, its plots and when it was measured, or None."""
    folder = WEIGHTS_DIR / "evaluation"
    data = folder / "families.json"
    plots = [folder / f"families-{name}.png" for name in FAMILY_PLOTS]
    if not (data.exists() and all(plot.exists() for plot in plots)):
        return None
    saved = json.loads(data.read_text())
    return FamilyTable.from_json(saved["table"]), plots, saved.get("measured", "")
