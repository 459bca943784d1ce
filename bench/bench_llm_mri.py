"""Side by side with LLM-MRI 0.2.1 (the reference), in one Python process: the same model, texts and labels.

    make bench-llm-mri                                          # builds the environment holding both, runs all
    .venv-llmmri/bin/python bench/bench_llm_mri.py              # every config, the 889 positive/negative reviews
    .venv-llmmri/bin/python bench/bench_llm_mri.py --configs pca2 --docs 120    # a quick run
    .venv-llmmri/bin/python bench/bench_llm_mri.py --side ours  # only mri_lens's half (any environment)

Model: MiniLM-L6 (6 layers, d_model 384) from its local directory; corpus: the drug reviews rated positive or
negative (``ml.datasets.drug_reviews``), given to the reference as a ``datasets.Dataset`` with ``text`` and a
``ClassLabel`` ``label`` of the same names in the same order. Activations: the first token's hidden states of the
embeddings and of every block (Hugging Face's ``output_hidden_states`` numbering, 7 layers).

Configs: ``pca2``, ``pca10``, ``umap2``, ``umap10`` (reducer x number of components, a 10 x 10 grid for 2). Each
config times one whole pipeline per side, from the model directory to the evaluation:

- reference: ``ActivationAreas(dir, dataset, reduction_method=PCA|UMAP(k, gridsize=10, random_state=42))``,
  ``.process_activation_areas()``; ``get_graph(["positive", "negative"])`` (2-D) or ``get_graph(categories,
  threshold=0.3)`` (N-D); ``Metrics(graph, ...).get_basic_metrics()`` (a failure is caught and reported);
  ``Evaluation(areas).evaluate_model()``.
- mri_lens: load the model (``backend``, default the plain Hugging Face one), ``ml.scan(model, corpus,
  units="hidden_states", pooling=("first",))``, ``RegionMaps(mode="documents", reducer, n_components,
  pooling="first", seed=42).fit(scan)``, ``coactivation_graph(maps)`` (2-D) or ``component_graph(maps,
  threshold=0.3)`` (N-D), ``graph_metrics(g)``, ``evaluate_reduction(scan, maps, concatenated=True)``.

Before any timing, umap-learn's numba code is compiled once in this process (``ml.mri.compile_umap()``), which both
sides then share; mri_lens's map worker processes are not started ahead (the first UMAP config pays for them).

Agreement, printed after the timings:

(a) first-token hidden states: max |difference| per layer between the reference's ``hidden_state_i`` column and
    ``scan.pooled("first", layer=i)``;
(b) the 2-D PCA grid (config ``pca2``): the reference's per-layer cells (equal-width bins of its standardised PCA
    coordinates, ``pandas.cut``) against mri_lens's documents map with ``binning="range", clip=0, align=False``
    on the same scan (equal-width bins over the full range); each component's sign is matched first (the two PCA
    solvers may return opposite signs), then per layer: max |coordinate difference|, documents whose cell differs,
    cells whose count differs;
(c) evaluation: the reference's delta means (full - reduced) against mri_lens's ``"all"`` row, the same
    comparison (last layer's full hidden states vs every layer's reduced features side by side); for the first
    PCA config also against maps of the unscaled hidden states (``scaling="none"``), the reference's own input to
    the reduction it evaluates (mri_lens's default z-scores each hidden unit first).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

# Everything is local: no hub look-ups by transformers, datasets or huggingface_hub.
for _k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
    os.environ.setdefault(_k, "1")

import warnings

import numpy as np

# umap-learn says, on every seeded fit (both sides seed it), that a seed makes it single-threaded.
warnings.filterwarnings("ignore", message="n_jobs value .* overridden")

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import mri_lens as ml  # noqa: E402

CONFIGS = {"pca2": ("pca", 2), "pca10": ("pca", 10), "umap2": ("umap", 2), "umap10": ("umap", 10)}
GRID = 10
SEED = 42


@dataclass
class Run:
    """One side's run of one config: stage times (s), what it produced, the failures it caught."""

    stages: dict[str, float] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    out: dict[str, Any] = field(default_factory=dict)

    @property
    def total(self) -> float:
        return sum(self.stages.values())

    def timed(self, stage: str, fn, *args, fatal: bool = True, **kwargs):
        """Run ``fn``, add its time to ``stage``; a failure is recorded (and re-raised when ``fatal``)."""
        t = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        except Exception as e:  # the reference's failures are results to report
            self.errors[stage] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            if fatal:
                raise
            return None
        finally:
            self.stages[stage] = self.stages.get(stage, 0.0) + time.perf_counter() - t


