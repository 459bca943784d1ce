"""The demo pipeline (mri_lens.pipelines.demo), run once per session by the shared ``small_demo`` fixture
(``mri-lens demo --limit 60``): what it writes, checked against the corpus, models and parameters it says it used."""

from __future__ import annotations

import html
import json
import pathlib
import re

import networkx as nx
import numpy as np
import pytest

import mri_lens as ml

pytestmark = pytest.mark.slow

CATEGORIES = ["positive", "negative"]
N_DOCS = 60  # the fixture's --limit


@pytest.fixture(scope="module")
def out(small_demo) -> pathlib.Path:
    return pathlib.Path(small_demo["out"])


def _links(page: str) -> list[str]:
    return re.findall(r"href=[\"']([^\"'#:]+\.html)[\"']", page)


def test_report_links_every_part_and_fetches_nothing(out):
    assert json.loads((out / "manifest.json").read_text())["format"] == "mri_lens.demo"
    page = (out / "index.html").read_text(encoding="utf-8")
    assert "positive vs negative" in page
    # No script, stylesheet or font is fetched from the network (plotly.js is a shared local file; URLs inside its
    # source are for map tiles these pages never draw).
    assert not re.search(r"<script[^>]+src=[\"']?https?:|<link[^>]+href=[\"']?https?:|@import\s+url\(\s*[\"']?https?:",
                         page)
    links = _links(page)
    for part in ("mri/index.html", "neuroscope_view.html", "site/index.html", "n2g/index.html"):
        assert part in links, part
    assert all((out / link).is_file() for link in links), links
    assert [p.name for p in (out / "assets").iterdir()] == [p.name for p in (out / "assets").glob("plotly*.js")]


def test_scan_is_minilm_on_the_first_positive_and_negative_reviews(out, minilm):
    s = ml.Scan.load(out / "scan")
    corpus = ml.datasets.drug_reviews(categories=CATEGORIES).subset(range(N_DOCS))
    assert s.meta["model_id"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert s.layers == list(range(minilm.cfg.n_layers)) and s.d_mlp == minilm.cfg.d_mlp
    assert s.n_docs == N_DOCS and s.label_names == CATEGORIES
    assert np.array_equal(s.labels, corpus.labels)
    assert sorted(s.poolings) == ["max", "mean"]
    first = minilm.tokenizer(corpus.texts[0])["input_ids"]  # [CLS] ... [SEP], the model's own tokenizer
    ids = np.asarray(s.token_ids)
    start, stop = int(s.token_offsets[0]), int(s.token_offsets[1])
    assert ids[start:stop].tolist() == first[:stop - start] and s.doc_token_counts[0] == len(first)


def test_mri_page_holds_the_maps_of_the_scan_and_their_graph(out):
    s = ml.Scan.load(out / "scan")
    page = (out / "mri" / "index.html").read_text(encoding="utf-8")
    assert "Co-activation graph" in page and "separability probe" in page
    maps = ml.mri.RegionMaps.load(out / "mri" / "maps")
    assert (maps.grid, maps.seed, maps.mode) == (10, 0, "neurons")
    assert maps.layers == s.layers and maps.n_docs == N_DOCS and np.array_equal(maps.labels, s.labels)
    g = ml.mri.load_graph_json(out / "mri" / "graph.json")
    # the graph of the saved maps, with the page's parameters: edges of weight >= 5, each among the 3 heaviest of
    # its source or its target, enrichment for both categories
    again = ml.mri.coactivation_graph(maps, min_weight=5, top_edges=3, enrichment=True)
    assert set(g.nodes) == set(again.nodes) and set(g.edges) == set(again.edges)
    assert all(g.edges[e]["weight"] == again.edges[e]["weight"] >= 5 for e in g.edges)
    assert all(g.nodes[n]["enriched_for"] == again.nodes[n]["enriched_for"] for n in g.nodes)
    assert g.graph["enrichment"]["categories"] == CATEGORIES
    for ext, read in (("graphml", nx.read_graphml), ("gexf", nx.read_gexf)):
        other = read(out / "mri" / f"graph.{ext}")
        assert (other.number_of_nodes(), other.number_of_edges()) == (g.number_of_nodes(), g.number_of_edges())


def test_neuroscope_and_n2g_explain_the_12_strongest_layer0_neurons(out, tiny):
    """The site and the N2G graphs are of the 12 layer-0 neurons of the tiny LM with the highest maximum over
    the first 60 standard-library chunks, computed here again from a scan of those chunks."""
    code = ml.scan(tiny, ml.datasets.stdlib_code(n_docs=N_DOCS), overflow="windows", layers=[0], progress=False)
    strongest = sorted(int(n) for n in np.argsort(-code.stats.max[0], kind="stable")[:12])
    site = sorted(int(p.stem[1:]) for p in (out / "site" / "L0").glob("N*.html"))
    assert site == strongest
    n2g = sorted(int(p.stem[1:]) for p in (out / "n2g" / "L0").glob("N*.json"))
    assert n2g == strongest
    g = ml.n2g.NeuronGraph.load(out / "n2g" / "L0" / f"N{strongest[0]}.json")
    assert (g.layer, g.neuron) == (0, strongest[0])
    view = (out / "neuroscope_view.html").read_text(encoding="utf-8")
    assert all(html.escape(p) in view for p in ml.neuroscope.prompts.sequence_prompts())  # the prompts viewed
