"""Plots of the studies and the families table: matplotlib figures (no pyplot, so threads never share state),
written as PNG files for the tab and for the shipped defaults in weights/evaluation/."""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

from pipelines.evaluation.families import FamilyTable
from pipelines.evaluation.options import NEIGHBOURS
from pipelines.evaluation.studies import Study, short_label

FLOOR_COLOUR = "#7f7f7f"
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b")
FONT_SIZE = 11  # readable on a projector; the PNG scales down on a phone


def _figure(width: float = 11.0, height: float = 4.4) -> Figure:
    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def study_figure(study: Study) -> Figure:
    """FID of each set (lower is closer to the reference; the floor is what chance alone gives at this size),
    and precision against recall (top right is best)."""
    figure = _figure()
    fid_axes, pr_axes = figure.subplots(1, 2, width_ratios=(1.15, 1))
    labels = [short_label(study, point) for point in study.points]
    positions = range(len(study.points))
    fid_axes.bar(positions, [p.fid for p in study.points], color=COLOURS[0])
    fid_axes.axhline(study.floor.fid, color=FLOOR_COLOUR, linestyle="--", label=f"floor: {study.floor.label}")
    fid_axes.set_xticks(list(positions), labels, fontsize=10)
    fid_axes.set_ylabel("FID (lower = closer to the reference)", fontsize=FONT_SIZE)
    fid_axes.set_xlabel(study.axis, fontsize=FONT_SIZE)
    fid_axes.set_ylim(0, 1.2 * max(p.fid for p in [*study.points, study.floor]))
    fid_axes.set_title(f"FID, {study.images_per_set} images a set", fontsize=FONT_SIZE)
    fid_axes.legend(fontsize=9, loc="upper right")
    for position, point in zip(positions, study.points):
        fid_axes.annotate(f"{point.fid:.0f}", (position, point.fid), ha="center", va="bottom", fontsize=9)

    recalls = [p.recall for p in study.points]
    precisions = [p.precision for p in study.points]
    if study.axis:
        pr_axes.plot(recalls, precisions, color=COLOURS[0], alpha=0.5)
    pr_axes.scatter(recalls, precisions, color=COLOURS[0], zorder=3)
    pr_axes.scatter([study.floor.recall], [study.floor.precision], color=FLOOR_COLOUR, marker="s", zorder=3)
    for point, label in zip(study.points, labels):
        pr_axes.annotate(label, (point.recall, point.precision), textcoords="offset points", xytext=(5, 4), fontsize=9)
    pr_axes.annotate(
        "floor", (study.floor.recall, study.floor.precision), textcoords="offset points", xytext=(5, -11), fontsize=9
    )
    pr_axes.set_xlim(-0.03, 1.08)
    pr_axes.set_ylim(-0.03, 1.08)
    pr_axes.set_xlabel("recall (variety: reference covered)", fontsize=FONT_SIZE)
    pr_axes.set_ylabel("precision (fidelity: on the reference)", fontsize=FONT_SIZE)
    pr_axes.set_title(f"Precision and recall (k = {NEIGHBOURS})", fontsize=FONT_SIZE)
    pr_axes.grid(alpha=0.3)
    figure.suptitle(study.title, fontsize=FONT_SIZE + 1)
    return figure


def families_figure(table: FamilyTable) -> Figure:
    """Time per sample (log scale), image quality and variety, and text surprise per character."""
    figure = _figure(11.0, 4.0)
    time_axes, image_axes, text_axes = figure.subplots(1, 3)
    names = [row.family.replace("Autoregressive ", "AR ") for row in table.rows]
    time_axes.barh(names, [row.seconds_per_sample for row in table.rows], color=COLOURS[: len(names)])
    time_axes.set_xscale("log")
    time_axes.invert_yaxis()
    time_axes.set_xlabel("seconds a sample (log scale)", fontsize=FONT_SIZE)
    time_axes.set_title("Speed", fontsize=FONT_SIZE)

    images = [row for row in table.rows if row.diversity_measure == "recall"]
    positions = range(len(images))
    image_axes.bar(positions, [row.quality for row in images], color=COLOURS[0])
    image_axes.set_xticks(list(positions), [row.family for row in images], fontsize=9)
    image_axes.set_ylabel("FID (lower is better)", fontsize=FONT_SIZE, color=COLOURS[0])
    recall_axes = image_axes.twinx()
    recall_axes.plot(list(positions), [row.diversity for row in images], "o", color=COLOURS[1], markersize=9)
    recall_axes.set_ylim(0, 1.05)
    recall_axes.set_ylabel("recall (dots)", fontsize=FONT_SIZE, color=COLOURS[1])
    image_axes.set_title(f"Images: quality and variety ({table.images} a set)", fontsize=FONT_SIZE)

    texts = [row for row in table.rows if row.diversity_measure != "recall"]
    text_axes.bar(range(len(texts)), [row.bits_per_character for row in texts], color=COLOURS[2])
    text_axes.set_xticks(list(range(len(texts))), [row.family.split("(")[-1].rstrip(")") for row in texts], fontsize=9)
    text_axes.set_ylabel("bits a character (lower is better)", fontsize=FONT_SIZE)
    text_axes.set_title("Text: held-out surprise", fontsize=FONT_SIZE)
    return figure


def save_figure(figure: Figure, path: Path) -> Path:
    figure.savefig(path, format="png", dpi=100)
    return path
