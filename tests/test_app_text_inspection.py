"""Inside the transformer through the running app's API (the real SmolLM2): /attention, /generate_text's prefix and
/perplexity."""

from __future__ import annotations

import math
import re

import pytest

from pipelines.text.options import ATTENTION_SHOWN_TOKENS, MAX_ATTENTION_TOKENS, MAX_PERPLEXITY_CHARACTERS
from pipelines.text.sample_texts import SAMPLE_TEXTS

SEA = SAMPLE_TEXTS["The sea"]
SENTENCE = "In the harbour the boats wait for the tide."
SHUFFLED = "tide harbour boats In the the for wait the."


def attention(client, **arguments) -> dict:
    data, note, *_ = client.predict(**arguments, api_name="/attention")
    assert "SmolLM2" in note
    return data


def test_attention_weights_are_causal_rows_that_add_up_to_one(client):
    data = attention(client, prompt="The cat sat on the mat.", layer=2, head=3, mode="Completion")
    tokens, weights = data["tokens"], data["weights"]
    assert "".join(tokens) == "The cat sat on the mat." and len(weights) == len(tokens)
    assert (data["layer"], data["head"], data["kv_head"]) == (2, 3, 1)  # 9 query heads share 3 key/value heads
    for i, row in enumerate(weights):
        assert len(row) == len(tokens)
        assert sum(row) == pytest.approx(1.0, abs=1e-3)
        assert all(w == 0 for w in row[i + 1 :])  # the causal mask: nothing after token i
        assert all(w >= 0 for w in row)


def test_head_zero_is_the_mean_of_every_head(client):
    arguments = dict(prompt="Fish swim deep.", layer=5, mode="Completion")
    mean = attention(client, head=0, **arguments)["weights"]
    heads = [attention(client, head=head, **arguments)["weights"] for head in range(1, 10)]
    for i, row in enumerate(mean):
        for j, value in enumerate(row):
            assert value == pytest.approx(sum(h[i][j] for h in heads) / 9, abs=1e-4)


def test_attention_reads_the_chat_template_then_the_answer(client):
    data = attention(client, prompt="Name a colour.", answer=" Blue.", layer=1, head=0)
    tokens = data["tokens"]
    assert tokens[0] == "<|im_start|>" and "".join(tokens).endswith(
        "Name a colour.<|im_end|>\n<|im_start|>assistant\n Blue."
    )
    plain = attention(client, prompt="Name a colour.", answer=" Blue.", layer=1, head=0, mode="Completion")
    assert "".join(plain["tokens"]) == "Name a colour. Blue."


def test_the_views_show_the_last_tokens_with_a_note(client):
    answer = " The sea is wide and deep, and the boats sail on it every day." * 4
    data, note, heat_map, grid, tokens, row_note, recompute = client.predict(
        prompt="Write about the sea.", layer=2, head=0, answer=answer, api_name="/attention"
    )
    total = len(data["tokens"])
    assert total > ATTENTION_SHOWN_TOKENS and f"the last {ATTENTION_SHOWN_TOKENS} of {total} tokens" in note
    assert heat_map and grid  # image files
    assert len(tokens["data"] if isinstance(tokens, dict) else tokens) == total  # the text view covers every token
    assert f"Token {total} of {total}" in row_note
    assert "Largest difference" in recompute and "√64" in recompute


def test_the_recomputed_head_matches_the_models_own_numbers(client):
    *_, recompute = client.predict(prompt="The cat sat on the mat.", layer=7, head=4, api_name="/attention")
    differences = [float(x) for x in re.findall(r"\*\*(\d\.\de[+-]\d+)\*\*", recompute)]
    assert len(differences) == 2 and differences[0] < 1e-4  # the weights, both computed in float32
    assert "within the rounding of" in recompute  # the output, rounded to the format the layer ran in
    assert "key/value head 2" in recompute and "query heads 4–6" in recompute


