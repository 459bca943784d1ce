"""The demo pipeline (mri_lens.pipelines.demo), run once per session by the shared ``small_demo`` fixture
(``mri-lens demo --limit 60``): what it writes, checked against the corpus, models and parameters it says it used,
and every link of every page it wrote, followed."""

from __future__ import annotations

import html
import json
import pathlib
import re
import shutil
from html.parser import HTMLParser
from urllib.parse import unquote, urlsplit

import networkx as nx
import numpy as np
import pytest

import mri_lens as ml

pytestmark = pytest.mark.slow

CATEGORIES = ["positive", "negative"]
N_DOCS = 60  # the fixture's --limit
SITE = "mri_lens.site"  # a Neuroscope site's manifest format
PARTS = ("mri/index.html", "reviews_site/index.html", "code_report.html", "code_mri/index.html",
         "neuroscope_view.html", "site/index.html", "n2g/index.html", "sae_site/index.html",
         "transcoder_site/index.html")


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
    for part in PARTS:
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


def _site_neurons(site: pathlib.Path) -> dict[int, list[int]]:
    """``{layer: [neuron ids]}`` a site's manifest lists (its neuron pages)."""
    return {int(l): sorted(ids) for l, ids in json.loads((site / "manifest.json").read_text())["layers"].items()}


def test_neuroscope_and_n2g_explain_the_12_strongest_layer0_neurons(out, tiny):
    """The N2G graphs are of the 12 layer-0 neurons of the tiny LM with the highest maximum over the first 60
    standard-library chunks, computed here again from a scan of those chunks; the site holds their pages."""
    code = ml.scan(tiny, ml.datasets.stdlib_code(n_docs=N_DOCS), overflow="windows", layers=[0], progress=False)
    strongest = sorted(int(n) for n in np.argsort(-code.stats.max[0], kind="stable")[:12])
    n2g = sorted(int(p.stem[1:]) for p in (out / "n2g" / "L0").glob("N*.json"))
    assert n2g == strongest
    assert set(strongest) <= set(_site_neurons(out / "site")[0])
    g = ml.n2g.NeuronGraph.load(out / "n2g" / "L0" / f"N{strongest[0]}.json")
    assert (g.layer, g.neuron) == (0, strongest[0])
    view = (out / "neuroscope_view.html").read_text(encoding="utf-8")
    assert all(html.escape(p) in view for p in ml.neuroscope.prompts.sequence_prompts())  # the prompts viewed


def test_tiny_lm_pages_are_of_labelled_code_and_link_its_neurons(out, tiny):
    """The tiny LM's MRI page and report contrast prose and code chunks; its site holds every neuron, so every
    neuron id of its report, MRI page and view is a link to its page. The MiniLM report links the neurons it names
    into the MiniLM site."""
    assert _site_neurons(out / "site") == {l: list(range(tiny.cfg.d_mlp)) for l in range(tiny.cfg.n_layers)}
    report = (out / "code_report.html").read_text(encoding="utf-8")
    assert "Category differences: prose vs code" in report
    mri = (out / "code_mri" / "index.html").read_text(encoding="utf-8")
    assert "prose vs code: enriched regions and edges" in mri
    view = (out / "neuroscope_view.html").read_text(encoding="utf-8")
    for page, prefix, least in ((report, "site/", 8), (mri, "../site/", tiny.cfg.n_layers * tiny.cfg.d_mlp),
                                (view, "site/", 8)):
        linked = re.findall(rf"<a class='neuron' href='{prefix}index.html#L(\d+)/N(\d+)'>L\1/N\2</a>", page)
        assert len(linked) >= least
        plain = re.findall(r"L\d+/N\d+", re.sub(r"<a class='neuron'[^>]*>[^<]*</a>", "", page))
        assert plain == [], plain[:5]  # every neuron id is a link
    reviews = _site_neurons(out / "reviews_site")
    top = (out / "index.html").read_text(encoding="utf-8")
    linked = re.findall(r"<a class='neuron' href='reviews_site/index.html#L(\d+)/N(\d+)'>", top)
    assert len(linked) >= 8 and all(int(n) in reviews[int(l)] for l, n in linked)


