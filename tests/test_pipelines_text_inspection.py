"""Inside the transformer, on tiny random Llamas (the shared one and a grouped-query one): attention captured and one
head recomputed by hand, branching with a prefix, perplexity and surprisal for the transformer and the n-gram model;
one slow test on the real SmolLM2."""

from __future__ import annotations

import math
import threading

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

from pipelines.core import registry
from pipelines.text.generation import SamplingSettings, TextGenerator, load_text_generator
from pipelines.text.inspection import (
    attention,
    attention_input_ids,
    attention_json,
    attention_ranges,
    branch_prefix,
    capture_attention,
    checked_layer_and_head,
    document_start_id,
    draw_attention_map,
    draw_head_grid,
    ngram_perplexity,
    recompute_head,
    smoothed_probability,
    token_label,
    transformer_perplexity,
)
from pipelines.text.ngram import NgramModel, split_words
from pipelines.text.options import MAX_ATTENTION_TOKENS, MAX_PERPLEXITY_CHARACTERS
from pipelines.text.sample_texts import SAMPLE_TEXTS
from tests.test_pipelines_text import WORDS, tiny_model_folder  # noqa: F401 (the shared tiny Llama fixture)

SEA = SAMPLE_TEXTS["The sea"]


@pytest.fixture(scope="module")
def tiny(tiny_model_folder) -> TextGenerator:  # noqa: F811
    return load_text_generator(str(tiny_model_folder))


@pytest.fixture(scope="module")
def tiny_gqa_folder(tiny_model_folder, tmp_path_factory):  # noqa: F811
    """The shared tiny Llama's tokenizer with grouped-query attention: 3 layers, 4 query heads on 2 key/value heads."""
    folder = tmp_path_factory.mktemp("tiny-gqa-llama")
    AutoTokenizer.from_pretrained(tiny_model_folder).save_pretrained(folder)
    config = LlamaConfig.from_pretrained(tiny_model_folder)
    config.num_hidden_layers, config.num_attention_heads, config.num_key_value_heads, config.head_dim = 3, 4, 2, 8
    torch.manual_seed(1)
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_gqa(tiny_gqa_folder) -> TextGenerator:
    return load_text_generator(str(tiny_gqa_folder))


# ---------------------------------------------------------------------------------------------
# Transformer perplexity


def test_transformer_perplexity_covers_the_text_and_is_two_to_the_mean_surprisal(tiny):
    text = "the sea is calm and blue\nboats sail on waves"
    result = transformer_perplexity(tiny, text)
    assert "".join(token.text for token in result.tokens) == text
    assert len(result.tokens) == len(tiny.tokenizer(text, add_special_tokens=False)["input_ids"])
    bits = [token.surprisal_bits for token in result.tokens]
    assert all(math.isfinite(b) and b >= 0 for b in bits)
    assert result.perplexity == pytest.approx(2 ** (sum(bits) / len(bits)))
    assert result.mean_surprisal_bits == pytest.approx(math.log2(result.perplexity))
    assert result.unit == "token"
    assert transformer_perplexity(tiny, text) == result  # no randomness anywhere


def test_each_surprisal_is_the_models_own_next_token_probability(tiny_gqa):
    """Token i is scored by the distribution the model gives after the start token and tokens 0..i-1 (no off-by-one)."""
    text = "wind blows over sand a gull cries"
    result = transformer_perplexity(tiny_gqa, text)
    ids = tiny_gqa.tokenizer(text, add_special_tokens=False)["input_ids"]
    start = document_start_id(tiny_gqa.tokenizer)
    assert start == tiny_gqa.tokenizer.bos_token_id  # this tokenizer has no <|endoftext|>
    for position in range(len(ids)):
        with torch.inference_mode():
            logits = tiny_gqa.model(input_ids=torch.tensor([[start, *ids[:position]]])).logits[0, -1]
        expected = -torch.log_softmax(logits.float(), dim=-1)[ids[position]].item() / math.log(2)
        assert result.tokens[position].surprisal_bits == pytest.approx(expected, rel=1e-4, abs=1e-5)