@pytest.mark.parametrize(
    "arguments, message",
    [
        (dict(prompt="   "), "prompt is empty"),
        (dict(layer=0), "layer must be a whole number from 1 to 30 for SmolLM2"),
        (dict(layer=31), "from 1 to 30"),
        (dict(layer=2.5), "whole number"),
        (dict(head=10), "head must be a whole number from 0 .* to 9 for SmolLM2"),
        (dict(head=-1), "to 9"),
        (dict(answer="sea " * 400), f"at most {MAX_ATTENTION_TOKENS}"),
        (dict(mode="Poetry"), "Chat"),
    ],
)
def test_attention_refuses_bad_input_naming_the_limit(client, arguments, message):
    with pytest.raises(Exception, match=message):
        client.predict(**{"prompt": "Hello there.", **arguments}, api_name="/attention")


def test_generate_text_continues_after_the_prefix(client):
    arguments = dict(prompt="Name three colours.", max_new_tokens=24, temperature=0, repetition_penalty=1.0)
    whole = client.predict(**arguments, api_name="/generate_text")
    words = whole.split(" ")
    prefix = " ".join(words[:3])
    continued = client.predict(**arguments, prefix=prefix, api_name="/generate_text")
    # Greedy decoding from the model's own first words goes on as before: its next word is the same. (Not every
    # later one: the prefix is read as prompt, in one pass with the 16-bit copy of the weights, where the answer
    # wrote it token by token with the 4-bit kernels, so the numbers differ in the last bits and a near tie
    # further on can go the other way.)
    assert continued.startswith(" ".join(words[:4])) and len(continued) > len(prefix) + len(words[3])
    assert client.predict(**arguments, prefix=prefix, api_name="/generate_text") == continued  # and it is seeded
    steered = client.predict(**arguments, prefix="Purple, ", api_name="/generate_text")
    assert steered.startswith("Purple, ") and len(steered) > len("Purple, ")


def test_generate_text_refuses_a_prefix_too_long(client):
    with pytest.raises(Exception, match="prefix"):
        client.predict(prompt="Hi", prefix="sea " * 6_000, api_name="/generate_text")


def test_perplexity_scores_both_models_and_shuffled_words_are_surprising(client):
    natural, *views = client.predict(text=SENTENCE, corpus=SEA, n=3, api_name="/perplexity")
    shuffled, *_ = client.predict(text=SHUFFLED, corpus=SEA, n=3, api_name="/perplexity")
    for model in ("transformer", "ngram"):
        result = natural[model]
        assert "".join(token["text"] for token in result["tokens"]) == SENTENCE
        bits = [token["surprisal_bits"] for token in result["tokens"]]
        assert result["perplexity"] == pytest.approx(2 ** (sum(bits) / len(bits)), rel=1e-3)
        assert shuffled[model]["perplexity"] > 3 * result["perplexity"]
    assert natural["ngram"]["n"] == 3 and natural["ngram"]["unseen_words"] == 0
    summary = views[0]
    assert "bits a character" in summary and "Witten–Bell" in summary


def test_perplexity_of_unseen_words_is_finite(client):
    data, *_ = client.predict(text="Quantum zebras juggle marmalade.", corpus=SEA, n=2, api_name="/perplexity")
    assert data["ngram"]["unseen_words"] == 4 and math.isfinite(data["ngram"]["perplexity"])


@pytest.mark.parametrize(
    "arguments, message",
    [
        (dict(text="  "), "text is empty"),
        (dict(text="sea " * (MAX_PERPLEXITY_CHARACTERS // 4 + 1)), f"{MAX_PERPLEXITY_CHARACTERS:,}"),
        (dict(n=6), "5"),
        (dict(corpus=" "), "corpus is empty"),
        (dict(model="someone/unknown-model"), "unknown-model"),
    ],
)
def test_perplexity_refuses_bad_input(client, arguments, message):
    with pytest.raises(Exception, match=message):
        client.predict(**{"text": SENTENCE, **arguments}, api_name="/perplexity")
