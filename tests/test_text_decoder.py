"""Continuous batching and the fast text path on tiny random Llamas: each request gets exactly the text it gets
alone, whoever shares its batch, with its own settings, seed, Stop and time limit; the lean forward pass matches
transformers'; quantized layers keep their numbers. Plus one slow test on the real SmolLM2."""

from __future__ import annotations

import threading
import time

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from pipelines.core import cpu_threads, registry
from pipelines.text import decoder as decoder_module
from pipelines.text.decoder import BatchedDecoder, DecodeRequest, Sampling, TransformersRunner, make_runner
from pipelines.text.generation import SamplingSettings, TextGenerator, load_text_generator
from pipelines.text.llama_runner import LlamaRunner, round_up
from pipelines.text.precision import matmul_rows
from pipelines.text.quantization import QuantizedLinear, fuse_rows, quantize_int4, quantize_model
from tests.test_pipelines_text import WORDS, tiny_model_folder  # noqa: F401 (the shared tiny Llama fixture)

PRECISIONS = ("int4", "int8", "float32")
GREEDY = Sampling()
SAMPLED = Sampling(temperature=0.9, top_k=20, top_p=0.9, repetition_penalty=1.2, seed=7)


@pytest.fixture(scope="module")
def tiny(tiny_model_folder) -> TextGenerator:  # noqa: F811
    return load_text_generator(str(tiny_model_folder))


def prompts(tiny: TextGenerator, count: int) -> list[list[int]]:
    """`count` plain prompts of different lengths (so the requests sit at different positions)."""
    return [tiny.tokenizer(" ".join(WORDS[i : i + 2 + 3 * i]))["input_ids"] for i in range(count)]


def fresh_decoder(tiny: TextGenerator, precision: str, **kwargs) -> BatchedDecoder:
    """A decoder of its own over the variant's model, so batch sizes and step counts belong to this test."""
    variant = tiny.variant(precision)
    runner = make_runner(variant.model, 8, matmul_rows(precision, "cpu"))
    return BatchedDecoder(runner, set(), kwargs.pop("kv_budget_bytes", 1 << 30), threads=1, **kwargs)


def run_alone(decoder: BatchedDecoder, prompt: list[int], sampling: Sampling, tokens: int) -> list[int]:
    request = decoder.submit(DecodeRequest(prompt, tokens, sampling))
    list(request.tokens())
    return request.new_ids


@pytest.mark.parametrize("precision", PRECISIONS)
def test_a_batch_gives_each_request_the_text_it_gets_alone(tiny, precision):
    decoder = fresh_decoder(tiny, precision)
    samplings = [GREEDY if i % 2 else Sampling(0.9, 20, 0.9, 1.2, seed=i) for i in range(6)]
    alone = [run_alone(decoder, prompt, s, 40) for prompt, s in zip(prompts(tiny, 6), samplings)]
    assert decoder.largest_batch == 1
    requests = [decoder.submit(DecodeRequest(p, 40, s)) for p, s in zip(prompts(tiny, 6), samplings)]
    for request in requests:
        list(request.tokens())
    assert decoder.largest_batch >= 3  # they really shared steps
    assert [request.new_ids for request in requests] == alone
    assert all(request.finish_reason == "length" for request in requests)


@pytest.mark.parametrize(
    "sampling",
    [
        Sampling(temperature=0.7, top_k=50, top_p=0.95, repetition_penalty=1.1),  # the tab's defaults
        Sampling(temperature=1.3, top_k=7, top_p=1.0),
        Sampling(temperature=0.9, top_k=0, top_p=0.8, repetition_penalty=1.5),
        Sampling(temperature=0.5, top_k=3, top_p=0.5),
    ],
)
def test_sampling_among_the_top_k_draws_from_the_distribution_of_transformers_processors(sampling):
    generator = torch.Generator().manual_seed(3)
    logits = (torch.randn(1, 4000, generator=generator) * 3).to(torch.bfloat16).float()  # bfloat16: many ties
    logits[0, 10:20] = logits[0, :4000].max()  # a tie at the top
    history = torch.randint(0, 4000, (1, 30), generator=generator)
    processors = decoder_module.SamplingProcessors(sampling)
    expected = torch.softmax(processors.adjust(history, logits.clone())[0], dim=-1)
    ids, probabilities = processors.distribution(history, logits.clone())
    drawn = torch.zeros_like(expected).index_add_(0, ids, probabilities)
    # The same probabilities; which of several tied tokens top-p cuts depends on a sort's order, in both.
    assert torch.allclose(drawn.sort().values, expected.sort().values, atol=1e-6)
    lowest = expected[expected > 0].min()
    if int((expected == lowest).sum()) == 1:  # no tie where top-p cuts: the very same tokens
        assert torch.allclose(drawn, expected, atol=1e-6)


