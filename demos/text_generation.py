"""Text Generation tab: a real LM streams its answer and shows why it chose each token; an n-gram model beside it."""

from __future__ import annotations

import functools

import gradio as gr

from demos import common, validation
from pipelines.core import registry
from pipelines.text.generation import Generation, SamplingSettings, TextGenerator, TokenChoice
from pipelines.text.ngram import END_OF_TEXT, MAX_ORDER, NgramModel, join_words, split_words
from pipelines.text.options import (
    BUILTIN_MODEL,
    MAX_CORPUS_BYTES,
    MAX_NEW_TOKENS,
    MODES,
    NGRAM_ORDER,
    NGRAM_WORDS,
    REPETITION_PENALTY,
    TEMPERATURE,
    TOP_K,
    TOP_P,
)
from pipelines.text.sample_texts import SAMPLE_TEXTS

TAB_TITLE = "Text Generation"
TAB_ID = "text-generation"
# One generation at a time on the model, shared by every event that runs it; others wait in the queue.
CONCURRENCY = common.concurrency("text-lm", 1)

CANDIDATE_ROWS = 12
OWN_TEXT = "(your own text)"

# Probability bands for colouring tokens; readable from the back of a room.
BANDS = (
    (0.9, "very likely (≥ 90%)", "#2e7d32"),
    (0.5, "likely (50–90%)", "#9ccc65"),
    (0.1, "unsure (10–50%)", "#ffb300"),
    (0.0, "surprising (< 10%)", "#e53935"),
)

HOW_IT_WORKS = """
### The transformer
- **One token at a time.** The model reads the prompt, scores every one of its 49,152 tokens as the
  possible next one, picks one, appends it and repeats. That is all "writing" is for a language model.
- **Attention instead of counting.** An n-gram model only sees the last n−1 words and can only repeat
  continuations it has counted. A transformer weighs *every* earlier token (softmax of query·key scores
  weighting the values) and learned its scores from billions of words, so it generalises to new text.
- **Sampling controls.** *Temperature* divides the scores before the softmax: 0 always takes the top
  token (greedy), higher values flatten the distribution. *Top-k* keeps only the k best tokens, *top-p*
  the smallest set whose probabilities add up to p. *Repetition penalty* lowers tokens already used.
  The same seed and settings always give the same text.
- **Look inside** shows the probability the model itself gave each token (before temperature and the
  other controls reshaped it): red tokens were surprising picks, green ones near-certain.
- **This model.** SmolLM2-135M-Instruct (Hugging Face, Apache-2.0), 135 M parameters, 30 layers, a
  context of 8,192 tokens, shipped here as a 4-bit GGUF file and run with transformers.

### The n-gram model
Count, in the corpus, which word follows each run of **n − 1** words; to write, look at the last n − 1
words and draw the next one in proportion to those counts. If that context never occurred, **back off**
to the last n − 2 words, and so on down to plain word frequencies. n = 1 ignores context, n = 2 knows
one word back, n = 5 mostly recites the corpus. Watch the model size: almost every long context is new,
so the number of contexts grows with n (in principle like V^(n−1) for a vocabulary of V words).
"""


# ---------------------------------------------------------------------------------------------
# Transformer


def _sampling_settings(max_new_tokens, temperature, top_p, seed, top_k, repetition_penalty, mode) -> SamplingSettings:
    if mode not in MODES:
        raise gr.Error(f"mode must be 'Chat' or 'Completion' (got {mode!r}).")
    return SamplingSettings(
        max_new_tokens=validation.in_range(max_new_tokens, MAX_NEW_TOKENS, "max_new_tokens"),
        temperature=validation.in_range(temperature, TEMPERATURE, "temperature"),
        top_k=validation.in_range(top_k, TOP_K, "top_k"),
        top_p=validation.in_range(top_p, TOP_P, "top_p"),
        repetition_penalty=validation.in_range(repetition_penalty, REPETITION_PENALTY, "repetition_penalty"),
        seed=validation.seed(seed, "seed"),
        chat=mode == "Chat",
    )


def _text_generator(model: str) -> TextGenerator:
    model = registry.MODELS.canonical_id(model)
    allowed = [model_id for _, model_id in registry.choices("text")]
    if model not in allowed:
        raise gr.Error(f"Unknown model {model!r}. The models this app allows are: {', '.join(allowed)}.")
    if not registry.is_loaded(model):
        gr.Info(
            "Loading the model: a few seconds, or about a minute the very first time "
            "(its 4-bit file is converted once)."
            if model == BUILTIN_MODEL
            else f"Loading {model}: it is downloaded from the Hugging Face Hub on first use."
        )
    return registry.load(model)


