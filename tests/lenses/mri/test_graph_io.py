"""Graph files: GraphML, GEXF and node-link JSON written atomically and read back; refused foreign files."""

from __future__ import annotations

import json
import os

import networkx as nx
import numpy as np
import pytest

from mri_lens.errors import GraphError
from mri_lens.lenses import mri as mg

from .builders import node_link, random_maps


@pytest.mark.parametrize("ext", ["graphml", "gexf", "json"])
def test_export_readable(tmp_path, ext):
    g = mg.coactivation_graph(random_maps(0), enrichment=True)
    path = mg.write_graph(g, tmp_path / f"g.{ext}")
    assert os.path.isabs(path) and os.path.exists(path)
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".tmp")]  # atomic: no leftovers
    if ext == "graphml":
        h = nx.read_graphml(path)
        assert json.loads(h.graph["layers"]) == [0, 2, 3]
        d = h.nodes["L2_R5"]
        assert (d["layer"], d["region"], json.loads(d["neurons"])) == (2, 5, [15, 16])
    elif ext == "gexf":
        h = nx.read_gexf(path)
        # string ids "L<layer>_R<region>" in the graph's order; the ints, counts and weights read back equal
        assert list(h.nodes) == [f"L{l}_R{r}" for l, r in g.nodes]
        assert list(h.edges) == [(f"L{u[0]}_R{u[1]}", f"L{v[0]}_R{v[1]}") for u, v in g.edges]
        for (l, r), d in g.nodes(data=True):
            e = h.nodes[f"L{l}_R{r}"]
            assert (e["layer"], e["region"], e["row"], e["col"]) == (l, r, d["row"], d["col"])
            assert (e["docs"], e["docs_cat0"], json.loads(e["neurons"])) == (d["docs"], d["docs_cat0"], d["neurons"])
            assert e["label"] == f"layer {l} region {r} ({d['row']}, {d['col']})"
        for u, v, d in g.edges(data=True):
            e = h.edges[f"L{u[0]}_R{u[1]}", f"L{v[0]}_R{v[1]}"]
            assert (e["weight"], e["weight_cat0"], e["weight_cat1"]) == (d["weight"], d["weight_cat0"],
                                                                          d["weight_cat1"])
            assert e["q_cat1"] == d["q_cat1"] and e["enriched_for"] == (d["enriched_for"] or "")
    else:
        h = mg.load_graph_json(path)
        assert list(h.nodes) == list(g.nodes) and all(isinstance(u, tuple) for u in h.nodes)
        assert node_link(h) == node_link(g)
        assert dict(h.nodes(data=True)) == dict(g.nodes(data=True))
        assert list(h.edges(data=True)) == list(g.edges(data=True))
        assert h.graph == g.graph
    assert h.number_of_nodes() == g.number_of_nodes() and h.number_of_edges() == g.number_of_edges()
    assert h.is_directed()


def test_export_numpy_parameters_and_public_names(tmp_path):
    import mri_lens as ml

    g = ml.mri.coactivation_graph(random_maps(0), min_weight=np.int64(2), percentile=np.float64(10.0))
    h = ml.mri.load_graph_json(ml.mri.write_graph(g, tmp_path / "g.json"))
    assert h.graph["params"]["min_weight"] == 2 and type(h.graph["params"]["min_weight"]) is int


def test_export_unknown_format(tmp_path):
    with pytest.raises(GraphError, match="unknown graph format"):
        mg.write_graph(nx.DiGraph(), tmp_path / "g.csv")


def test_load_graph_json_refuses_corrupted_and_foreign_files(tmp_path):
    import mri_lens as ml

    bad = tmp_path / "bad.json"
    bad.write_text('{"directed": true, "nodes": [')
    with pytest.raises(ml.ScanFileError, match="corrupted or truncated"):
        ml.mri.load_graph_json(bad)
    foreign = tmp_path / "foreign.json"
    foreign.write_text(json.dumps({"directed": True, "graph": {"kind": "something else"}, "nodes": [], "edges": []}))
    with pytest.raises(ml.ScanFileError, match="not a saved mri_lens.coactivation_graph"):
        ml.mri.load_graph_json(foreign)
    with pytest.raises(ml.ScanFileError, match="does not exist"):
        ml.mri.load_graph_json(tmp_path / "missing.json")
