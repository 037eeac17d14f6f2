"""Text Generation tab: a real LM streams its answer and shows why it chose each token; an n-gram model beside it."""

from __future__ import annotations

import functools

import gradio as gr

from demos import validation
from pipelines.ngram import END_OF_TEXT, MAX_ORDER, MIN_ORDER, NgramModel, join_words, split_words
from pipelines.health import TEXT_LM, load_model
from pipelines.sample_texts import SAMPLE_TEXTS
from pipelines.text_generation import (
    BUILTIN_MODEL,
    MAX_NEW_TOKENS,
    Generation,
    SamplingSettings,
    TextGenerator,
    TokenChoice,
    load_text_generator,
    text_generator_is_loaded,
    text_model_choices,
)
from pipelines.weights import ModelSourceError

TAB_TITLE = "Text Generation"
TAB_ID = "text-generation"

MAX_CORPUS_BYTES = 1_000_000
MAX_WORDS = 500
CANDIDATE_ROWS = 12
OWN_TEXT = "(your own text)"
# One generation at a time on the model, shared by every event that runs it; others wait in the queue.
LM_CONCURRENCY = dict(concurrency_id="text-lm", concurrency_limit=1)

# Probability bands for colouring tokens; readable from the back of a room.
BANDS = (
    (0.9, "very likely (≥ 90%)", "#2e7d32"),
    (0.5, "likely (50–90%)", "#9ccc65"),
    (0.1, "unsure (10–50%)", "#ffb300"),
    (0.0, "surprising (< 10%)", "#e53935"),
)

HOW_IT_WORKS = """
### How it works
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
"""

NGRAM_HOW = """
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
    if mode not in ("Chat", "Completion"):
        raise gr.Error(f"mode must be 'Chat' or 'Completion' (got {mode!r}).")
    return SamplingSettings(
        max_new_tokens=validation.whole_number(max_new_tokens, "max_new_tokens", 1, MAX_NEW_TOKENS),
        temperature=validation.number_in_range(temperature, "temperature", 0.0, 2.0),
        top_k=validation.whole_number(top_k, "top_k", 0, 500),
        top_p=validation.number_in_range(top_p, "top_p", 0.01, 1.0),
        repetition_penalty=validation.number_in_range(repetition_penalty, "repetition_penalty", 1.0, 2.0),
        seed=validation.seed(seed, "seed"),
        chat=mode == "Chat",
    )


def _text_generator(model: str) -> TextGenerator:
    choices = text_model_choices()
    if model not in choices:
        raise gr.Error(f"Unknown model {model!r}. The models this app allows are: {', '.join(choices)}.")
    if not text_generator_is_loaded(model):
        gr.Info(
            "Loading the model: a few seconds, or about a minute the very first time (its 4-bit file is converted once)."
            if model == BUILTIN_MODEL
            else f"Loading {model}: it is downloaded from the Hugging Face Hub on first use."
        )
    try:
        if model == BUILTIN_MODEL:  # loaded once; switched off with a clear message if its weights fail
            return load_model(TEXT_LM)
        return load_text_generator(model)
    except ModelSourceError as error:
        raise gr.Error(str(error)) from error


def _check_prompt(prompt) -> str:
    if not validation.text(prompt, "The prompt").strip():
        raise gr.Error("The prompt is empty: type at least one word.")
    return prompt


def generate_text(
    prompt: str,
    max_new_tokens: int = 128,
    temperature: float = 0.7,
    top_p: float = 0.95,
    seed: int = 42,
    top_k: int = 50,
    repetition_penalty: float = 1.1,
    mode: str = "Chat",
    model: str = BUILTIN_MODEL,
):
    """Stream the model's answer; the last yield is the full text (what API callers receive)."""
    prompt = _check_prompt(prompt)
    settings = _sampling_settings(max_new_tokens, temperature, top_p, seed, top_k, repetition_penalty, mode)
    generator = _text_generator(model)
    generation = None
    for generation in generator.stream(prompt, settings):
        yield generation.text, gr.skip()
    yield generation.text, generation


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


