"""What a user may ask of the text-to-image pipeline: its choices, defaults and limits.

Kept apart from `pipelines.text_to_image` so the tab can build its controls without importing diffusers
and transformers (seconds at start-up); the pipeline module imports these same names.
"""

from __future__ import annotations

LOCAL_MODEL = "shapes-world (trained here)"
MAX_PROMPT_CHARS = 1000
STEPS_RANGE = (1, 100)
GUIDANCE_RANGE = (0.0, 20.0)
MAX_IMAGES = 4
DEFAULT_STEPS = 20
DEFAULT_GUIDANCE = 5.0  # with DEFAULT_SCHEDULER: chosen on validation prompts by training.select_sampling
SCHEDULER_NAMES = ("DDPM", "DDIM", "DPM-Solver++", "Euler")  # the keys of text_to_image.SCHEDULERS (tested)
DEFAULT_SCHEDULER = "DDPM"
