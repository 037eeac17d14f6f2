"""Weight-only 4- and 8-bit copies of a transformers causal LM: its linear layers and its tied embedding / head.

Decoding one token reads every weight once, so on a CPU its speed is set by how many bytes the weights take.
Stored as small integers with a scale per group of values, the linear layers take a quarter (int8) or an eighth
(int4) of their float32 bytes; torch's weight-only kernels multiply them with bfloat16 activations directly.

int4 uses groups of 32 values along each row with a scale and an offset: the GGUF file's own Q4_1 layout, so
re-quantizing the built-in model's de-quantized weights gives back the file's 4-bit numbers (the scales rounded
to bfloat16). The output head, which shares its weights with the token embedding, stays 8-bit in both (the file
stores it in 8 bits, Q8_0). A quantized model is still a transformers model: its forward pass, hooks and look-inside
views work on it unchanged.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

INT4_GROUP = 32  # values sharing one scale and offset, as in GGUF's Q4_1
INT4_ROWS_MULTIPLE = 16  # torch's CPU int4 packing needs the row count to be a multiple of 16
INT4_ROW_BLOCK = 64  # ... and interleaves rows in blocks of 64: only whole blocks can be cut out or joined
ACTIVATIONS = torch.bfloat16  # the dtype torch's weight-only kernels multiply with
# From this many rows (a prompt, the look-inside pass) the bfloat16 copy of the weights is faster: the CPU's
# matrix units multiply it in large tiles, while the weight-only kernels are built for a few rows at a time.
DENSE_ROWS = 16


def quantize_int8(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Symmetric int8 with one scale per row: int8 values (N, K), bfloat16 scales (N,), and the float32
    weights they stand for."""
    weight = weight.float()
    scales = (weight.abs().amax(dim=1) / 127).clamp(min=1e-12).to(ACTIVATIONS)
    values = torch.round(weight / scales.float()[:, None]).clamp(-127, 127).to(torch.int8)
    return values, scales, values.float() * scales.float()[:, None]


