"""From a neuron to its MRI region and back: the region of every neuron, the ``links=`` callable of a Neuroscope
site, the strongest neurons of the most enriched regions, and the MRI page's region anchors and neuron links."""

from __future__ import annotations

import re

import numpy as np

import mri_lens as ml
from mri_lens.render.links import SiteLinks, region_anchor
from mri_lens.render.report import write_mri_report


def test_every_neuron_is_in_the_region_that_lists_it(tiny_maps, tiny_scan):
    for l in tiny_maps.layers:
        regions = ml.mri.neuron_regions(tiny_maps, l)
        assert regions.shape == (tiny_scan.d_mlp,) and regions.min() >= 0
        for r in np.unique(regions):
            assert np.array_equal(np.flatnonzero(regions == r), tiny_maps.region_neurons(l, int(r)))


def test_neuron_links_point_to_the_region_anchor(tiny_maps):
    links = ml.mri.neuron_links(tiny_maps, mri_rel="../mri/index.html")
    region = int(ml.mri.neuron_regions(tiny_maps, 1)[7])
    assert links(1, 7) == [(f"MRI: region {region} of layer 1", f"../mri/index.html#region-L1-R{region}")]
    assert links(99, 0) == [] and links(0, 10**6) == []  # a layer the maps lack, a neuron past d_mlp


def test_enriched_region_neurons_are_the_strongest_of_the_most_enriched_regions(planted_maps, planted_scan):
    g = ml.mri.coactivation_graph(planted_maps, min_weight=1, enrichment=True)
    regions = ml.mri.compare_categories(planted_maps, g, "code", "prose").regions
    found = ml.mri.enriched_region_neurons(planted_maps, regions, planted_scan, n_regions=3, per_region=4)
    assert len(found) == 3
    best = regions.sort_values("q_value", kind="stable").head(3)
    assert [(e.layer, e.region) for e in found] == list(zip(best["layer"].astype(int), best["region"].astype(int)))
    for e in found:
        members = planted_maps.region_neurons(e.layer, e.region)
        assert e.n_neurons == len(members) and set(e.strongest) <= set(members) and len(e.strongest) == min(4, len(members))
        mx = planted_scan.stats.max[planted_scan.layer_index(e.layer)]
        assert mx[e.strongest].min() >= np.delete(mx[members], np.searchsorted(members, e.strongest)).max(initial=-np.inf)


def test_mri_page_anchors_every_region_and_links_the_neurons_a_site_has(planted_maps, planted_scan, tmp_path):
    g = ml.mri.coactivation_graph(planted_maps, min_weight=1, enrichment=True)
    l0 = planted_maps.layers[0]
    with_page = [int(n) for n in planted_maps.region_neurons(l0, int(ml.mri.neuron_regions(planted_maps, l0)[0]))]
    site = SiteLinks("../site", {l0: frozenset(with_page)})
    page = open(write_mri_report(planted_maps, g, planted_scan, tmp_path / "mri.html", site=site),
                encoding="utf-8").read()
    for l in planted_maps.layers:
        for r in np.flatnonzero(planted_maps.region_sizes(l)):
            assert f"id='{region_anchor(l, int(r))}'" in page
    linked = re.findall(r"<a class='neuron' href='\.\./site/index\.html#L(\d+)/N(\d+)'>L\1/N\2</a>", page)
    assert {(int(l), int(n)) for l, n in linked} == {(l0, n) for n in with_page}
    # the enriched regions' table links each region to its anchor on the same page
    assert re.search(r"<a href='#region-L\d+-R\d+'>\d+</a>", page)
    # without a site: the same ids, as text
    plain = open(write_mri_report(planted_maps, g, planted_scan, tmp_path / "plain.html"), encoding="utf-8").read()
    assert "class='neuron'" not in plain and f"L{l0}/N{with_page[0]}" in plain


def test_regions_table_lists_each_regions_neurons(tiny_maps, tiny_scan):
    t = tiny_maps.regions(0)
    assert sorted(n for ids in t["neurons"] for n in ids) == list(range(tiny_scan.d_mlp))
    assert (t["neurons"].map(len) == t["n_points"]).all()
