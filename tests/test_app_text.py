"""The Text Generation tab through its public API, on the running app (the real SmolLM2 model)."""

from __future__ import annotations

import pytest

from pipelines.text.ngram import split_words
from pipelines.text.sample_texts import SAMPLE_TEXTS

SEA = SAMPLE_TEXTS["The sea"]


def test_generate_text_returns_the_full_text_and_repeats_with_the_seed(client):
    arguments = dict(prompt="Name a colour.", max_new_tokens=16, temperature=0.9, seed=7, api_name="/generate_text")
    first = client.predict(**arguments)
    assert isinstance(first, str) and first.strip()
    assert client.predict(**arguments) == first


def test_generate_text_streams_and_the_last_update_is_the_result(client):
    job = client.submit(
        prompt="Once upon a time", mode="Completion", max_new_tokens=24, temperature=0, api_name="/generate_text"
    )
    final = job.result(timeout=300)
    updates = [update for update in job.outputs() if isinstance(update, str)]
    assert len(updates) >= 2 and updates[-1] == final
    assert all(later.startswith(earlier) for earlier, later in zip(updates, updates[1:]))


@pytest.mark.parametrize(
    "arguments, message",
    [
        (dict(prompt="   "), "prompt is empty"),
        (dict(prompt="hi", max_new_tokens=1025), "1024"),
        (dict(prompt="hi", model="someone/unknown-model"), "unknown-model"),
        (dict(prompt="hi", temperature=3), "2"),
    ],
)
def test_generate_text_refuses_bad_input(client, arguments, message):
    with pytest.raises(Exception, match=message):
        client.predict(**arguments, api_name="/generate_text")


def test_ngram_generate_returns_text_first_and_only_corpus_bigrams(client):
    text, candidates, info = client.predict(
        corpus=SEA, n=2, prompt="The sea", max_words=60, seed=3, api_name="/ngram_generate"
    )
    words = split_words(SEA)
    emitted = ["sea"] + split_words(text)
    assert len(emitted) > 5
    assert set(zip(emitted, emitted[1:])) <= set(zip(words, words[1:]))
    assert candidates["data"] and "distinct contexts" in info
    again = client.predict(corpus=SEA, n=2, prompt="The sea", max_words=60, seed=3, api_name="/ngram_generate")
    assert again[0] == text


@pytest.mark.parametrize(
    "arguments, message",
    [
        (dict(n=6), "5"),
        (dict(n=0), "1"),
        (dict(corpus="word " * 250_000), "1 MB"),
        (dict(corpus="   "), "corpus is empty"),
        (dict(prompt=""), "prompt is empty"),
    ],
)
def test_ngram_generate_refuses_bad_input(client, arguments, message):
    defaults = dict(corpus=SEA, n=2, prompt="The sea", max_words=10, seed=1)
    with pytest.raises(Exception, match=message):
        client.predict(**{**defaults, **arguments}, api_name="/ngram_generate")


def test_the_app_keeps_serving_after_errors(client):
    with pytest.raises(Exception, match="prompt is empty"):
        client.predict(prompt="", api_name="/generate_text")
    assert client.predict(prompt="Hi", max_new_tokens=4, temperature=0, api_name="/generate_text").strip()


def test_compare_text_continues_the_prompt_with_both_models(client):
    ngram_text, transformer_text = client.predict(
        prompt="At night the sea", corpus=SEA, n=2, max_new_tokens=12, temperature=0, api_name="/compare_text"
    )
    assert ngram_text.startswith("At night the sea ") and len(ngram_text) > len("At night the sea ")
    assert transformer_text.startswith("At night the sea") and len(transformer_text) > len("At night the sea")
