"""Lenses on units other than MLP neurons: the recomputed token activations of a scan's units, a Neuroscope site
of transcoder latents, N2G on an SAE latent, a saved scan of latents given its SAE back, and the command line."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import mri_lens as ml
from mri_lens.cli import main
from mri_lens.errors import ModelAdapterError

from brute import TEXTS, scan_of
from saes import make_sae


@pytest.fixture(scope="module")
def shipped():
    """The SAE and transcoder trained on the tiny LM (shipped beside it)."""
    return ml.models.tiny_sae_dir(), ml.models.tiny_transcoder_dir()


def test_recomputed_activations_of_latents_match_the_scan(tiny, shipped):
    scan = scan_of(tiny, ml.units.sae({2: shipped[0]}), pooling=("mean", "max"))
    acts = scan.token_activations(tiny, list(range(scan.n_docs)), layer=2)
    for d, a in enumerate(acts):
        np.testing.assert_allclose(a[1:].max(0), scan.pooled("max", layer=2)[d], rtol=1e-5, atol=1e-5)


def test_neuroscope_site_of_transcoder_latents(tiny, shipped, tmp_path):
    scan = scan_of(tiny, ml.units.transcoder({1: shipped[1]}))
    live = np.flatnonzero(scan.stats.max[0] > 0)[:3]
    index = ml.neuroscope.site(scan, tiny, tmp_path / "site", neurons=live.tolist(), k=3)
    assert os.path.exists(index)
    with open(tmp_path / "site" / "manifest.json") as f:
        assert json.load(f)["layers"] == {"1": live.tolist()}
    with open(tmp_path / "site" / "data" / "L1_0.js") as f:
        assert f.read().count('"lg"') == len(live)  # every latent's page has logit effects
    # logit effects come from the transcoder's decoder (it writes the MLP output into the residual stream)
    from mri_lens.lenses.neuroscope.neuron_facts import logit_effects
    from mri_lens.model.units import units_for_scan

    eff, why = logit_effects(tiny, 1, 5, 5, units=units_for_scan(scan))
    assert why == "" and eff[0].shape == (scan.d_mlp, 5)
    decoder = units_for_scan(scan).output_directions(ml.model.adapter.as_adapter(tiny), 1)
    direct = (decoder.float() @ ml.model.adapter.as_adapter(tiny).unembedding().float()).detach().numpy()
    np.testing.assert_array_equal(eff[0][live], np.argsort(-direct[live], axis=1, kind="stable")[:, :5])


def test_n2g_explains_an_sae_latent(tiny, shipped):
    scan = scan_of(tiny, ml.units.sae({2: shipped[0]}), top_k=6)
    n = int(np.argmax(scan.stats.max[0]))
    graphs = ml.n2g.explain_layer(tiny, scan, 2, [n], k=6, progress=False, evaluate=False)
    g = graphs[n]
    assert g.max_activation == pytest.approx(float(scan.top.values[0, n, 0]), rel=1e-5)
    from mri_lens.lenses.n2g.fit import Forward
    from mri_lens.model.adapter import as_adapter
    from mri_lens.model.capture import get_backend

    adapter = as_adapter(tiny)
    run = Forward(adapter, get_backend(adapter, None, units=scan.unit_set), 2, 2048)
    doc = int(scan.top.docs[0, n, 0])
    text_ids = tuple(int(t) for t in scan.tokens(doc)[1:])
    got = run([(text_ids, n)])[0]  # the N2G runner's activations: through the SAE's encoder
    assert float(got.max()) == pytest.approx(float(scan.top.values[0, n, 0]), rel=1e-4, abs=1e-4)


def test_a_saved_scan_of_latents_needs_its_sae_back(tiny, tmp_path):
    path, _, _ = make_sae(tmp_path / "sae", 128, 64, "blocks.2.hook_resid_post")
    other, _, _ = make_sae(tmp_path / "other", 128, 64, "blocks.2.hook_resid_post", seed=3)
    scan_of(tiny, ml.units.sae({2: path}), out=tmp_path / "run")
    loaded = ml.Scan.load(tmp_path / "run")
    with pytest.raises(ModelAdapterError, match="attach"):
        loaded.token_activations(tiny, [0], layer=2)
    with pytest.raises(ModelAdapterError, match="not the ones the scan was made of"):
        ml.units.attach(loaded, ml.units.sae({2: other}))
    ml.units.attach(loaded, ml.units.sae({2: path}))
    a = loaded.token_activations(tiny, [0], layer=2)[0]
    np.testing.assert_allclose(a[1:].max(0), loaded.pooled("max", layer=2)[0], rtol=1e-5, atol=1e-5)
    scan_of(tiny, "attn_z", out=tmp_path / "z")
    hooks = ml.Scan.load(tmp_path / "z")
    assert hooks.token_activations(tiny, [1], layer=0)[0].shape[1] == 128  # hook units are rebuilt from the record


def test_cli_scan_of_units(tmp_path):
    import pandas as pd

    pd.DataFrame({"text": TEXTS}).to_csv(tmp_path / "c.csv", index=False)
    assert main(["scan", "--model", "tiny", "--corpus", str(tmp_path / "c.csv"), "--units", "resid_post",
                 "--out", str(tmp_path / "resid"), "--quiet"]) == 0
    s = ml.Scan.load(tmp_path / "resid")
    assert s.meta["units"]["kind"] == "resid_post" and s.d_mlp == 128
    path, _, _ = make_sae(tmp_path / "sae", 128, 48, "blocks.2.hook_resid_post")
    assert main(["scan", "--model", "tiny", "--corpus", str(tmp_path / "c.csv"), "--units", f"sae:2={path}",
                 "--out", str(tmp_path / "sae_run"), "--quiet"]) == 0
    s = ml.Scan.load(tmp_path / "sae_run")
    assert s.meta["units"]["kind"] == "sae" and s.layers == [2] and s.d_mlp == 48


def test_mri_maps_of_hidden_states(tiny):
    """LLM-MRI's own units: the embeddings and the residual stream; points are units (neurons mode) or
    documents (documents mode)."""
    texts = TEXTS * 3
    scan = ml.scan(tiny, texts, units="resid_post", layers=[1, 2], batch_size=8, progress=False)
    neurons = ml.mri.RegionMaps(grid=3, seed=0, n_jobs=1, n_epochs=20).fit(scan, progress=False)
    assert neurons.region_act_.shape[:2] == (2, len(texts))
    docs = ml.mri.RegionMaps(grid=3, mode="documents", seed=0, n_jobs=1, n_epochs=20).fit(scan, progress=False)
    assert docs.region_act_.shape[:2] == (2, len(texts))
    emb = ml.scan(tiny, texts, units="embed", batch_size=8, progress=False)
    assert emb.layers == [0] and emb.d_mlp == tiny.cfg.d_model