# ---------------------------------------------------------------------------------------------- inputs
def load_corpus(n_docs: int | None):
    """The positive/negative drug reviews; ``n_docs``: a seeded random subset (file order kept)."""
    corpus = ml.datasets.drug_reviews(label="rating", categories=["positive", "negative"])
    if n_docs is not None and n_docs < len(corpus):
        keep = np.sort(np.random.default_rng(0).choice(len(corpus), n_docs, replace=False))
        corpus = corpus.subset(keep)
    return corpus


def as_hf_dataset(corpus):
    """The corpus as the reference takes it: ``datasets.Dataset`` with ``text`` and a ``ClassLabel`` ``label``."""
    import datasets

    features = datasets.Features({"text": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=list(corpus.label_names))})
    return datasets.Dataset.from_dict({"text": list(corpus.texts), "label": [int(x) for x in corpus.labels]},
                                      features=features)


# ---------------------------------------------------------------------------------------------- the two pipelines
def run_reference(reducer: str, k: int, dataset, model_dir: str) -> Run:
    """LLM-MRI's whole pipeline for one config (see the module docstring)."""
    from llm_mri import ActivationAreas, Evaluation, Metrics
    from llm_mri.dimensionality_reduction import PCA, UMAP

    run = Run()
    method = (PCA if reducer == "pca" else UMAP)(n_components=k, gridsize=GRID, random_state=SEED)
    areas = run.timed("setup", ActivationAreas, model=model_dir, dataset=dataset, reduction_method=method,
                      device="cpu")
    run.timed("extract+reduce", areas.process_activation_areas)
    cats = list(areas.class_names)
    if k == 2:
        g = run.timed("graph", areas.get_graph, cats)
    else:
        g = run.timed("graph", areas.get_graph, cats, threshold=0.3)
    metrics = run.timed("metrics", lambda: Metrics(g, label="+".join(cats), model_name="MiniLM-L6")
                        .get_basic_metrics(), fatal=False)
    delta = run.timed("evaluation", lambda: Evaluation(areas).evaluate_model(), fatal=False)
    run.out.update(areas=areas, graph=g, metrics=metrics, delta=delta)
    return run


def run_ours(reducer: str, k: int, corpus, backend: str) -> Run:
    """mri_lens's whole pipeline for one config (see the module docstring)."""
    run = Run()
    model = run.timed("load model", ml.models.minilm, device="cpu", backend=backend)
    scan = run.timed("scan", ml.scan, model, corpus, units="hidden_states", pooling=("first",), progress=False)
    maps = ml.mri.RegionMaps(grid=GRID, mode="documents", reducer=reducer, n_components=k, pooling="first",
                             seed=SEED)
    run.timed("maps", maps.fit, scan, progress=False)
    if k == 2:
        g = run.timed("graph", ml.mri.coactivation_graph, maps)
    else:
        g = run.timed("graph", ml.mri.component_graph, maps, threshold=0.3)
    metrics = run.timed("metrics", ml.mri.graph_metrics, g, fatal=False)
    ev = run.timed("evaluation", ml.mri.evaluate_reduction, scan, maps, concatenated=True, progress=False,
                   fatal=False)
    run.out.update(scan=scan, maps=maps, graph=g, metrics=metrics, evaluation=ev)
    return run