@pytest.mark.parametrize("precision", PRECISIONS)
def test_prompts_read_together_get_the_numbers_they_get_alone(tiny, precision):
    runner = make_runner(tiny.variant(precision).model, 8, matmul_rows(precision, "cpu"))
    ids = tiny.tokenizer(" ".join(WORDS * 3))["input_ids"]
    # Shorter and longer than a block of rows (64), one split over two blocks beside the others.
    parts = [ids[:5], ids[5:75], ids[:30], ids[40:41]]
    alone = []
    for part in parts:
        sequence = runner.new_sequence()
        alone.append((runner.prefill(sequence, part, all_logits=True), sequence))
    sequences = [runner.new_sequence() for _ in parts]
    together = runner.prefill_together(list(zip(sequences, parts)), all_logits=True)
    for (logits, solo), shared, sequence, part in zip(alone, together, sequences, parts):
        assert shared.shape == (len(part), logits.shape[-1])
        assert torch.equal(shared, logits)
        assert sequence.length == solo.length == len(part)
        assert all(torch.equal(a, b) for a, b in zip(sequence.keys + sequence.values, solo.keys + solo.values))


def test_requests_arriving_together_are_read_in_one_forward_pass(tiny):
    decoder = fresh_decoder(tiny, "int4")
    alone = [run_alone(decoder, prompt, GREEDY, 12) for prompt in prompts(tiny, 5)]
    calls = []
    read_together = decoder.runner.prefill_together
    decoder.runner.prefill_together = lambda parts, *args: calls.append(len(parts)) or read_together(parts, *args)
    with decoder._condition:  # the loop admits them only once all five wait
        requests = [decoder.submit(DecodeRequest(prompt, 12, GREEDY)) for prompt in prompts(tiny, 5)]
    for request in requests:
        list(request.tokens())
    assert calls == [5]
    assert [request.new_ids for request in requests] == alone


def test_padded_rows_keep_each_request_its_numbers(tiny):
    """The accelerators' policy (matrix products always padded to the batch size) checked here on a CPU."""
    model = tiny.variant("float32").model
    decoder = BatchedDecoder(LlamaRunner(model, 8, rows=8), set(), 1 << 30, threads=1)
    alone = [run_alone(decoder, prompt, GREEDY, 30) for prompt in prompts(tiny, 4)]
    requests = [decoder.submit(DecodeRequest(prompt, 30, GREEDY)) for prompt in prompts(tiny, 4)]
    for request in requests:
        list(request.tokens())
    assert decoder.largest_batch >= 2 and [request.new_ids for request in requests] == alone


def test_a_request_joins_and_leaves_a_running_batch_at_its_own_step(tiny):
    decoder = fresh_decoder(tiny, "int4")
    first_prompt, second_prompt = prompts(tiny, 2)
    alone = [run_alone(decoder, first_prompt, SAMPLED, 120), run_alone(decoder, second_prompt, GREEDY, 10)]
    first = decoder.submit(DecodeRequest(first_prompt, 120, SAMPLED))
    tokens = first.tokens()
    for _ in range(20):  # the first request is well under way
        next(tokens)
    second = decoder.submit(DecodeRequest(second_prompt, 10, GREEDY))
    list(second.tokens())
    assert not first.done  # the second joined and left while the first went on
    list(tokens)
    assert [first.new_ids, second.new_ids] == alone
    assert decoder.largest_batch == 2


def test_stop_takes_one_request_out_and_the_others_go_on(tiny):
    decoder = fresh_decoder(tiny, "int4")
    stopped_prompt, other_prompt = prompts(tiny, 2)
    other_alone = run_alone(decoder, other_prompt, SAMPLED, 200)
    stopped = decoder.submit(DecodeRequest(stopped_prompt, 200, GREEDY))
    other = decoder.submit(DecodeRequest(other_prompt, 200, SAMPLED))
    for count, _ in enumerate(stopped.tokens(), start=1):
        if count == 5:
            stopped.stop_event.set()
    list(other.tokens())
    assert stopped.finish_reason == "stopped" and 5 <= len(stopped.new_ids) < 200
    assert other.finish_reason == "length" and other.new_ids == other_alone


