"""Many neurons at once (mri_lens.lenses.n2g.explain): load_layer on hand-built graphs, explain_layer and the
``mri-lens explain`` command on the real tiny LM."""

from __future__ import annotations

import os

import numpy as np
import pytest

import mri_lens as ml
from mri_lens.errors import ScanFileError
from mri_lens.lenses.n2g.index import NeuronIndex

from .builders import _synthetic_graph


def test_load_layer_rejects_bad_layer_and_missing_dir(tmp_path):
    for bad in (-1, 1.5, "0", True):
        with pytest.raises(ValueError, match="layer must be a non-negative integer"):
            ml.n2g.load_layer(tmp_path, bad)
    with pytest.raises(ScanFileError, match=r"L2 does not exist"):
        ml.n2g.load_layer(tmp_path, 2)
    _synthetic_graph({5: "a", 6: "b"}).save(tmp_path / "L0" / "N3.json")
    got = ml.n2g.load_layer(tmp_path, np.int64(0))
    assert list(got) == [3] and got[3].neuron == 3 and got.layer == 0


def test_load_layer_file_name_must_match_its_graph(tmp_path):
    g = _synthetic_graph({5: "secret-token", 6: "b"})  # layer 0, neuron 3
    g.save(tmp_path / "L0" / "N4.json")
    with pytest.raises(ScanFileError, match=r"N4\.json: the file name does not match") as e:
        ml.n2g.load_layer(tmp_path, 0)
    assert "secret-token" not in str(e.value)
    g.save(tmp_path / "L1" / "N3.json")  # right neuron, wrong layer
    with pytest.raises(ScanFileError, match=r"L1.N3\.json: the file name does not match"):
        ml.n2g.load_layer(tmp_path, 1)
    os.remove(tmp_path / "L0" / "N4.json")
    g.save(tmp_path / "L0" / "N3.json")
    g.save(tmp_path / "L0" / "N003.json")  # not a name explain_layer writes: never read
    assert list(ml.n2g.load_layer(tmp_path, 0)) == [3]


def test_explain_layer_batched_resumable_and_site(tiny, code_scan, tmp_path, monkeypatch):
    import tqdm.auto

    positions = []

    class Recorded(tqdm.auto.tqdm):  # the real bar, its positions noted
        def update(self, n=1):
            out = super().update(n)
            positions.append(self.n)
            return out

    monkeypatch.setattr(tqdm.auto, "tqdm", Recorded)
    neurons = [int(n) for n in np.argsort(-code_scan.stats.max[0])[:4]]
    out = tmp_path / "n2g"
    paper = ml.n2g.N2GConfig.paper()
    r1 = ml.n2g.explain_layer(tiny, code_scan, 0, neurons, out_dir=out, progress=True, config=paper)
    assert sorted(r1) == sorted(neurons) and r1.cost["neurons_fitted"] == 4
    # one chunk of four neurons sharing every forward: the bar still moves neuron by neuron, and ends at 4
    assert positions == sorted(positions) and positions[-1] == 4
    assert {p for p in positions if 0 < p < 4}
    # pooled stages for all four neurons: at most 10 forwards per neuron (a tenth of the reference's 100-300)
    assert r1.cost["fit_forward_calls"] <= 4 * 10
    assert all(g.scores is not None for g in r1.values())
    assert os.path.exists(out / "L0" / "summary.csv") and os.path.exists(out / "L0" / "summary.json")
    r2 = ml.n2g.explain_layer(tiny, code_scan, 0, neurons, out_dir=out, progress=False, config=paper)
    assert r2.cost["fit_forward_calls"] == 0 and r2.cost["eval_forward_calls"] == 0   # resumed, nothing rerun
    assert all(r2[n].to_json() == r1[n].to_json() for n in neurons)
    table = r2.table()
    assert table.loc[0, "neurons"] == 4 and "token_firing_f1" in table
    # summary_table takes what explain_layer returns, a {(layer, neuron): graph} mapping, or several of them
    for given in (r2, {(0, n): g for n, g in r2.items()}, [r2], list(r2.values())):
        assert ml.n2g.summary_table(given).equals(table)
    with pytest.raises(TypeError, match="summary_table takes neuron graphs"):
        ml.n2g.summary_table([1, 2])
    idx = NeuronIndex(r2)
    tok = r2[neurons[0]].activating_tokens()[0]
    assert any(r[1] == neurons[0] for r in idx.search(activating=tok))
    # the Neuroscope site shows the graph and its scores on neuron pages
    index = ml.neuroscope.site(code_scan, tiny, tmp_path / "site", layers=[0], neurons=neurons[:2],
                               n2g={(0, n): g for n, g in r2.items()})
    site_dir = os.path.dirname(index)  # wherever the site keeps its neuron pages' data
    text = "".join(open(os.path.join(r, f), encoding="utf-8", errors="replace").read()
                   for r, _, fs in os.walk(site_dir) for f in fs if f.endswith((".html", ".js", ".json")))
    assert "N2G" in text and "<svg" in text and "firing" in text