def look_inside(generation: Generation | None):
    """Colour each generated token by its probability and show the alternatives of the most surprising one."""
    if generation is None or not generation.new_ids:
        return "", [], gr.update(maximum=2, value=1, interactive=False), [], []
    choices = _text_generator_for(generation).explain(generation)
    tokens = len(generation.new_ids)
    rate = tokens / generation.seconds if generation.seconds else 0.0
    first = f", first token after {generation.first_token_seconds * 1000:.0f} ms" if generation.first_token_seconds else ""
    summary = [f"**{generation.model_name}** wrote {tokens} tokens in {generation.seconds:.1f} s ({rate:.1f} tokens/s{first})."]
    summary += [f"⚠️ {note}" for note in generation.notes]
    highlighted = [(choice.text, _band(choice.probability)) for choice in choices]
    surprising = 1 + min(range(len(choices)), key=lambda i: choices[i].probability)
    # A slider needs maximum > minimum; a one-token answer keeps 2 and the table clamps to the last token.
    slider = gr.update(maximum=max(2, len(choices)), value=surprising, interactive=len(choices) > 1)
    return "\n\n".join(summary), highlighted, slider, _alternatives_table(choices, surprising), choices


def _text_generator_for(generation: Generation) -> TextGenerator:
    return _text_generator(BUILTIN_MODEL if generation.model_name == BUILTIN_MODEL else generation.model_name)


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
    for n in range(MIN_ORDER, MAX_ORDER + 1):
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


