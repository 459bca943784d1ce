"""The command line, run in-process the way a user runs it."""

from __future__ import annotations

import re

import pandas as pd
import pytest

import mri_lens as ml
from mri_lens.cli import main

from conftest import PROSE, code_snippets


def test_scan_and_report(tmp_path, capsys):
    code = code_snippets(6)
    df = pd.DataFrame({"body": code + PROSE[:6], "kind": ["code"] * 6 + ["prose"] * 6})
    df.to_csv(tmp_path / "data.csv", index=False)
    out = tmp_path / "runs" / "x"
    assert main(["scan", "--model", "tiny", "--corpus", str(tmp_path / "data.csv"), "--text-col", "body",
                 "--label-col", "kind", "--out", str(out), "--layers", "0-1", "--quiet"]) == 0
    s = ml.Scan.load(out)
    assert s.layers == [0, 1] and s.n_docs == 12 and s.label_names == ["code", "prose"]
    assert main(["report", "--scan", str(out)]) == 0
    page = open(out / "report.html", encoding="utf-8").read()
    assert "Category differences" in page
    assert not re.search(r"<script[^>]+src=[\"']https?:", page)  # plotly.js is inline
    assert "saved to" in capsys.readouterr().out


def test_cli_errors_are_one_line(tmp_path, capsys):
    (tmp_path / "d.csv").write_text("text,label\nhello,a\n")
    code = main(["scan", "--model", "tiny", "--corpus", str(tmp_path / "d.csv"), "--label-col", "nope",
                 "--out", str(tmp_path / "o"), "--quiet"])
    assert code == 2
    assert "unknown label column 'nope'" in capsys.readouterr().err


def test_mri_command(tmp_path, tiny, tiny_scan, capsys):
    scan_dir = tiny_scan.save(tmp_path / "scan")
    out = tmp_path / "mri"
    assert main(["mri", "--scan", scan_dir, "--grid", "4", "--out", str(out), "--n-jobs", "1", "--min-weight", "2",
                 "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "region maps:" in printed and "graph:" in printed
    page = open(out / "index.html", encoding="utf-8").read()
    for section in ("Region images, all layers", "Co-activation graph", "Graph metrics", "enriched regions",
                    "separability probe"):
        assert section in page, section
    assert not re.search(r"<script[^>]+src=[\"']?https?:", page)
    maps = ml.RegionMaps.load(out / "maps")
    assert maps.grid == 4 and maps.layers == tiny_scan.layers
    g = ml.load_graph_json(out / "graph.json")
    assert all(isinstance(n, tuple) for n in g.nodes) and g.number_of_nodes() == 16 * len(maps.layers)
    assert (out / "graph.graphml").exists() and (out / "graph.gexf").exists()
    assert main(["mri", "--scan", str(tmp_path / "missing"), "--quiet"]) == 2
    assert "not a saved" in capsys.readouterr().err


def test_mri_report_escapes_tokens(tmp_path, tiny):
    """A token like <script> in a region's top examples, or a category named like one, renders as text."""
    texts = [f"<script>alert({i})</script> def f(x): return x" for i in range(6)] + PROSE[:6]
    label = "</script><script>alert(2)</script>"  # a hostile category name, inside plotly's JSON and the tables
    s = ml.scan(tiny, ml.Corpus(texts, [label] * 6 + ["prose"] * 6), progress=False)
    maps = ml.RegionMaps.fit(s, grid=3, seed=0, n_jobs=1)
    g = ml.coactivation_graph(maps, min_weight=1)
    from mri_lens.report import write_mri_report

    page = open(write_mri_report(maps, g, s, tmp_path / "m.html"), encoding="utf-8").read()
    assert "<script>alert(" not in page and "</script><script>" not in page
    assert "&lt;" in page or "&#x27;&lt;" in page  # the tokens are there, escaped


@pytest.mark.slow
def test_demo_small(tmp_path, minilm, capsys):
    assert main(["demo", "--out", str(tmp_path / "demo"), "--limit", "60", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "report:" in out
    page = open(tmp_path / "demo" / "index.html", encoding="utf-8").read()
    assert "positive vs negative" in page
    # No script, stylesheet or font is fetched from the network (plotly.js is inlined; URLs inside its source
    # are for map tiles this page never draws).
    assert not re.search(r"<script[^>]+src=[\"']?https?:|<link[^>]+href=[\"']?https?:|@import\s+url\(\s*[\"']?https?:", page)
    assert ml.Scan.load(tmp_path / "demo" / "scan").n_docs == 60
    # The MRI part: its page, maps and graph, linked from the report.
    assert "mri/index.html" in page
    mri = open(tmp_path / "demo" / "mri" / "index.html", encoding="utf-8").read()
    assert "Co-activation graph" in mri and "separability probe" in mri
    assert ml.RegionMaps.load(tmp_path / "demo" / "mri" / "maps").n_docs == 60
    # The Neuroscope part: the thresholded view and a small site, linked from the report.
    assert "neuroscope_view.html" in page and "site/index.html" in page
    view = open(tmp_path / "demo" / "neuroscope_view.html", encoding="utf-8").read()
    assert "Sequence" in view
    assert len(list((tmp_path / "demo" / "site" / "L0").glob("N*.html"))) == 12


def test_compile_command_leaves_the_kernels_usable(capsys):
    from mri_lens import _kernels

    assert main(["compile"]) == 0
    out = capsys.readouterr().out
    assert "scan statistics kernel: compiled" in out and "umap-learn: compiled" in out
    assert _kernels._kernel is not None  # the scan's kernel is built (and cached on disk by numba)
