"""Plots of the studies and the families table: matplotlib figures (no pyplot, so threads never share state), one
panel a figure so that a wide screen shows them side by side and a phone one above the other, written as PNG files
for the tab and for the shipped defaults in weights/evaluation/."""

from __future__ import annotations

import textwrap
from pathlib import Path

from matplotlib.figure import Figure

from pipelines.evaluation.families import FamilyTable
from pipelines.evaluation.options import NEIGHBOURS
from pipelines.evaluation.studies import Study, short_label

FLOOR_COLOUR = "#7f7f7f"
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b")
FONT_SIZE = 12  # readable on a projector, and on a phone where a panel is shown about 350 px wide
SMALL = 10


def _figure(width: float = 5.6, height: float = 4.4) -> Figure:
    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _wrapped(label: str, width: int = 12) -> str:
    return "\n".join(textwrap.wrap(label, width, break_long_words=False)) or label


def fid_figure(study: Study) -> Figure:
    """FID of each set: lower is closer to the reference; the floor is what chance alone gives at this size."""
    figure = _figure()
    axes = figure.subplots()
    labels = [short_label(study, point) for point in study.points]
    positions = list(range(len(study.points)))
    bars = axes.bar(positions, [p.fid for p in study.points], color=COLOURS[0])
    axes.bar_label(bars, fmt="%.0f", fontsize=SMALL)
    axes.axhline(study.floor.fid, color=FLOOR_COLOUR, linestyle="--", label=f"floor: {study.floor.label}")
    axes.set_xticks(positions, [_wrapped(label) for label in labels], fontsize=SMALL)
    axes.set_ylabel("FID (lower = closer)", fontsize=FONT_SIZE)
    axes.set_xlabel(study.axis, fontsize=FONT_SIZE)
    axes.set_ylim(0, 1.25 * max(p.fid for p in [*study.points, study.floor]))
    axes.set_title(f"FID, {study.images_per_set} images a set", fontsize=FONT_SIZE)
    axes.legend(fontsize=SMALL, loc="upper right")
    return figure


def precision_recall_figure(study: Study) -> Figure:
    """Precision against recall: top right is best; low truncation or strong guidance move points up and left."""
    figure = _figure()
    axes = figure.subplots()
    recalls = [p.recall for p in study.points]
    precisions = [p.precision for p in study.points]
    if study.axis:
        axes.plot(recalls, precisions, color=COLOURS[0], alpha=0.5)
    axes.scatter(recalls, precisions, color=COLOURS[0], zorder=3, s=40)
    # Points at the same place share one label; labels near the right edge go to the left of their point.
    named: dict[tuple[float, float], list[str]] = {}
    for point in study.points:
        named.setdefault((point.recall, point.precision), []).append(short_label(study, point))
    if study.floor not in study.points:
        axes.scatter([study.floor.recall], [study.floor.precision], color=FLOOR_COLOUR, marker="s", zorder=3, s=40)
        named.setdefault((study.floor.recall, study.floor.precision), []).append("floor")
    placed: list[tuple[float, float, int]] = []  # (recall, precision, vertical offset) of the labels so far
    for (recall, precision), names in named.items():
        left, below = recall > 0.6, names == ["floor"]  # the floor's label under its marker, clear of the curve's
        rise = -14 if below else 4
        while any(abs(recall - r) < 0.1 and abs(precision - p) < 0.05 and rise == o for r, p, o in placed):
            rise += 13  # a neighbour's label is there already: this one goes a line higher
        placed.append((recall, precision, rise))
        axes.annotate(
            _wrapped(", ".join(names), 24),
            (recall, precision),
            textcoords="offset points",
            xytext=(-6 if left else 6, rise),
            ha="right" if left else "left",
            fontsize=SMALL,
            color=FLOOR_COLOUR if below else "black",
        )
    axes.set_xlim(-0.03, 1.05)
    axes.set_ylim(-0.03, 1.08)
    axes.set_xlabel("recall (variety: reference covered)", fontsize=FONT_SIZE)
    axes.set_ylabel("precision (fidelity)", fontsize=FONT_SIZE)
    axes.set_title(f"Precision and recall (k = {NEIGHBOURS})", fontsize=FONT_SIZE)
    axes.grid(alpha=0.3)
    return figure


