"""The image studies the Evaluate tab plots: each compares sets of the app's own images on FID, precision and
recall against one reference set.

- GAN truncation: faces at several truncations against untruncated faces (the generator's own distribution):
  the quality/variety trade-off of the truncation slider, as precision against recall.
- VAE vs GAN: the faces VAE's reconstructions and prior samples against the GAN faces it was trained on.
- Text-to-image: generated images against rendered scenes of the same prompts, by guidance, steps or scheduler.

Each also measures a *floor*: a second sample of the reference's own distribution, the FID that small sets give
even when nothing differs. Sets compared in one study are all the same size, since FID's bias depends on it.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
from PIL import Image

from pipelines.core.limits import SEED
from pipelines.core.weights import WEIGHTS_DIR
from pipelines.evaluation.image_metrics import SetComparison, compare_features
from pipelines.evaluation.options import (
    GAN_TRUNCATIONS,
    GUIDANCE_SWEEP,
    LIVE_STUDY_IMAGES,
    STEPS_SWEEP,
    STUDY_IMAGES,
    SWEEP_AXES,
)

# Progress: (fraction done in 0..1, what is happening), for gr.Progress or a console.
Progress = Callable[[float, str], None]
GENERATION_BATCH = 64  # images a forward pass for the GAN and the VAE
TEXT_TO_IMAGE_BATCH = 25  # prompts a denoising run


@dataclass(frozen=True)
class StudyPoint:
    """One compared set: what it is, its setting, and its metrics against the study's reference."""

    label: str
    setting: dict
    fid: float
    precision: float
    recall: float
    images: int

    @classmethod
    def of(cls, label: str, setting: dict, comparison: SetComparison) -> StudyPoint:
        return cls(label, setting, comparison.fid, comparison.precision, comparison.recall, comparison.images_b)


@dataclass(frozen=True)
class Study:
    id: str  # one of STUDY_IDS: "gan-truncation", "vae-vs-gan", "text-to-image-guidance", ...
    reference: str  # what set A is
    images_per_set: int
    seed: int
    points: list[StudyPoint]
    floor: StudyPoint  # a second sample of the reference's distribution
    seconds: float = 0.0
    axis: str = ""  # the setting that varies along the points ("truncation", "guidance", ...; "" for none)

    @property
    def title(self) -> str:
        return TITLES.get(self.id, self.id)

    def as_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> Study:
        """A study from `as_json`'s dict; other keys (a file's date and machine, an older file's title) are left out."""
        known = {f.name for f in fields(cls)}
        points = [StudyPoint(**point) for point in data["points"]]
        values = {key: value for key, value in data.items() if key in known}
        return cls(**{**values, "points": points, "floor": StudyPoint(**data["floor"])})


class _Steps:
    """Progress over a known number of work units (images generated, images measured)."""

    def __init__(self, total: int, report: Progress | None):
        self.total, self.done, self.report = max(total, 1), 0, report

    def advance(self, units: int, what: str) -> None:
        self.done += units
        if self.report is not None:
            self.report(min(self.done / self.total, 1.0), what)


def _features(images: list[Image.Image], steps: _Steps, what: str, weight: int = 1):
    """FID Inception features of a set; progress counts `weight` units an image, cached ones at once."""
    from pipelines.core import registry

    inception = registry.load("fid-inception")
    reported = [0]

    def on_batch(done: int, total: int) -> None:
        steps.advance(weight * (done - reported[0]), f"{what}: Inception features, {done} of {total} new images")
        reported[0] = done

    features = inception.features(images, on_batch)
    steps.advance(weight * (len(images) - reported[0]), f"{what}: features ready")
    return features


def _checked(images: int, seed: int) -> tuple[int, int]:
    return STUDY_IMAGES.check(images, "images"), SEED.check(seed, "seed")


# ----------------------------------------------------------------------------------------------- GAN truncation


def gan_faces(latents: torch.Tensor) -> list[Image.Image]:
    """The DCGAN's faces for (N, 100, 1, 1) latents, in forward passes of GENERATION_BATCH."""
    from pipelines.core import registry

    generator = registry.load("gan-faces")
    return [
        face
        for start in range(0, len(latents), GENERATION_BATCH)
        for face in generator.generate(latents[start : start + GENERATION_BATCH])
    ]


def untruncated_latents(seed: int, count: int) -> torch.Tensor:
    """(count, 100, 1, 1) latents from the plain normal the DCGAN was trained on: no truncation at all."""
    from pipelines.gan.faces import LATENT_DIM

    return torch.randn(count, LATENT_DIM, 1, 1, generator=torch.Generator().manual_seed(seed))