def _site_records(site: pathlib.Path, layer: int) -> dict[int, dict]:
    """``{neuron: record}`` of one layer of a site, read from its data files (``MRI_SITE.chunk(layer, i, [...])``)."""
    records = {}
    for f in sorted((site / "data").glob(f"L{layer}_*.js")):
        text = f.read_text(encoding="utf-8")
        recs, _ = json.JSONDecoder().raw_decode(text, text.index("["))
        records.update({r["n"]: r for r in recs})
    return records


@pytest.mark.parametrize("kind, layer", [("sae", 2), ("transcoder", 1)])
def test_latent_sites_hold_the_32_strongest_latents_and_sae_n2g(out, tiny, kind, layer):
    """The sites of the shipped SAE (layer 2) and transcoder (layer 1) latents hold the 32 latents with the highest
    max over the first 60 standard-library chunks, computed here again; the SAE's 4 strongest pages carry their N2G
    graph (fitted through the SAE's encoder), no other page does."""
    units = (ml.units.sae({2: ml.models.tiny_sae_dir()}) if kind == "sae"
             else ml.units.transcoder({1: ml.models.tiny_transcoder_dir()}))
    scan = ml.scan(tiny, ml.datasets.stdlib_code(n_docs=N_DOCS), overflow="windows", units=units, progress=False)
    order = np.argsort(-scan.stats.max[0], kind="stable")
    site = out / f"{kind}_site"
    assert _site_neurons(site) == {layer: sorted(int(n) for n in order[:32])}
    records = _site_records(site, layer)
    assert sorted(records) == sorted(int(n) for n in order[:32])
    with_graph = sorted(n for n, r in records.items() if "g" in r)
    assert with_graph == (sorted(int(n) for n in order[:4]) if kind == "sae" else [])
    assert all("lg" in r for r in records.values())  # logit effects through the decoder
    assert f"{kind}_site/index.html" in _links((out / "index.html").read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------------------------- the link walker
class _Refs(HTMLParser):
    """Every ``href`` and ``src`` of a page, and every ``id`` it defines."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.refs: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        for k, v in attrs:
            if k in ("href", "src") and v is not None:
                self.refs.append(v)
            elif k == "id" and v is not None:
                self.ids.add(v)


def _parse(path: pathlib.Path) -> _Refs:
    p = _Refs()
    p.feed(path.read_text(encoding="utf-8"))
    return p


def broken_links(root: pathlib.Path) -> list[str]:
    """Every link of every HTML page under ``root`` (and every link a site's viewer draws from its data files onto
    a neuron page) that does not resolve, as ``"page: link (why)"``: a URL with a scheme or a host, a file outside
    ``root`` or missing, a ``#region-...`` (or any other) anchor missing on its page, a ``#L{l}/N{n}`` neuron page
    missing from its site's manifest."""
    root = root.resolve()
    pages = sorted(root.rglob("*.html"))
    parsed = {p: _parse(p) for p in pages}
    refs = [(page, ref) for page in pages for ref in parsed[page].refs]
    refs += [(site / "index.html", ref) for site in _sites(root) for ref in _data_links(site)]
    bad = []
    for page, ref in refs:
        why = _link_problem(root, page, ref, parsed)
        if why:
            bad.append(f"{page.relative_to(root)}: {ref} ({why})")
    return bad


def _sites(root: pathlib.Path) -> list[pathlib.Path]:
    return sorted(m.parent for m in root.rglob("manifest.json") if json.loads(m.read_text()).get("format") == SITE)


def _data_links(site: pathlib.Path) -> list[str]:
    """The URLs of the links to other lenses in a site's data files (``"ln": [[text, url], ...]`` per neuron;
    relative to the site's ``index.html``, which draws them)."""
    urls = []
    for f in sorted((site / "data").glob("*.js")):
        text = f.read_text(encoding="utf-8")
        for m in re.finditer(r'"ln":', text):
            pairs, _ = json.JSONDecoder().raw_decode(text, m.end())
            urls += [url for _, url in pairs]
    return urls


def _link_problem(root: pathlib.Path, page: pathlib.Path, ref: str, parsed: dict) -> str | None:
    u = urlsplit(ref)
    if u.scheme or u.netloc:
        return "not a relative link"
    target = (page.parent / unquote(u.path)).resolve() if u.path else page
    if root not in target.parents and target != root:
        return "outside the demo directory"
    if not target.is_file():
        return "no such file"
    if not u.fragment:
        return None
    frag = unquote(u.fragment)
    manifest = target.parent / "manifest.json"
    neuron = re.fullmatch(r"L(\d+)/N(\d+)", frag)
    if neuron and target.name == "index.html" and manifest.is_file() \
            and json.loads(manifest.read_text()).get("format") == SITE:
        layers = json.loads(manifest.read_text()).get("layers", {})
        return None if int(neuron.group(2)) in layers.get(neuron.group(1), []) else "no such neuron in the site"
    ids = parsed[target].ids if target in parsed else set()
    return None if frag in ids else "no such anchor"


def test_every_link_of_every_page_resolves(out, tiny):
    pages = list(out.rglob("*.html"))
    assert len(pages) >= 8
    # the walk covers every site, the latent sites included (their pages and their data files)
    assert {s.name for s in _sites(out)} == {"reviews_site", "site", "sae_site", "transcoder_site"}
    assert {out / "sae_site" / "index.html", out / "transcoder_site" / "index.html"} <= set(pages)
    n_links = sum(len(_parse(p).refs) for p in pages)
    assert n_links > 100
    assert broken_links(out) == []
    # every tiny-LM neuron page links to its MRI region
    assert len(_data_links(out / "site")) == tiny.cfg.n_layers * tiny.cfg.d_mlp
    mri = _parse(out / "mri" / "index.html")
    assert sum(i.startswith("region-L") for i in mri.ids) >= 6 * 10  # every non-empty region of every layer


def test_the_link_walker_finds_broken_links(out, tmp_path):
    """A copy of the demo's pages with one broken link of each kind: each is reported."""
    copy = tmp_path / "demo"
    shutil.copytree(out, copy, ignore=shutil.ignore_patterns("scan", "maps", "*.graphml", "*.gexf"))
    assert broken_links(copy) == []
    missing = next(n for n in range(10_000) if n not in _site_neurons(copy / "reviews_site")[0])
    bad = ["nope.html", "mri/index.html#region-L0-R999", f"reviews_site/index.html#L0/N{missing}",
           "reviews_site/index.html#L9/N0", "code_mri/index.html#nowhere", "https://example.org/", "../outside.html",
           "//example.org/x.html", "javascript:alert(1)"]
    page = copy / "index.html"
    page.write_text(page.read_text(encoding="utf-8").replace(
        "</body>", "".join(f"<a href='{b}'>x</a>" for b in bad) + "</body>"), encoding="utf-8")
    (tmp_path / "outside.html").write_text("<p>outside</p>")
    data = sorted((copy / "site" / "data").glob("L*.js"))[0]  # a neuron page's link to its MRI region
    data.write_text(data.read_text(encoding="utf-8").replace("#region-L", "#region-X", 1), encoding="utf-8")
    found = [b.rsplit(" (", 1)[0] for b in broken_links(copy)]
    assert found[:-1] == [f"index.html: {b}" for b in bad]
    assert re.fullmatch(r"site/index\.html: \.\./code_mri/index\.html#region-X\d+-R\d+", found[-1]), found[-1]
