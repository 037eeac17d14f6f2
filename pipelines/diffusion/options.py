"""What a user may ask of the text-to-image pipeline: its choices, defaults and limits.

Kept apart from `pipelines.diffusion.text_to_image` so the tab can build its controls without importing
diffusers and transformers (seconds at start-up); the pipeline checks its arguments against these same ranges.
"""

from __future__ import annotations

from pipelines.core.limits import Range

BUILTIN_MODEL = "shapes-world"  # the registry id of the model trained here
MAX_PROMPT_CHARS = 1000
STEPS = Range(1, 100, 20)
# The default guidance goes with DEFAULT_SCHEDULER: both chosen on validation prompts by training.select_sampling.
GUIDANCE = Range(0.0, 20.0, 5.0, step=0.5, whole=False)
IMAGES = Range(1, 4, 1)
SCHEDULER_NAMES = ("DDPM", "DDIM", "DPM-Solver++", "Euler")  # the keys of text_to_image.SCHEDULERS (tested)
DEFAULT_SCHEDULER = "DDPM"

# The Diffusion lab (pipelines/diffusion/lab.py). Timestep 0 is the clean image; 1-999 are training's noise levels.
TIMESTEP = Range(0, 999, 500)
# Image-to-image: the share of the schedule redone from the noised input (0 keeps it, 1 starts from noise).
STRENGTH = Range(0.0, 1.0, 0.2, step=0.05, whole=False)
# Gentler than text-to-image's default guidance, so that low strengths keep the input's layout and change only
# what the noise washed out first (colour), as docs/diffusion-lab.md shows; strong guidance redraws at once.
IMAGE_TO_IMAGE_GUIDANCE = 2.0
