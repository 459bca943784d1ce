"""Neuroscope lens: an offline site for every neuron of a scan, written once as compact data files and rendered by
one viewer.

Layout of ``out_dir``::

    index.html          the viewer: the searchable index and every neuron page (``index.html#L1/N88``)
    assets/viewer.js    the viewer's script and stylesheet (no network, no framework)
    assets/viewer.css
    data/index.js       one row per neuron (max, mean, density, coverage, loss change, top tokens) and the site facts
    data/tokens.js      the display strings of every token shown, each once
    data/L{l}_{c}.js    the records of layer ``l``'s neurons ``c * CHUNK ...`` (examples, histogram, statistics,
                        similar neurons, logit effects, ablation estimate, N2G graph), loaded when a page needs them
    data/D{c}.js        the full tokens of documents ``c * DOC_CHUNK ...``, loaded when a full text is unfolded
    manifest.json       ``{"kind": "mri_lens.site", "layers": {"<layer>": [neuron ids]}, ...}``

Data files are scripts (``<script src>``), not fetched: browsers block ``fetch`` from ``file://``. Every text
reaches the page through ``textContent`` in the viewer; the N2G graph's SVG comes drawn and escaped by the N2G lens.

>>> ml.neuroscope.site(scan, model, "runs/x/site", layers=[0, 1])   # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import re
from importlib import resources
from typing import Any, Callable, Sequence

import numpy as np

from ...errors import ScanError
from ...render.html import CSS, check_link_url, page, visible_token
from ...storage.integrity import seal
from ...storage.write import claim_dir, write_text_atomic
from ...version import __version__
from .site_data import (ALPHABET, AFTER, BEFORE, Q, TokenTable, doc_activations, encode_ints, extract_examples,
                        plan_examples)
from .site_records import LayerFacts, index_row, layer_facts, neuron_records

__all__ = ["site", "SITE_KIND", "CHUNK", "DOC_CHUNK"]

SITE_KIND = "mri_lens.site"  # the manifest format of a site directory
CHUNK = 128  # neurons per data file
DOC_CHUNK = 256  # documents per full-text data file
_DATA_FILE = re.compile(r"^(L\d+_\d+|D\d+|index|tokens)\.js$")


def site(scan, model: Any, out_dir: str | os.PathLike, *, layers: Sequence[int] | None = None,
         neurons: Sequence[int] | None = None, k: int = 20, bands: Sequence[float] = (0.25, 0.5, 0.75),
         per_band: int = 2, n_random: int = 5, n_logits: tuple[int, int] = (10, 5), seed: int = 0,
         batch_size: int = 16, links: Callable[[int, int], list[tuple[str, str]]] | None = None,
         title: str | None = None, n2g: Any = None, ablation: bool = True, overwrite: bool = False,
         progress: bool = True) -> str:
    """Build the Neuroscope site of ``scan`` in ``out_dir`` (every neuron of every scanned layer by default).
    Returns the absolute path of ``index.html``; a neuron's page is ``index.html#L{layer}/N{neuron}``.

    ``out_dir`` must be free, empty or an earlier site (its ``manifest.json`` says so); anything else is refused
    before any work unless ``overwrite=True`` (which writes beside foreign files, never removing them). Bad layers,
    neurons or links are refused before the model runs.

    Parameters
    ----------
    scan: a :class:`~mri_lens.results.scan.Scan` of ``model``.
    model: the model that was scanned (per-token activations of the examples are recomputed from it: the unique
        documents once, in batches of ``batch_size``, several layers per forward pass).
    layers: model layer numbers (default: every scanned layer); each must be in the scan.
    neurons: neuron ids, the same in every layer (default: all ``d_mlp``).
    k: top examples per neuron (at most the scan's ``top_k``).
    bands: activation bands as fractions of the neuron's top value: examples whose document max falls in
        ``(bands[i] * top, bands[i+1] * top]`` (the last band ends at the top value), ``per_band`` per band, top
        examples excluded; needs the scan's ``"max"`` pooling (otherwise the page says so).
    n_random: random documents per neuron (seeded by ``seed``, layer and neuron: the same inputs give identical
        files).
    n_logits: how many top and bottom direct logit effects (tokens the tokenizer never emits left out).
    links: optional ``f(layer, neuron) -> [(text, url)]``: links to other lenses on each neuron page (its MRI
        region...), URLs relative to the site directory or http(s)/file URLs (``ValueError`` otherwise, see
        :func:`mri_lens.render.html.check_link_url`).
    n2g: N2G graphs shown at the top of their neurons' pages (SVG and scores): ``{(layer, neuron): NeuronGraph}``,
        or the ``out_dir`` of :func:`mri_lens.lenses.n2g.explain_layer` (``L{layer}/N{neuron}.json``).
    ablation: estimate each neuron's effect on the next-token loss of its top examples (attribution patching: one
        forward and backward pass per batch of the top documents of all layers, every layer measured in it;
        bench/RESULTS.md); ``False`` leaves the section out.
    progress: progress bars (documents recomputed, ablation estimates, then layers written).
    """
    from ...model.adapter import as_adapter

    adapter = as_adapter(model)
    layers = list(scan.layers) if layers is None else [int(l) for l in layers]
    ids = _checked_site_args(scan, adapter, layers, neurons, k, per_band, n_random, batch_size)
    link_map = _checked_links(links, layers, ids)
    bands = sorted(float(b) for b in bands)
    out_dir = claim_dir(out_dir, SITE_KIND, overwrite=overwrite)

    plans = {l: plan_examples(scan, l, ids, k, bands, per_band, n_random, seed) for l in layers}
    facts = _facts(adapter, scan, layers, n_logits)
    table = TokenTable(visible_token)
    docs = np.unique(np.concatenate([p.doc for p in plans.values()])).tolist()
    doc_tokens = {d: table.add(scan.str_tokens(d)) for d in docs}
    for f in facts.values():
        if f.logits is not None:
            vocab = np.unique(np.concatenate([f.logits[0].ravel(), f.logits[2].ravel()]))
            vocab = vocab[vocab >= 0].tolist()
            f.logit_tokens = dict(zip(vocab, table.add(adapter.str_tokens(vocab, sequence=False)).tolist()))
    width = table.width()
    doc_codes = {d: encode_ints(doc_tokens[d], width) for d in docs}
    q = scan.stats.quantile(np.array([0.5, 0.9, 0.99]))  # [3, n_layers, d_mlp]

    examples = _examples(adapter, scan, layers, plans, batch_size, progress)
    if ablation and _neurons(scan):  # the estimate edits MLP neurons; other units get none
        for l, est in _ablation(adapter, scan, layers, plans, batch_size, progress).items():
            facts[l].ablation = est
    written, rows = [], {}
    for l in _bar(layers, "Neuroscope site: data files", progress, unit="layer"):
        recs = neuron_records(scan, l, ids, plans[l], examples.pop(l), facts[l], doc_codes, doc_tokens, width,
                              {"q": q[:, scan.layer_index(l)]}, link_map, n2g)
        written += _write_chunks(out_dir, l, ids, recs)
        rows[str(l)] = [index_row(recs[n]) for n in ids]
    written += _write_docs(out_dir, doc_codes)
    written += _write_meta(out_dir, scan, title, layers, ids, rows, facts, table, width, bands, k)
    _remove_stale(out_dir, written)
    return _write_viewer(out_dir, scan, title, layers, ids)


def _neurons(scan) -> bool:
    """Whether the scan's units are the MLP neurons (the default), rather than other hook points or latents."""
    from ...model.units import units_for_scan

    return units_for_scan(scan).is_default


