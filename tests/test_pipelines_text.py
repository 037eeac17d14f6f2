"""The transformer text pipeline on a tiny random Llama (loading, streaming, seeding, stop, look-inside),
plus one slow test on the real SmolLM2 offline pack."""

from __future__ import annotations

import threading
import time

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from pipelines.core import registry
from pipelines.core.weights import ModelSourceError
from pipelines.text.generation import SamplingSettings, TextGenerator, load_text_generator
from pipelines.text.options import MAX_NEW_TOKENS

WORDS = (
    "the sea is calm and blue boats sail on waves wind blows over sand a gull cries at dawn "
    "fish swim deep under cold water ships come home light turns night falls stars shine bright"
).split()
SPECIALS = ["<unk>", "<s>", "</s>", "<|user|>", "<|assistant|>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} {% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
CONTEXT = 512


@pytest.fixture(scope="module")
def tiny_model_folder(tmp_path_factory):
    """A 2-layer Llama with random weights and a word-level tokenizer, saved like any Hub model."""
    folder = tmp_path_factory.mktemp("tiny-llama")
    vocabulary = {token: index for index, token in enumerate(SPECIALS + WORDS)}
    backend = Tokenizer(models.WordLevel(vocabulary, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="</s>"
    )
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|user|>", "<|assistant|>"]})
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(vocabulary),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=CONTEXT,
        bos_token_id=1,
        eos_token_id=None,
        pad_token_id=2,  # no end token: generations run to their limit
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny(tiny_model_folder) -> TextGenerator:
    return load_text_generator(str(tiny_model_folder))


def test_loads_a_local_folder(tiny, tiny_model_folder):
    assert tiny.name == tiny_model_folder.name
    assert tiny.context_length == CONTEXT
    assert tiny.has_chat_template


def test_stream_grows_and_ends_with_the_full_text(tiny):
    settings = SamplingSettings(max_new_tokens=20, temperature=1.0, seed=3, chat=False)
    texts = [generation.text for generation in tiny.stream("the sea is", settings)]
    assert len(texts) >= 2
    assert all(later.startswith(earlier) for earlier, later in zip(texts, texts[1:]))
    final = tiny.generate("the sea is", settings)
    assert final.text == texts[-1]
    assert len(final.new_ids) == 20
    assert final.text.split() == tiny.tokenizer.decode(final.new_ids, skip_special_tokens=True).split()


def test_same_seed_same_text_other_seed_other_text(tiny):
    def new_ids(seed: int) -> list[int]:
        settings = SamplingSettings(max_new_tokens=24, temperature=1.0, top_k=0, top_p=1.0, seed=seed)
        return tiny.generate("the wind blows", settings).new_ids

    assert new_ids(7) == new_ids(7)
    assert new_ids(7) != new_ids(8)


def test_greedy_ignores_the_seed(tiny):
    def greedy(seed: int) -> list[int]:
        return tiny.generate("fish swim", SamplingSettings(max_new_tokens=12, temperature=0, seed=seed)).new_ids

    assert greedy(1) == greedy(2)


def test_concurrent_users_keep_their_own_seeds(tiny):
    settings = {
        seed: SamplingSettings(max_new_tokens=30, temperature=1.0, top_k=0, top_p=1.0, seed=seed) for seed in (1, 2)
    }
    alone = {seed: tiny.generate("boats sail", s).new_ids for seed, s in settings.items()}
    together: dict[int, list[int]] = {}
    threads = [
        threading.Thread(
            target=lambda s=seed: together.__setitem__(s, tiny.generate("boats sail", settings[s]).new_ids)
        )
        for seed in (1, 2, 1, 2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert together == alone


def test_stop_event_ends_generation_early_and_frees_the_model(tiny):
    settings = SamplingSettings(max_new_tokens=300, temperature=1.0, seed=0, chat=False)
    stop = threading.Event()
    generations = []
    for generation in tiny.stream("night falls", settings, stop_event=stop):
        generations.append(len(generation.new_ids))
        stop.set()
    assert len(tiny.generate("night falls", settings).new_ids) == 300  # unstopped, it runs to the limit
    final = generations[-1]
    assert 0 < final < 300


def test_closing_the_stream_releases_the_model(tiny):
    settings = SamplingSettings(max_new_tokens=300, temperature=1.0, seed=0, chat=False)
    stream = tiny.stream("night falls", settings)
    next(stream)
    stream.close()  # what Gradio does when the user presses Stop or leaves the page
    decoder = tiny.variant().decoder
    deadline = time.monotonic() + 10
    while decoder.busy and time.monotonic() < deadline:
        time.sleep(0.01)
    assert decoder.busy == 0  # its place in the batch is free again


def test_chat_mode_uses_the_template_and_completion_does_not(tiny):
    chat = tiny.prepare_prompt("the sea", SamplingSettings(chat=True)).input_ids[0].tolist()
    plain = tiny.prepare_prompt("the sea", SamplingSettings(chat=False)).input_ids[0].tolist()
    assistant = tiny.tokenizer.convert_tokens_to_ids("<|assistant|>")
    assert chat[-1] == assistant and assistant not in plain
    assert tiny.tokenizer.convert_ids_to_tokens(plain)[-2:] == ["the", "sea"]


def test_long_prompt_is_cut_from_the_left_with_a_note(tiny):
    words = (WORDS * 40)[:1000]
    settings = SamplingSettings(max_new_tokens=100, temperature=0, chat=False)
    prepared = tiny.prepare_prompt(" ".join(words), settings)
    assert prepared.dropped_tokens > 0 and "dropped" in prepared.note
    assert prepared.input_ids.shape[1] + settings.max_new_tokens <= CONTEXT
    kept = tiny.tokenizer.convert_ids_to_tokens(prepared.input_ids[0].tolist())
    assert kept[-5:] == words[-5:]  # the end of the prompt survives
    generation = tiny.generate(" ".join(words), settings)
    assert any("dropped" in note for note in generation.notes)
    assert len(generation.new_ids) == 100


def test_look_inside_matches_greedy_choices(tiny):
    generation = tiny.generate(
        "stars shine", SamplingSettings(max_new_tokens=10, temperature=0, repetition_penalty=1.0)
    )
    choices = tiny.explain(generation)
    assert len(choices) == 10
    for choice in choices:
        probabilities = [p for _, p in choice.alternatives]
        assert len(probabilities) == 5 and probabilities == sorted(probabilities, reverse=True)
        assert 0 < sum(probabilities) <= 1.0001
        # Greedy always takes the most likely token, so it is the first alternative.
        assert choice.alternatives[0][0] == choice.text
        assert choice.probability == pytest.approx(probabilities[0], rel=1e-4)


@pytest.mark.parametrize(
    "settings, message",
    [
        (SamplingSettings(max_new_tokens=0), "max_new_tokens"),
        (SamplingSettings(max_new_tokens=MAX_NEW_TOKENS.high + 1), "max_new_tokens"),
        (SamplingSettings(temperature=2.5), "temperature must be a number from 0.0 to 2.0"),
        (SamplingSettings(top_k=201), "top_k must be a whole number from 0 to 200"),
        (SamplingSettings(top_p=0), "top_p"),
        (SamplingSettings(seed=-1), "seed"),
    ],
)
def test_bad_settings_are_refused(tiny, settings, message):
    with pytest.raises(ValueError, match=message):
        tiny.generate("the sea", settings)


def test_empty_prompt_is_refused(tiny):
    with pytest.raises(ValueError, match="empty"):
        tiny.generate("   ", SamplingSettings())


def test_unknown_and_unreachable_models_give_clear_errors(monkeypatch):
    import huggingface_hub.constants

    with pytest.raises(ModelSourceError, match="Unknown model"):
        registry.load("nobody/no-such-model")
    with pytest.raises(ModelSourceError, match="not on this app's list of allowed models"):
        load_text_generator("nobody/no-such-model")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # as on a machine without the Hub
    with pytest.raises(ModelSourceError, match="Hub"):
        load_text_generator("HuggingFaceTB/SmolLM2-360M-Instruct")


@pytest.mark.slow
def test_real_smollm2_greedy_generation_is_deterministic():
    generator = registry.load("smollm2-135m")
    settings = SamplingSettings(max_new_tokens=12, temperature=0)
    first = generator.generate("What is the capital of France?", settings)
    second = generator.generate("What is the capital of France?", settings)
    assert first.text.strip() and first.new_ids == second.new_ids
    assert "Paris" in first.text