def test_a_request_stopped_while_waiting_never_runs(tiny):
    decoder = fresh_decoder(tiny, "int4")
    request = DecodeRequest(prompts(tiny, 1)[0], 50, GREEDY)
    request.stop_event.set()
    decoder.submit(request)
    assert list(request.tokens()) == [] and request.finish_reason == "stopped"


def test_the_time_limit_ends_a_request_with_its_reason(tiny):
    decoder = fresh_decoder(tiny, "int4")
    request = decoder.submit(DecodeRequest(prompts(tiny, 1)[0], 1000, GREEDY, time_limit=0.2))
    started = time.monotonic()
    list(request.tokens())
    assert request.finish_reason == "time limit" and len(request.new_ids) < 1000
    assert time.monotonic() - started < 60  # it ended by the limit, not by running every token


def test_an_end_token_finishes_a_request(tiny):
    decoder = fresh_decoder(tiny, "int4")
    prompt = prompts(tiny, 1)[0]
    written = run_alone(decoder, prompt, GREEDY, 12)
    decoder.end_ids = {written[3]}
    request = decoder.submit(DecodeRequest(prompt, 12, GREEDY))
    list(request.tokens())
    assert request.finish_reason == "end" and request.new_ids == written[: written.index(written[3]) + 1]


def test_a_long_request_over_the_memory_budget_waits_for_the_batch_to_empty(tiny):
    decoder = fresh_decoder(tiny, "int4")
    short_prompt, long_prompt, later_prompt = prompts(tiny, 3)
    # Room in every slot for 64 tokens: a short request fits beside others, a 200-token answer does not.
    decoder.kv_budget_bytes = 8 * round_up(60) * decoder.runner.bytes_per_token
    alone = [run_alone(decoder, short_prompt, GREEDY, 50), run_alone(decoder, long_prompt, GREEDY, 200)]
    alone.append(run_alone(decoder, later_prompt, GREEDY, 20))
    short = decoder.submit(DecodeRequest(short_prompt, 50, GREEDY))
    next(short.tokens())
    long = decoder.submit(DecodeRequest(long_prompt, 200, GREEDY))
    later = decoder.submit(DecodeRequest(later_prompt, 20, GREEDY))  # first come, first served: behind the long one
    for request in (short, long, later):
        list(request.tokens())
    assert decoder.largest_batch == 1
    assert long.admitted_at >= short.finished_at and later.admitted_at >= long.admitted_at
    assert [short.new_ids, long.new_ids, later.new_ids] == alone