def test_the_document_separator_is_preferred_as_the_start_token(tiny_model_folder, tmp_path):  # noqa: F811
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_folder)
    assert document_start_id(tokenizer) == tokenizer.bos_token_id
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|endoftext|>"]})
    assert document_start_id(tokenizer) == tokenizer.convert_tokens_to_ids("<|endoftext|>") != tokenizer.bos_token_id


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "empty"),
        ("   \n ", "empty"),
        ("sea " * (MAX_PERPLEXITY_CHARACTERS // 4 + 1), f"{MAX_PERPLEXITY_CHARACTERS:,}"),
        (" ".join(WORDS[:10] * 60), "context of 512"),  # 600 tokens in under 4,000 characters
    ],
)
def test_transformer_perplexity_refuses_empty_and_too_long_texts(tiny, text, message):
    with pytest.raises(ValueError, match=message):
        transformer_perplexity(tiny, text)


# ---------------------------------------------------------------------------------------------
# n-gram perplexity


def test_witten_bell_by_hand():
    model = NgramModel.fit("a b a b c", 2)
    # Unigrams a:2 b:2 c:1 </s>:1, so N = 6 tokens of 4 types, and a uniform 1/5 over the types plus "unseen".
    unigram_a = (2 + 4 / 5) / (6 + 4)
    assert smoothed_probability(model, [], "a") == pytest.approx(unigram_a)
    # "b" was followed by a and c once each: c = 2, t = 2.
    assert smoothed_probability(model, ["b"], "a") == pytest.approx((1 + 2 * unigram_a) / (2 + 2))
    assert smoothed_probability(model, ["zebra"], "a") == pytest.approx(unigram_a)  # unseen context: backs off
    assert smoothed_probability(model, ["b"], "zebra") == pytest.approx(2 * (4 / 5 / 10) / 4)


@pytest.mark.parametrize("n", [1, 2, 3, 5])
@pytest.mark.parametrize("history", [[], ["the"], ["the", "sea"], ["In", "the", "harbour", "the"], ["zebra", "the"]])
def test_smoothed_probabilities_sum_to_one_over_the_words_and_the_unseen(n, history):
    model = NgramModel.fit(SEA, 5).with_order(n)
    types = list(model.counts[0][()])
    total = sum(smoothed_probability(model, history, word) for word in types)
    total += smoothed_probability(model, history, "a-word-never-seen")  # stands for every unseen word at once
    assert total == pytest.approx(1.0, abs=1e-9)


def test_unseen_words_give_a_finite_perplexity():
    model = NgramModel.fit(SEA, 3)
    result = ngram_perplexity(model, "Quantum zebras juggle marmalade.")
    assert math.isfinite(result.perplexity) and result.perplexity > 1
    assert result.unit == "word" and [token.text for token in result.tokens] == [
        "Quantum",
        " zebras",
        " juggle",
        " marmalade",
        ".",
    ]


def test_the_corpus_reads_as_less_surprising_than_its_words_shuffled():
    model = NgramModel.fit(SEA, 3)
    sentence = "In the harbour the boats wait for the tide."
    words = split_words(sentence)
    shuffled = " ".join(reversed(words))
    assert ngram_perplexity(model, sentence).perplexity < ngram_perplexity(model, shuffled).perplexity / 5
    typo = ngram_perplexity(model, "In the harbour the baots wait for the tide.")
    surprisals = {token.text.strip(): token.surprisal_bits for token in typo.tokens}
    assert surprisals["baots"] == max(surprisals.values())


