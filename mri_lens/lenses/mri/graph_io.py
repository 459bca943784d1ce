"""Files of the co-activation graph: GraphML and GEXF for other tools (string node ids ``"L<layer>_R<region>"``,
lists and dicts as JSON strings), node-link JSON that :func:`load_graph_json` reads back exactly, with
``(layer, region)`` tuple ids; every write is atomic and replaces only a graph file mri_lens wrote of the same
kind. Component graphs (:mod:`.components`) are written the same way, with ids ``"L<layer>_C<component>"``."""

from __future__ import annotations

import inspect
import json
import os
from typing import Any

import numpy as np

from ...storage.write import check_format, marker, read_json, save_text
from ...errors import GraphError, ScanFileError
from ._graph_base import COMPONENT_GRAPH_KIND, GRAPH_KIND, SCHEMA_VERSION

__all__ = ["write_graph", "load_graph_json"]


def _node_link_kwargs(fn) -> dict:
    # networkx >= 3.4 names the edge list with ``edges=``; older releases with ``link=``.
    return {"edges": "edges"} if "edges" in inspect.signature(fn).parameters else {"link": "edges"}


def _scalar(v: Any) -> Any:
    """A value GraphML/GEXF can hold: lists/dicts as JSON strings, None as '', numpy scalars as Python ones."""
    if v is None:
        return ""
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, (list, tuple, dict, np.ndarray)):
        return json.dumps(v.tolist() if isinstance(v, np.ndarray) else v)
    return v


def _flat_copy(g, gexf: bool):
    import networkx as nx

    part = "C" if g.graph.get("kind") == COMPONENT_GRAPH_KIND else "R"  # component graphs: "L<layer>_C<component>"

    def nid(n):
        return f"L{n[0]}_{part}{n[1]}" if isinstance(n, tuple) and len(n) == 2 else str(n)

    h = nx.DiGraph()
    # Graph metadata as JSON strings (GEXF has no place for it; GraphML keeps it as graph data).
    if not gexf:
        h.graph.update({k: _scalar(v) for k, v in g.graph.items()})
    for n, d in g.nodes(data=True):
        attrs = {k: _scalar(v) for k, v in d.items()}
        if gexf:
            attrs["label"] = (f"layer {d['layer']} region {d['region']} ({d['row']}, {d['col']})"
                              if "region" in d else f"layer {d['layer']} component {d['component']}"
                              if "component" in d else str(n))
        h.add_node(nid(n), **attrs)
    h.add_edges_from((nid(u), nid(v), {k: _scalar(x) for k, x in d.items()}) for u, v, d in g.edges(data=True))
    return h


def write_graph(g, path: str | os.PathLike, *, format: str | None = None, overwrite: bool = False) -> str:
    """Write ``g`` as GraphML, GEXF or node-link JSON (atomically). Returns the absolute path.

    ``format`` is ``"graphml"``, ``"gexf"`` or ``"json"``; None: taken from the file extension. GraphML and GEXF
    are for other tools (Gephi, Cytoscape...): node ids become strings ``"L<layer>_R<region>"`` (the ints stay in
    the ``layer`` / ``region`` attributes), lists and dicts become JSON strings and None becomes ``""``. JSON keeps
    everything: :func:`load_graph_json` gives back the same graph with ``(layer, region)`` tuple ids.
    Replaces only a graph file mri_lens wrote; any other file at ``path`` is refused unless ``overwrite=True``.
    """
    import networkx as nx

    fmt = format or os.path.splitext(os.fspath(path))[1].lstrip(".").lower()
    kind = COMPONENT_GRAPH_KIND if g.graph.get("kind") == COMPONENT_GRAPH_KIND else GRAPH_KIND
    if fmt in ("graphml", "gexf"):
        lines = list(nx.generate_graphml(_flat_copy(g, gexf=False)) if fmt == "graphml"
                     else nx.generate_gexf(_flat_copy(g, gexf=True)))
        # after the XML declaration: tells a later save that this file is ours to replace
        at = 1 if lines and lines[0].startswith("<?xml") else 0
        lines.insert(at, f"<!-- {marker(kind)} -->")
        text = "\n".join(lines)
    elif fmt == "json":
        data = nx.node_link_data(g, **_node_link_kwargs(nx.node_link_data))
        data.setdefault("graph", {}).setdefault("kind", kind)
        text = json.dumps(data, allow_nan=False)
    else:
        raise GraphError(f"unknown graph format {fmt!r}; use 'graphml', 'gexf' or 'json' (or that file extension)")
    return save_text(path, text + "\n", kind=kind, overwrite=overwrite)


def _graph_id(x: Any, source: str):
    if isinstance(x, list) and len(x) == 2 and all(isinstance(v, int) and not isinstance(v, bool) for v in x):
        return tuple(x)
    if isinstance(x, (str, int)) and not isinstance(x, bool):
        return x
    raise ScanFileError(f"{source} is not a consistent saved co-activation graph: a node id is malformed")


def load_graph_json(path: str | os.PathLike):
    """Read a graph written by ``write_graph(g, "....json")``; node ids come back as ``(layer, region)`` tuples.

    Raises :class:`~mri_lens.errors.ScanFileError` for a missing, truncated, foreign or inconsistent file."""
    import networkx as nx

    source = os.fspath(path)
    data = read_json(path, "co-activation graph")
    head = data.get("graph") if isinstance(data, dict) else None
    kind = COMPONENT_GRAPH_KIND if isinstance(head, dict) and head.get("kind") == COMPONENT_GRAPH_KIND else GRAPH_KIND
    check_format(data, kind, SCHEMA_VERSION, source, header=head,
                 hint=" (node-link JSON written by write_graph)")
    nodes, edges = data.get("nodes"), data.get("edges")
    if not isinstance(nodes, list) or not isinstance(edges, list) or not all(isinstance(n, dict) for n in nodes) \
            or not all(isinstance(e, dict) for e in edges):
        raise ScanFileError(f"{source} is not a consistent saved co-activation graph: nodes/edges are not lists "
                            "of objects")
    for n in nodes:
        if "id" not in n:
            raise ScanFileError(f"{source} is not a consistent saved co-activation graph: a node has no id")
        n["id"] = _graph_id(n["id"], source)
    for e in edges:
        if "source" not in e or "target" not in e:
            raise ScanFileError(f"{source} is not a consistent saved co-activation graph: an edge lacks its ends")
        e["source"], e["target"] = _graph_id(e["source"], source), _graph_id(e["target"], source)
    try:
        return nx.node_link_graph(data, **_node_link_kwargs(nx.node_link_graph))
    except Exception as e:  # noqa: BLE001 - whatever networkx makes of a malformed file, it is not a graph of ours
        raise ScanFileError(f"{source} is not a consistent saved co-activation graph: {type(e).__name__}") from None
