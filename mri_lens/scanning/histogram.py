"""Histogram bin edges of the scan's per-neuron statistics, and the bit-level bin lookup for the default edges.

A leaf module: the scan and its fused kernel both read it.
"""

from __future__ import annotations

import numpy as np

__all__ = ["default_histogram_edges"]


_LOG2_LO, _LOG2_HI, _LOG2_SUB = -6, 8, 4


def default_histogram_edges() -> np.ndarray:
    """115 finite edges (116 bins with the two open-ended ones), symmetric around 0 and log-spaced in magnitude:
    ``0``, then ``+-2**e * (1 + j/4)`` for ``|x|`` from ``2**-6`` (0.016) to ``2**8`` (256), four bins per octave.

    Relative resolution is 19-25% of the value everywhere in that range, which suits MLP activations (GELU's
    minimum is -0.17; large activations run to tens). Values beyond the outer edges fall into the open-ended first
    and last bins, so counts always sum to the token count. On the negative side a value exactly equal to an edge
    is counted in the bin below it (bins are intervals of magnitude; -0.0 counts as a tiny negative value);
    everywhere else bins are ``[e_i, e_i+1)``.
    """
    mags = [2.0 ** (e) * (1 + j / _LOG2_SUB) for e in range(_LOG2_LO, _LOG2_HI) for j in range(_LOG2_SUB)]
    mags.append(2.0 ** _LOG2_HI)
    mags = np.asarray(mags, dtype=np.float32)
    return np.concatenate([-mags[::-1], [0.0], mags]).astype(np.float32)


def _log2_lut(edges: np.ndarray):
    """For the default edges: ``(shift, mask, lut, first, n)`` such that ``lut[(bits(x) >> shift) & mask]`` is x's
    bin (``first``: the code of the smallest magnitude edge, ``n``: magnitude bins per sign); else None.

    The top bits of a float32 (sign, exponent, two leading mantissa bits) form an 11-bit code that is monotonic in
    |x| and log-spaced: four codes per octave, the same as the default edges. The lookup table maps each code to
    its bin: 0 (x <= -256), 1..n (negative magnitudes, largest first), n+1 (-2**-6 < x < 0), n+2
    (0 <= x < 2**-6), n+3..2n+2 (positive magnitudes), 2n+3 (x >= 256). Infinities land in the outer bins.
    """
    import torch

    default = default_histogram_edges()
    if edges.shape != default.shape or not np.array_equal(edges, default):
        return None
    sub_bits = int(np.log2(_LOG2_SUB))
    shift = 23 - sub_bits
    n_codes = 1 << (32 - shift)
    first = (127 + _LOG2_LO) << sub_bits  # code of 2**LO
    n = _LOG2_SUB * (_LOG2_HI - _LOG2_LO)
    code = np.arange(n_codes)
    neg = code >= n_codes // 2  # sign bit set
    i = np.clip(np.where(neg, code - n_codes // 2, code) - first, -1, n)
    lut = np.where(neg, n - i, i + n + 3).astype(np.int32)
    return shift, n_codes - 1, torch.as_tensor(lut), first, n
