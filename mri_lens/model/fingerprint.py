"""A fingerprint of every weight of a model: SHA-256 over the bytes of every parameter and persistent buffer.

What it covers: each tensor's name, dtype, shape and every byte of its values in row-major order (so the same
values give the same fingerprint whatever the memory layout or device they sit on, and an edit of one element of
one tensor, a scaled matrix, swapped layers or another dtype all give another one). Each tensor is hashed on its
own (in parallel threads: ``hashlib`` releases the GIL) and the fingerprint hashes the list of ``(name, dtype,
shape, digest)`` in name order, so it does not depend on thread scheduling.

Where the bytes come from: CPU tensors are read in place; tensors on an accelerator are copied to the host in
chunks of :data:`CHUNK_BYTES` (never a second copy of the model); parameters that ``accelerate`` offloaded (on the
``meta`` device, their values in the module hook's ``weights_map``, on the CPU or on disk) are read from there.
A tensor with no values anywhere (a model built on the meta device) raises :class:`ModelAdapterError`: the scan
could not run it either. Cost and the choice of a full hash over a sample: ``bench/RESULTS.md``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..errors import ModelAdapterError

__all__ = ["CHUNK_BYTES", "FINGERPRINT_FORMAT", "named_weights", "tensor_digest", "weights_fingerprint"]

CHUNK_BYTES = 64 << 20  # host copy of a tensor that lives on an accelerator, per step
FINGERPRINT_FORMAT = "mri_lens.weights/sha256/1"


def _offloaded(module: Any, name: str) -> Any:
    """The value ``accelerate`` keeps for ``module.<name>`` while the parameter itself sits on ``meta``."""
    hook = getattr(module, "_hf_hook", None)
    hooks = list(getattr(hook, "hooks", None) or ([hook] if hook is not None else []))
    for h in hooks:
        weights = getattr(h, "weights_map", None)
        if weights is not None:
            try:
                return weights[name]
            except KeyError:
                continue
    return None


def named_weights(model: Any) -> list[tuple[str, Any]]:
    """Every parameter and persistent buffer of ``model`` (a ``torch.nn.Module``), by name, each tensor once (tied
    weights under their first name), offloaded values in place of their ``meta`` placeholders, sorted by name."""
    seen: set[int] = set()
    out: list[tuple[str, Any]] = []
    for prefix, module in model.named_modules():
        skip = getattr(module, "_non_persistent_buffers_set", set())
        tensors = [(n, t, True) for n, t in module._parameters.items()] + \
            [(n, t, False) for n, t in module._buffers.items() if n not in skip]
        for name, t, is_param in tensors:
            if t is None or id(t) in seen:
                continue
            seen.add(id(t))
            full = f"{prefix}.{name}" if prefix else name
            if t.device.type == "meta":
                value = _offloaded(module, name)
                if value is None:
                    raise ModelAdapterError(
                        f"cannot fingerprint the model's weights: {'parameter' if is_param else 'buffer'} {full} "
                        "is on the meta device and no offloaded copy of it was found (load the weights first)")
                t = value
            out.append((full, t))
    out.sort(key=lambda x: x[0])
    return out


def _chunks(t: Any) -> Iterator[memoryview]:
    """The bytes of ``t``'s values in row-major order, as host buffers: the tensor itself when it is a contiguous
    CPU tensor, else slices of at most ~:data:`CHUNK_BYTES` copied to the host one at a time."""
    import torch

    t = t.detach()
    if t.dim() == 0:
        t = t.reshape(1)
    if t.numel() == 0:
        return
    if t.device.type == "cpu" and t.is_contiguous():
        yield memoryview(t.reshape(-1).view(torch.uint8).numpy())
        return
    row_bytes = max(t[0].numel() * t.element_size(), 1)
    step = max(1, CHUNK_BYTES // row_bytes)
    for a in range(0, t.shape[0], step):
        part = t[a:a + step].contiguous().to("cpu")
        yield memoryview(part.reshape(-1).view(torch.uint8).numpy())


def tensor_digest(t: Any) -> str:
    """SHA-256 of the bytes of ``t``'s values, row-major (any device, any dtype: bf16 and fp8 included)."""
    import torch

    h = hashlib.sha256()
    with torch.no_grad():
        for buf in _chunks(t):
            h.update(buf)
    return h.hexdigest()


def weights_fingerprint(model: Any, *, threads: int | None = None) -> str | None:
    """SHA-256 fingerprint of every parameter and persistent buffer of ``model`` (see the module docstring).

    ``model``: a ``torch.nn.Module`` (a TransformerLens ``HookedTransformer`` or ``TransformerBridge``, a Hugging
    Face model); ``threads``: hashing threads (default: the CPUs, at most 8). Returns the hex digest, or None for an
    object that has no ``named_modules`` or no weights at all."""
    if not hasattr(model, "named_modules"):
        return None
    weights = named_weights(model)
    if not weights:
        return None
    n = threads or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=max(1, min(n, len(weights)))) as pool:
        digests = list(pool.map(tensor_digest, [t for _, t in weights]))
    listing = [[name, str(t.dtype).replace("torch.", ""), list(t.shape), d]
               for (name, t), d in zip(weights, digests)]
    return hashlib.sha256(json.dumps([FINGERPRINT_FORMAT, listing], separators=(",", ":")).encode()).hexdigest()
