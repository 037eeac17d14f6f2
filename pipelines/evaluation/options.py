"""What a user may ask of the evaluation pipelines: set sizes, sweeps and text limits, read by the tab and the
pipelines. Importable without torch models, so the tab builds its controls before anything loads."""

from __future__ import annotations

from pipelines.core.limits import Range

NEIGHBOURS = 3  # k of the k-nearest-neighbour manifolds (Kynkäänniemi et al. 2019 use 3)
# Images in each set of /fid: precision and recall need each image's k nearest neighbours in its own set,
# so k + 1 at the least; FID from so few is dominated by its small-sample bias, and the result says so.
UPLOADED_IMAGES = Range(NEIGHBOURS + 1, 500, 200)
BIAS_WARNING_BELOW = 1000  # FID's bias grows as sets shrink; published FIDs use 10,000 to 50,000 images

# Images in each compared set of a study or the families table. The tab runs them live with few images (each is
# generated and measured while you wait); the plots it ships (training/precompute_evaluation.py) use more.
STUDY_IMAGES = Range(NEIGHBOURS + 1, 2000, 200)
LIVE_STUDY_IMAGES = Range(8, 64, 24)
LIVE_TEXT_TO_IMAGE_IMAGES = 8  # the slider's start for text-to-image studies: each image takes every denoising step
GAN_TRUNCATIONS = (0.5, 0.75, 1.0, 1.5, 2.0, 3.0)
GUIDANCE_SWEEP = (1.0, 2.0, 3.0, 5.0, 8.0, 12.0)
STEPS_SWEEP = (5, 10, 20, 50)
SWEEP_AXES = ("guidance", "steps", "scheduler")

# Text metrics: one sentence a line.
MAX_LINES = 1000
MAX_TEXT_CHARS = 200_000