def test_concurrent_streams_through_the_generator_match_their_solo_runs(tiny):
    settings = [SamplingSettings(max_new_tokens=30, temperature=t, seed=s, chat=False) for t, s in ((0, 0), (1, 3))]
    alone = [tiny.generate("boats sail on", s).new_ids for s in settings]
    together: dict[int, list[int]] = {}
    threads = [
        threading.Thread(
            target=lambda i=i: together.__setitem__(i, tiny.generate("boats sail on", settings[i % 2]).new_ids)
        )
        for i in range(6)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [together[i] for i in range(6)] == alone * 3


@pytest.mark.parametrize("precision", PRECISIONS)
def test_every_precision_generates_and_explains_what_it_picked(tiny, precision):
    greedy = SamplingSettings(max_new_tokens=10, temperature=0, repetition_penalty=1.0)
    generation = tiny.generate("stars shine", greedy, precision=precision)
    assert generation.precision == precision and len(generation.new_ids) == 10
    choices = tiny.explain(generation)
    for choice, token in zip(choices, generation.new_ids):
        # Greedy takes the model's own most likely token (in an exact tie, bfloat16 logits, either of them).
        assert token in choice.alternative_ids
        assert choice.probability == pytest.approx(choice.alternatives[0][1])
    with pytest.raises(ValueError, match="precision must be one of int4, int8, float32"):
        tiny.generate("stars shine", SamplingSettings(max_new_tokens=2), precision="float8")


def test_recorded_look_inside_matches_a_forward_pass(tiny):
    greedy = SamplingSettings(max_new_tokens=12, temperature=0, repetition_penalty=1.0)
    generation = tiny.generate("the wind blows", greedy, precision="float32")
    recorded = tiny.explain(generation)
    generation.step_records = []  # explain must now run its own forward pass
    recomputed = tiny.explain(generation)
    for a, b in zip(recorded, recomputed):
        assert a.alternative_ids == b.alternative_ids
        assert a.probability == pytest.approx(b.probability, abs=1e-4)


def test_the_lean_forward_pass_matches_transformers(tiny):
    model = tiny.variant("float32").model
    ids = tiny.tokenizer(" ".join(WORDS[:40]))["input_ids"]
    runner = LlamaRunner(model, 8, rows=1)
    sequence = runner.new_sequence()
    logits = runner.prefill(sequence, ids, all_logits=True)
    with torch.inference_mode():
        expected = model(input_ids=torch.tensor([ids])).logits[0].float()
        greedy = model.generate(torch.tensor([ids[:5]]), max_new_tokens=20, do_sample=False, pad_token_id=2)
    torch.testing.assert_close(logits, expected, atol=1e-4, rtol=1e-4)
    decoder = BatchedDecoder(LlamaRunner(model, 8, rows=1), set(), 1 << 30, threads=1)
    assert run_alone(decoder, ids[:5], GREEDY, 20) == greedy[0, 5:].tolist()


def test_other_architectures_run_through_transformers_in_the_same_loop(tmp_path):
    config = GPT2Config(
        vocab_size=64, n_positions=128, n_embd=32, n_layer=2, n_head=2, bos_token_id=0, eos_token_id=None
    )
    torch.manual_seed(0)
    model = GPT2LMHeadModel(config).eval()
    runner = make_runner(model, 8)
    assert isinstance(runner, TransformersRunner)
    decoder = BatchedDecoder(runner, set(), 1 << 30, threads=1)
    with torch.inference_mode():
        expected = model.generate(torch.tensor([[5, 6, 7]]), max_new_tokens=15, do_sample=False, pad_token_id=0)
    requests = [decoder.submit(DecodeRequest([5, 6, 7], 15, GREEDY)) for _ in range(3)]
    for request in requests:
        list(request.tokens())
    assert all(request.new_ids == expected[0, 3:].tolist() for request in requests)


def test_int4_keeps_weights_already_on_a_4_bit_grid_and_int8_stays_close():
    torch.manual_seed(0)
    # Weights as a Q4_1 file holds them: per group of 32, an offset plus a scale times 0..15; here scale and
    # offset are multiples of 2**-8, so the kernel's zero point (offset + 8 x scale) is exact in bfloat16 too.
    scale = torch.randint(1, 6, (32, 2, 1)).float() / 256
    offset = torch.randint(-20, 20, (32, 2, 1)).float() / 256
    values = torch.randint(0, 16, (32, 2, 32)).float()
    values[..., 0], values[..., 1] = 0, 15  # every group spans its whole range, as the file's groups do
    weight = (offset + scale * values).reshape(32, 64)
    packed, scales_and_zeros, dequantized = quantize_int4(weight)
    assert torch.equal(dequantized, weight)
    linear = torch.nn.Linear(64, 32, bias=False)
    linear.weight.data = weight
    x = torch.randn(5, 64)
    expected = x.to(torch.bfloat16).float() @ weight.t()
    for layer in (QuantizedLinear(linear, 4), QuantizedLinear(linear, 8)):
        torch.testing.assert_close(layer(x).float(), expected, atol=0.05, rtol=0.02)  # bfloat16 outputs
    int8 = QuantizedLinear(linear, 8)
    assert (int8.dense.float() - weight).abs().max() <= int8.scales.float().max() / 2 + 2**-9


@pytest.mark.parametrize("bits, rows", [(4, (128, 64, 64)), (4, (32, 32, 32)), (8, (32, 16, 16))])
def test_fused_layers_compute_their_parts_and_the_parts_still_work(bits, rows):
    torch.manual_seed(0)
    parts = [QuantizedLinear(torch.nn.Linear(64, n, bias=False), bits) for n in rows]
    x = torch.randn(3, 64, dtype=torch.bfloat16)
    separate = [part(x) for part in parts]
    fused = fuse_rows(parts)
    torch.testing.assert_close(fused(x), torch.cat(separate, dim=-1), atol=0, rtol=0)
    for part, before in zip(parts, separate):  # the parts now read their rows of the fused weights
        torch.testing.assert_close(part(x), before, atol=0, rtol=0)
    shares = hasattr(fused, "packed") and parts[0].packed.data_ptr() == fused.packed.data_ptr()
    assert shares == (bits == 8 or all(n % 64 == 0 for n in rows))  # int4 rows are packed in blocks of 64


@pytest.mark.parametrize("bits", [4, 8])
def test_each_precision_stores_its_own_bit_width(tiny, bits):
    quantized = quantize_model(tiny.loaded_model, bits)
    layers = [m for m in quantized.modules() if isinstance(m, QuantizedLinear) and m is not quantized.lm_head]
    assert layers and {layer.bits for layer in layers} == {bits}
    assert quantized.lm_head.bits == 8  # the tied head and embedding stay 8-bit in both


def test_quantizing_leaves_the_float_model_untouched(tiny):
    before = {name: tensor.clone() for name, tensor in tiny.loaded_model.state_dict().items()}
    quantized = quantize_model(tiny.loaded_model, 4)
    assert isinstance(quantized.lm_head, QuantizedLinear) and quantized.lm_head.bits == 8
    assert all(p.dtype == torch.bfloat16 for p in quantized.parameters())
    after = tiny.loaded_model.state_dict()
    assert all(torch.equal(before[name], after[name]) for name in before)
    assert all(type(m) is not QuantizedLinear for m in tiny.loaded_model.modules())


def test_streamed_text_never_splits_a_character(tiny):
    from pipelines.text.decoder import IncrementalText

    class ByteTokenizer:  # one token per UTF-8 byte, as a byte-level BPE falls back to
        def decode(self, ids, skip_special_tokens=True):
            return bytes(ids).decode("utf-8", errors="replace")

    text = "Ça coûte 5 € 🌊 ok"
    assembler = IncrementalText(ByteTokenizer())
    pieces = [assembler.add(byte) for byte in text.encode("utf-8")] + [assembler.rest()]
    assert "".join(pieces) == text
    assert all("\ufffd" not in piece for piece in pieces)


def generate_at_once(generator: TextGenerator, questions: list[str], settings, precision: str) -> list[list[int]]:
    """Each question's new ids, all submitted at once from their own threads."""
    results: dict[int, list[int]] = {}

    def run(i: int) -> None:
        results[i] = generator.generate(questions[i], settings[i], precision=precision).new_ids

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(questions))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [results[i] for i in range(len(questions))]