def _check_prompt(prompt) -> str:
    if not validation.text(prompt, "The prompt").strip():
        raise gr.Error("The prompt is empty: type at least one word.")
    return prompt


def generate_text(
    prompt: str,
    max_new_tokens: int = MAX_NEW_TOKENS.default,
    temperature: float = TEMPERATURE.default,
    top_p: float = TOP_P.default,
    seed: int = 42,
    top_k: int = TOP_K.default,
    repetition_penalty: float = REPETITION_PENALTY.default,
    mode: str = "Chat",
    model: str = BUILTIN_MODEL,
):
    """Stream the model's answer; the last yield is the full text (what API callers receive) and, for the
    look-inside view, the model that wrote it with the generation."""
    prompt = _check_prompt(prompt)
    settings = _sampling_settings(max_new_tokens, temperature, top_p, seed, top_k, repetition_penalty, mode)
    generator = _text_generator(model)
    generation = None
    for generation in generator.stream(prompt, settings):
        yield generation.text, gr.skip()
    yield generation.text, (registry.MODELS.canonical_id(model), generation)


def _band(probability: float) -> str:
    return next(label for floor, label, _ in BANDS if probability >= floor)


def _visible(token: str) -> str:
    """A token as a table cell: spaces and line breaks made visible."""
    return token.replace(" ", "␣").replace("\n", "↵")


def _alternatives_table(choices: list[TokenChoice], position) -> list[list]:
    if not choices:
        return []
    index = min(max(int(position or 1), 1), len(choices)) - 1
    chosen = choices[index]
    rows = [
        [rank, _visible(text), f"{probability:.1%}", "◀ chosen" if text == chosen.text else ""]
        for rank, (text, probability) in enumerate(chosen.alternatives, start=1)
    ]
    if all(text != chosen.text for text, _ in chosen.alternatives):
        rows.append(["…", _visible(chosen.text), f"{chosen.probability:.2%}", "◀ chosen"])
    return rows


def look_inside(run: tuple[str, Generation] | None):
    """Colour each generated token by its probability and show the alternatives of the most surprising one."""
    if run is None or not run[1].new_ids:
        return "", [], gr.update(maximum=2, value=1, interactive=False), [], []
    model, generation = run
    choices = _text_generator(model).explain(generation)
    tokens = len(generation.new_ids)
    rate = tokens / generation.seconds if generation.seconds else 0.0
    first = (
        f", first token after {generation.first_token_seconds * 1000:.0f} ms" if generation.first_token_seconds else ""
    )
    summary = [
        f"**{generation.model_name}** wrote {tokens} tokens in {generation.seconds:.1f} s ({rate:.1f} tokens/s{first})."
    ]
    summary += [f"⚠️ {note}" for note in generation.notes]
    highlighted = [(choice.text, _band(choice.probability)) for choice in choices]
    surprising = 1 + min(range(len(choices)), key=lambda i: choices[i].probability)
    # A slider needs maximum > minimum; a one-token answer keeps 2 and the table clamps to the last token.
    slider = gr.update(maximum=max(2, len(choices)), value=surprising, interactive=len(choices) > 1)
    return "\n\n".join(summary), highlighted, slider, _alternatives_table(choices, surprising), choices


def pick_token(evt: gr.SelectData) -> int:
    return int(evt.index) + 1


# ---------------------------------------------------------------------------------------------
# n-gram


def _shown_word(word: str) -> str:
    return "(end of text)" if word == END_OF_TEXT else word


@functools.lru_cache(maxsize=4)  # a 1 MB corpus counted up to 5-grams takes a few hundred MB
def _fitted_up_to_5(corpus: str) -> NgramModel:
    """One count of the corpus serves every n: the 5-gram model holds all shorter models."""
    return NgramModel.fit(corpus, MAX_ORDER)


def _sizes_by_order(corpus: str) -> str:
    rows = ["| n | distinct contexts (n−1 words) | distinct n-grams |", "| --- | --- | --- |"]
    for n in range(NGRAM_ORDER.low, NGRAM_ORDER.high + 1):
        model = _fitted_up_to_5(corpus).with_order(n)
        rows.append(f"| {n} | {model.distinct_contexts:,} | {model.distinct_ngrams:,} |")
    return "\n".join(rows)


def _check_corpus(corpus) -> str:
    if not split_words(validation.text(corpus, "The corpus")):
        raise gr.Error("The corpus is empty: paste some text or pick a sample text.")
    size = len(corpus.encode("utf-8"))
    if size > MAX_CORPUS_BYTES:
        raise gr.Error(f"The corpus is {size / 1e6:.2f} MB, over the 1 MB limit: paste a shorter text.")
    return corpus