def _checked_site_args(scan, adapter: Any, layers: list[int], neurons: Sequence[int] | None, k: int,
                       per_band: int, n_random: int, batch_size: int) -> list[int]:
    """The neuron ids of the site, after checking the layers, the model against the scan and the counts."""
    if not layers:
        raise ScanError("layers is empty: give at least one scanned layer")
    for l in layers:
        scan.layer_index(l)
    if adapter.d_mlp is not None and int(adapter.d_mlp) != scan.d_mlp and _neurons(scan):
        raise ScanError(f"the model has d_mlp={adapter.d_mlp} but the scan has {scan.d_mlp}: pass the scanned model")
    ids = np.arange(scan.d_mlp) if neurons is None else np.unique(np.asarray(list(neurons), dtype=np.int64))
    if len(ids) == 0 or ids.min() < 0 or ids.max() >= scan.d_mlp:
        raise ScanError(f"neurons must be in 0..{scan.d_mlp - 1}")
    for name, v, low in (("k", k, 1), ("per_band", per_band, 0), ("n_random", n_random, 0),
                         ("batch_size", batch_size, 1)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {v!r}")
    return [int(n) for n in ids]


def _checked_links(links: Callable | None, layers: list[int], ids: list[int]) -> dict:
    """``{(layer, neuron): [[text, url], ...]}`` of every page, each URL checked (before any work)."""
    if links is None:
        return {}
    return {(l, n): [[str(t), check_link_url(u)] for t, u in (links(l, n) or [])] for l in layers for n in ids}


def _bar(items: Any, desc: str, progress: bool, unit: str = "doc"):
    """A progress bar over ``items`` (an iterable), or of ``items`` steps (an int)."""
    from tqdm.auto import tqdm

    kw = {"desc": desc, "unit": unit, "disable": not progress, "leave": False}
    return tqdm(total=items, **kw) if isinstance(items, int) else tqdm(items, **kw)


def _examples(adapter: Any, scan, layers: list[int], plans: dict, batch_size: int, progress: bool) -> dict:
    """Every layer's examples, recomputed in one forward pass per batch of documents for as many layers as fit in
    about 1 GiB of activations (``batch_size`` documents x their tokens x ``d_mlp`` per layer)."""
    size = _layers_per_pass(scan, batch_size, 1)
    nmax = {l: np.asarray(scan.stats.max[scan.layer_index(l)], np.float32) for l in layers}
    out = {}
    for g in range(0, len(layers), size):
        group = layers[g:g + size]
        n_docs = len(np.unique(np.concatenate([plans[l].doc for l in group])))
        with _bar(n_docs, f"Neuroscope site: examples of layers {group}", progress) as bar:
            out.update(extract_examples(lambda ds, group=group: doc_activations(adapter, scan, ds, group, batch_size),
                                        {l: plans[l] for l in group}, nmax, batch_size, bar))
    return out


def _layers_per_pass(scan, batch_size: int, tensors: int) -> int:
    """How many layers' ``tensors`` ``[batch_size, longest piece, d_mlp]`` float32 tensors each fit in about 1 GiB."""
    per_layer = batch_size * max(int(scan.meta.get("max_length") or 0),
                                 int(np.diff(scan.token_offsets).max(initial=1))) * scan.d_mlp * 4 * tensors
    return max(1, (1 << 30) // max(per_layer, 1))


def _facts(adapter: Any, scan, layers: list[int], n_logits: tuple[int, int]) -> dict[int, LayerFacts]:
    """Per layer: similar neurons, category means and logit effects over the tokens the tokenizer emits."""
    from .neuron_facts import emitted_token_mask

    mask = emitted_token_mask(adapter, scan)
    return {l: layer_facts(adapter, scan, l, n_logits, mask) for l in layers}


def _ablation(adapter: Any, scan, layers: list[int], plans: dict, batch_size: int, progress: bool
              ) -> dict[int, np.ndarray]:
    """Per layer, the estimated change in next-token loss when each neuron is zero-ablated on its own top documents
    ``[d_mlp]`` (NaN for encoders): one forward and backward pass per batch of the union of every layer's top
    documents, as many layers per pass as their activations and gradients fit in about 1 GiB."""
    from .neuron_facts import example_attribution_by_layer

    docs: dict[int, dict[int, list[int]]] = {}
    for l in layers:
        top = plans[l].section == 0
        by_neuron = docs[l] = {}
        for n, d in zip(plans[l].neuron[top].tolist(), plans[l].doc[top].tolist()):
            by_neuron.setdefault(n, []).append(d)
    return example_attribution_by_layer(adapter, scan, docs, batch_size=batch_size,
                                        layers_per_pass=_layers_per_pass(scan, batch_size, 2), progress=progress)


def _js(call: str, *args: Any) -> str:
    """A data file: one call of the viewer's loader with JSON arguments."""
    return f"MRI_SITE.{call}(" + ",".join(json.dumps(a, separators=(",", ":"), allow_nan=False) for a in args) \
        + ");\n"


def _write_chunks(out_dir: str, layer: int, ids: list[int], recs: dict[int, dict]) -> list[str]:
    names = []
    for c in range(0, len(ids), CHUNK):
        name = f"L{layer}_{c // CHUNK}.js"
        write_text_atomic(os.path.join(out_dir, "data", name), _js("chunk", layer, c // CHUNK,
                                                                   [recs[n] for n in ids[c:c + CHUNK]]))
        names.append(name)
    return names


def _write_docs(out_dir: str, doc_codes: dict[int, str]) -> list[str]:
    by_chunk: dict[int, dict[str, str]] = {}
    for d in sorted(doc_codes):
        by_chunk.setdefault(d // DOC_CHUNK, {})[str(d)] = doc_codes[d]
    for c, docs in by_chunk.items():
        write_text_atomic(os.path.join(out_dir, "data", f"D{c}.js"), _js("docs", c, docs))
    return [f"D{c}.js" for c in by_chunk]


def _write_meta(out_dir: str, scan, title: str | None, layers: list[int], ids: list[int], rows: dict,
                facts: dict[int, LayerFacts], table: TokenTable, width: int, bands: list[float], k: int) -> list[str]:
    """``data/index.js`` (the site's facts and one row per neuron) and ``data/tokens.js``."""
    f0 = facts[layers[0]]
    meta = {
        "title": title or f"mri_lens Neuroscope: {scan.meta.get('model_id', 'model')}",
        "model": str(scan.meta.get("model_id", "")), "n_docs": scan.n_docs, "n_tokens": int(scan.stats.count),
        "layers": layers, "ids": ids, "chunk": CHUNK, "doc_chunk": DOC_CHUNK, "width": width, "q": Q,
        "alphabet": ALPHABET, "before": BEFORE, "after": AFTER, "k": k, "bands": bands,
        "has_max": "max" in scan.poolings, "edges": [float(e) for e in scan.stats.hist_edges],
        "labels": None if scan.labels is None else [int(x) for x in scan.labels],
        "label_names": None if scan.label_names is None else [str(x) for x in scan.label_names],
        "categories": None if f0.categories is None else
        {"names": list(f0.categories[0]), "counts": [int(c) for c in f0.categories[2]]},
        "no_logits": f0.no_logits, "ablation": "off" if f0.ablation is None else
        "computed" if np.isfinite(f0.ablation).any() else "not causal", "rows": rows,
    }
    write_text_atomic(os.path.join(out_dir, "data", "index.js"), _js("index", meta))
    write_text_atomic(os.path.join(out_dir, "data", "tokens.js"), _js("tokens", table.strings))
    return ["index.js", "tokens.js"]


def _remove_stale(out_dir: str, written: list[str]) -> None:
    """Data files of an earlier, larger site in this directory that this one does not use (only the names the site
    writes)."""
    data = os.path.join(out_dir, "data")
    keep = set(written)
    for name in os.listdir(data):
        if _DATA_FILE.match(name) and name not in keep and os.path.isfile(os.path.join(data, name)):
            os.remove(os.path.join(data, name))


def _asset(name: str) -> str:
    return (resources.files(__package__) / "viewer" / name).read_text(encoding="utf-8")


def _write_viewer(out_dir: str, scan, title: str | None, layers: list[int], ids: list[int]) -> str:
    """The viewer's assets, ``index.html`` and the manifest. Returns the path of ``index.html``."""
    write_text_atomic(os.path.join(out_dir, "assets", "viewer.css"), CSS + _asset("viewer.css"))
    write_text_atomic(os.path.join(out_dir, "assets", "viewer.js"), _asset("viewer.js"))
    name = title or f"mri_lens Neuroscope: {scan.meta.get('model_id', 'model')}"
    body = ("<div id='app'><noscript>This site's pages are drawn by its script (assets/viewer.js): allow "
            "JavaScript for this file.</noscript><p class='muted' id='loading'>loading...</p></div>")
    html = page(name, body, stylesheet="assets/viewer.css",
                scripts=["assets/viewer.js", "data/tokens.js", "data/index.js"])
    index = write_text_atomic(os.path.join(out_dir, "index.html"), html)
    manifest = {"format": SITE_KIND, "kind": SITE_KIND, "schema_version": 2, "mri_lens_version": __version__,
                "layers": {str(l): ids for l in layers}}
    write_text_atomic(os.path.join(out_dir, "manifest.json"),
                      json.dumps(seal(manifest), indent=1, sort_keys=True) + "\n")
    return index