def quantize_int4(weight: torch.Tensor, group: int = INT4_GROUP) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """4-bit values with a scale and an offset per group of `group` values of a row (GGUF's Q4_1 scheme).

    Returns torch's CPU int4 packing (N, K/2), its (K/group, N, 2) bfloat16 scales and zero points (the kernel
    computes each weight as (value - 8) * scale + zero), and the float32 weights they stand for.
    """
    rows, columns = weight.shape
    groups = weight.float().reshape(rows, columns // group, group)
    low, high = groups.amin(dim=-1, keepdim=True), groups.amax(dim=-1, keepdim=True)
    scale = ((high - low) / 15).clamp(min=1e-12).to(ACTIVATIONS).float()
    zero = (low + 8 * scale).to(ACTIVATIONS).float()  # the kernel centres values on 8
    values = torch.round((groups - zero) / scale + 8).clamp(0, 15)
    dequantized = ((values - 8) * scale + zero).reshape(rows, columns)
    scales_and_zeros = torch.stack([scale[..., 0], zero[..., 0]], dim=-1).transpose(0, 1).contiguous()
    packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(values.to(torch.int32).reshape(rows, columns), 1)
    return packed, scales_and_zeros.to(ACTIVATIONS), dequantized


def int4_fits(linear: nn.Linear) -> bool:
    return linear.in_features % INT4_GROUP == 0 and linear.out_features % INT4_ROWS_MULTIPLE == 0


class QuantizedLinear(nn.Module):
    """A bias-free or biased linear layer stored in 4 or 8 bits; takes and returns bfloat16.

    A few rows at a time (decoding) go through torch's weight-only kernels, which give each row the same
    result whatever other rows share the call, so requests decoded together get exactly the numbers they
    get alone. Longer inputs use a bfloat16 copy of the de-quantized weights (see DENSE_ROWS).
    """

    def __init__(self, linear: nn.Linear, bits: int, keep_dense: bool = True):
        super().__init__()
        if bits not in (4, 8):
            raise ValueError(f"bits must be 4 or 8 (got {bits!r}).")
        self.in_features, self.out_features, self.bits = linear.in_features, linear.out_features, bits
        weight = linear.weight.detach().float().cpu()
        packed, scales, dequantized = quantize_int4(weight) if bits == 4 else quantize_int8(weight)
        self.register_buffer("packed", packed)
        self.register_buffer("scales", scales)
        bias = linear.bias.detach().to(ACTIVATIONS) if linear.bias is not None else None
        self.register_buffer("bias", bias)
        self.register_buffer("dense", dequantized.to(ACTIVATIONS) if keep_dense else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features).to(ACTIVATIONS)
        if self.dense is not None and rows.shape[0] >= DENSE_ROWS:
            out = F.linear(rows, self.dense)
        elif self.bits == 4:
            out = torch.ops.aten._weight_int4pack_mm_for_cpu(rows, self.packed, INT4_GROUP, self.scales)
        else:
            out = torch.ops.aten._weight_int8pack_mm(rows, self.packed, self.scales)
        if self.bias is not None:
            out = out + self.bias
        return out.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bits={self.bits}"


class QuantizedEmbedding(nn.Module):
    """Token embeddings read from an int8 output head's rows (the model ties the two): one copy, 8 bits."""

    def __init__(self, head: QuantizedLinear):
        super().__init__()
        if head.bits != 8:
            raise ValueError("the tied embedding reads an 8-bit head")
        self.head = [head]  # a list, so the head is not registered twice as a submodule
        self.num_embeddings, self.embedding_dim = head.out_features, head.in_features

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        head = self.head[0]
        return head.packed[ids].to(ACTIVATIONS) * head.scales[ids].unsqueeze(-1)


def quantize_model(model: nn.Module, bits: int) -> nn.Module:
    """A copy of a float causal LM whose linear layers hold `bits`-bit weights and whose head and tied embedding
    hold 8-bit ones; norms and activations in bfloat16. The float model is left as it was (and shares nothing
    that changes)."""
    # Share the float tensors instead of copying them: every one that changes is replaced below, not modified.
    shared = {id(tensor): tensor for tensor in [*model.parameters(), *model.buffers()]}
    quantized = copy.deepcopy(model, memo=shared)
    head = quantized.get_output_embeddings()
    embedding = quantized.get_input_embeddings()
    tied = head is not None and embedding is not None and head.weight is embedding.weight
    for parent in list(quantized.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.Linear):
                child_bits = 8 if child is head or bits == 8 or not int4_fits(child) else 4
                setattr(parent, name, QuantizedLinear(child, child_bits, keep_dense=child is not head))
    new_head = quantized.get_output_embeddings()
    if tied:
        quantized.set_input_embeddings(QuantizedEmbedding(new_head))
    # Everything still in float (norms, an untied embedding) moves to bfloat16 as new tensors.
    for module in quantized.modules():
        for name, parameter in list(module.named_parameters(recurse=False)):
            if parameter.is_floating_point():
                setattr(module, name, nn.Parameter(parameter.detach().to(ACTIVATIONS), requires_grad=False))
    quantized.config = copy.deepcopy(model.config)
    quantized.config.dtype = ACTIVATIONS
    return quantized.eval()


def fuse_rows(parts: list[nn.Module]) -> nn.Module:
    """One layer computing several layers that read the same input (query, key and value; gate and up), their
    outputs side by side, so a decode step makes one matrix call instead of several.

    The parts keep working and share the fused layer's weights (their rows of it), so nothing is stored twice
    except the small int4 scale tables. Parts that do not match (other bit widths) are run one after another.
    """
    if all(type(part) is nn.Linear for part in parts) and len({p.bias is None for p in parts}) == 1:
        fused = nn.Linear(parts[0].in_features, sum(p.out_features for p in parts), bias=parts[0].bias is not None)
        fused = fused.to(device=parts[0].weight.device, dtype=parts[0].weight.dtype)
        fused.weight = nn.Parameter(torch.cat([p.weight.detach() for p in parts]), requires_grad=False)
        if fused.bias is not None:
            fused.bias = nn.Parameter(torch.cat([p.bias.detach() for p in parts]), requires_grad=False)
        start = 0
        for part in parts:
            rows = slice(start, start + part.out_features)
            part.weight = nn.Parameter(fused.weight.detach()[rows], requires_grad=False)
            if part.bias is not None:
                part.bias = nn.Parameter(fused.bias.detach()[rows], requires_grad=False)
            start += part.out_features
        return fused
    quantized = (
        all(isinstance(p, QuantizedLinear) for p in parts) and len({(p.bits, p.dense is None) for p in parts}) == 1
    )
    if quantized and (parts[0].bits == 8 or all(p.out_features % INT4_ROW_BLOCK == 0 for p in parts)):
        fused = copy.copy(parts[0])  # the module's settings; every tensor is replaced below
        fused._buffers = dict(parts[0]._buffers)
        fused.out_features = sum(p.out_features for p in parts)
        for name, dim in (("packed", 0), ("scales", 1 if parts[0].bits == 4 else 0), ("bias", 0), ("dense", 0)):
            tensors = [getattr(p, name) for p in parts]
            fused._buffers[name] = None if tensors[0] is None else torch.cat(tensors, dim=dim)
        start = 0
        for part in parts:
            rows = slice(start, start + part.out_features)
            part.packed = fused.packed[rows]  # whole blocks of rows (see INT4_ROW_BLOCK) slice cleanly
            if part.dense is not None:
                part.dense = fused.dense[rows]
            start += part.out_features
        return fused
    return SideBySide(parts)


class SideBySide(nn.Module):
    """Several layers on the same input, outputs concatenated (when their weights cannot be fused)."""

    def __init__(self, parts: list[nn.Module]):
        super().__init__()
        self.parts = nn.ModuleList(parts)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([part(x) for part in self.parts], dim=-1)