def run_side(side: str, name: str, fn, *args) -> Run | None:
    """One side's run, printed; a failure that stops it is printed and gives None."""
    t = time.perf_counter()
    try:
        run = fn(*args)
    except Exception:
        print(f"  {side}: FAILED after {time.perf_counter() - t:.1f} s")
        traceback.print_exc(limit=3)
        return None
    stages = ", ".join(f"{s} {v:.1f}" for s, v in run.stages.items())
    g = run.out.get("graph")
    size = f"; graph {g.number_of_nodes()} nodes, {g.number_of_edges()} edges" if g is not None else ""
    print(f"  {side:9s} {run.total:7.1f} s  ({stages}){size}", flush=True)
    for stage, err in run.errors.items():
        print(f"    {side} {stage} failed: {err}")
    return run


# ---------------------------------------------------------------------------------------------- agreement
def reference_hidden(areas, layer: int) -> np.ndarray:
    """The reference's first-token hidden states of one layer ``[n_docs, d_model]`` float32."""
    col = areas.hidden_states_dataset.with_format("numpy")[f"hidden_state_{layer}"]
    return np.asarray(col, dtype=np.float32)


def agreement_hidden(areas, scan) -> None:
    """(a) max |reference - mri_lens| of the first-token hidden states, per layer."""
    print("\n(a) first-token hidden states, max |reference - mri_lens| per layer "
          "(scale: max |value| of the layer)")
    for layer in scan.layers:
        ref = reference_hidden(areas, layer)
        ours = np.asarray(scan.pooled("first", layer=layer), dtype=np.float32)
        print(f"  layer {layer}: {np.abs(ref - ours).max():.2e}  (max |value| {np.abs(ref).max():.2f}, "
              f"shapes {ref.shape} / {ours.shape})")


def _signs(ref: np.ndarray, ours: np.ndarray) -> np.ndarray:
    """+1/-1 per component making ``ours`` agree with ``ref`` ``[k]`` (sign of their inner product)."""
    dots = (ref * ours).sum(axis=0)
    return np.where(dots < 0, -1.0, 1.0)


def agreement_grid(areas, scan) -> None:
    """(b) the reference's 2-D PCA grid against mri_lens's on the same scan (see the module docstring)."""
    maps = ml.mri.RegionMaps(grid=GRID, mode="documents", reducer="pca", n_components=2, pooling="first",
                             binning="range", clip=0, align=False, seed=SEED).fit(scan, progress=False)
    method = areas.reduction_method
    to_ref: dict[tuple[int, int], set[str]] = {}  # mri_lens cell -> the reference cells of its documents
    print(f"\n(b) 2-D PCA grid {GRID} x {GRID}: reference cells vs mri_lens (binning='range', clip=0, align=False), "
          "component signs matched")
    for i, layer in enumerate(maps.layers):
        df = areas.graph_class.reduced_dataset[i]
        ref_xy = np.asarray(method.get_reduction(reference_hidden(areas, layer)), dtype=np.float64)
        ours_xy = np.asarray(maps.coordinates(layer), dtype=np.float64)
        s = _signs(ref_xy, ours_xy)
        ref_col = np.asarray(df["X"], dtype=np.int64)
        ref_row = np.asarray(df["Y"], dtype=np.int64)
        cell = np.asarray(maps.cell_[i], dtype=np.int64)
        col, row = cell % GRID, cell // GRID
        col = np.where(s[0] < 0, GRID - 1 - col, col)
        row = np.where(s[1] < 0, GRID - 1 - row, row)
        for region, label in zip(cell.tolist(), df["cell_label"]):
            to_ref.setdefault((layer, region), set()).add(label)
        n_docs_diff = int(np.count_nonzero((col != ref_col) | (row != ref_row)))
        ref_counts = np.bincount(ref_row * GRID + ref_col, minlength=GRID * GRID)
        our_counts = np.bincount(row * GRID + col, minlength=GRID * GRID)
        n_cells_diff = int(np.count_nonzero(ref_counts != our_counts))
        spread = np.ptp(ref_xy, axis=0)
        print(f"  layer {layer}: signs {s.astype(int).tolist()}, max |coord diff| "
              f"{np.abs(ref_xy - ours_xy * s).max():.2e} (ranges {spread[0]:.3g}, {spread[1]:.3g}); "
              f"documents in another cell {n_docs_diff}; cells with another count {n_cells_diff} "
              f"(occupied: reference {np.count_nonzero(ref_counts)}, mri_lens {np.count_nonzero(our_counts)})")
    agreement_graph(areas, maps, to_ref)


