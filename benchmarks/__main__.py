"""Run the benchmark sections and write BENCHMARKS.md (machine and date noted in each section).

`python -m benchmarks` runs them all; `python -m benchmarks benchmarks.bench_gan` re-measures one section
and keeps the others as they were.
"""

from __future__ import annotations

import datetime
import importlib
import os
import platform
import re
import sys
from pathlib import Path

import torch

# Each module has `run() -> str`, returning a Markdown section measured on this machine.
SECTIONS = [
    "benchmarks.bench_app",
    "benchmarks.bench_text_to_image",
    "benchmarks.bench_diffusion_lab",
    "benchmarks.bench_gan",
    "benchmarks.bench_vae",
    "benchmarks.bench_text",
    "benchmarks.bench_text_inspection",
    "benchmarks.bench_training",
    "benchmarks.bench_evaluation",
    "benchmarks.bench_faults",
    "benchmarks.loadtest",
    "benchmarks.loadtest_cluster",
]
OUTPUT = Path(__file__).resolve().parent.parent / "BENCHMARKS.md"
HEADER = """# Benchmarks

Written by `make bench` (`python -m benchmarks`); each section says when and on what it was measured.
Figures are medians of several runs unless a row says otherwise. No GPU figures: none was measured."""


def machine_description() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return (
        f"{cpu}, {os.cpu_count()} cores, GPU: {gpu}; Python {platform.python_version()}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} torch threads"
    )


def previous_sections() -> dict[str, str]:
    """Sections already in BENCHMARKS.md, by module name (between `<!-- module -->` markers)."""
    if not OUTPUT.exists():
        return {}
    found = re.findall(r"<!-- (benchmarks\.\w+) -->\n(.*?)\n<!-- end \1 -->", OUTPUT.read_text(), re.S)
    return dict(found)


def main() -> None:
    chosen = sys.argv[1:] or SECTIONS
    unknown = set(chosen) - set(SECTIONS)
    if unknown:
        raise SystemExit(f"unknown sections {sorted(unknown)}; choose from {SECTIONS}")
    sections = previous_sections()
    for name in chosen:
        print(f"running {name} ...", flush=True)
        stamp = f"*Measured {datetime.date.today().isoformat()} on {machine_description()}.*"
        section = importlib.import_module(name).run().strip()
        title, _, body = section.partition("\n")
        sections[name] = f"{title}\n\n{stamp}\n{body}"
        written = [f"<!-- {n} -->\n{sections[n]}\n<!-- end {n} -->" for n in SECTIONS if n in sections]
        OUTPUT.write_text("\n\n".join([HEADER, *written]) + "\n")  # after each, so a crash keeps the rest
    print(OUTPUT.read_text())


if __name__ == "__main__":
    main()
