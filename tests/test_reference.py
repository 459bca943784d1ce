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

# Arrays allowed to differ by float rounding, and why (none today: the merge order did not change).
ROUNDING: dict[str, str] = {}

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
        assert json.loads(json.dumps(js)) == json.loads((REFERENCE / f"{name}.json").read_text())
