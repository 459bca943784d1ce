"""The MRI page of maps with more than two components (LLM-MRI's N-D mode), from Python and the command line: the
component graph, its metrics per category and the full-vs-reduced probe, on the real MiniLM's hidden states."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

import mri_lens as ml
from mri_lens.cli import main
from mri_lens.pipelines import mri_page


@pytest.fixture(scope="module")
def hidden(minilm, reviews):
    """MiniLM's hidden states (embeddings + 6 blocks) at [CLS] and averaged, 40 labelled reviews."""
    return ml.scan(minilm, reviews, units="hidden_states", pooling=("first", "mean"), progress=False)


def test_component_page(tmp_path, hidden):
    page, timings = mri_page(hidden, tmp_path / "mri", mode="documents", reducer="pca", n_components=4,
                             pooling="first", threshold=0.3, progress=False, echo=None)
    html = open(page, encoding="utf-8").read()
    for section in ("Components per layer", "Component graph", "Graph metrics", "Even- and odd-layer projections",
                    "Per category", "full vs reduced probe", "constant layers"):
        assert section in html, section
    assert not re.search(r"<script[^>]+src=[\"']?https?:", html)
    assert set(timings) == {"region maps", "graph", "full vs reduced"}
    maps = ml.mri.RegionMaps.load(tmp_path / "mri" / "maps")
    assert maps.n_components == 4 and not maps.has_grid and maps.layers == list(range(7))
    # layer 0 is BERT's [CLS] embedding: the same for every review, so nothing to reduce
    assert float(maps.explained_variance_ratio_[0].sum()) == 0.0 and maps.explained_variance_ratio_[6].sum() > 0.2
    g = ml.mri.load_graph_json(tmp_path / "mri" / "graph.json")
    assert g.graph["kind"] == "mri_lens.component_graph" and g.number_of_nodes() == 7 * 4
    rebuilt = ml.mri.component_graph(maps, threshold=0.3)
    assert sorted(g.edges) == sorted(rebuilt.edges) and g.number_of_edges() > 0
    assert all(abs(d["rho"]) > 0.3 or any(d.get(f"weight_{c}", 0) > 0 for c in ("positive", "negative"))
               for *_, d in g.edges(data=True))


def test_mri_command_components(tmp_path, hidden, capsys):
    scan_dir = hidden.save(tmp_path / "scan")
    out = tmp_path / "mri"
    assert main(["mri", "--scan", scan_dir, "--units", "resid_post", "--out", str(tmp_path / "u"), "--quiet"]) == 2
    assert "the scan holds hidden_states units" in capsys.readouterr().err and not (tmp_path / "u").exists()
    assert main(["mri", "--scan", scan_dir, "--units", "hidden_states", "--mode", "documents", "--reducer", "svd",
                 "--components", "3",
                 "--pooling", "first", "--threshold", "0.5", "--positive-only", "--out", str(out), "--quiet"]) == 0
    maps = ml.mri.RegionMaps.load(out / "maps")
    assert (maps.reducer, maps.n_components, maps.pooling) == ("svd", 3, "first")
    g = ml.mri.load_graph_json(out / "graph.json")
    assert g.graph["params"]["positive_only"] is True and g.graph["params"]["threshold"] == 0.5
    assert all(d["rho"] > 0.5 or any(d.get(f"rho_{c}", 0) > 0.5 for c in ("positive", "negative"))
               for *_, d in g.edges(data=True))
    assert json.loads((out / "manifest.json").read_text())["format"] == "mri_lens.mri_page"
    # more than two components in neurons mode: refused before any work, naming the mode to use
    assert main(["mri", "--scan", scan_dir, "--components", "5", "--out", str(tmp_path / "n"), "--quiet"]) == 2
    assert "--mode documents" in capsys.readouterr().err and not (tmp_path / "n").exists()
    # a pooling the scan did not keep is refused before any work, naming what it kept
    assert main(["mri", "--scan", scan_dir, "--pooling", "max", "--out", str(tmp_path / "x"), "--quiet"]) == 2
    assert "first, mean" in capsys.readouterr().err
    # two components keep the grid page, with the full-vs-reduced probe in documents mode
    assert main(["mri", "--scan", scan_dir, "--mode", "documents", "--reducer", "pca", "--grid", "4",
                 "--pooling", "first", "--out", str(tmp_path / "grid"), "--quiet", "--n-jobs", "1"]) == 0
    html = (tmp_path / "grid" / "index.html").read_text(encoding="utf-8")
    assert "Co-activation graph" in html and "full vs reduced probe" in html
    maps2 = ml.mri.RegionMaps.load(tmp_path / "grid" / "maps")
    assert maps2.has_grid and np.array_equal(maps2.region_sizes(6).sum(), 40)
