"""Choose the Text → Image tab's default scheduler and guidance on validation prompts, not on the test prompts.

    python -m training.select_sampling            # about 50 minutes on 2 CPU cores; writes sampling.json

Every scheduler of the tab at every guidance scale below renders the same validation prompts (600, prompt
seed 2026: never the model card's 200 test prompts of seed 1234) at the tab's default step count, and the
setting that keeps the widest margin on the issue's weakest target wins: colour ≥ 95, shape ≥ 85 and
place ≥ 85 %, and held-out colour+shape pairs within 10 points of seen ones on each of the three. The rule was
fixed before the run. The choice and every measured figure go to weights/text-to-image/sampling.json; the
tab's defaults (pipelines/diffusion/options.py) are then set to it by hand, and the model card reports
the test prompts at those defaults (`python -m training.train_text_to_image --evaluate-only`).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from pipelines.core.weights import WEIGHTS_DIR
from pipelines.diffusion.options import SCHEDULER_NAMES, STEPS
from pipelines.diffusion.text_to_image import WEIGHTS_NAME, ShapesDiffusionPipeline, with_scheduler
from training.adherence import evaluate_adherence

VALIDATION_SEED = 2026  # the model card's test prompts use 1234
TARGETS = {"colour": 95.0, "shape": 85.0, "place": 85.0}
MAX_HELD_OUT_GAP = 10.0

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--prompts", type=int, default=600)
parser.add_argument("--guidance", default="3,4,5,6", help="guidance scales to try, comma-separated")
parser.add_argument("--schedulers", default=",".join(SCHEDULER_NAMES))
parser.add_argument("--threads", type=int, default=2)
parser.add_argument("--weights", default=str(WEIGHTS_DIR / WEIGHTS_NAME))


def target_margins(adherence: dict) -> dict[str, float]:
    """Points by which each target is beaten (negative: missed)."""
    overall, seen, held_out = adherence["overall"], adherence["seen_pairs"], adherence["held_out_pairs"]
    margins = {name: overall[name] - floor for name, floor in TARGETS.items()}
    for name in TARGETS:
        margins[f"{name} gap"] = MAX_HELD_OUT_GAP - (seen[name] - held_out[name])
    return {name: round(value, 1) for name, value in margins.items()}


def best_setting(trials: list[dict]) -> dict:
    """The trial whose weakest target has the widest margin; ties: the higher 'all three' share, then the first."""
    return max(trials, key=lambda t: (min(t["margins"].values()), t["adherence"]["overall"]["all_three"]))


def chosen_trial(record: dict) -> dict:
    """The trial of a sampling.json record that its choice names."""
    wanted = (record["choice"]["scheduler"], record["choice"]["guidance_scale"])
    return next(t for t in record["trials"] if (t["scheduler"], t["guidance_scale"]) == wanted)


def main() -> None:
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    saved = ShapesDiffusionPipeline.from_pretrained(args.weights, dtype=torch.float32)
    trials = []
    for scheduler_name in args.schedulers.split(","):
        pipeline = with_scheduler(saved, scheduler_name)
        for guidance in (float(g) for g in args.guidance.split(",")):
            started = time.perf_counter()
            adherence = evaluate_adherence(
                pipeline, count=args.prompts, seed=VALIDATION_SEED, steps=STEPS.default, guidance_scale=guidance
            )
            adherence.pop("examples")
            margins = target_margins(adherence)
            trials.append(
                {"scheduler": scheduler_name, "guidance_scale": guidance, "margins": margins, "adherence": adherence}
            )
            overall = adherence["overall"]
            print(
                f"{scheduler_name:13s} guidance {guidance:4.1f}: colour {overall['colour']}, "
                f"shape {overall['shape']}, place {overall['place']}; weakest margin {min(margins.values()):+.1f} "
                f"({min(margins, key=margins.get)}) [{time.perf_counter() - started:.0f} s]",
                flush=True,
            )
    choice = best_setting(trials)
    record = {
        "rule": "widest margin on the weakest target (colour >= 95, shape >= 85, place >= 85, held-out pairs within "
        "10 points of seen on each); ties: higher all-three share, then the first tried",
        "validation": {"prompts": args.prompts, "seed": VALIDATION_SEED, "steps": STEPS.default},
        "choice": {"scheduler": choice["scheduler"], "guidance_scale": choice["guidance_scale"]},
        "trials": trials,
    }
    (Path(args.weights) / "sampling.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"chosen: {choice['scheduler']}, guidance {choice['guidance_scale']}")


if __name__ == "__main__":
    main()
