"""The region maps' plotly figures: a layer's region images per category with the log-odds panel
(:func:`region_images`), the map's points over the grid (:func:`scatter`) and all layers side by side
(:func:`small_multiples`); for maps of any number of components, the explained variance and each layer's points
on components 1 and 2 (:func:`component_figure`). Each takes a fitted
:class:`~mri_lens.lenses.mri.regions.RegionMaps` and reads it through its accessors; ``maps.figure(layer)``,
``maps.scatter(layer)``, ``maps.small_multiples()`` and ``maps.component_figure()`` call these."""

from __future__ import annotations

import html
from typing import Sequence

import numpy as np

from ...errors import ScanError

__all__ = ["component_figure", "region_images", "scatter", "small_multiples"]


def _pair(maps, categories: Sequence[str] | None) -> list[str]:
    if maps.labels_ is None:
        return []
    return list(maps.label_names_ if categories is None else categories)


def region_images(maps, layer: int, categories: Sequence[str] | None = None, *, value: str = "fraction"):
    """The body of :meth:`RegionMaps.figure <mri_lens.lenses.mri.regions.RegionMaps.figure>` (see there)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    if value not in ("fraction", "mean"):
        raise ValueError("value must be 'fraction' or 'mean'")
    cats = _pair(maps, categories)
    per = (maps.category_fractions if value == "fraction" else maps.category_mean_activation)(
        layer, cats or None)
    panels = list(per.items())
    lo = None
    if len(cats) >= 2:
        lo = (f"log-odds {cats[0]} vs {cats[1]}", maps.log_odds(layer, cats[0], cats[1]))
    n = len(panels) + (lo is not None)
    fig = make_subplots(rows=1, cols=n, subplot_titles=[html.escape(p[0]) for p in panels] +
                        ([html.escape(lo[0])] if lo else []), horizontal_spacing=0.12 if lo else 0.06)
    sizes = maps.region_sizes(layer).reshape(maps.grid, maps.grid)
    # each colour bar sits just right of the last panel it describes
    bar_x = [fig.layout[f"xaxis{k if k > 1 else ''}"].domain[1] + 0.01 for k in range(1, n + 1)]
    zmax = max([np.nanmax(v) if np.isfinite(v).any() else 0 for _, v in panels] + [1e-9])
    unit = "fraction active" if value == "fraction" else "mean activation"
    for j, (name, v) in enumerate(panels):
        fig.add_trace(go.Heatmap(z=v, zmin=0 if value == "fraction" else None,
                                 zmax=zmax if value == "fraction" else None, colorscale="Viridis",
                                 showscale=j == len(panels) - 1, customdata=sizes,
                                 colorbar=dict(x=bar_x[len(panels) - 1], len=0.8, thickness=12),
                                 hovertemplate=f"{html.escape(name)}<br>row %{{y}}, col %{{x}}<br>{unit} "
                                               "%{z:.3f}<br>points %{customdata}<extra></extra>"), 1, j + 1)
    if lo:
        m = np.nanmax(np.abs(lo[1])) if np.isfinite(lo[1]).any() else 1.0
        fig.add_trace(go.Heatmap(z=lo[1], zmin=-m, zmax=m, colorscale="RdBu_r", customdata=sizes,
                                 colorbar=dict(x=bar_x[-1], len=0.8, thickness=12),
                                 hovertemplate="row %{y}, col %{x}<br>log-odds %{z:.2f}<br>points "
                                               "%{customdata}<extra></extra>"), 1, n)
    for j in range(n):
        fig.update_xaxes(title_text="col", constrain="domain", row=1, col=j + 1)
        fig.update_yaxes(title_text="row" if j == 0 else None, scaleanchor=f"x{j + 1 if j else ''}",
                         row=1, col=j + 1)
    rule = f"rule {maps.rule} {maps.threshold_:g}" if maps.mode == "neurons" else "a document activates its cell"
    fig.update_layout(title=f"Layer {layer}: {maps.grid}x{maps.grid} regions ({maps.mode} mode, {rule})",
                      height=360, width=max(420, 300 * n))
    return fig


def scatter(maps, layer: int, a: str | None = None, b: str | None = None):
    """The body of :meth:`RegionMaps.scatter <mri_lens.lenses.mri.regions.RegionMaps.scatter>` (see there)."""
    import plotly.graph_objects as go

    li = maps._grid_layer(layer)
    c = maps.coords_[li]
    cells = maps.cell_[li]
    fig = go.Figure()
    if maps.mode == "neurons":
        sel, title = None, "neurons"
        if maps.neuron_category_means_ is not None:
            names = maps.label_names_
            a = a or names[0]
            maps._category_masks([a] + ([b] if b else []))
            ia = names.index(a)
            if b is not None:
                sel = maps.neuron_category_means_[li, names.index(b)]
                other = b
            else:  # all other documents: weighted mean of the other categories
                cnt = np.bincount(maps.labels_, minlength=len(names)).astype(np.float64)
                w = cnt.copy()
                w[ia] = 0
                sel = (w[:, None] * maps.neuron_category_means_[li]).sum(0) / max(w.sum(), 1)
                other = "rest"
            sel = maps.neuron_category_means_[li, ia] - sel
            title = f"neurons coloured by selectivity ({a} - {other}, z units)"
        ids = np.arange(len(c))
        custom = np.stack([ids, cells, cells // maps.grid, cells % maps.grid], 1)
        m = float(np.abs(sel).max()) if sel is not None and len(sel) else 1.0
        fig.add_trace(go.Scattergl(
            x=c[:, 0], y=c[:, 1], mode="markers", customdata=custom,
            marker=dict(size=5, color=sel if sel is not None else "#555", colorscale="RdBu_r", cmin=-m, cmax=m,
                        showscale=sel is not None, colorbar=dict(title="sel.")),
            hovertemplate=f"layer {layer}, neuron %{{customdata[0]}}<br>region %{{customdata[1]}} (row "
                          "%{customdata[2]}, col %{customdata[3]})<br>selectivity %{marker.color:.2f}"
                          "<extra></extra>" if sel is not None else
                          f"layer {layer}, neuron %{{customdata[0]}}<br>region %{{customdata[1]}}<extra></extra>"))
    else:
        title = "documents coloured by category"
        for name, m in maps._category_masks(None):
            docs = np.flatnonzero(m)
            fig.add_trace(go.Scattergl(x=c[docs, 0], y=c[docs, 1], mode="markers", name=name,
                                       customdata=np.stack([docs, cells[docs]], 1), marker=dict(size=5),
                                       hovertemplate="doc %{customdata[0]}<br>region %{customdata[1]}"
                                                     "<extra>" + html.escape(name) + "</extra>"))
    xe, ye = maps.x_edges_[li], maps.y_edges_[li]
    for x in xe:
        fig.add_shape(type="line", x0=x, x1=x, y0=ye[0], y1=ye[-1], line=dict(color="#bbb", width=1))
    for y in ye:
        fig.add_shape(type="line", x0=xe[0], x1=xe[-1], y0=y, y1=y, line=dict(color="#bbb", width=1))
    fig.update_layout(title=f"Layer {layer}: {html.escape(title)}", height=520, width=600,
                      xaxis_title=_axis_name(maps, 0), yaxis_title=_axis_name(maps, 1))
    return fig


def small_multiples(maps, categories: Sequence[str] | None = None, *, value: str = "log-odds"):
    """The body of :meth:`RegionMaps.small_multiples <mri_lens.lenses.mri.regions.RegionMaps.small_multiples>`
    (see there)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    maps._check_fitted()
    cats = _pair(maps, categories)
    if value == "log-odds":
        if len(cats) < 2:
            raise ScanError("log-odds small multiples need two categories; use value='fraction'")
        rows = [(f"log-odds {cats[0]} vs {cats[1]}", [maps.log_odds(l, cats[0], cats[1]) for l in maps.layers_])]
        m = max(float(np.nanmax(np.abs(z))) if np.isfinite(z).any() else 0 for z in rows[0][1]) or 1.0
        scale = dict(zmin=-m, zmax=m, colorscale="RdBu_r")
    elif value == "fraction":
        per = [maps.category_fractions(l, cats or None) for l in maps.layers_]
        rows = [(name, [p[name] for p in per]) for name in per[0]]
        scale = dict(zmin=0, zmax=max(float(np.nanmax(z)) if np.isfinite(z).any() else 0
                                      for _, zs in rows for z in zs) or 1.0, colorscale="Viridis")
    else:
        raise ValueError("value must be 'log-odds' or 'fraction'")
    L = len(maps.layers_)
    fig = make_subplots(rows=len(rows), cols=L, horizontal_spacing=0.02, vertical_spacing=0.08,
                        subplot_titles=[f"L{l}" if r == 0 else "" for r in range(len(rows)) for l in maps.layers_])
    for r, (name, zs) in enumerate(rows):
        for j, z in enumerate(zs):
            fig.add_trace(go.Heatmap(z=z, showscale=(r == 0 and j == L - 1), **scale,
                                     hovertemplate=f"{html.escape(name)}<br>layer {maps.layers_[j]}<br>row %{{y}},"
                                                   " col %{x}<br>%{z:.3f}<extra></extra>"), r + 1, j + 1)
        fig.update_yaxes(title_text=html.escape(name)[:24], row=r + 1, col=1)
    fig.update_xaxes(showticklabels=False)
    fig.update_yaxes(showticklabels=False)
    fig.update_layout(height=170 * len(rows) + 90, width=max(500, 170 * L),
                      title=f"All layers: {'log-odds' if value == 'log-odds' else 'fraction active'} per region")
    return fig