@pytest.mark.slow
def test_real_smollm2_batched_requests_match_their_solo_runs():
    generator = registry.load("smollm2-135m")
    questions = ["What is the capital of France?", "Name three colours.", "Write a haiku about rain."]
    settings = [SamplingSettings(max_new_tokens=24, temperature=t, seed=5) for t in (0, 0.8, 0)]
    for precision in generator.precisions:
        alone = [generator.generate(q, s, precision=precision).new_ids for q, s in zip(questions, settings)]
        assert generate_at_once(generator, questions, settings, precision) == alone, precision
    greedy = SamplingSettings(max_new_tokens=16, temperature=0)
    assert "Paris" in generator.generate("What is the capital of France?", greedy, precision="float32").text
    # Seven at once, as many as a room sends: the same texts as alone.
    more = [*questions, "Count to five.", "Name a fruit.", "What is two plus two?"]
    more_settings = [SamplingSettings(max_new_tokens=24, temperature=0.8 * (i % 2), seed=i) for i in range(len(more))]
    default = generator.precisions[0]
    alone = [generator.generate(q, s, precision=default).new_ids for q, s in zip(more, more_settings)]
    assert generate_at_once(generator, more, more_settings, default) == alone


def test_the_decoder_uses_every_core_unless_other_work_computes(tiny):
    runner = make_runner(tiny.variant("float32").model, 8, matmul_rows("float32", "cpu"))
    decoder = BatchedDecoder(runner, set(), 1 << 30)
    decoder.default_threads = 2
    assert decoder._threads_now() == 2
    with cpu_threads.heavy_work():
        assert decoder._threads_now() == 1
        with cpu_threads.heavy_work():
            assert decoder._threads_now() == 1
        assert decoder._threads_now() == 1
    assert decoder._threads_now() == 2
    decoder.threads = 3  # a fixed count wins
    with cpu_threads.heavy_work():
        assert decoder._threads_now() == 3
