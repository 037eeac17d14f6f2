"""A lean forward pass of a Llama-family model for decoding many requests at once (the decoder's fast runner).

The transformers model's own layers hold the weights (float, or quantized by `quantization.py`); this file
only runs them with less Python per token than `model.generate` and with one key/value cache for a whole
batch of requests, each at its own position:

    cache (per layer)   keys, values: (slots, kv_heads, capacity, head_dim); request i lives in slot i
    decode step         tokens (B,) -> embeddings (B, hidden) -> 30 x [attention over each row's own
                        cached keys, through a mask; MLP] -> logits (B, vocabulary)
    prefill             one request's prompt, in chunks, into its own cache, then copied into a free slot;
                        chunks of several requests that arrive together share one forward pass

Why every request gets exactly the numbers it gets alone: the matrix products of a decode step treat each
row on its own (the quantized kernels do; float32 ones are run row by row), and attention always reads a
key length that is a multiple of KEY_BLOCK with the unused keys masked out, which torch's attention kernel
turns into exact zeros whatever the padded length.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from pipelines.text.quantization import fuse_rows

KEY_BLOCK = 64  # attention reads keys in whole blocks; caches grow by whole blocks
PREFILL_CHUNK = 256  # prompt tokens per prefill call, so a long prompt does not stall the batch for long
PREFILL_ROWS = 64  # rows of every matrix product while reading prompts (see prefill_together)


def round_up(value: int, block: int = KEY_BLOCK) -> int:
    return -(-value // block) * block


def supports(model: nn.Module) -> bool:
    """Whether the model has the Llama layout this runner reads (SmolLM2, Llama, and their fine-tunes)."""
    config = model.config
    return (
        getattr(config, "model_type", None) == "llama"
        and getattr(config, "hidden_act", None) == "silu"
        and (getattr(config, "rope_parameters", None) or {}).get("rope_type", "default") == "default"
        and hasattr(model, "model")
        and hasattr(model.model, "layers")
    )


@dataclass
class Sequence:
    """One request's place in the runner: its length so far and, while its prompt is read, its own cache."""

    length: int = 0
    slot: int | None = None  # its row in the batch cache once decoding
    keys: list[torch.Tensor] = field(default_factory=list)  # per layer (1, kv_heads, capacity, head_dim)
    values: list[torch.Tensor] = field(default_factory=list)


