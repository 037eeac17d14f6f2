"""The Text → Image defaults come from validation prompts by a fixed rule, and the model card measures them."""

from __future__ import annotations

import json

from pipelines.core.weights import WEIGHTS_DIR
from pipelines.diffusion import options
from pipelines.diffusion.text_to_image import SCHEDULERS, WEIGHTS_NAME
from training.select_sampling import VALIDATION_SEED, best_setting, chosen_trial, target_margins

FOLDER = WEIGHTS_DIR / WEIGHTS_NAME


def figures(colour: float, shape: float, place: float, all_three: float = 80.0) -> dict:
    return {"colour": colour, "shape": shape, "place": place, "all_three": all_three}


def adherence(overall: dict, seen: dict, held_out: dict) -> dict:
    return {"overall": overall, "seen_pairs": seen, "held_out_pairs": held_out}


def trial(name: str, margins: dict, all_three: float) -> dict:
    return {
        "scheduler": name,
        "guidance_scale": 4.0,
        "margins": margins,
        "adherence": {"overall": figures(0, 0, 0, all_three)},
    }


def test_margins_measure_each_target_and_each_held_out_gap():
    margins = target_margins(
        adherence(figures(96.0, 90.0, 84.0), seen=figures(98.0, 95.0, 84.0), held_out=figures(92.0, 83.0, 85.0))
    )
    assert margins == {
        "colour": 1.0,
        "shape": 5.0,
        "place": -1.0,
        "colour gap": 4.0,
        "shape gap": -2.0,
        "place gap": 11.0,
    }


def test_the_weakest_target_decides_and_all_three_breaks_ties():
    strong_but_one_miss = trial("A", {"colour": 9.0, "shape gap": -0.5}, all_three=90.0)
    even = trial("B", {"colour": 1.0, "shape gap": 1.5}, all_three=70.0)
    even_better_overall = trial("C", {"colour": 1.0, "shape gap": 2.0}, all_three=60.0)
    assert best_setting([strong_but_one_miss, even, even_better_overall])["scheduler"] == "B"
    tied = trial("D", {"colour": 1.0, "shape gap": 4.0}, all_three=75.0)
    assert best_setting([even, tied])["scheduler"] == "D"


def test_the_tab_defaults_are_the_validation_choice_and_the_card_measures_them():
    record = json.loads((FOLDER / "sampling.json").read_text())
    assert best_setting(record["trials"]) == chosen_trial(record)
    assert record["choice"] == {"scheduler": options.DEFAULT_SCHEDULER, "guidance_scale": options.GUIDANCE.default}
    assert record["validation"]["steps"] == options.STEPS.default
    assert {t["scheduler"] for t in record["trials"]} == set(options.SCHEDULER_NAMES)

    card = json.loads((FOLDER / "training.json").read_text())["adherence"]["settings"]
    assert card["seed"] != record["validation"]["seed"] == VALIDATION_SEED  # test prompts are not validation ones
    assert card["scheduler"] == SCHEDULERS[options.DEFAULT_SCHEDULER].__name__
    assert (card["steps"], card["guidance_scale"]) == (options.STEPS.default, options.GUIDANCE.default)