def test_ngram_perplexity_refuses_empty_and_too_long_texts():
    model = NgramModel.fit(SEA, 2)
    with pytest.raises(ValueError, match="empty"):
        ngram_perplexity(model, " \n ")
    with pytest.raises(ValueError, match=f"{MAX_PERPLEXITY_CHARACTERS:,}"):
        ngram_perplexity(model, "sea " * MAX_PERPLEXITY_CHARACTERS)


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=200))
def test_ngram_pieces_always_join_into_the_text(text):
    if not split_words(text) or not text.strip():
        return
    model = NgramModel.fit(SEA, 2)
    result = ngram_perplexity(model, text)
    assert "".join(token.text for token in result.tokens) == text
    assert all(math.isfinite(token.surprisal_bits) and token.surprisal_bits > 0 for token in result.tokens)


# ---------------------------------------------------------------------------------------------
# The real model


@pytest.mark.slow
def test_real_smollm2_finds_shuffled_words_and_typos_surprising():
    generator = registry.load("smollm2-135m")
    assert generator.tokenizer.convert_ids_to_tokens(document_start_id(generator.tokenizer)) == "<|endoftext|>"
    natural = transformer_perplexity(generator, "The cat sat on the mat and looked out of the window.")
    shuffled = transformer_perplexity(generator, "window the mat of cat on out looked The sat and the.")
    assert natural.perplexity < 100 < shuffled.perplexity
    typo = transformer_perplexity(generator, "The cat sat on the mta and looked out of the window.")
    worst = max(typo.tokens, key=lambda token: token.surprisal_bits)
    assert "mt" in worst.text or "ta" in worst.text


# ---------------------------------------------------------------------------------------------
# Attention


def hook_count(model) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


@pytest.fixture(scope="module")
def gqa_capture(tiny_gqa):
    ids = attention_input_ids(tiny_gqa, "the sea is calm and blue boats sail", chat=False)
    return ids, capture_attention(tiny_gqa, ids, 2)


def test_capture_has_every_head_and_grouped_query_sharing(tiny_gqa, gqa_capture):
    ids, capture = gqa_capture
    tokens = len(ids)
    assert capture.layer == 2 and capture.tokens == [tiny_gqa.token_text(i) for i in ids]
    assert capture.weights.shape == (4, tokens, tokens) and capture.queries.shape == (4, tokens, 8)
    assert capture.keys.shape == capture.values.shape == (2, tokens, 8)
    assert [capture.kv_head(head) for head in (1, 2, 3, 4)] == [1, 1, 2, 2]
    assert torch.allclose(capture.weights.sum(dim=-1), torch.ones(4, tokens), atol=1e-5)
    assert torch.all(capture.weights.triu(1) == 0)  # causal: no token looks ahead
    assert torch.allclose(capture.head_weights(0), capture.weights.mean(dim=0))


@pytest.mark.parametrize("head", [0, 1, 2, 3, 4])
def test_a_head_recomputed_by_hand_matches_the_model(tiny_gqa, gqa_capture, head):
    _, capture = gqa_capture
    recomputed = recompute_head(capture, head)
    assert recomputed.max_weight_difference < 1e-5
    # Against what the layer really computed (sdpa), which rounds to its precision: bfloat16 (the quantized
    # precisions' activations) keeps 8 bits of mantissa.
    rounding = 1e-5 if tiny_gqa.model.dtype == torch.float32 else 2**-7 * capture.head_outputs.abs().max().item()
    assert recomputed.max_output_difference < rounding
    assert recomputed.max_output_difference <= recomputed.rounding_step * recomputed.largest_output
    assert recomputed.number_format == str(capture.computed_in).removeprefix("torch.")
    assert recomputed.kv_head == (capture.kv_head(head) if head else None)
    assert torch.allclose(recomputed.weights, capture.head_weights(head), atol=1e-5)
    assert 0 <= recomputed.future_share_unmasked <= 1 and 0 < recomputed.top_weight <= 1


def test_a_wrong_key_head_would_not_match(gqa_capture):
    """The check can fail: head 1 recomputed with the other key/value head's K and V is far from the model's."""
    _, capture = gqa_capture
    output, weights = attention(capture.queries[0], capture.keys[1], capture.values[1])
    assert (output - capture.head_outputs[0]).abs().max() > 1e-3


