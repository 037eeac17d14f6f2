"""Inside the transformer: /attention and /perplexity through a launched app and their parts in-process (SmolLM2-135M),
and streaming decode speed alone and right after an attention capture.

Comparisons run side by side (a plain forward pass and the capture in alternating pairs; decoding alone, after a
capture and alone again in triples) and the figure is the median of the ratios: on 2 shared cores the speed of the
machine changes from one second to the next, and only runs side by side compare.
"""

from __future__ import annotations

import functools
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from benchmarks.timing import format_seconds, median_seconds
from pipelines.core import registry
from pipelines.text import inspection
from pipelines.text.generation import SamplingSettings
from pipelines.text.ngram import NgramModel
from pipelines.text.options import MAX_ATTENTION_TOKENS
from pipelines.text.sample_texts import SAMPLE_TEXTS
from tools.app_process import launched_app

REPO_ROOT = Path(__file__).resolve().parent.parent
PROMPT = "Write a short poem about the sea."  # the tab's default prompt
PARAGRAPH = SAMPLE_TEXTS["The sea"].split("\n\n")[0]
PAGE = SAMPLE_TEXTS["The sea"]
DECODE_TOKENS = 48
DECODE_TRIPLES = 7
PAIRS = 5


def paired(first: Callable[[], float], second: Callable[[], float], pairs: int = PAIRS) -> tuple[float, float, float]:
    """Medians of two measurements taken in alternating pairs, and the median of second / first over the pairs."""
    firsts, seconds = [], []
    for pair in range(pairs):
        if pair % 2:
            seconds.append(second())
            firsts.append(first())
        else:
            firsts.append(first())
            seconds.append(second())
    ratios = [b / a for a, b in zip(firsts, seconds)]
    return statistics.median(firsts), statistics.median(seconds), statistics.median(ratios)


def seconds_of(function: Callable[[], object]) -> Callable[[], float]:
    def timed() -> float:
        start = time.perf_counter()
        function()
        return time.perf_counter() - start

    return timed


def decode_rate(generator, settings: SamplingSettings) -> float:
    generation = generator.generate(PROMPT, settings)
    return (len(generation.new_ids) - 1) / (generation.seconds - generation.first_token_seconds)