class LlamaRunner:
    def __init__(self, model: nn.Module, max_batch: int, rows: int | None = None):
        config = model.config
        self.model = model
        self.layers = list(model.model.layers)
        self.heads = config.num_attention_heads
        self.kv_heads = config.num_key_value_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // self.heads
        self.hidden_shape = (config.hidden_size,)
        self.epsilon = config.rms_norm_eps
        self.scaling = self.head_dim**-0.5
        self.max_batch = max_batch
        # How matrix products treat the batch (precision.matmul_rows): None as is, 1 row by row, N padded to N.
        self.rows = rows
        # One matrix call for query, key and value, one for gate and up (the model's layers share their weights).
        self.qkv = [fuse_rows([a.q_proj, a.k_proj, a.v_proj]) for a in (layer.self_attn for layer in self.layers)]
        self.gate_up = [fuse_rows([layer.mlp.gate_proj, layer.mlp.up_proj]) for layer in self.layers]
        first = self.layers[0].input_layernorm.weight
        self.dtype, self.device = first.dtype, first.device
        rotary = model.model.rotary_emb
        self.inverse_frequencies = rotary.inv_freq.float().to(self.device)
        self.rope_scaling = float(getattr(rotary, "attention_scaling", 1.0))
        self.slots: list[Sequence] = []  # decoding sequences; sequence i in slot i
        self.cache_keys: torch.Tensor | None = None  # (layers, slots, kv_heads, capacity, head_dim)
        self.cache_values: torch.Tensor | None = None

    # ------------------------------------------------------------------ memory

    @property
    def bytes_per_token(self) -> int:
        """Key/value cache bytes one token of one request takes."""
        element = torch.empty((), dtype=self.dtype).element_size()
        return 2 * len(self.layers) * self.kv_heads * self.head_dim * element

    @property
    def capacity(self) -> int:
        return 0 if self.cache_keys is None else self.cache_keys.shape[3]

    def reserve(self, length: int) -> None:
        """Make every slot able to hold `length` tokens (the longest prompt + answer admitted)."""
        capacity = round_up(length)
        if capacity <= self.capacity:
            return
        shape = (len(self.layers), self.max_batch, self.kv_heads, capacity, self.head_dim)
        keys = torch.zeros(shape, dtype=self.dtype, device=self.device)  # zeros: masked keys must stay finite
        values = torch.zeros(shape, dtype=self.dtype, device=self.device)
        if self.cache_keys is not None:
            keys[:, :, :, : self.capacity] = self.cache_keys
            values[:, :, :, : self.capacity] = self.cache_values
        self.cache_keys, self.cache_values = keys, values

    def release_memory(self) -> None:
        """Drop the batch cache (when no request is left), so an idle model holds only its weights."""
        self.cache_keys = self.cache_values = None
        self.slots = []

    # ------------------------------------------------------------------ requests

    def new_sequence(self) -> Sequence:
        return Sequence()

    def prefill(self, sequence: Sequence, ids: list[int], all_logits: bool = False) -> torch.Tensor:
        """Read `ids` after what the sequence holds; logits (vocabulary,) for the last, or (len(ids), vocabulary)."""
        outputs = []
        for start in range(0, len(ids), PREFILL_CHUNK):
            outputs.append(self.prefill_together([(sequence, ids[start : start + PREFILL_CHUNK])], all_logits)[0])
        return torch.cat(outputs) if all_logits else outputs[-1]

    @torch.inference_mode()
    def prefill_together(self, parts: list[tuple[Sequence, list[int]]], all_logits: bool = False) -> list[torch.Tensor]:
        """Read several sequences' next tokens in one forward pass: a room's prompts arriving at once share one
        read of the weights. Each sequence attends to its own cache only. Logits per part, as `prefill` gives.

        Matrix products run on blocks of exactly PREFILL_ROWS rows (the last one padded): a product's rounding
        depends on its row count, never on a row's place in the block or its neighbours, so a prompt gets the
        same numbers alone or beside others."""
        spans, start_row = [], 0
        for sequence, ids in parts:
            start, count = sequence.length, len(ids)
            if not sequence.keys or sequence.keys[0].shape[2] < round_up(start + count):
                self._grow_own_cache(sequence, round_up(start + count))
            positions = torch.arange(start, start + count, device=self.device)
            # Query i (position start + i) sees keys 0 .. start + i.
            visible = torch.arange(round_up(start + count), device=self.device)[None, :] <= positions[:, None]
            spans.append((sequence, slice(start_row, start_row + count), start, self._mask(visible)[None, None]))
            start_row += count

        def attend(index: int, query, key, value):
            outputs = []
            for sequence, rows, start, mask in spans:
                end, length = start + rows.stop - rows.start, mask.shape[-1]
                sequence.keys[index][0, :, start:end] = key[rows].transpose(0, 1)
                sequence.values[index][0, :, start:end] = value[rows].transpose(0, 1)
                attended = F.scaled_dot_product_attention(
                    query[rows].transpose(0, 1)[None],  # (1, heads, count, head_dim)
                    sequence.keys[index][:, :, :length],
                    sequence.values[index][:, :, :length],
                    attn_mask=mask,
                    scale=self.scaling,
                    enable_gqa=True,
                )
                outputs.append(attended[0].transpose(0, 1).reshape(rows.stop - rows.start, -1))
            return torch.cat(outputs)

        tokens = torch.tensor([token for _, ids in parts for token in ids], device=self.device)
        positions = torch.cat([torch.arange(start, start + r.stop - r.start) for _, r, start, _ in spans])
        hidden = self._layers(tokens, positions.to(self.device), attend, _row_blocks)
        results = []
        for (sequence, rows, _, _), (_, ids) in zip(spans, parts):
            sequence.length += len(ids)
            last = hidden[rows] if all_logits else hidden[rows.stop - 1 : rows.stop]
            logits = self._logits(last, _call)  # the head is a row-by-row kernel (8-bit)
            results.append(logits if all_logits else logits[0])
        return results

    def _grow_own_cache(self, sequence: Sequence, capacity: int) -> None:
        shape = (1, self.kv_heads, capacity, self.head_dim)
        for store in (sequence.keys, sequence.values):
            grown = [torch.zeros(shape, dtype=self.dtype, device=self.device) for _ in self.layers]
            for index, old in enumerate(store):
                grown[index][:, :, : old.shape[2]] = old
            store[:] = grown

    def activate(self, sequence: Sequence) -> None:
        """Move a prefilled sequence into the first free slot of the batch cache (reserve() made room)."""
        slot = len(self.slots)
        if slot >= self.max_batch:
            raise RuntimeError("the decoder admitted more requests than the batch holds")
        length = sequence.length
        for index in range(len(self.layers)):
            self.cache_keys[index, slot, :, :length] = sequence.keys[index][0, :, :length]
            self.cache_values[index, slot, :, :length] = sequence.values[index][0, :, :length]
        sequence.keys, sequence.values = [], []
        sequence.slot = slot
        self.slots.append(sequence)

    def release(self, sequence: Sequence) -> None:
        """Free the sequence's slot; the last slot moves into it, so active slots stay 0 .. n-1."""
        sequence.keys, sequence.values = [], []
        if sequence.slot is None:
            return
        slot, last = sequence.slot, len(self.slots) - 1
        if slot != last:
            moved = self.slots[last]
            self.cache_keys[:, slot] = self.cache_keys[:, last]
            self.cache_values[:, slot] = self.cache_values[:, last]
            moved.slot = slot
            self.slots[slot] = moved
        self.slots.pop()
        sequence.slot = None

    @property
    def active(self) -> list[Sequence]:
        """The decoding sequences, in slot order (the order of `decode`'s tokens and logits)."""
        return list(self.slots)

    # ------------------------------------------------------------------ decoding

    @torch.inference_mode()
    def decode(self, tokens: list[int]) -> torch.Tensor:
        """One step for every active sequence: token i is appended to slot i; logits (B, vocabulary)."""
        batch = len(tokens)
        positions = torch.tensor([sequence.length for sequence in self.slots], device=self.device)
        rows = torch.arange(batch, device=self.device)
        length = round_up(int(positions.max()) + 1)
        mask = self._mask(torch.arange(length, device=self.device)[None, :] <= positions[:, None])[:, None, None]

        def attend(index: int, query, key, value):
            keys, values = self.cache_keys[index], self.cache_values[index]
            keys[rows, :, positions] = key
            values[rows, :, positions] = value
            attended = F.scaled_dot_product_attention(
                query[:, :, None],  # (B, heads, 1, head_dim)
                keys[:batch, :, :length],
                values[:batch, :, :length],
                attn_mask=mask,
                scale=self.scaling,
                enable_gqa=True,
            )
            return attended.reshape(batch, -1)

        linear = self._batch_linear(batch)
        hidden = self._layers(torch.tensor(tokens, device=self.device), positions, attend, linear)
        for sequence in self.slots:
            sequence.length += 1
        return self._logits(hidden, linear)

    def _layers(self, tokens: torch.Tensor, positions: torch.Tensor, attend, linear) -> torch.Tensor:
        """Embeddings of `tokens` (N,) at `positions` through every layer; `attend(layer, q, k, v)` reads and
        writes the cache and returns the attention output (N, heads x head_dim)."""
        count, heads, kv_heads = tokens.shape[0], self.heads, self.kv_heads
        cos, sin = self._rotary(positions)
        hidden = self.model.model.embed_tokens(tokens)  # (N, hidden)
        for index, layer in enumerate(self.layers):
            normed = F.rms_norm(hidden, self.hidden_shape, layer.input_layernorm.weight, self.epsilon)
            projected = linear(self.qkv[index], normed).view(count, heads + 2 * kv_heads, self.head_dim)
            rotated = _rotate(projected[:, : heads + kv_heads], cos, sin)  # queries and keys at once
            attended = attend(index, rotated[:, :heads], rotated[:, heads:], projected[:, heads + kv_heads :])
            hidden = hidden + linear(layer.self_attn.o_proj, attended)
            normed = F.rms_norm(hidden, self.hidden_shape, layer.post_attention_layernorm.weight, self.epsilon)
            gate, up = linear(self.gate_up[index], normed).chunk(2, dim=-1)
            hidden = hidden + linear(layer.mlp.down_proj, F.silu(gate) * up)
        return hidden

    def _logits(self, hidden: torch.Tensor, linear) -> torch.Tensor:
        norm = self.model.model.norm
        return linear(self.model.lm_head, F.rms_norm(hidden, self.hidden_shape, norm.weight, self.epsilon)).float()

    def _mask(self, visible: torch.Tensor) -> torch.Tensor:
        """An additive attention mask (0 where visible, -inf elsewhere), built once per call for every layer."""
        return torch.zeros(visible.shape, dtype=self.dtype, device=self.device).masked_fill_(~visible, float("-inf"))

    def _batch_linear(self, batch: int):
        """`linear(module, rows)` for a decode step of `batch` rows, treating rows as `self.rows` says."""
        if self.rows is None or (self.rows == 1 and batch == 1):
            return _call
        if self.rows == 1:
            return lambda module, rows: torch.cat([module(row) for row in rows.split(1)])
        return lambda module, rows: module(F.pad(rows, (0, 0, 0, self.rows - rows.shape[0])))[: rows.shape[0]]

    def _rotary(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sign-folded sin (N, 1, head_dim) at these positions, as transformers computes the angles."""
        frequencies = positions[:, None].float() * self.inverse_frequencies[None, :]
        angles = torch.cat((frequencies, frequencies), dim=-1)
        cos, sin = angles.cos() * self.rope_scaling, angles.sin() * self.rope_scaling
        half = sin.shape[-1] // 2
        sin = torch.cat((-sin[:, :half], sin[:, half:]), dim=-1)  # rotate_half's minus sign, folded in
        return cos.to(self.dtype)[:, None], sin.to(self.dtype)[:, None]


def _call(module: nn.Module, rows: torch.Tensor) -> torch.Tensor:
    return module(rows)


def _row_blocks(module: nn.Module, rows: torch.Tensor) -> torch.Tensor:
    """module(rows) computed on blocks of exactly PREFILL_ROWS rows, the last one padded with zeros."""
    count = rows.shape[0]
    padded = F.pad(rows, (0, 0, 0, round_up(count, PREFILL_ROWS) - count))
    return torch.cat([module(block) for block in padded.split(PREFILL_ROWS)])[:count]


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary position embedding of x (N, heads, head_dim): x cos + rotate_half(x) sin, with the sign in `sin`."""
    return x * cos + x.roll(x.shape[-1] // 2, dims=-1) * sin