def test_attention_is_the_seeds_formula_plus_the_mask():
    torch.manual_seed(0)
    query, key, value = torch.randn(3, 6, 16).unbind(0)
    _, unmasked = attention(query, key, value, causal=False)
    assert torch.allclose(unmasked, torch.softmax(query @ key.T / 4, dim=-1))  # sqrt(16) = 4
    output, masked = attention(query, key, value)
    assert torch.all(masked.triu(1) == 0) and torch.allclose(masked.sum(dim=-1), torch.ones(6))
    assert torch.allclose(output, masked @ value)
    _, unscaled = attention(query, key, value, scaled=False)
    assert unscaled.max(dim=-1).values.mean() > masked.max(dim=-1).values.mean()  # sharper without 1/sqrt(d)


def test_capturing_leaves_the_model_as_it_was(tiny_gqa):
    settings = SamplingSettings(max_new_tokens=12, temperature=0, chat=False)
    before = tiny_gqa.generate("fish swim deep", settings).new_ids
    implementation = tiny_gqa.model.config._attn_implementation
    capture_attention(tiny_gqa, attention_input_ids(tiny_gqa, "fish swim deep", chat=False), 3)
    assert hook_count(tiny_gqa.model) == 0 and tiny_gqa.model.config._attn_implementation == implementation
    assert tiny_gqa.generate("fish swim deep", settings).new_ids == before


def test_another_threads_forward_passes_do_not_leak_into_a_capture(tiny_gqa, gqa_capture):
    ids, alone = gqa_capture
    stop = threading.Event()

    def other_user() -> None:
        other = torch.tensor([[1, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14]])
        while not stop.is_set():
            with torch.inference_mode():
                tiny_gqa.model(input_ids=other)

    thread = threading.Thread(target=other_user)
    thread.start()
    try:
        captures = [capture_attention(tiny_gqa, ids, 2) for _ in range(5)]
    finally:
        stop.set()
        thread.join()
    for capture in captures:
        assert torch.allclose(capture.weights, alone.weights, atol=1e-6)
        assert torch.allclose(capture.head_outputs, alone.head_outputs, atol=1e-6)


def test_ranges_come_from_the_models_config(tiny, tiny_gqa):
    layers, heads = attention_ranges(tiny_gqa)
    assert (layers.low, layers.high, heads.low, heads.high) == (1, 3, 0, 4)
    assert attention_ranges(tiny)[0].high == 2 and attention_ranges(tiny)[1].high == 2
    assert checked_layer_and_head(tiny_gqa, 3.0, 4) == (3, 4)
    with pytest.raises(ValueError, match="layer must be a whole number from 1 to 3 for tiny-gqa"):
        checked_layer_and_head(tiny_gqa, 4, 0)
    with pytest.raises(ValueError, match="head must be a whole number from 0 .* to 4"):
        checked_layer_and_head(tiny_gqa, 1, 5)
    with pytest.raises(ValueError, match="layer"):
        capture_attention(tiny_gqa, [1, 5, 6], 0)


def test_attention_reads_the_prompt_as_generation_does_then_the_answer(tiny_gqa):
    chat = attention_input_ids(tiny_gqa, "the sea", "is calm", chat=True)
    prepared = tiny_gqa.prepare_prompt("the sea", SamplingSettings(chat=True)).input_ids[0].tolist()
    answer = tiny_gqa.tokenizer("is calm", add_special_tokens=False)["input_ids"]
    assert chat == prepared + answer
    with pytest.raises(ValueError, match="empty"):
        attention_input_ids(tiny_gqa, "  ")
    with pytest.raises(ValueError, match=f"at most {MAX_ATTENTION_TOKENS}"):
        attention_input_ids(tiny_gqa, "the sea", " ".join(WORDS * 8), chat=False)
    with pytest.raises(ValueError, match="characters"):
        attention_input_ids(tiny_gqa, "sea " * 6_000)