def gan_truncation_study(
    images: int = LIVE_STUDY_IMAGES.default,
    seed: int = 0,
    truncations: tuple[float, ...] = GAN_TRUNCATIONS,
    progress: Progress | None = None,
) -> Study:
    """Faces at each truncation (one latent seed for all, so only the truncation differs) against untruncated
    faces of another seed."""
    from pipelines.gan.faces import truncated_latents

    images, seed = _checked(images, seed)
    started = time.perf_counter()
    steps = _Steps(2 * images * (len(truncations) + 2), progress)
    reference_faces = gan_faces(untruncated_latents(seed, images))
    steps.advance(images, "untruncated faces (the reference)")
    reference = _features(reference_faces, steps, "reference")

    def measure(label: str, setting: dict, faces: list[Image.Image]) -> StudyPoint:
        steps.advance(images, f"{label}: faces drawn")
        return StudyPoint.of(label, setting, compare_features(reference, _features(faces, steps, label)))

    floor = measure("untruncated, another seed", {"truncation": None}, gan_faces(untruncated_latents(seed + 1, images)))
    points = [
        measure(f"truncation {t:g}", {"truncation": t}, gan_faces(truncated_latents(seed + 1, images, t)))
        for t in truncations
    ]
    return Study(
        "gan-truncation",
        f"{images} untruncated DCGAN faces (latents from the plain normal, seed {seed})",
        images,
        seed,
        points,
        floor,
        time.perf_counter() - started,
        axis="truncation",
    )


# ----------------------------------------------------------------------------------------------- VAE vs GAN


def vae_study(images: int = LIVE_STUDY_IMAGES.default, seed: int = 0, progress: Progress | None = None) -> Study:
    """The faces VAE's reconstructions and prior samples against the GAN faces it learned from (held-out ones)."""
    from pipelines.core import registry
    from pipelines.gan.faces import truncated_latents
    from pipelines.vae.data import FACES_HELD_OUT_SEED, FACES_TRUNCATION

    images, seed = _checked(images, seed)
    started = time.perf_counter()
    steps = _Steps(2 * images * 4, progress)
    vae = registry.load("vae-faces")
    reference_faces = gan_faces(truncated_latents(FACES_HELD_OUT_SEED + seed, images, FACES_TRUNCATION))
    steps.advance(images, "GAN faces (the reference)")
    reference = _features(reference_faces, steps, "reference")

    def measure(label: str, setting: dict, faces: list[Image.Image]) -> StudyPoint:
        steps.advance(images, f"{label}: images made")
        return StudyPoint.of(label, setting, compare_features(reference, _features(faces, steps, label)))

    other_faces = gan_faces(truncated_latents(FACES_HELD_OUT_SEED + seed + 1, images, FACES_TRUNCATION))
    floor = measure("GAN faces (another seed)", {"source": "gan"}, other_faces)
    chunks = range(0, images, GENERATION_BATCH)
    reconstructions = [
        face for start in chunks for face in vae.reconstruct(reference_faces[start : start + GENERATION_BATCH])
    ]
    prior_latents = torch.randn(images, vae.latent_dim, generator=torch.Generator().manual_seed(seed))
    prior_samples = [face for start in chunks for face in vae.decode(prior_latents[start : start + GENERATION_BATCH])]
    points = [
        floor,
        measure("VAE reconstructions", {"source": "vae-reconstruction"}, reconstructions),
        measure("VAE prior samples", {"source": "vae-prior"}, prior_samples),
    ]
    return Study(
        "vae-vs-gan",
        f"{images} held-out GAN faces of the kind the VAE was trained on (truncation {FACES_TRUNCATION})",
        images,
        seed,
        points,
        floor,
        time.perf_counter() - started,
    )


# ----------------------------------------------------------------------------------------------- text-to-image


@dataclass(frozen=True)
class SamplingSetting:
    steps: int
    guidance: float
    scheduler: str

    @property
    def label(self) -> str:
        return f"{self.scheduler}, {self.steps} steps, guidance {self.guidance:g}"


def sweep_settings(axis: str) -> list[SamplingSetting]:
    """The settings one sweep visits: the tab's defaults with one of guidance, steps or scheduler varied."""
    from pipelines.diffusion.options import DEFAULT_SCHEDULER, GUIDANCE, SCHEDULER_NAMES, STEPS

    if axis not in SWEEP_AXES:
        raise ValueError(f"axis must be one of {', '.join(SWEEP_AXES)} (got {axis!r}).")
    if axis == "guidance":
        return [SamplingSetting(STEPS.default, g, DEFAULT_SCHEDULER) for g in GUIDANCE_SWEEP]
    if axis == "steps":
        return [SamplingSetting(s, GUIDANCE.default, DEFAULT_SCHEDULER) for s in STEPS_SWEEP]
    return [SamplingSetting(STEPS.default, GUIDANCE.default, name) for name in SCHEDULER_NAMES]


