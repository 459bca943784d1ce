"""Reference results: the arrays of a scan, region maps, a co-activation graph and an N2G graph on the tiny LM and
MiniLM-L6, extracted through the public API, so that a change of layout can be checked against files the code
wrote before it (``tests/data/reference/``, written by ``python tests/reference.py`` at the commit named in
``tests/data/reference/SOURCE``).

Each case is one flat dict of numpy arrays (``name -> array``) plus, for graphs, their JSON.
"""

from __future__ import annotations

import json
import os
import pathlib
import sys

import numpy as np

HERE = pathlib.Path(__file__).parent
REFERENCE = HERE / "data" / "reference"
STATS_FIELDS = ("count", "sum", "sumsq", "mean", "std", "min", "max", "frac_positive", "hist")


def _corpus(ml):
    sys.path.insert(0, str(HERE))
    from corpora import PROSE, code_snippets

    code = code_snippets()[:12]
    prose = list(PROSE[:12])
    # one long document so that overflow="windows" splits it
    long_doc = " ".join(prose) * 3
    return ml.Corpus(code + prose + [long_doc], ["code"] * len(code) + ["prose"] * (len(prose) + 1))


def scan_arrays(scan) -> dict[str, np.ndarray]:
    """Every saved array of a scan, by name: pooled values, statistics, top/bottom lists, tokens, labels."""
    out = {f"pooled.{p}": np.asarray(scan.pooled(p)) for p in scan.poolings}
    for f in STATS_FIELDS:
        v = getattr(scan.stats, f, None)
        if v is not None:
            out[f"stats.{f}"] = np.asarray(v)
    for which in ("top", "bottom"):
        tk = getattr(scan, which)
        for f, v in vars(tk).items():
            if isinstance(v, np.ndarray):
                out[f"{which}.{f}"] = v
    out["token_ids"] = np.asarray(scan.token_ids)
    out["token_offsets"] = np.asarray(scan.token_offsets)
    out["doc_token_counts"] = np.asarray(scan.doc_token_counts)
    if scan.labels is not None:
        out["labels"] = np.asarray(scan.labels)
    return out


def maps_arrays(maps) -> dict[str, np.ndarray]:
    out = {"coords": maps.coords_, "cell": maps.cell_, "x_edges": maps.x_edges_, "y_edges": maps.y_edges_,
           "region_act": maps.region_act_, "thresholds": maps.thresholds_, "activated": maps.activated_}
    return {k: np.asarray(v) for k, v in out.items()}


def graph_arrays(g) -> dict[str, np.ndarray]:
    nodes = sorted(g.nodes)
    index = {n: i for i, n in enumerate(nodes)}
    edges = sorted((index[u], index[v], float(d.get("weight", 0))) for u, v, d in g.edges(data=True))
    node_ids = np.asarray([[int(x) for x in (n if isinstance(n, tuple) else (n,))] for n in nodes], dtype=np.int64)
    return {"nodes": node_ids, "edges": np.asarray([e[:2] for e in edges], dtype=np.int64).reshape(-1, 2),
            "weights": np.asarray([e[2] for e in edges], dtype=np.float64)}


def cases(ml, tiny=None, minilm=None):
    """``{name: (arrays, json_or_None)}`` for every reference case (real models, small corpus). ``tiny`` and
    ``minilm``: the bundled models on the CPU, already loaded (the tests' session models); loaded here if None."""
    corpus = _corpus(ml)
    tiny = tiny if tiny is not None else ml.models.tiny_lm(device="cpu")
    minilm = minilm if minilm is not None else ml.models.minilm(device="cpu")
    out = {}
    for name, model, layers in (("tiny", tiny, None), ("minilm", minilm, [1, 4])):
        s = ml.scan(model, corpus, layers=layers, batch_size=4, pooling=("mean", "max"), overflow="windows",
                    max_length=64, top_k=5, progress=False)
        out[f"{name}.scan"] = (scan_arrays(s), None)
        maps = ml.mri.RegionMaps(grid=4, mode="neurons", seed=0).fit(s) if hasattr(ml, "mri") else \
            ml.mri.RegionMaps(grid=4, mode="neurons", seed=0).fit(s)
        out[f"{name}.maps"] = (maps_arrays(maps), None)
        cg = (ml.mri.coactivation_graph if hasattr(ml, "mri") else ml.mri.coactivation_graph)(maps)
        out[f"{name}.graph"] = (graph_arrays(cg), None)
    s = ml.scan(tiny, corpus, batch_size=4, pooling=("mean",), overflow="windows", max_length=64, top_k=8,
                progress=False)
    ex = s.top_examples(layer=1, neuron=88, k=8)
    ng = ml.n2g.NeuronGraph.fit(tiny, layer=1, neuron=88, examples=ex, config=ml.n2g.N2GConfig.paper()
                                if hasattr(ml.n2g.N2GConfig, "paper") else None, seed=0)
    d = ng.to_dict()
    pred = ng.predict("def f(x):\n    try:\n        return x\n    except ValueError:\n        pass")
    out["tiny.n2g"] = ({"predict": np.asarray(pred, dtype=np.float64)}, d)
    return out


def write(target: pathlib.Path = REFERENCE) -> None:
    from safetensors.numpy import save_file

    import mri_lens as ml

    target.mkdir(parents=True, exist_ok=True)
    for name, (arrays, js) in cases(ml).items():
        save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(target / f"{name}.safetensors"))
        if js is not None:
            (target / f"{name}.json").write_text(json.dumps(js, indent=0, sort_keys=True) + "\n")


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    write(pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else REFERENCE)