def test_attention_json_is_square_and_rounded(gqa_capture):
    ids, capture = gqa_capture
    data = attention_json(capture, 3)
    assert (data["layer"], data["head"], data["kv_head"]) == (2, 3, 2)
    assert data["tokens"] == capture.tokens and len(data["weights"]) == len(ids)
    assert all(len(row) == len(ids) for row in data["weights"])
    assert data["weights"][4][2] == round(capture.weights[2, 4, 2].item(), 5)
    assert attention_json(capture, 0)["kv_head"] is None


def test_heat_map_clicks_read_back_the_row_and_the_head(gqa_capture):
    ids, capture = gqa_capture
    image, layout = draw_attention_map(capture.tokens, capture.head_weights(1), "layer 2, head 1", shown=5)
    left, top, right, bottom = layout.cells[0]
    assert image.size[0] > right and image.size[1] > bottom
    first = len(ids) - 5
    assert layout.first_token == first and layout.shown_tokens == 5
    row_height = (bottom - top) / 5
    assert layout.row_at((left + right) / 2, top + row_height / 2) == first
    assert layout.row_at((left + right) / 2, bottom - row_height / 2) == len(ids) - 1
    assert layout.row_at(left - 5, top + 1) is None
    grid, grid_layout = draw_head_grid(capture)
    assert len(grid_layout.cells) == 4 and grid.size[0] > 100
    centres = [((x0 + x1) / 2, (y0 + y1) / 2) for x0, y0, x1, y1 in grid_layout.cells]
    assert [grid_layout.head_at(x, y) for x, y in centres] == [1, 2, 3, 4]
    assert grid_layout.head_at(0, 0) is None
    assert token_label(" the\n") == "␣the↵" and token_label("x" * 30).endswith("…")


# ---------------------------------------------------------------------------------------------
# Branching and the prefix


def test_a_greedy_answer_continued_from_its_own_start_goes_on_the_same(tiny):
    settings = SamplingSettings(max_new_tokens=12, temperature=0, repetition_penalty=1.0, chat=False)
    whole = tiny.generate("the sea is", settings)
    prefix = tiny.tokenizer.decode(whole.new_ids[:4])
    continued = tiny.generate("the sea is", SamplingSettings(**{**settings.__dict__, "max_new_tokens": 8}), prefix)
    assert continued.text.startswith(prefix)
    assert continued.prompt_ids[-4:] == whole.new_ids[:4]
    assert continued.new_ids == whole.new_ids[4:]


def test_the_prefix_streams_first_and_too_long_a_prefix_is_refused(tiny):
    settings = SamplingSettings(max_new_tokens=5, temperature=1.0, seed=3, chat=True)
    texts = [g.text for g in tiny.stream("boats sail", settings, prefix="night falls")]
    assert all(text.startswith("night falls") for text in texts)
    with pytest.raises(ValueError, match="prefix"):
        tiny.generate("boats sail", settings, prefix=" ".join(WORDS * 12))


def test_branch_prefix_swaps_one_token(tiny):
    settings = SamplingSettings(max_new_tokens=6, temperature=0, chat=False)
    generation = tiny.generate("stars shine", settings)
    choices = tiny.explain(generation)
    assert all(
        [tiny.token_text(i) for i in choice.alternative_ids] == [text for text, _ in choice.alternatives]
        for choice in choices
    )
    alternative = choices[2].alternative_ids[1]
    prefix = branch_prefix(tiny, generation, 2, alternative)
    assert tiny.tokenizer(prefix, add_special_tokens=False)["input_ids"] == generation.new_ids[:2] + [alternative]
    with pytest.raises(ValueError, match="ends the answer"):
        branch_prefix(tiny, generation, 2, tiny.tokenizer.eos_token_id)
    with pytest.raises(ValueError, match="position"):
        branch_prefix(tiny, generation, 6, alternative)