def agreement_graph(areas, maps, to_ref: dict[tuple[int, int], set[str]]) -> None:
    """(b, graph) each category's edges and weights: the reference's one-category graph against mri_lens's
    ``weight_<category>`` on the same maps, mri_lens's cells renamed to the reference's cells of the same documents
    (a one-to-one renaming when the two put the same documents together)."""
    one_to_one = all(len(v) == 1 for v in to_ref.values())
    rename = {k: next(iter(v)) for k, v in to_ref.items()}
    g = ml.mri.coactivation_graph(maps)
    for cat in areas.class_names:
        ref = {(u, v): int(d["weight"]) for u, v, d in areas.get_graph(cat).edges(data=True)}
        ours = {(rename[u], rename[v]): int(d[f"weight_{cat}"]) for u, v, d in g.edges(data=True)
                if d.get(f"weight_{cat}", 0) > 0}
        same = sum(1 for e, w in ref.items() if ours.get(e) == w)
        print(f"  graph '{cat}': cell renaming one-to-one {one_to_one}; edges reference {len(ref)}, mri_lens "
              f"{len(ours)}, equal edge and weight {same}")


def _delta_line(delta: dict, ev) -> str:
    t = ev.table[ev.table["layer"] == "all"].set_index("metric")
    parts = []
    for m, d in delta["delta"].items():
        ours_d = float(t.loc[m, "delta_mean"]) if m in t.index else float("nan")
        parts.append(f"{m} {d['mean']:+.3f} / {ours_d:+.3f}")
    return "; ".join(parts)


def agreement_evaluation(name: str, ref: Run, ours: Run, unscaled: bool) -> None:
    """(c) the reference's delta means against mri_lens's ``"all"`` row. ``unscaled`` (a PCA config): also against
    maps fitted, untimed, on the unscaled hidden states (``scaling="none"``), the reference's own N-D input, so that
    the two reduced feature sets are the same up to component signs."""
    delta, ev = ref.out.get("delta"), ours.out.get("evaluation")
    if delta is None or ev is None:
        print(f"  {name}: not compared (reference delta {'missing' if delta is None else 'ok'}, "
              f"mri_lens evaluation {'missing' if ev is None else 'ok'})")
        return
    print(f"  {name}: delta (full - reduced) reference / mri_lens: {_delta_line(delta, ev)}")
    full = ev.table[ev.table["layer"] == "all"].set_index("metric")["full_mean"].round(3).to_dict()
    print(f"  {name}: mri_lens full-feature means (last layer): {full}")
    if unscaled:
        maps, scan = ours.out["maps"], ours.out["scan"]
        raw = ml.mri.RegionMaps(grid=GRID, mode="documents", reducer=maps.reducer, n_components=maps.n_components,
                                pooling="first", scaling="none", seed=SEED).fit(scan, progress=False)
        ev_raw = ml.mri.evaluate_reduction(scan, raw, concatenated=True, progress=False)
        print(f"  {name}: same, mri_lens maps with scaling='none': {_delta_line(delta, ev_raw)}")
        no0 = {"delta": reference_delta_without_layer0(ref.out["areas"], list(delta["delta"]))}
        print(f"  {name}: reference recomputed without its layer-0 columns / mri_lens scaling='none': "
              f"{_delta_line(no0, ev_raw)}")