def study_figures(study: Study) -> dict[str, Figure]:
    """The study's panels by name: "fid" and "precision-recall"."""
    return {"fid": fid_figure(study), "precision-recall": precision_recall_figure(study)}


def _short_family(name: str) -> str:
    return name.replace("Autoregressive ", "AR ")


def families_figures(table: FamilyTable) -> dict[str, Figure]:
    """Time per sample (log scale), image quality and variety, and text surprise per character."""
    speed = _figure(4.6, 4.0)
    axes = speed.subplots()
    names = [_short_family(row.family) for row in table.rows]
    bars = axes.barh(names, [row.seconds_per_sample for row in table.rows], color=COLOURS[: len(names)])
    axes.bar_label(bars, labels=[_seconds(row.seconds_per_sample) for row in table.rows], fontsize=SMALL, padding=3)
    axes.set_xscale("log")
    axes.set_xlim(right=axes.get_xlim()[1] * 30)  # room for the labels
    axes.invert_yaxis()
    axes.tick_params(labelsize=SMALL)
    axes.set_xlabel("seconds a sample (log scale)", fontsize=FONT_SIZE)
    axes.set_title("Speed", fontsize=FONT_SIZE)

    quality = _figure(4.6, 4.0)
    axes = quality.subplots()
    images = [row for row in table.rows if row.diversity_measure == "recall"]
    positions = list(range(len(images)))
    bars = axes.bar(positions, [row.quality for row in images], color=COLOURS[0])
    axes.bar_label(bars, fmt="%.0f", fontsize=SMALL)
    axes.set_xticks(positions, [row.family for row in images], fontsize=SMALL)
    axes.set_ylabel("FID, own reference (bars)", fontsize=FONT_SIZE, color=COLOURS[0])
    axes.set_ylim(0, 1.15 * max(row.quality for row in images))
    recall_axes = axes.twinx()
    recall_axes.plot(positions, [row.diversity for row in images], "o", color=COLOURS[1], markersize=10)
    recall_axes.set_ylim(-0.02, 1.05)
    recall_axes.set_ylabel("recall (dots)", fontsize=FONT_SIZE, color=COLOURS[1])
    axes.set_title(f"Images: quality and variety ({table.images} a set)", fontsize=FONT_SIZE)

    text = _figure(4.6, 4.0)
    axes = text.subplots()
    texts = [row for row in table.rows if row.bits_per_character is not None]
    bars = axes.bar(range(len(texts)), [row.bits_per_character for row in texts], color=COLOURS[2])
    axes.bar_label(bars, fmt="%.2f", fontsize=SMALL)
    labels = [row.family.split("(")[-1].rstrip(")") for row in texts]
    axes.set_xticks(list(range(len(texts))), labels, fontsize=SMALL)
    axes.set_ylabel("bits a character (lower = less surprised)", fontsize=FONT_SIZE)
    axes.set_title("Text: surprise at held-out text", fontsize=FONT_SIZE)
    return {"speed": speed, "images": quality, "text": text}


def _seconds(value: float) -> str:
    if value < 1e-3:
        return f"{value * 1e6:.0f} µs"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.1f} s"


def save_figures(figures: dict[str, Figure], stem: Path) -> list[Path]:
    """Each figure as `<stem>-<name>.png`; the paths in the figures' order."""
    paths = []
    for name, figure in figures.items():
        path = stem.with_name(f"{stem.name}-{name}.png")
        figure.savefig(path, format="png", dpi=100)
        paths.append(path)
    return paths
