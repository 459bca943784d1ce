"""Neuroscope lens: thresholded token views of a few prompts across layers.

Per layer, keep only the neurons whose activation on some real token of the prompts is above ``hi`` and/or below
``lo``, and show every prompt token coloured in four bins (:class:`ColorBins`). Thresholds are absolute, or
relative: a quantile of each neuron's (or the whole layer's) activation distribution taken from a scan.

>>> view = ml.neuroscope.view(model, ml.neuroscope.prompts.sequence_prompts(), hi=3.0, lo=0.0, select="hi")  # doctest: +SKIP
>>> view.summary_figure()                                                                     # doctest: +SKIP
>>> view.save_html("view.html")                                                               # doctest: +SKIP
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ...errors import ScanError
from ...render.html import escape, escape_token, figure_html, write_page
from ...render.links import SiteLinks, neuron_link_html, site_links

__all__ = ["ColorBins", "NeuroscopeView", "OfflineHTML", "view"]

SELECT_MODES = ("hi", "lo", "either")
SORT_MODES = ("max", "coverage")
RELATIVE_TO = ("neuron", "layer")


# ---------------------------------------------------------------------- colour bins
@dataclass(frozen=True)
class ColorBins:
    """Four colour bins for activations.

    Boundaries, exactly (``x`` an activation):

    * ``"red"``    if ``x > red``
    * ``"orange"`` if ``orange < x <= red``
    * ``"grey"``   if ``lo <= x <= orange``
    * ``"blue"``   if ``x < lo``

    So with the defaults, 3.5 is orange, 3.0 is grey, 0.0 is grey and -0.001 is blue; a token that passes
    ``hi=orange`` in :func:`view` (strictly greater) is always orange or red. NaN is grey.

    Parameters
    ----------
    red, orange, lo: float
        Boundaries, with ``lo <= orange <= red`` (finite).
    colors: dict
        CSS colours per bin name.
    """

    red: float = 3.5
    orange: float = 3.0
    lo: float = 0.0
    colors: tuple[tuple[str, str], ...] = (("red", "#d7301f"), ("orange", "#fdae61"), ("grey", "#e6e6e6"),
                                           ("blue", "#74a9cf"))

    NAMES = ("blue", "grey", "orange", "red")

    def __post_init__(self) -> None:
        vals = (self.red, self.orange, self.lo)
        if not all(isinstance(v, (int, float, np.floating, np.integer)) and math.isfinite(v) for v in vals):
            raise ValueError(f"ColorBins boundaries must be finite numbers, got red={self.red}, "
                             f"orange={self.orange}, lo={self.lo}")
        if not self.lo <= self.orange <= self.red:
            raise ValueError(f"ColorBins needs lo <= orange <= red, got lo={self.lo}, orange={self.orange}, "
                             f"red={self.red}")
        if set(dict(self.colors)) != set(self.NAMES):
            raise ValueError(f"ColorBins colors must name exactly {self.NAMES}")

    def codes(self, x) -> np.ndarray:
        """Bin code per value: 0 blue, 1 grey, 2 orange, 3 red; same shape as ``x``."""
        x = np.asarray(x, dtype=np.float64)
        out = np.ones(x.shape, dtype=np.int8)
        out[x < self.lo] = 0
        out[x > self.orange] = 2
        out[x > self.red] = 3
        return out

    def bin(self, x) -> np.ndarray:
        """Bin name per value (``"red"``, ``"orange"``, ``"grey"``, ``"blue"``), same shape as ``x``."""
        return np.asarray(self.NAMES, dtype=object)[self.codes(x)]

    def css(self) -> str:
        c = dict(self.colors)
        return "".join(f".nb-{n[0]}{{background:{c[n]}}}" for n in self.NAMES)

    def legend_html(self) -> str:
        c = dict(self.colors)
        items = [("red", f"&gt; {self.red:g}"), ("orange", f"{self.orange:g} &lt; x &le; {self.red:g}"),
                 ("grey", f"{self.lo:g} &le; x &le; {self.orange:g}"), ("blue", f"&lt; {self.lo:g}")]
        return "<div class='nb-legend'>" + "".join(
            f"<span style='background:{c[n]}'>{n}: x {t}</span> " for n, t in items) + "</div>"


# ---------------------------------------------------------------------- the view
@dataclass
class NeuroscopeView:
    """Result of :func:`view`: selected neurons per layer and their per-token activations.

    Attributes
    ----------
    prompts: list[str]
    str_tokens: list of ``[n_tokens_i]`` decoded tokens per prompt (special tokens included, never pads).
    layers: model layer numbers.
    neurons: layer -> ``[n_selected]`` neuron ids, in display order (after sorting and the cap).
    activations: layer -> list over prompts of ``[n_tokens_i, n_selected]`` float32.
    max_activation, min_activation, coverage: layer -> ``[n_selected]`` over the prompts' real tokens; coverage is
        the fraction of real tokens beyond the threshold (in the selected direction).
    hi, lo: layer -> ``[n_selected]`` thresholds each neuron was tested against.
    n_candidates: layer -> number of neurons that passed the threshold (before the cap).
    candidate_coverage: layer -> ``[n_candidates]`` coverage of every neuron that passed (for the summary figure).
    n_excluded_prefix: special tokens at the start of each prompt shown but excluded from selection (BOS on causal
        models: its activations are large and say nothing about the prompt), 0 otherwise.
    """

    prompts: list[str]
    str_tokens: list[list[str]]
    layers: list[int]
    neurons: dict[int, np.ndarray]
    activations: dict[int, list[np.ndarray]]
    max_activation: dict[int, np.ndarray]
    min_activation: dict[int, np.ndarray]
    coverage: dict[int, np.ndarray]
    hi: dict[int, np.ndarray]
    lo: dict[int, np.ndarray]
    n_candidates: dict[int, int]
    candidate_coverage: dict[int, np.ndarray]
    select: str = "hi"
    sort: str = "max"
    relative: float | None = None
    bins: ColorBins = field(default_factory=ColorBins)
    n_excluded_prefix: int = 0
    d_mlp: int = 0
    model_id: str = ""

    def __repr__(self) -> str:
        counts = {l: len(self.neurons[l]) for l in self.layers}
        return (f"NeuroscopeView(prompts={len(self.prompts)}, select={self.select!r}, "
                f"selected per layer={counts})")

    # ------------------------------------------------------------------ HTML (no JS)
    # Cells are left-aligned here and on each cell (notebook front ends right-align table cells by default).
    _CSS = (".nsv{font-family:system-ui,sans-serif;font-size:13px;color:#222}.nsv table{border-collapse:collapse}"
            ".nsv td{padding:1px 4px;vertical-align:top;border-bottom:1px solid #eee;text-align:left}"
            ".nsv .nid{white-space:nowrap;"
            "font-family:monospace}.nsv .toks{font-family:monospace;white-space:pre-wrap;line-height:1.6}"
            ".nsv .toks span{border-radius:2px;padding:0 1px}.nsv .ex{opacity:.5;text-decoration:line-through}"
            ".nb-legend span{padding:1px 6px;margin-right:4px;font-size:12px}")

    def _layer_html(self, layer: int, site: SiteLinks | None = None) -> str:
        ids = self.neurons[layer]
        head = (f"<summary><b>Layer {layer}</b>: {self.n_candidates[layer]} of {self.d_mlp} neurons pass"
                f"{'' if len(ids) == self.n_candidates[layer] else f', showing {len(ids)}'}</summary>")
        if not len(ids):
            return f"<details class='nsl' open>{head}<p>no neuron passes the threshold</p></details>"
        rows = []
        for j, n in enumerate(ids.tolist()):
            cells = []
            for p, toks in enumerate(self.str_tokens):
                acts = self.activations[layer][p][:, j]
                codes = self.bins.codes(acts)
                spans = []
                for t, (tok, a, c) in enumerate(zip(toks, acts.tolist(), codes.tolist())):
                    ex = " ex" if t < self.n_excluded_prefix else ""
                    spans.append(f"<span class='nb-{'bgor'[c]}{ex}' title='{a:.2f}'>{escape_token(tok)}</span>")
                cells.append("".join(spans))
            rows.append(f"<tr><td class='nid' style='text-align:left'>{neuron_link_html(site, layer, n)}<br>max "
                        f"{self.max_activation[layer][j]:.2f}<br>cov {self.coverage[layer][j]:.2f}</td>"
                        "<td class='toks' style='text-align:left'>" + "<br>".join(cells) + "</td></tr>")
        return f"<details class='nsl' open>{head}<table>{''.join(rows)}</table></details>"

    def to_html(self, site: SiteLinks | None = None) -> str:
        """The binned view as an HTML fragment (inline CSS, no JavaScript, every token escaped). ``site``: a
        :class:`~mri_lens.render.links.SiteLinks` (relative to where the fragment is shown): each neuron id links
        to its page when the site has one."""
        thr = (f"relative: quantile {self.relative:g} of each neuron's distribution" if self.relative is not None
               else f"hi={_first(self.hi):g}, lo={_first(self.lo):g}")
        note = ("<p>Grey-struck first token (BOS) is shown but excluded from selection.</p>"
                if self.n_excluded_prefix else "")
        return (f"<div class='nsv'><style>{self._CSS}{self.bins.css()}</style>"
                f"<p><b>mri_lens Neuroscope view</b> {escape(self.model_id)}: {len(self.prompts)} prompt(s), "
                f"select={escape(self.select)}, {escape(thr)}, sorted by {escape(self.sort)}</p>"
                f"{self._prompts_html()}{self.bins.legend_html()}{note}"
                + "".join(self._layer_html(l, site) for l in self.layers) + "</div>")

    def _prompts_html(self) -> str:
        """The prompts as text (each row of the view shows them token by token, in this order)."""
        items = "".join(f"<li>{escape(p if len(p) <= 300 else p[:300] + '...')}</li>" for p in self.prompts)
        return f"<details><summary>the prompts</summary><ol class='prompts'>{items}</ol></details>"

    def _repr_html_(self) -> str:
        return self.to_html()

    def save_html(self, path: str | os.PathLike, *, title: str = "mri_lens Neuroscope view",
                  summary: bool = False, assets: str | os.PathLike | None = None, overwrite: bool = False,
                  site: SiteLinks | str | os.PathLike | None = None) -> str:
        """Write a page (atomic). ``summary=True`` adds :meth:`summary_figure`, with plotly.js inlined (a
        standalone page) or, given ``assets`` (a directory above the page), the shared
        ``assets/plotly-<version>.min.js`` under it, referenced relatively. ``site``: a Neuroscope site of the
        same model (its directory, or :class:`~mri_lens.render.links.SiteLinks` relative to this page): each
        neuron id links to its page there when the site has one. Replaces only an mri_lens page unless
        ``overwrite=True``. Returns the absolute path."""
        fig = figure_html(self.summary_figure()) if summary else ""
        plotly = None if not summary else "inline" if assets is None else "asset"
        # css="": the view carries its own inline styles (to_html), the same in a notebook and on the page
        body = fig + self.to_html(site_links(site, path))
        return write_page(path, title, body, plotly=plotly, assets=assets, css="", overwrite=overwrite)

    # ------------------------------------------------------------------ figures
    def summary_figure(self):
        """Layer progression: per layer, the number of neurons that pass, and the distribution of their coverage
        (fraction of the prompts' real tokens beyond the threshold). Returns a plotly Figure."""
        from plotly.subplots import make_subplots
        import plotly.graph_objects as go

        names = [f"L{l}" for l in self.layers]
        fig = make_subplots(rows=1, cols=2, subplot_titles=("neurons passing the threshold",
                                                            "coverage of the prompt's tokens per neuron"))
        fig.add_trace(go.Bar(x=names, y=[self.n_candidates[l] for l in self.layers], marker_color="#d7301f",
                             showlegend=False), 1, 1)
        for l, name in zip(self.layers, names):
            fig.add_trace(go.Box(y=self.candidate_coverage[l], name=name, boxpoints=False, showlegend=False,
                                 marker_color="#555"), 1, 2)
        fig.update_yaxes(range=[0, 1], row=1, col=2)
        fig.update_layout(height=360, title=f"select={self.select}: sparse early layers vs solid late layers?")
        return fig

    # ------------------------------------------------------------------ CircuitsVis
    def circuitsvis(self, layer: int, prompt: int | None = None, *, decimals: int = 3) -> "OfflineHTML":
        """Interactive view of one layer's selected neurons with CircuitsVis' ``text_neuron_activations`` (every
        prompt, or only ``prompt``), rendered from the offline bundle (never the CDN version). Tokens are escaped
        first and values rounded to ``decimals``. Returns an object with ``_repr_html_`` and ``save(path)``."""
        try:
            from circuitsvis.activations import text_neuron_activations
        except ImportError:
            raise ImportError("the CircuitsVis view needs circuitsvis: pip install circuitsvis") from None
        if layer not in self.neurons:
            raise ScanError(f"layer {layer} is not in this view; it has layers {self.layers}")
        if prompt is not None and not 0 <= prompt < len(self.prompts):
            raise ValueError(f"prompt must be in 0..{len(self.prompts) - 1}, got {prompt}")
        ids = self.neurons[layer]
        if not len(ids):
            raise ScanError(f"no neuron of layer {layer} passes the threshold; nothing to show")
        which = range(len(self.prompts)) if prompt is None else [prompt]
        toks = [[escape(t) for t in self.str_tokens[p]] for p in which]
        # [n_tokens, 1 layer, n_selected] per prompt, rounded: props are serialised at full float precision
        acts = [np.round(self.activations[layer][p].astype(np.float64), decimals)[:, None, :] for p in which]
        obj = text_neuron_activations(tokens=toks, activations=acts,
                                      first_dimension_labels=[f"L{layer}"],
                                      second_dimension_labels=[f"N{n}" for n in ids.tolist()])
        return OfflineHTML(obj.local_src)


class OfflineHTML:
    """An HTML fragment that always renders from its inlined bundle (no network probe, no CDN)."""

    def __init__(self, src: str):
        self.src = src

    def _repr_html_(self) -> str:
        return self.src

    def __str__(self) -> str:
        return self.src

    def save(self, path: str | os.PathLike, *, title: str = "mri_lens CircuitsVis view",
             overwrite: bool = False) -> str:
        """Write a standalone page (atomic); replaces only an mri_lens page unless ``overwrite=True``."""
        return write_page(path, title, self.src, css="", overwrite=overwrite)


def _first(d: dict[int, np.ndarray]) -> float:
    for v in d.values():
        if len(v):
            return float(v[0])
    return float("nan")


# ---------------------------------------------------------------------- thresholds and selection
def layer_quantile(stats, li: int, q: float) -> float:
    """Approximate quantile ``q`` of all of a layer's activations pooled over its neurons, from a scan's
    histograms (``stats`` a :class:`~mri_lens.results.scan.NeuronStats`, ``li`` the layer's position in the scan):
    :meth:`NeuronStats.layer_quantile <mri_lens.results.scan.NeuronStats.layer_quantile>`."""
    return float(stats.layer_quantile(q, li))


def thresholds(layers: Sequence[int], d_mlp: int, *, hi: float, lo: float, relative: float | None,
               relative_to: str, scan=None) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Per layer, ``(hi [d_mlp], lo [d_mlp])`` thresholds. Absolute: ``hi``/``lo`` broadcast. Relative:
    ``hi`` = quantile ``relative`` and ``lo`` = quantile ``1 - relative`` of the neuron's (``relative_to="neuron"``)
    or the layer's (``"layer"``) distribution in ``scan``."""
    out = {}
    if relative is None:
        if not float(lo) <= float(hi):
            raise ValueError(f"lo must not be greater than hi, got lo={lo}, hi={hi}")
        for l in layers:
            out[l] = (np.full(d_mlp, float(hi)), np.full(d_mlp, float(lo)))
        return out
    if scan is None:
        raise ValueError("relative thresholds need a scan of the same model (scan=...) to take quantiles from")
    if scan.d_mlp != d_mlp:
        raise ScanError(f"the scan has d_mlp={scan.d_mlp} but the model has {d_mlp}: scan the same model")
    for l in layers:
        li = scan.layer_index(l)  # ScanError for a layer the scan lacks
        if relative_to == "neuron":
            qs = scan.stats.quantile(np.array([relative, 1.0 - relative]))  # [2, L, d]
            out[l] = (qs[0, li].astype(np.float64), qs[1, li].astype(np.float64))
        else:
            out[l] = (np.full(d_mlp, layer_quantile(scan.stats, li, relative)),
                      np.full(d_mlp, layer_quantile(scan.stats, li, 1.0 - relative)))
    return out


def select_neurons(acts: np.ndarray, hi: np.ndarray, lo: np.ndarray, select: str) -> tuple[np.ndarray, np.ndarray]:
    """Which neurons pass, and their coverage. ``acts`` is ``[n_real_tokens, d_mlp]`` (real tokens of all prompts
    stacked); ``hi``, ``lo`` are ``[d_mlp]``. Returns ``(passed [d_mlp] bool, coverage [d_mlp] float)``: a neuron
    passes when some token is ``> hi`` (``"hi"``), ``< lo`` (``"lo"``) or either; coverage is the fraction of
    tokens that do."""
    if select == "hi":
        hits = acts > hi
    elif select == "lo":
        hits = acts < lo
    else:
        hits = (acts > hi) | (acts < lo)
    n = max(acts.shape[0], 1)
    return hits.any(0), hits.sum(0) / n


def view(model: Any, prompts: str | Sequence[str], *, layers: Sequence[int] | None = None,
               hi: float | None = None, lo: float | None = None, select: str = "hi", relative: float | None = None,
               relative_to: str = "neuron", scan=None, sort: str = "max", max_neurons_per_layer: int | None = 50,
               bins: ColorBins | None = None, batch_size: int = 16) -> NeuroscopeView:
    """Thresholded token view of ``prompts`` across layers.

    Parameters
    ----------
    model: a TransformerLens model (or :class:`~mri_lens.model.adapter.ModelAdapter`).
    prompts: one text or a list of texts. Each is tokenised like a scan (BOS / [CLS] ... [SEP]), never padded.
    layers: model layer numbers (default: all).
    hi, lo: absolute thresholds with ``lo <= hi`` (``lo < hi`` for ``select="either"``), else ``ValueError``;
        ignored when ``relative`` is given. Defaults: ``hi=3.0`` (raised to ``lo`` when only a larger ``lo`` is
        given) and ``lo=0.0`` (lowered to ``hi`` when only a smaller ``hi`` is given).
    select: ``"hi"`` keeps neurons with some real token ``> hi``; ``"lo"`` some token ``< lo``; ``"either"``.
    relative: a quantile in (0.5, 1), e.g. 0.999: ``hi`` becomes that quantile and ``lo`` the ``1 - relative``
        quantile of each neuron's (``relative_to="neuron"``) or its layer's (``"layer"``) distribution, read
        from ``scan`` (:meth:`NeuronStats.quantile`, approximate from the histograms).
    sort: ``"max"`` (the extreme activation in the selected direction, descending) or ``"coverage"`` (fraction of
        real tokens beyond the threshold, descending); ties by neuron id.
    max_neurons_per_layer: cap after sorting (None: no cap).
    bins: colour bins of the view (default :class:`ColorBins` ``()``).

    Real tokens: on causal models the BOS token is shown but excluded from selection and coverage (its activations
    are typically huge and the same for every prompt); on encoder models [CLS] and [SEP] are real tokens.
    """
    from ...model.adapter import as_adapter
    from ...model.capture import token_activations

    hi, lo = _checked_options(hi, lo, select, relative, relative_to, sort, max_neurons_per_layer)
    prompts = _checked_prompts(prompts)
    bins = bins if bins is not None else ColorBins()

    adapter = as_adapter(model)
    layers = adapter.check_layers(layers)
    if scan is not None:
        for l in layers:
            scan.layer_index(l)
    segs, _ = adapter.encode(prompts)
    ids = [s[0] for s in segs]
    skip = adapter.n_special_prefix if adapter.is_causal else 0
    if any(len(s) <= skip for s in ids):
        raise ValueError("a prompt has no tokens besides BOS")
    acts = token_activations(adapter, ids, layers, batch_size=batch_size)  # per prompt {layer: [n_tok, d]}
    d_mlp = int(acts[0][layers[0]].shape[1])
    thr = thresholds(layers, d_mlp, hi=hi, lo=lo, relative=relative, relative_to=relative_to, scan=scan)

    view = NeuroscopeView(prompts=prompts, str_tokens=[adapter.str_tokens(s) for s in ids], layers=layers,
                          neurons={}, activations={}, max_activation={}, min_activation={}, coverage={}, hi={},
                          lo={}, n_candidates={}, candidate_coverage={}, select=select, sort=sort,
                          relative=relative, bins=bins, n_excluded_prefix=skip, d_mlp=d_mlp,
                          model_id=adapter.model_id)
    for l in layers:
        _select_layer(view, l, [a[l] for a in acts], thr[l], max_neurons_per_layer)
    return view


def _checked_options(hi, lo, select: str, relative, relative_to: str, sort: str,
                     max_neurons_per_layer: int | None) -> tuple[float | None, float | None]:
    """:func:`view`'s options checked (``ValueError`` naming the bad one); returns ``(hi, lo)`` with the defaults
    filled in for absolute thresholds."""
    if select not in SELECT_MODES:
        raise ValueError(f"select must be one of {SELECT_MODES}, got {select!r}")
    if sort not in SORT_MODES:
        raise ValueError(f"sort must be one of {SORT_MODES}, got {sort!r}")
    if relative_to not in RELATIVE_TO:
        raise ValueError(f"relative_to must be one of {RELATIVE_TO}, got {relative_to!r}")
    if relative is None:
        for name, v in (("hi", hi), ("lo", lo)):
            if v is not None and (isinstance(v, (bool, np.bool_))
                                  or not isinstance(v, (int, float, np.floating, np.integer)) or not math.isfinite(v)):
                raise ValueError(f"{name} must be a finite number, got {v!r}")
        if hi is None:
            hi = 3.0 if lo is None else max(3.0, float(lo))
        if lo is None:
            lo = min(0.0, float(hi))
        if select == "either" and not lo < hi:
            raise ValueError(f"select='either' needs lo < hi, got lo={lo}, hi={hi}")
        if lo > hi:
            raise ValueError(f"lo must not be greater than hi, got lo={lo}, hi={hi} (swapped?)")
    elif not (isinstance(relative, (float, int)) and 0.5 < relative < 1):
        raise ValueError(f"relative must be a quantile in (0.5, 1), e.g. 0.999; got {relative!r}")
    if max_neurons_per_layer is not None and max_neurons_per_layer < 1:
        raise ValueError(f"max_neurons_per_layer must be positive or None, got {max_neurons_per_layer}")
    return hi, lo


def _checked_prompts(prompts: str | Sequence[str]) -> list[str]:
    if isinstance(prompts, str):
        prompts = [prompts]
    prompts = list(prompts)
    if not prompts or not all(isinstance(p, str) and p for p in prompts):
        raise ValueError("prompts must be one or more non-empty strings")
    return prompts


def _select_layer(view: NeuroscopeView, l: int, acts: list[np.ndarray], thr: tuple[np.ndarray, np.ndarray],
                  max_neurons_per_layer: int | None) -> None:
    """Layer ``l``'s selected neurons, sorted and capped, into ``view``; ``acts`` per prompt ``[n_tok, d_mlp]``,
    ``thr`` the layer's ``(hi [d_mlp], lo [d_mlp])``."""
    skip, select = view.n_excluded_prefix, view.select
    real = np.concatenate([a[skip:] for a in acts]).astype(np.float32)  # [n_real_tokens, d]
    h, lw = thr
    passed, cov = select_neurons(real, h, lw, select)
    mx, mn = real.max(0), real.min(0)
    strength = {"hi": mx, "lo": -mn, "either": np.maximum(mx - h, lw - mn)}[select]
    key = strength if view.sort == "max" else cov
    cand = np.flatnonzero(passed)
    order = cand[np.lexsort((cand, -key[cand]))]
    keep = order if max_neurons_per_layer is None else order[:max_neurons_per_layer]
    view.neurons[l] = keep.astype(np.int64)
    view.activations[l] = [np.ascontiguousarray(a[:, keep], dtype=np.float32) for a in acts]
    view.max_activation[l], view.min_activation[l] = mx[keep], mn[keep]
    view.coverage[l] = cov[keep]
    view.hi[l], view.lo[l] = h[keep], lw[keep]
    view.n_candidates[l] = int(len(cand))
    view.candidate_coverage[l] = cov[cand]