def reference_delta_without_layer0(areas, metrics: list[str]) -> dict:
    """The reference's evaluation (same splits, classifier and features) with the reduced features of hidden state
    0 left out: that layer is the same for every document, so its reduced columns hold only rounding noise, which
    the classifier's standardisation scales up to unit variance. Returns ``{metric: {"mean": delta mean}}``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedShuffleSplit, cross_validate
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x_red, _ = areas._get_nrag_embeddings()
    x_full, y = areas._get_embeddings()
    y = np.ravel(y)
    x_red = x_red[[c for c in x_red.columns if not c.startswith("1_")]]  # its columns are "{layer + 1}_{feature}"
    splits = list(StratifiedShuffleSplit(n_splits=5, test_size=0.3, random_state=SEED).split(x_red, y))
    scores = {}
    for key, x in (("reduced", x_red), ("full", x_full)):
        pipe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, random_state=SEED))
        scores[key] = cross_validate(pipe, x, y, cv=splits, scoring={m: m for m in metrics})
    return {m: {"mean": float(np.mean(scores["full"][f"test_{m}"] - scores["reduced"][f"test_{m}"]))}
            for m in metrics}


# ---------------------------------------------------------------------------------------------- main
def print_table(results: dict[str, tuple[Run | None, Run | None]], n_docs: int) -> None:
    print(f"\n| config | docs | reference s | mri_lens s | reference / mri_lens |\n|---|---|---|---|---|")
    tot_r = tot_o = 0.0
    complete = True
    for name, (ref, ours) in results.items():
        r = f"{ref.total:.1f}" if ref else "failed/skipped"
        o = f"{ours.total:.1f}" if ours else "failed/skipped"
        ratio = f"**{ref.total / ours.total:.1f}x**" if ref and ours else "-"
        print(f"| {name} | {n_docs} | {r} | {o} | {ratio} |")
        if ref and ours:
            tot_r, tot_o = tot_r + ref.total, tot_o + ours.total
        else:
            complete = False
    if tot_o > 0:
        label = "total" if complete else "total (configs where both ran)"
        print(f"| {label} | {n_docs} | {tot_r:.1f} | {tot_o:.1f} | **{tot_r / tot_o:.1f}x** |")


def warm_up_umap() -> None:
    t = time.perf_counter()
    ml.mri.compile_umap()
    print(f"umap-learn compiled in this process (shared by both sides) in {time.perf_counter() - t:.1f} s")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    p.add_argument("--docs", type=int, default=None, help="a seeded subset of this many reviews (default: all)")
    p.add_argument("--side", choices=("both", "reference", "ours"), default="both")
    p.add_argument("--backend", default="hf", choices=("hf", "transformer_lens"), help="mri_lens's model backend")
    args = p.parse_args(argv)
    corpus = load_corpus(args.docs)
    print(f"{len(corpus)} reviews {corpus.label_counts()}; configs {args.configs}; mri_lens backend {args.backend}")
    dataset = model_dir = None
    if args.side in ("both", "reference"):
        import datasets

        datasets.disable_progress_bar()
        dataset, model_dir = as_hf_dataset(corpus), ml.models.minilm_dir()
    if any(CONFIGS[c][0] == "umap" for c in args.configs):
        warm_up_umap()
    results: dict[str, tuple[Run | None, Run | None]] = {}
    for name in args.configs:
        reducer, k = CONFIGS[name]
        print(f"\n{name}: {reducer}, {k} components", flush=True)
        ref = run_side("reference", name, run_reference, reducer, k, dataset, model_dir) \
            if args.side != "ours" else None
        ours = run_side("mri_lens", name, run_ours, reducer, k, corpus, args.backend) \
            if args.side != "reference" else None
        results[name] = (ref, ours)
    print_table(results, len(corpus))
    report_agreement(results)


def report_agreement(results: dict[str, tuple[Run | None, Run | None]]) -> None:
    both = {n: (r, o) for n, (r, o) in results.items() if r is not None and o is not None}
    if not both:
        return
    ref, ours = next(iter(both.values()))
    agreement_hidden(ref.out["areas"], ours.out["scan"])
    if "pca2" in both:
        agreement_grid(both["pca2"][0].out["areas"], both["pca2"][1].out["scan"])
    print("\n(c) evaluation, the reference's comparison (last layer full vs all layers reduced)")
    first_pca = next((n for n in both if CONFIGS[n][0] == "pca"), None)
    for name, (r, o) in both.items():
        agreement_evaluation(name, r, o, unscaled=name == first_pca)


if __name__ == "__main__":
    main()