def shapes_prompts(count: int, seed: int) -> tuple[list[str], list[Image.Image]]:
    """Captions of random shapes-world scenes (the training distribution) and the scenes drawn exactly."""
    from pipelines.diffusion.shapes_world import caption_scene, random_scene, render_scene

    rng = random.Random(seed)
    scenes = [random_scene(rng, training=True) for _ in range(count)]
    return [caption_scene(scene, rng) for scene in scenes], [render_scene(scene) for scene in scenes]


def generate_images(
    pipeline, prompts: list[str], setting: SamplingSetting, seed: int, steps: _Steps | None = None
) -> list[Image.Image]:
    """One image a prompt; each batch's noise from its own seeded generator, the same for every setting."""
    from pipelines.diffusion.text_to_image import with_scheduler

    runner = with_scheduler(pipeline, setting.scheduler)
    images = []
    for start in range(0, len(prompts), TEXT_TO_IMAGE_BATCH):
        batch = prompts[start : start + TEXT_TO_IMAGE_BATCH]

        def step_end(pipe, index, timestep, tensors, batch_size=len(batch)):
            if steps is not None:
                steps.advance(batch_size, f"{setting.label}: denoising step {index + 1} of {setting.steps}")
            return {}

        output = runner(
            prompt=batch,
            num_inference_steps=setting.steps,
            guidance_scale=setting.guidance,
            generator=torch.Generator().manual_seed(seed + start),
            callback_on_step_end=step_end,
        )
        images.extend(output.images)
    return images


def text_to_image_study(
    images: int = LIVE_STUDY_IMAGES.default, axis: str = "guidance", seed: int = 0, progress: Progress | None = None
) -> Study:
    """Images generated for shapes-world captions against the scenes those captions describe, drawn exactly."""
    from pipelines.core import registry

    images, seed = _checked(images, seed)
    settings = sweep_settings(axis)
    started = time.perf_counter()
    # Work units: one per image and denoising step, and two per image measured (weighed like a few steps).
    measure_weight = 2
    steps = _Steps(sum(images * s.steps for s in settings) + measure_weight * images * (len(settings) + 2), progress)
    prompts, scenes = shapes_prompts(images, seed)

    def features(batch: list[Image.Image], what: str):
        return _features(batch, steps, what, measure_weight)

    reference = features(scenes, "rendered scenes")
    _, other_scenes = shapes_prompts(images, seed + 1)
    floor_comparison = compare_features(reference, features(other_scenes, "other scenes"))
    floor = StudyPoint.of("rendered scenes of other prompts", {"source": "rendered"}, floor_comparison)
    pipeline = registry.load("shapes-world")
    points = []
    for setting in settings:
        generated = generate_images(pipeline, prompts, setting, seed, steps)
        comparison = compare_features(reference, features(generated, setting.label))
        points.append(StudyPoint.of(setting.label, asdict(setting), comparison))
    return Study(
        f"text-to-image-{axis}",
        f"{images} shapes-world scenes drawn exactly from their captions (caption seed {seed})",
        images,
        seed,
        points,
        floor,
        time.perf_counter() - started,
        axis=axis,
    )


# ----------------------------------------------------------------------------------------------- reading a study


def short_label(study: Study, point: StudyPoint) -> str:
    """The point's value on the study's axis ("0.5", "DDIM"), or its label where nothing varies."""
    value = point.setting.get(study.axis) if study.axis else None
    return point.label if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def _percent(value: float) -> str:
    return f"{value:.0%}"


def _precision_recall_list(study: Study) -> str:
    return "; ".join(f"{short_label(study, p)}: {_percent(p.precision)} / {_percent(p.recall)}" for p in study.points)