def test_cli_explain(tiny, code_scan, tmp_path, capsys):
    from mri_lens.cli import main

    scan_dir = code_scan.save(tmp_path / "scan")
    out = tmp_path / "n2g"
    rc = main(["explain", "--scan", scan_dir, "--model", "tiny", "--layer", "1", "--neurons", "0-2", "--out",
               str(out), "--quiet"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "N2G graphs written" in printed
    files = sorted(os.listdir(out / "L1"))
    assert "summary.csv" in files and any(f.startswith("N") for f in files)
    # no option given: the measured default configuration, not the paper's
    first = ml.n2g.NeuronGraph.load(out / "L1" / next(f for f in files if f.startswith("N") and f.endswith(".json")))
    assert first.config == ml.n2g.N2GConfig() != ml.n2g.N2GConfig.paper()
    assert main(["explain", "--scan", scan_dir, "--model", "tiny", "--layer", "0", "--neurons", "9999", "--out",
                 str(out), "--quiet"]) == 2
    # the extensions are reachable from the command line and recorded in each saved graph
    ext = tmp_path / "n2g_ext"
    assert main(["explain", "--scan", scan_dir, "--model", "tiny", "--layer", "1", "--neurons", "0", "--out",
                 str(ext), "--pivots", "3", "--end-values", "calibrated", "--augment", "all", "--augmenter",
                 "probe", "--substitutes", "7", "--quiet"]) == 0
    saved = [f for f in os.listdir(ext / "L1") if f.startswith("N") and f.endswith(".json")]
    g = ml.n2g.NeuronGraph.load(ext / "L1" / saved[0])
    cfg = g.config
    assert cfg.pivots_per_example == 3 and cfg.end_values == "calibrated" and cfg.augment_pivots == "all"
    assert cfg.n_substitutes == 7 and g.meta["augmenter"]["name"] == "token_probe"


def test_default_explain_layer_equals_per_neuron_fits_and_scores_detection(tiny, code_scan):
    """The default configuration: one pooled fit of two neurons gives each the graph its own fit gives, and every
    score (paper's, simulation, detection) for N2G and both baselines."""
    neurons = [int(n) for n in np.argsort(-code_scan.stats.max[1])[:2]]
    graphs = ml.n2g.explain_layer(tiny, code_scan, 1, neurons, k=8, progress=False)
    assert graphs.cost["fit_forward_calls"] <= 2 * 10
    for n in neurons:
        alone = ml.n2g.NeuronGraph.fit(tiny, 1, n, code_scan.top_examples(1, n, 8), seed=0,
                                       max_activation=float(code_scan.stats.max[1, n]),
                                       window=code_scan.meta.get("max_length"))
        pooled = graphs[n]
        assert [lab for lab, _ in alone.trie.paths()] == [lab for lab, _ in pooled.trie.paths()]
        np.testing.assert_allclose([v for _, v in alone.trie.paths()], [v for _, v in pooled.trie.paths()],
                                   atol=1e-5)
        # the default's token fallback: fitted on the same training tokens
        assert alone.fallback["kind"] == pooled.fallback["kind"] == "token"
        assert [k for k, _ in alone.fallback["table"]] == [k for k, _ in pooled.fallback["table"]]
        np.testing.assert_allclose([v for _, v in alone.fallback["table"]], [v for _, v in pooled.fallback["table"]],
                                   atol=1e-5)
        s = pooled.scores
        assert set(s) == {"n2g", "token", "ngram"}
        for m in s.values():
            assert {"firing_f1", "correlation", "detection_balanced_accuracy", "detection_auc"} <= set(m)
        ev = pooled.meta["evaluation"]
        assert ev["n_contexts"] > ev["n_test_texts"] and 0 < ev["n_firing_contexts"] < ev["n_contexts"]
        assert pooled.examples["detection_docs"] and not set(pooled.examples["detection_docs"]) & \
            set(code_scan.top_examples(1, n, 8).docs.tolist())
    row = graphs.neuron_table().iloc[0]
    assert row["winner"] in ("n2g", "token", "ngram") and "n2g_detection_auc" in row
    assert "loses_to_token_lookup" in graphs.table()
