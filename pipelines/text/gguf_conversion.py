"""The built-in model's GGUF file to a transformers folder (safetensors), reading the file once.

transformers can load a GGUF file itself, but it reads the whole file three times (configuration, tokenizer,
weights) and looks up every tensor's name through a mapping rebuilt for each one: most of a minute on 2 cores.
This reads the tensors once, de-quantizes them with the `gguf` package and names them by the Llama layout,
undoing the query/key row order llama.cpp's converter wrote; the tokenizer still comes from transformers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

# GGUF tensor names (per block, "blk.N.") and their transformers names (per layer, "model.layers.N.").
LLAMA_BLOCK_TENSORS = {
    "attn_norm": "input_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_norm": "post_attention_layernorm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
LLAMA_TENSORS = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}


def _field(reader, key: str, default=None):
    field = reader.fields.get(key)
    return default if field is None else field.contents()


def llama_config(reader):
    """A transformers LlamaConfig from the file's `llama.*` and token-id fields."""
    from transformers import LlamaConfig

    architecture = _field(reader, "general.architecture")
    if architecture != "llama":
        raise ValueError(f"this converter reads Llama GGUF files (this one is {architecture!r})")
    heads = _field(reader, "llama.attention.head_count")
    hidden = _field(reader, "llama.embedding_length")
    vocabulary = _field(reader, "llama.vocab_size") or len(reader.fields["tokenizer.ggml.tokens"].data)
    return LlamaConfig(
        vocab_size=vocabulary,
        hidden_size=hidden,
        intermediate_size=_field(reader, "llama.feed_forward_length"),
        num_hidden_layers=_field(reader, "llama.block_count"),
        num_attention_heads=heads,
        num_key_value_heads=_field(reader, "llama.attention.head_count_kv", heads),
        head_dim=_field(reader, "llama.rope.dimension_count", hidden // heads),
        max_position_embeddings=_field(reader, "llama.context_length"),
        rms_norm_eps=_field(reader, "llama.attention.layer_norm_rms_epsilon"),
        rope_parameters={"rope_type": "default", "rope_theta": _field(reader, "llama.rope.freq_base", 10000.0)},
        bos_token_id=_field(reader, "tokenizer.ggml.bos_token_id"),
        eos_token_id=_field(reader, "tokenizer.ggml.eos_token_id"),
        pad_token_id=_field(reader, "tokenizer.ggml.padding_token_id"),
        unk_token_id=_field(reader, "tokenizer.ggml.unknown_token_id"),
        tie_word_embeddings=all(tensor.name != "output.weight" for tensor in reader.tensors),
        dtype=torch.float32,
    )


def unpermute_rows(weight: np.ndarray, heads: int) -> np.ndarray:
    """Undo llama.cpp's interleaving of each head's rotary halves in a query or key matrix (rows = heads x dim)."""
    half = weight.shape[0] // heads // 2
    return weight.reshape(heads, half, 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def llama_state_dict(reader, config) -> dict[str, torch.Tensor]:
    """Every tensor of the file, de-quantized to float32 and named as transformers names it."""
    from gguf import dequantize

    state = {}
    for tensor in reader.tensors:
        prefix, _, kind = tensor.name.rpartition(".")  # "blk.3.attn_q", "weight"
        if prefix.startswith("blk."):
            _, block, part = prefix.split(".", 2)
            name = f"model.layers.{block}.{LLAMA_BLOCK_TENSORS[part]}.{kind}"
        else:
            part = prefix
            name = f"{LLAMA_TENSORS[prefix]}.{kind}"
        shape = tuple(reversed([int(size) for size in tensor.shape]))  # GGUF lists the fastest dimension first
        values = dequantize(tensor.data, tensor.tensor_type).reshape(shape).astype(np.float32, copy=False)
        if part == "attn_q":
            values = unpermute_rows(values, config.num_attention_heads)
        elif part == "attn_k":
            values = unpermute_rows(values, config.num_key_value_heads)
        state[name] = torch.from_numpy(np.ascontiguousarray(values))
    return state


def convert_llama_gguf(gguf_path: Path, folder: Path) -> None:
    """Write a transformers folder (config, safetensors weights, tokenizer) for a Llama GGUF file."""
    from gguf import GGUFReader
    from safetensors.torch import save_file
    from transformers import AutoTokenizer, GenerationConfig

    reader = GGUFReader(gguf_path)
    config = llama_config(reader)
    state = llama_state_dict(reader, config)
    config.architectures = ["LlamaForCausalLM"]
    config.save_pretrained(folder)
    GenerationConfig.from_model_config(config).save_pretrained(folder)
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name).save_pretrained(folder)