def summary(study: Study) -> str:
    """What the study shows, in a sentence or two, with its own numbers."""
    points, floor = study.points, study.floor
    best = min(points, key=lambda p: p.fid)
    at_this_size = f"two samples of the reference's own kind give {floor.fid:.0f} at this size"
    if study.id == "gan-truncation":
        text = (
            f"Precision (the share of faces on the untruncated faces' manifold) / recall (the share of untruncated "
            f"faces they reach), by truncation: {_precision_recall_list(study)}. Truncating takes variety away "
            f"(recall); FID, which mixes both, is lowest at truncation {short_label(study, best)} ({best.fid:.0f}; "
            f"{at_this_size})."
        )
        lowest = points[0]
        if lowest.precision < 0.2:  # what this DCGAN does near z = 0: brown textures, not faces
            text += (
                f" At truncation {short_label(study, lowest)} the images are hardly faces any more for Inception "
                f"(precision {_percent(lowest.precision)}): latents that close to 0 are unlike any the generator "
                "was trained on."
            )
        return text
    if study.id == "vae-vs-gan":
        by_source = {p.setting["source"]: p for p in points}
        reconstructions, prior = by_source["vae-reconstruction"], by_source["vae-prior"]
        return (
            f"Other GAN faces score FID {floor.fid:.0f} against the reference (the floor at this size); the VAE's "
            f"reconstructions of those very faces {reconstructions.fid:.0f}, and its samples from the prior "
            f"{prior.fid:.0f}. Blur moves Inception's features off the faces' manifold: precision "
            f"{_percent(reconstructions.precision)} for reconstructions and {_percent(prior.precision)} for prior "
            f"samples, against {_percent(floor.precision)} for GAN faces."
        )
    text = (
        f"FID against the rendered scenes is lowest at {best.label} ({best.fid:.0f}; {at_this_size}). Precision / "
        f"recall by {study.axis}: {_precision_recall_list(study)}."
    )
    if all(p.precision == 0 for p in points):
        text += (
            " No generated image lies on the rendered scenes' manifold at this size: Inception tells the model's "
            "soft-edged images from exact drawings whatever the setting. Neither FID nor precision checks that an "
            "image shows what its prompt asks: the Text → Image model card measures that (colour, shape, place)."
        )
    return text


# ----------------------------------------------------------------------------------------------- cache


class StudyCache:
    """The last few studies by their arguments: a room clicking "Run" on the same settings waits once."""

    def __init__(self, size: int = 16):
        self.size = size
        self._studies: OrderedDict[tuple, Study] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple) -> Study | None:
        with self._lock:
            if key in self._studies:
                self._studies.move_to_end(key)
            return self._studies.get(key)

    def put(self, key: tuple, study: Study) -> None:
        with self._lock:
            self._studies[key] = study
            while len(self._studies) > self.size:
                self._studies.popitem(last=False)


# What a study id runs: the tab's menu, the API's `study` values and the shipped files' names.
STUDY_IDS = (
    "gan-truncation",
    "vae-vs-gan",
    *(f"text-to-image-{axis}" for axis in SWEEP_AXES),
)
TITLES = {
    "gan-truncation": "GAN faces: what the truncation slider does to fidelity and variety",
    "vae-vs-gan": "VAE vs GAN: why a VAE is blurrier, in numbers",
    **{f"text-to-image-{axis}": f"Text → Image: {axis} against rendered scenes of the prompts" for axis in SWEEP_AXES},
}
SHIPPED_DIR = WEIGHTS_DIR / "evaluation"  # written by training/precompute_evaluation.py
STUDY_PLOTS = ("fid", "precision-recall")  # the names of pipelines.evaluation.plots.study_figures
_cache = StudyCache()


def run_study(
    study_id: str, images: int = LIVE_STUDY_IMAGES.default, seed: int = 0, progress: Progress | None = None
) -> Study:
    """The study `study_id` (one of STUDY_IDS), or its cached result for the same images and seed."""
    if study_id not in STUDY_IDS:
        raise ValueError(f"study must be one of {', '.join(STUDY_IDS)} (got {study_id!r}).")
    images, seed = _checked(images, seed)
    key = (study_id, images, seed)
    cached = _cache.get(key)
    if cached is not None:
        return cached
    if study_id == "gan-truncation":
        study = gan_truncation_study(images, seed, progress=progress)
    elif study_id == "vae-vs-gan":
        study = vae_study(images, seed, progress)
    else:
        study = text_to_image_study(images, study_id.removeprefix("text-to-image-"), seed, progress)
    _cache.put(key, study)
    return study


def shipped_study(study_id: str) -> tuple[Study, list[Path]] | None:
    """The precomputed study and its plots (FID, precision-recall) shipped in weights/evaluation/, or None."""
    data = SHIPPED_DIR / f"{study_id}.json"
    plots = [SHIPPED_DIR / f"{study_id}-{name}.png" for name in STUDY_PLOTS]
    if not (data.exists() and all(plot.exists() for plot in plots)):
        return None
    return Study.from_json(json.loads(data.read_text())), plots