def _axis_name(maps, k: int) -> str:
    return f"{'UMAP' if maps.reducer == 'umap' else 'PC' if maps.reducer == 'pca' else 'SV'} {k + 1}"


def _point_groups(maps) -> list[tuple[str, np.ndarray]]:
    """The groups of points drawn in their own colour: documents by category, neurons all together."""
    if maps.mode == "documents":
        return maps._category_masks(None)
    return [("neurons", np.ones(maps.coords_.shape[1], bool))]


def component_figure(maps, layers: Sequence[int] | None = None):
    """The body of :meth:`RegionMaps.component_figure <mri_lens.lenses.mri.regions.RegionMaps.component_figure>`
    (see there)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    maps._check_fitted()
    layers = maps.layers if layers is None else [int(l) for l in layers]
    idx = [maps.layer_index(l) for l in layers]
    L, k = len(layers), maps.n_components
    evr = maps.explained_variance_ratio_
    top = evr is not None
    specs = ([[{"colspan": L}] + [None] * (L - 1)] if top else []) + [[{} for _ in range(L)]]
    fig = make_subplots(rows=len(specs), cols=L, specs=specs, horizontal_spacing=min(0.04, 0.5 / L),
                        vertical_spacing=0.15, subplot_titles=(["explained variance ratio"] if top else [])
                        + [f"L{l}" for l in layers])
    if top:
        for j in range(min(k, 10)):  # the first ten components: more lines are unreadable
            fig.add_trace(go.Scatter(x=layers, y=evr[idx, j], mode="lines+markers", name=f"{_axis_name(maps, j)}",
                                     legendgroup="evr", hovertemplate="layer %{x}<br>%{y:.3f}<extra>"
                                     + _axis_name(maps, j) + "</extra>"), 1, 1)
        fig.update_xaxes(title_text="layer", row=1, col=1)
    row = 1 + top
    for g, (name, m) in enumerate(_point_groups(maps)):
        pts = np.flatnonzero(m)
        for j, li in enumerate(idx):
            c = maps.coords_[li]
            y = c[pts, 1] if k > 1 else pts  # one component: drawn against the point's id
            fig.add_trace(go.Scattergl(x=c[pts, 0], y=y, mode="markers", name=html.escape(name), legendgroup=name,
                                       showlegend=j == 0 and maps.mode == "documents",
                                       marker=dict(size=4, color=_COLOURS[g % len(_COLOURS)]),
                                       customdata=pts, hovertemplate="point %{customdata}<extra>"
                                       + html.escape(name) + "</extra>"), row, j + 1)
    fig.update_xaxes(title_text=_axis_name(maps, 0), row=row)
    fig.update_yaxes(title_text=_axis_name(maps, 1) if k > 1 else "point", row=row, col=1)
    fig.update_layout(height=300 * row + 60, width=max(500, 220 * L),
                      title=f"{maps.reducer.upper()} reduction, {k} components ({maps.mode} mode)")
    return fig


_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")
