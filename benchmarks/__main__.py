"""Run every benchmark section and write BENCHMARKS.md (machine and date included)."""

from __future__ import annotations

import datetime
import importlib
import os
import platform
import sys
from pathlib import Path

import torch

# Each module has `run() -> str`, returning a Markdown section measured on this machine.
SECTIONS = ["benchmarks.bench_app", "benchmarks.bench_gan", "benchmarks.bench_text", "benchmarks.bench_vae", "benchmarks.bench_text_to_image"]
OUTPUT = Path(__file__).resolve().parent.parent / "BENCHMARKS.md"


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


def main() -> None:
    only = sys.argv[1:]  # optional: section module names to run, e.g. benchmarks.bench_gan
    parts = [
        "# Benchmarks",
        "",
        f"Measured by `make bench` on {datetime.date.today().isoformat()}.",
        f"Machine: {machine_description()}.",
        "Figures are medians of several runs unless a row says otherwise.",
    ]
    for name in SECTIONS:
        if only and name not in only:
            continue
        print(f"running {name} ...", flush=True)
        parts += ["", importlib.import_module(name).run().strip()]
    OUTPUT.write_text("\n".join(parts) + "\n")
    print(OUTPUT.read_text())


if __name__ == "__main__":
    main()
