"""The number formats a text model runs in: the choices a device offers, and the model copy for each one."""

from __future__ import annotations

import copy

import torch
from torch import nn

from pipelines.text.options import MAX_BATCH, PRECISIONS
from pipelines.text.quantization import quantize_model

QUANTIZED_BITS = {"int4": 4, "int8": 8}


def precision_choices(device_type: str) -> tuple[str, ...]:
    """The precisions offered on this kind of device, the default first."""
    return PRECISIONS.get(device_type, PRECISIONS["cuda"])


def check_precision(precision: str, device_type: str) -> str:
    """`precision` if this device offers it; else a ValueError naming the choices."""
    choices = precision_choices(device_type)
    if precision not in choices:
        raise ValueError(f"precision must be one of {', '.join(choices)} on this {device_type} (got {precision!r}).")
    return precision


def model_in_precision(model: nn.Module, precision: str) -> nn.Module:
    """The model itself when it already is in `precision`, else a copy converted or quantized to it."""
    if precision in QUANTIZED_BITS:
        return quantize_model(model, QUANTIZED_BITS[precision])
    dtype = getattr(torch, precision)
    if next(model.parameters()).dtype == dtype:
        return model
    return copy.deepcopy(model).to(dtype)


def matmul_rows(precision: str, device_type: str) -> int | None:
    """How a decode step's matrix products must treat the batch for each row to get the numbers it gets alone.

    None: as they come (torch's weight-only int4/int8 kernels compute each row on its own). 1: row by row
    (float products on a CPU round a row differently beside others: MKL picks its kernel by the row count).
    N: always padded to N rows (on a GPU a fixed shape keeps the kernel, and extra rows cost little there).
    """
    if precision in QUANTIZED_BITS:
        return None
    return 1 if device_type == "cpu" else MAX_BATCH.get(device_type, MAX_BATCH["cuda"])