def ngram_generate(corpus: str, n: int = 2, prompt: str = "The", max_words: int = 60, seed: int = 42):
    """Continue the prompt with an n-gram model counted from the corpus; returns the continuation first."""
    corpus = _check_corpus(corpus)
    n = validation.whole_number(n, "n", MIN_ORDER, MAX_ORDER)
    prompt = _check_prompt(prompt)
    max_words = validation.whole_number(max_words, "max_words", 1, MAX_WORDS)
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
    prompt: str, corpus: str, n: int, max_new_tokens: int, temperature: float, top_p: float, seed: int,
    top_k: int, repetition_penalty: float, model: str,
):  # fmt: skip
    """The same prompt continued by the n-gram model (instantly) and the transformer (streamed, completion mode).

    Both outputs are the prompt followed by the model's continuation, so they read side by side.
    """
    # Checked before int(): "abc", NaN or None would otherwise crash with no message for the user.
    max_new_tokens = validation.whole_number(max_new_tokens, "max_new_tokens", 1, MAX_NEW_TOKENS)
    ngram_text, _, _ = ngram_generate(corpus, n, prompt, min(max_new_tokens, MAX_WORDS), seed)
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
                prompt = gr.Textbox(label="Prompt", lines=3, value="Write a short poem about the sea.", elem_id="text-prompt")
                with gr.Row():
                    generate_button = gr.Button("Generate", variant="primary", elem_id="text-generate")
                    stop_button = gr.Button("Stop", variant="stop", elem_id="text-stop")
                output = gr.Textbox(label="Model output (streamed)", lines=8, interactive=False, elem_id="text-output")
                status = gr.Markdown(elem_id="text-status")
            with gr.Column(scale=1):
                model = gr.Dropdown(text_model_choices(), value=BUILTIN_MODEL, label="Model")
                mode = gr.Radio(["Chat", "Completion"], value="Chat", label="Mode", elem_id="text-mode",
                                info="Chat wraps the prompt in the model's chat template; Completion continues it as is.")  # fmt: skip
                max_new_tokens = validation.CheckedSlider(1, MAX_NEW_TOKENS, value=128, step=1, label="max_new_tokens", elem_id="text-max-new-tokens")
                temperature = validation.CheckedSlider(0, 2, value=0.7, step=0.05, label="temperature (0 = greedy)")
                top_k = validation.CheckedSlider(0, 200, value=50, step=1, label="top_k (0 = off)")
                top_p = validation.CheckedSlider(0.01, 1, value=0.95, step=0.01, label="top_p")
                repetition_penalty = validation.CheckedSlider(1, 2, value=1.1, step=0.05, label="repetition_penalty")
                with gr.Row():
                    seed = gr.Number(value=42, label="seed", step=1, scale=3)
                    dice = gr.Button("Random seed", scale=1, min_width=80)
        with gr.Accordion("Look inside: how sure was the model of each token?", open=True):
            highlighted = gr.HighlightedText(
                label="Generated tokens coloured by the probability the model gave them (click a token)",
                color_map={label: colour for _, label, colour in BANDS},
                show_legend=True, combine_adjacent=False, show_inline_category=False, elem_id="text-look-inside",
            )  # fmt: skip
            with gr.Row():
                position = validation.CheckedSlider(
                    1, 2, value=1, step=1, label="Token position", scale=1, interactive=False, elem_id="text-position"
                )
                alternatives = gr.Dataframe(
                    headers=["rank", "token", "probability", ""], label="Top-5 tokens the model considered here",
                    interactive=False, scale=2, elem_id="text-alternatives",
                )  # fmt: skip
        gr.Markdown(HOW_IT_WORKS)

    with gr.Tab("n-gram model"):
        with gr.Row():
            with gr.Column(scale=2):
                sample = gr.Dropdown([*SAMPLE_TEXTS, OWN_TEXT], value="The sea", label="Sample text", elem_id="ngram-sample")
                corpus = gr.Textbox(label="Corpus (up to 1 MB)", lines=8, value=SAMPLE_TEXTS["The sea"])
            with gr.Column(scale=1):
                n = validation.CheckedSlider(MIN_ORDER, MAX_ORDER, value=2, step=1, label="n (words of context + 1)")
                ngram_prompt = gr.Textbox(label="Prompt", value="The sea")
                max_words = validation.CheckedSlider(1, MAX_WORDS, value=60, step=1, label="max_words")
                ngram_seed = gr.Number(value=42, label="seed", step=1)
                ngram_button = gr.Button("Generate", variant="primary", elem_id="ngram-generate")
        ngram_output = gr.Textbox(label="n-gram continuation", lines=4, interactive=False, elem_id="ngram-output")
        with gr.Row():
            candidates = gr.Dataframe(headers=["next word", "probability"], label="Candidates for the next word",
                                      interactive=False, scale=1)  # fmt: skip
            ngram_info = gr.Markdown(elem_id="ngram-info")
        gr.Markdown(NGRAM_HOW)

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
        generate_text, [prompt, *transformer_controls], [output, run_state], api_name="generate_text", **LM_CONCURRENCY
    )
    generation_event.then(
        look_inside, run_state, [status, highlighted, position, alternatives, choices_state],
        api_visibility="private", **LM_CONCURRENCY,
    )  # fmt: skip
    # The previous run's look-inside would describe other text: clear it when a new run starts.
    generate_button.click(lambda: ("", [], []), None, [status, highlighted, alternatives], api_visibility="private", queue=False)
    stop_button.click(
        lambda: "Stopped. Look inside is shown for finished generations only.", None, status,
        cancels=[generation_event], api_visibility="private", queue=False,
    )  # fmt: skip
    dice.click(validation.random_seed, outputs=seed, api_visibility="private")
    highlighted.select(pick_token, None, position, api_visibility="private")
    position.change(_alternatives_table, [choices_state, position], alternatives, api_visibility="private")

    sample.change(use_sample, sample, corpus, api_visibility="private")
    ngram_button.click(
        ngram_generate, [corpus, n, ngram_prompt, max_words, ngram_seed], [ngram_output, candidates, ngram_info],
        api_name="ngram_generate",
    )  # fmt: skip
    compare_event = compare_button.click(
        compare_models, [compare_prompt, corpus, n, *transformer_controls[:-2], model], [compare_ngram, compare_transformer],
        api_name="compare_text", **LM_CONCURRENCY,
    )  # fmt: skip
    compare_stop.click(None, cancels=[compare_event], api_visibility="private")
