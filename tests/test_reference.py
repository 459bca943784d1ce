"""The same arrays as the code before the package split wrote (``tests/data/reference``, see ``SOURCE`` there):
a scan of the tiny LM and of MiniLM-L6 (two poolings, windows), region maps, the co-activation graph and one N2G
graph. Every array is compared exactly (``EXACT``) unless listed in ``ROUNDING`` with the reason."""

from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors.numpy import load_file

import mri_lens as ml
from mri_lens.model.loading import tl_major_version

from reference import REFERENCE, cases

# Arrays allowed to differ by float rounding, and why.
ROUNDING: dict[str, str] = {
    "tiny.n2g:predict": "N2G's forwards run GPT-2's gelu_new as torch's fused tanh GELU (the same formula): "
                        "activations differ in the last float32 bits (so do the graph JSON's trie values)",
}

pytestmark = pytest.mark.skipif(tl_major_version() < 3, reason="the reference was written with TransformerLens 4")


@pytest.fixture(scope="module")
def now(tiny, minilm):
    return cases(ml, tiny, minilm)


@pytest.mark.parametrize("name", ["tiny.scan", "minilm.scan", "tiny.maps", "minilm.maps", "tiny.graph",
                                  "minilm.graph", "tiny.n2g"])
def test_arrays_equal_the_reference(now, name):
    ref = load_file(str(REFERENCE / f"{name}.safetensors"))
    arrays, js = now[name]
    assert set(arrays) == set(ref), name
    for key, want in ref.items():
        got = np.atleast_1d(np.asarray(arrays[key]))  # safetensors stores a scalar as [1]
        assert got.shape == want.shape and got.dtype == want.dtype, f"{name}:{key}"
        if f"{name}:{key}" in ROUNDING:
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7, err_msg=f"{name}:{key}")
        else:
            np.testing.assert_array_equal(got, want, err_msg=f"{name}:{key}")
    if js is not None:
        got, want = json.loads(json.dumps(js)), json.loads((REFERENCE / f"{name}.json").read_text())
        if any(k.startswith(f"{name}:") for k in ROUNDING):  # the same structure, every float to rounding
            _assert_close_json(got, want, name)
        else:
            assert got == want


def _assert_close_json(got, want, path: str) -> None:
    """Equal JSON apart from floats, which agree to 1e-6 relative (ints, strings, keys and lengths exactly)."""
    if isinstance(want, float):
        assert isinstance(got, float) and abs(got - want) <= 1e-6 * max(1.0, abs(want)), (path, got, want)
    elif isinstance(want, dict):
        assert isinstance(got, dict) and set(got) == set(want), path
        for k in want:
            _assert_close_json(got[k], want[k], f"{path}/{k}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), path
        for i, (g, w) in enumerate(zip(got, want)):
            _assert_close_json(g, w, f"{path}[{i}]")
    else:
        assert got == want, (path, got, want)
