"""With the real SAELens (its TL 2 environment, ``make test-tl2``): an ``sae_lens`` SAE object scans equal to
``sae.encode(cache[hook])``, and the project's own reader of the same directory gives the same latents as SAELens's
``load_from_disk`` for each architecture and normalisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import mri_lens as ml

from brute import check_scan, scan_of, tl_per_token
from saes import make_sae

sae_lens = pytest.importorskip("sae_lens", reason="SAELens installs beside TransformerLens < 4 (make test-tl2)")


def _encode(sae):
    def f(layer, x):
        with torch.inference_mode():
            return sae.encode(x.to(sae.dtype)).float()
    return f


@pytest.mark.parametrize("which", ["sae", "transcoder"])
def test_saelens_object_of_the_shipped_weights_scans_equal_to_its_encode(tiny, which):
    from sae_lens import SAE

    path = ml.models.tiny_sae_dir() if which == "sae" else ml.models.tiny_transcoder_dir()
    sae = SAE.load_from_disk(path)
    layer, kind = (2, "resid_post") if which == "sae" else (1, "mlp_in")
    units = ml.units.sae({layer: sae}) if which == "sae" else ml.units.transcoder({layer: sae})
    scan = scan_of(tiny, units)
    check_scan(scan, tl_per_token(tiny, scan, [layer], kind, _encode(sae)), skip=1, atol=2e-5)
    own = scan_of(tiny, ml.units.sae({layer: path}) if which == "sae" else ml.units.transcoder({layer: path}))
    np.testing.assert_allclose(own.pooled("mean"), scan.pooled("mean"), rtol=1e-5, atol=1e-5)


CASES = [("standard", {}), ("jumprelu", {}), ("topk", {"k": 7}),
         ("topk", {"k": 5, "rescale_acts_by_decoder_norm": True}),
         ("standard", {"normalize_activations": "constant_norm_rescale"}),
         ("standard", {"normalize_activations": "layer_norm"}),
         ("transcoder", {"d_out": 128}), ("jumprelu_transcoder", {"d_out": 128})]


@pytest.mark.parametrize("arch,extra", CASES)
def test_the_project_reader_equals_saelens_load_from_disk(tmp_path, arch, extra):
    from sae_lens import SAE

    from mri_lens.model.sae import SAEEncoder, read_sae_dir

    path, _, _ = make_sae(tmp_path / "s", 128, 96, "blocks.2.hook_resid_post", arch=arch, **extra)
    ref = SAE.load_from_disk(path)
    x = torch.randn(50, 128, generator=torch.Generator().manual_seed(1)) * 3
    with torch.inference_mode():
        want = ref.encode(x).numpy()
    got = SAEEncoder(*read_sae_dir(path)).encode(x).numpy()
    assert (want > 0).any()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
