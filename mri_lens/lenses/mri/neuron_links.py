"""From a neuron to its MRI region and back: which region of a layer's map holds each neuron (neurons mode), the
``links=`` callable that points each Neuroscope neuron page to its region on the MRI page, and the strongest
neurons of the most enriched regions (the neurons the MRI page names).

>>> links = ml.mri.neuron_links(maps, mri_rel="../mri/index.html")        # doctest: +SKIP
>>> ml.neuroscope.site(scan, model, "out/site", links=links)              # doctest: +SKIP
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np

from ...render.links import region_anchor

__all__ = ["EnrichedRegion", "enriched_region_neurons", "neuron_links", "neuron_regions"]


def neuron_regions(maps, layer: int) -> np.ndarray:
    """The region of every neuron of model layer ``layer`` on ``maps`` (neurons mode) ``[d_mlp]`` int64; an empty
    array in documents mode (points are documents there, so a neuron has no region)."""
    if maps.mode != "neurons":
        return np.zeros(0, np.int64)
    sizes = maps.region_sizes(layer)
    out = np.full(int(sizes.sum()), -1, np.int64)
    for r in np.flatnonzero(sizes):
        out[maps.region_neurons(layer, int(r))] = r
    return out


def neuron_links(maps, mri_rel: str = "../mri/index.html") -> Callable[[int, int], list[tuple[str, str]]]:
    """``f(layer, neuron) -> [(text, url)]`` for :func:`mri_lens.lenses.neuroscope.site`'s ``links=``: the
    neuron's region on the MRI page ``mri_rel`` (relative to the site directory), anchored
    ``#region-L{layer}-R{region}``; no link for a layer the maps lack, or in documents mode."""
    regions = {l: neuron_regions(maps, l) for l in maps.layers}

    def links(layer: int, neuron: int) -> list[tuple[str, str]]:
        r = regions.get(int(layer))
        if r is None or not 0 <= int(neuron) < len(r):
            return []
        region = int(r[int(neuron)])
        return [(f"MRI: region {region} of layer {int(layer)}", f"{mri_rel}#{region_anchor(layer, region)}")]

    return links


class EnrichedRegion(NamedTuple):
    """One enriched region and its strongest neurons."""

    layer: int
    region: int
    n_neurons: int
    strongest: np.ndarray  # [k] neuron ids, highest maximum activation first


def enriched_region_neurons(maps, regions, scan, *, n_regions: int = 6, per_region: int = 5) -> list[EnrichedRegion]:
    """The ``n_regions`` most enriched regions of a comparison (``regions``: the ``CategoryComparison.regions``
    table, by ascending q-value, ties in table order) with their ``per_region`` neurons of highest maximum
    activation in ``scan`` (ties by id). Neurons mode only (an empty list in documents mode)."""
    if maps.mode != "neurons":
        return []
    out = []
    for _, r in regions.sort_values("q_value", kind="stable").head(n_regions).iterrows():
        layer, region = int(r["layer"]), int(r["region"])
        neurons = maps.region_neurons(layer, region)
        top = scan.stats.max[scan.layer_index(layer), neurons]
        out.append(EnrichedRegion(layer, region, len(neurons), neurons[np.argsort(-top, kind="stable")][:per_region]))
    return out