def ngram_generate(
    corpus: str, n: int = NGRAM_ORDER.default, prompt: str = "The", max_words: int = NGRAM_WORDS.default, seed: int = 42
):
    """Continue the prompt with an n-gram model counted from the corpus; returns the continuation first."""
    corpus = _check_corpus(corpus)
    n = validation.in_range(n, NGRAM_ORDER, "n")
    prompt = _check_prompt(prompt)
    max_words = validation.in_range(max_words, NGRAM_WORDS, "max_words")
    seed = validation.seed(seed, "seed")
    model = _fitted_up_to_5(corpus).with_order(n)
    generation = model.generate(prompt, max_words, seed)
    history = split_words(prompt) + generation.words
    table, used = model.next_word_probabilities(history)
    context = " ".join(history[len(history) - used :]) if used else "(no context: plain word frequencies)"
    candidates = [[_shown_word(word), f"{p:.1%}"] for word, p in table[:CANDIDATE_ROWS]]
    if len(table) > CANDIDATE_ROWS:
        candidates.append([f"… {len(table) - CANDIDATE_ROWS} more", f"{sum(p for _, p in table[CANDIDATE_ROWS:]):.1%}"])
    notes = [
        f"**Model size** (n = {n}): {model.distinct_contexts:,} distinct contexts, "
        f"{model.distinct_ngrams:,} distinct n-grams, vocabulary of {model.vocabulary_size:,} words.",
        f"**Next word after:** “{context}”",
    ]
    if generation.backoffs:
        notes.append(f"Backed off to a shorter context for {generation.backoffs} of {len(generation.words)} words.")
    if generation.ended:
        notes.append("Stopped early: the model reached the end of the corpus, where nothing follows.")
    notes.append(_sizes_by_order(corpus))
    return generation.text, candidates, "\n\n".join(notes)


def compare_models(
    prompt: str,
    corpus: str,
    n: int,
    max_new_tokens: int,
    temperature: float,
    top_p: float,
    seed: int,
    top_k: int,
    repetition_penalty: float,
    model: str,
):
    """The same prompt continued by the n-gram model (instantly) and the transformer (streamed, completion mode).

    Both outputs are the prompt followed by the model's continuation, so they read side by side.
    """
    # Checked before int(): "abc", NaN or None would otherwise crash with no message for the user.
    max_new_tokens = validation.in_range(max_new_tokens, MAX_NEW_TOKENS, "max_new_tokens")
    ngram_text, _, _ = ngram_generate(corpus, n, prompt, min(max_new_tokens, NGRAM_WORDS.high), seed)
    ngram_full = join_words(split_words(prompt) + split_words(ngram_text))
    yield ngram_full, prompt
    arguments = (max_new_tokens, temperature, top_p, seed, top_k, repetition_penalty, "Completion", model)
    for text, _ in generate_text(prompt, *arguments):
        yield ngram_full, prompt + text


def use_sample(name: str):
    return SAMPLE_TEXTS.get(name, gr.skip())


# ---------------------------------------------------------------------------------------------
# Layout