def hook_count(model) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def run() -> str:
    load_before = os.getloadavg()[0]
    generator = registry.load("smollm2-135m")
    answer = generator.generate(PROMPT, SamplingSettings(max_new_tokens=128, temperature=0.7, seed=42)).text
    prompt_tokens = len(inspection.attention_input_ids(generator, PROMPT))
    long_answer_ids = generator.tokenizer(" " + PAGE, add_special_tokens=False)["input_ids"]
    long_answer = generator.tokenizer.decode(long_answer_ids[: MAX_ATTENTION_TOKENS - prompt_tokens - 2])
    texts = {
        "the default prompt alone": "",
        "the default prompt and its answer (the tab's defaults, seed 42)": answer,
        f"the default prompt and a long answer (near the {MAX_ATTENTION_TOKENS}-token limit)": long_answer,
    }

    rows = []
    for label, text in texts.items():
        ids = inspection.attention_input_ids(generator, PROMPT, text)
        capture = inspection.capture_attention(generator, ids, 2)

        def plain_forward(ids=ids) -> None:
            with torch.inference_mode():
                generator.model(input_ids=torch.tensor([ids], device=generator.device))

        forward, hooked, ratio = paired(
            seconds_of(plain_forward), seconds_of(functools.partial(inspection.capture_attention, generator, ids, 2))
        )
        drawing = {
            "recompute every head": median_seconds(functools.partial(inspection.recompute_head, capture, 0)),
            "heat-map": median_seconds(
                functools.partial(inspection.draw_attention_map, capture.tokens, capture.head_weights(0), "x")
            ),
            "grid of 9 heads": median_seconds(functools.partial(inspection.draw_head_grid, capture)),
        }
        rows.append(
            (
                f"in-process, {label} ({len(ids)} tokens)",
                f"forward pass {format_seconds(forward)}; capture (the same with hooks and one layer's weights) "
                f"{format_seconds(hooked)}, ×{ratio:.2f}; "
                + ", ".join(f"{name} {format_seconds(seconds)}" for name, seconds in drawing.items()),
            )
        )
    ngram = NgramModel.fit(PAGE, 5).with_order(3)
    for label, text in (("a paragraph", PARAGRAPH), ("a page", PAGE)):
        seconds = median_seconds(functools.partial(inspection.transformer_perplexity, generator, text))
        ngram_seconds = median_seconds(functools.partial(inspection.ngram_perplexity, ngram, text))
        tokens = len(inspection.transformer_perplexity(generator, text).tokens)
        rows.append(
            (
                f"in-process perplexity of {label} ({len(text):,} characters, {tokens} tokens)",
                f"transformer {format_seconds(seconds)}, n-gram (n = 3) {format_seconds(ngram_seconds)}",
            )
        )

    from gradio_client import Client

    with launched_app([sys.executable, "app.py"], REPO_ROOT / "artifacts" / "bench_text_inspection.log") as url:
        client = Client(url, verbose=False)
        for label, text in texts.items():
            call = functools.partial(client.predict, prompt=PROMPT, answer=text, api_name="/attention")
            rows.append((f"`/attention` through the app, {label} (layer 2, mean of heads)", median_seconds(call)))
        for label, text in (("a paragraph", PARAGRAPH), ("a page", PAGE)):
            call = functools.partial(client.predict, text=text, api_name="/perplexity")
            rows.append((f"`/perplexity` through the app, {label} ({len(text):,} characters)", median_seconds(call)))

    # Streaming decode alone, right after an attention capture (hooks registered, then removed), and alone again:
    # the two "alone" runs of each triple show how much the machine's speed swings by itself.
    greedy = SamplingSettings(max_new_tokens=DECODE_TOKENS, temperature=0, repetition_penalty=1.0)
    ids = inspection.attention_input_ids(generator, PROMPT, answer)
    decode_rate(generator, SamplingSettings(max_new_tokens=8, temperature=0))  # warm-up
    triples = []
    for _ in range(DECODE_TRIPLES):
        alone = decode_rate(generator, greedy)
        inspection.capture_attention(generator, ids, 2)
        triples.append((alone, decode_rate(generator, greedy), decode_rate(generator, greedy)))
    rows.append(
        (
            f"streamed greedy decode, {DECODE_TOKENS} tokens, {DECODE_TRIPLES} triples",
            f"{statistics.median(t[0] for t in triples):.1f} tokens/s alone, "
            f"{statistics.median(t[1] for t in triples):.1f} right after an attention capture, "
            f"{statistics.median(t[2] for t in triples):.1f} alone again; after / alone "
            f"×{statistics.median(t[1] / t[0] for t in triples):.2f}, alone again / alone "
            f"×{statistics.median(t[2] / t[0] for t in triples):.2f} (the noise)",
        )
    )
    load_after = os.getloadavg()[0]
    untouched = hook_count(generator.model) == 0 and generator.model.config._attn_implementation == "sdpa"

    lines = [
        f"## Inside the transformer: attention, perplexity (SmolLM2-135M-Instruct, {generator.precisions[0]} weights)",
        "",
        "Through the app: a `gradio_client` call on a freshly launched app, after one warm-up, median of 5 (the "
        "attention call returns the JSON, two PNG heat-maps, the token view and the recompute panel). In-process: "
        f"median of 5 after a warm-up; comparisons (×) are medians of side-by-side ratios. The "
        f"1-minute load average was {load_before:.1f} at the start and {load_after:.1f} at the end of this run "
        "(2 cores): absolute figures swing with it, so compare within a row.",
        "",
        "| what | figure |",
        "| --- | --- |",
        *[f"| {what} | {figure if isinstance(figure, str) else format_seconds(figure)} |" for what, figure in rows],
        "",
        "After the captures the model has no hooks left and still runs its sdpa attention: "
        f"{'yes' if untouched else 'NO'}.",
    ]
    return "\n".join(lines)