def build() -> None:
    gr.Markdown(
        "A language model writes **one token at a time**, each time choosing from a probability distribution "
        "over what comes next. Watch a real transformer do it, see how sure it was of each token, and compare "
        "with an n-gram model that only counts words."
    )
    run_state = gr.State(None)
    choices_state = gr.State([])

    with gr.Tab("Transformer"):
        with gr.Row():
            with gr.Column(scale=2):
                prompt = gr.Textbox(
                    label="Prompt", lines=3, value="Write a short poem about the sea.", elem_id="text-prompt"
                )
                with gr.Row():
                    generate_button = gr.Button("Generate", variant="primary", elem_id="text-generate")
                    stop_button = gr.Button("Stop", variant="stop", elem_id="text-stop")
                output = gr.Textbox(label="Model output (streamed)", lines=8, interactive=False, elem_id="text-output")
                status = gr.Markdown(elem_id="text-status")
            with gr.Column(scale=1):
                model = common.model_menu("text", BUILTIN_MODEL)
                mode = gr.Radio(
                    list(MODES),
                    value="Chat",
                    label="Mode",
                    elem_id="text-mode",
                    info="Chat wraps the prompt in the model's chat template; Completion continues it as is.",
                )
                max_new_tokens = common.slider(MAX_NEW_TOKENS, "max_new_tokens", elem_id="text-max-new-tokens")
                temperature = common.slider(TEMPERATURE, "temperature (0 = greedy)")
                top_k = common.slider(TOP_K, "top_k (0 = off)")
                top_p = common.slider(TOP_P, "top_p")
                repetition_penalty = common.slider(REPETITION_PENALTY, "repetition_penalty")
                seed = common.seed_row(42, "seed")
        with gr.Accordion("Look inside: how sure was the model of each token?", open=True):
            highlighted = gr.HighlightedText(
                label="Generated tokens coloured by the probability the model gave them (click a token)",
                color_map={label: colour for _, label, colour in BANDS},
                show_legend=True,
                combine_adjacent=False,
                show_inline_category=False,
                elem_id="text-look-inside",
            )
            with gr.Row():
                position = validation.CheckedSlider(
                    1, 2, value=1, step=1, label="Token position", scale=1, interactive=False, elem_id="text-position"
                )
                alternatives = gr.Dataframe(
                    headers=["rank", "token", "probability", ""],
                    label="Top-5 tokens the model considered here",
                    interactive=False,
                    scale=2,
                    elem_id="text-alternatives",
                )

    with gr.Tab("n-gram model"):
        with gr.Row():
            with gr.Column(scale=2):
                sample = gr.Dropdown(
                    [*SAMPLE_TEXTS, OWN_TEXT], value="The sea", label="Sample text", elem_id="ngram-sample"
                )
                corpus = gr.Textbox(label="Corpus (up to 1 MB)", lines=8, value=SAMPLE_TEXTS["The sea"])
            with gr.Column(scale=1):
                n = common.slider(NGRAM_ORDER, "n (words of context + 1)")
                ngram_prompt = gr.Textbox(label="Prompt", value="The sea")
                max_words = common.slider(NGRAM_WORDS, "max_words")
                ngram_seed = common.seed_row(42, "seed")
                ngram_button = gr.Button("Generate", variant="primary", elem_id="ngram-generate")
        ngram_output = gr.Textbox(label="n-gram continuation", lines=4, interactive=False, elem_id="ngram-output")
        with gr.Row():
            candidates = gr.Dataframe(
                headers=["next word", "probability"], label="Candidates for the next word", interactive=False, scale=1
            )
            ngram_info = gr.Markdown(elem_id="ngram-info")

    with gr.Tab("Side by side"):
        gr.Markdown(
            "The same prompt continued by the n-gram model (with the corpus and n of its tab) and by the "
            "transformer (with the settings of its tab, in Completion mode so both simply continue the text). "
            "The n-gram model can only stitch together pieces of its corpus; the transformer writes new sentences."
        )
        compare_prompt = gr.Textbox(label="Prompt", value="At night the sea")
        with gr.Row():
            compare_button = gr.Button("Compare", variant="primary")
            compare_stop = gr.Button("Stop", variant="stop")
        with gr.Row():
            compare_ngram = gr.Textbox(label="n-gram model", lines=8, interactive=False)
            compare_transformer = gr.Textbox(label="Transformer", lines=8, interactive=False)

    transformer_controls = [max_new_tokens, temperature, top_p, seed, top_k, repetition_penalty, mode, model]
    generation_event = generate_button.click(
        generate_text, [prompt, *transformer_controls], [output, run_state], api_name="generate_text", **CONCURRENCY
    )
    generation_event.then(
        look_inside,
        run_state,
        [status, highlighted, position, alternatives, choices_state],
        api_visibility="private",
        **CONCURRENCY,
    )
    # The previous run's look-inside would describe other text: clear it when a new run starts.
    generate_button.click(
        lambda: ("", [], []), None, [status, highlighted, alternatives], api_visibility="private", queue=False
    )
    stop_button.click(
        lambda: "Stopped. Look inside is shown for finished generations only.",
        None,
        status,
        cancels=[generation_event],
        api_visibility="private",
        queue=False,
    )
    highlighted.select(pick_token, None, position, api_visibility="private")
    position.change(_alternatives_table, [choices_state, position], alternatives, api_visibility="private")

    sample.change(use_sample, sample, corpus, api_visibility="private")
    ngram_button.click(
        ngram_generate,
        [corpus, n, ngram_prompt, max_words, ngram_seed],
        [ngram_output, candidates, ngram_info],
        api_name="ngram_generate",
    )
    compare_event = compare_button.click(
        compare_models,
        [compare_prompt, corpus, n, *transformer_controls[:-2], model],
        [compare_ngram, compare_transformer],
        api_name="compare_text",
        **CONCURRENCY,
    )
    compare_stop.click(None, cancels=[compare_event], api_visibility="private")
