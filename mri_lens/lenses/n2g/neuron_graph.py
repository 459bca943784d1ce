"""NeuronGraph: one neuron's fitted N2G trie, with prediction, drawing and JSON persistence."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np

from ...errors import ModelAdapterError, ScanFileError
from .augment import Augmenter, get_augmenter
from .config import N2GConfig
from .fallback import apply_fallback
from .fit import Forward, Prompt, check_causal, default_mask_token, fit_tries, split_examples
from .trie import IGNORE, Trie

__all__ = ["NeuronGraph", "example_prompts"]

GRAPH_FORMAT = "mri_lens.n2g.graph"
GRAPH_SCHEMA = 1


def example_prompts(examples: Any, adapter: Any, *, window: int | None = None) -> list[Prompt]:
    """Training texts as :class:`~mri_lens.lenses.n2g.fit.Prompt` (text token ids without special tokens, pivot).

    ``examples``: a :class:`~mri_lens.results.TopExamples` (pivot = its max position, only the scan window holding it is
    kept), a list of strings, or a list of token-id sequences *without* special tokens (pivot found by a forward).
    ``window``: the scan's ``max_length`` when it split documents into windows (default: the model's context).
    """
    from ...results import TopExamples

    prefix, suffix = adapter.special_prefix, adapter.special_suffix
    P = len(prefix)
    if isinstance(examples, TopExamples):
        width = int(window or adapter.n_ctx)
        out = []
        for i in range(len(examples)):
            toks = np.asarray(examples.tokens[i], dtype=np.int64)
            pos = int(examples.positions[i])
            w0 = (pos // width) * width
            win = toks[w0:w0 + width]
            if win[:P].tolist() != prefix or pos - w0 < P:
                raise ValueError(
                    f"example {i} (document {int(examples.docs[i])}) does not start with the model's special prefix "
                    f"{prefix} at its window: pass window=scan.meta['max_length'] (the scan's window length), and "
                    "the model that was scanned")
            text = win[P:len(win) - len(suffix) if suffix else len(win)]
            out.append(Prompt(tuple(int(t) for t in text), pos - w0 - P, int(examples.docs[i])))
        return out
    if isinstance(examples, str) or not isinstance(examples, Sequence):
        raise TypeError("examples must be a TopExamples, a list of strings or a list of token-id lists")
    if all(isinstance(e, str) for e in examples):
        segs, _ = adapter.encode(list(examples), overflow="truncate")
        return [Prompt(tuple(int(t) for t in s[0][P:len(s[0]) - len(suffix)])) for s in segs]
    return [Prompt(tuple(int(t) for t in e)) for e in examples]


def _tokens_of(trie: Trie) -> list[int]:
    return sorted({t for t in trie.token if t >= 0})


@dataclass
class NeuronGraph:
    """One neuron explained as a trie of token patterns (Neuron to Graph, Foote et al. 2023).

    Attributes
    ----------
    layer, neuron: the neuron (model layer number, index in ``d_mlp``).
    trie: the fitted :class:`~mri_lens.lenses.n2g.trie.Trie`.
    max_activation: the normaliser: predictions and scores are in units of this activation.
    config: the :class:`N2GConfig` used.
    token_strs: display string of every token id in the trie (drawing and search need no tokenizer).
    examples: held-out and training texts as token ids: ``{"train": [[id, ...]], "train_docs": [...],
        "test": [[id, ...]], "test_docs": [...]}`` (documents of the scan when known, else None).
    meta: model facts, the mask token, the augmenter, the seed, fit statistics and forward counts.
    scores: evaluation results (:func:`mri_lens.lenses.n2g.evaluate`): ``{explainer: {score: value}}`` for
        ``"n2g"``, ``"token"`` and ``"ngram"`` (plain JSON; the token counts behind them are in
        ``meta["evaluation"]``), or None.
    fallback: what tokens no pattern covers predict (``N2GConfig(fallback=...)``; :mod:`.fallback`), or None
        (the paper: 0).

    Examples
    --------
    >>> ex = scan.top_examples(layer=0, neuron=42, k=20)                       # doctest: +SKIP
    >>> ng = ml.n2g.NeuronGraph.fit(model, layer=0, neuron=42, examples=ex, seed=0)  # doctest: +SKIP
    >>> ng.predict("for i in range(10):")                                       # doctest: +SKIP
    """

    layer: int
    neuron: int
    trie: Trie
    max_activation: float
    config: N2GConfig
    token_strs: dict[int, str]
    examples: dict[str, Any]
    meta: dict[str, Any] = field(default_factory=dict)
    scores: dict[str, Any] | None = None
    fallback: dict[str, Any] | None = None
    _tokenizer: Any = field(default=None, repr=False, compare=False)

    # ------------------------------------------------------------------ fitting
    @classmethod
    def fit(cls, model: Any, layer: int, neuron: int, examples: Any, *, config: N2GConfig | None = None,
            seed: int = 0, augmenter: Augmenter | str | None = None, max_activation: float | None = None,
            backend: Any = None, window: int | None = None) -> "NeuronGraph":
        """Fit the graph of one neuron from its top examples (a random ``config.train_proportion`` of them;
        the rest is held out for :func:`mri_lens.lenses.n2g.evaluate`).

        Parameters
        ----------
        model: a causal TransformerLens model (or ``ModelAdapter`` / plain HF model).
        layer, neuron: which neuron.
        examples: :class:`~mri_lens.results.TopExamples` of the neuron, or texts, or token-id lists (no special tokens).
        config: thresholds (default: the best measured configuration; ``N2GConfig.paper()``: the paper's).
        seed: seeds the train/test split (with the layer and neuron): same inputs and seed, same graph.
        augmenter: default ``config.augmenter``; ``"embedding"``: :class:`~mri_lens.lenses.n2g.EmbeddingNeighbours`
            (offline); ``"probe"``: :class:`~mri_lens.lenses.n2g.TokenProbe` (offline, neuron-aware, an extension);
            ``"none"`` switches it off; or an :class:`~mri_lens.lenses.n2g.Augmenter`.
        max_activation: the normaliser (default: the largest example value, the neuron's dataset max when the
            examples are its top examples; for texts, the largest activation on them).
        window: the scan's ``max_length`` if it split documents into windows.
        """
        from ...model.adapter import as_adapter
        from ...model.capture import get_backend

        cfg = config or N2GConfig()
        adapter = as_adapter(model)
        check_causal(adapter)
        layer, neuron = _check_neuron(adapter, layer, neuron)
        prompts = example_prompts(examples, adapter, window=window)
        if not prompts or any(len(p.ids) == 0 for p in prompts):
            raise ValueError("examples is empty (or holds an empty text): N2G needs the neuron's top examples")
        run = Forward(adapter, get_backend(adapter, backend, fused_activations=True), layer, cfg.max_batch_tokens,
                      share_prefixes=cfg.share_prefixes)
        norm = max_activation
        if norm is None:
            vals = getattr(examples, "values", None)
            if vals is not None and len(vals):
                norm = float(np.max(vals))
            else:
                norm = float(max(a.max() for a in run([(p.ids, neuron) for p in prompts])))
        if not norm > 0:
            raise ValueError(f"neuron {neuron} of layer {layer} never activates above 0 on these examples "
                             f"(max {norm}): nothing to explain")
        train, test = split_examples(len(prompts), cfg.train_proportion, np.random.default_rng([seed, layer,
                                                                                                  neuron]))
        aug = get_augmenter(augmenter if augmenter is not None else cfg.augmenter)
        mask = cfg.mask_token if cfg.mask_token is not None else default_mask_token(adapter)
        before = run.counts()
        job = (neuron, norm, [_copy(prompts[i]) for i in train])
        ((trie, stats, fallback),) = fit_tries(run, [job], cfg, aug, mask)
        cost = {k: v - before[k] for k, v in run.counts().items()}
        return cls._build(adapter, layer, neuron, trie, stats, cfg, aug, mask, norm, prompts, train, test, seed,
                          cost, fallback)

    @classmethod
    def _build(cls, adapter, layer, neuron, trie, stats, cfg, aug, mask, norm, prompts, train, test, seed,
               cost, fallback=None) -> "NeuronGraph":
        from ...model.loading import library_versions

        toks = _tokens_of(trie)
        strs = adapter.str_tokens(toks + [mask], sequence=False)
        examples = {"train": [list(prompts[i].ids) for i in train], "train_docs": [prompts[i].doc for i in train],
                    "train_pivots": [prompts[i].pivot for i in train],
                    "test": [list(prompts[i].ids) for i in test], "test_docs": [prompts[i].doc for i in test]}
        model = {"model_id": adapter.model_id, "architecture": adapter.architecture,
                 "hook_template": adapter.hook_template, "prepend_bos": bool(adapter.prepend_bos),
                 "special_prefix": adapter.special_prefix, "d_mlp": adapter.d_mlp, "n_layers": adapter.n_layers}
        meta = {"model": model,
                "mask_token": int(mask), "mask_token_str": strs[-1], "augmenter": aug.to_dict(), "seed": int(seed),
                "fit": asdict(stats), "cost": cost, "versions": library_versions()}
        return cls(layer=int(layer), neuron=int(neuron), trie=trie, max_activation=float(norm), config=cfg,
                   token_strs=dict(zip(toks, strs[:-1])), examples=examples, meta=meta, fallback=fallback,
                   _tokenizer=adapter.tokenizer)

    # ------------------------------------------------------------------ prediction
    def _ids(self, text: Any, tokenizer: Any = None) -> np.ndarray:
        if isinstance(text, str):
            tok = tokenizer if tokenizer is not None else self._tokenizer
            if tok is None:
                raise ValueError("predicting on text needs a tokenizer: pass tokenizer=model.tokenizer, or token ids "
                                 "(without special tokens), or load the graph with NeuronGraph.load(path, model)")
            if hasattr(tok, "tokenizer"):  # a model was passed
                tok = tok.tokenizer
            return np.asarray(tok(text, add_special_tokens=False)["input_ids"], dtype=np.int64)
        return np.asarray(text, dtype=np.int64).reshape(-1)

    def predict(self, text: str | Sequence[int], *, tokenizer: Any = None) -> np.ndarray:
        """Predicted normalised activation of every token of ``text`` (a string, or token ids without special
        tokens): ``[n_tokens]``, the longest matching path's stored activation; where nothing matches, 0 (or the
        graph's fallback)."""
        return self.predict_ids(self._ids(text, tokenizer))

    def predict_ids(self, ids: np.ndarray, starts: np.ndarray | None = None) -> np.ndarray:
        """Prediction for concatenated texts: ``ids`` ``[n]``, ``starts`` ``[n]`` each position's text start (as
        :meth:`Trie.predict`). Returns ``[n]`` float64."""
        if not self.fallback:
            return self.trie.predict(ids, starts)
        pred, nodes = self.trie.match(ids, starts)
        return apply_fallback(self.fallback, ids, pred, nodes)

    def predict_many(self, texts: Sequence[Any], *, tokenizer: Any = None) -> list[np.ndarray]:
        """:meth:`predict` of several texts in one vectorised pass."""
        seqs = [self._ids(t, tokenizer) for t in texts]
        if not seqs:
            return []
        lens = np.array([len(s) for s in seqs])
        offs = np.concatenate([[0], np.cumsum(lens)])
        starts = np.repeat(offs[:-1], lens)
        pred = self.predict_ids(np.concatenate(seqs) if lens.sum() else np.zeros(0, np.int64), starts)
        return [pred[offs[i]:offs[i + 1]] for i in range(len(seqs))]

    # ------------------------------------------------------------------ views
    def token_str(self, t: int) -> str:
        return "*" if t == IGNORE else self.token_strs.get(int(t), str(t))

    def activating_tokens(self) -> list[str]:
        return [self.token_str(t) for t in self.trie.activating_tokens()]

    def paths(self) -> list[tuple[list[str], float]]:
        """Every path as display strings read backwards from the firing token (``*`` = IGNORE) and its value."""
        return [([self.token_str(t) for t in labels], v) for labels, v in self.trie.paths()]

    def figure(self, **kwargs: Any):
        """Plotly figure of the condensed graph (see :func:`mri_lens.lenses.n2g.draw.figure`)."""
        from .draw import figure

        return figure(self, **kwargs)

    def to_svg(self, **kwargs: Any) -> str:
        """Standalone SVG of the condensed graph (no graphviz, every token escaped)."""
        from .draw import to_svg

        return to_svg(self, **kwargs)

    def to_networkx(self, condensed: bool = True):
        """The condensed layered graph (default) or the full trie (IGNORE and END nodes included)."""
        from .draw import to_networkx

        return to_networkx(self, condensed=condensed)

    def _repr_html_(self) -> str:
        from .render import html_card

        return html_card(self)

    def __repr__(self) -> str:
        act = self.activating_tokens()
        shown = ", ".join(repr(a) for a in act[:5]) + (", ..." if len(act) > 5 else "")
        f1 = ""
        if self.scores and self.scores.get("n2g", {}).get("firing_f1") is not None:
            f1 = f", firing_f1={self.scores['n2g']['firing_f1']:.2f}"
        return (f"NeuronGraph(layer={self.layer}, neuron={self.neuron}, paths={len(self.trie.paths())}, "
                f"activating=[{shown}]{f1})")

    # ------------------------------------------------------------------ persistence
    def to_dict(self) -> dict[str, Any]:
        d = {"format": GRAPH_FORMAT, "schema_version": GRAPH_SCHEMA, "layer": self.layer, "neuron": self.neuron,
             "max_activation": self.max_activation, "config": self.config.to_dict(),
             "token_strs": [[int(k), v] for k, v in sorted(self.token_strs.items())],
             "trie": self.trie.to_json(), "examples": self.examples, "meta": self.meta, "scores": self.scores}
        if self.fallback:  # written only when there is one: a graph without is written as older code wrote it
            d["fallback"] = self.fallback
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, allow_nan=False, separators=(",", ":"))

    @classmethod
    def from_dict(cls, d: Any, *, source: str = "data", tokenizer: Any = None) -> "NeuronGraph":
        """Rebuild a graph from :meth:`to_dict`; anything malformed raises :class:`~mri_lens.errors.ScanFileError`
        naming ``source``."""
        from ...storage.write import check_format

        check_format(d, GRAPH_FORMAT, GRAPH_SCHEMA, source, what=f"N2G neuron graph ({GRAPH_FORMAT})")
        try:
            for key in ("layer", "neuron"):
                if not isinstance(d[key], int) or isinstance(d[key], bool) or d[key] < 0:
                    raise ValueError(f"{key} must be a non-negative integer")
            if not isinstance(d["token_strs"], list) or not isinstance(d["examples"], dict) \
                    or not isinstance(d.get("meta") or {}, dict) or not isinstance(d.get("scores") or {}, dict):
                raise ValueError("token_strs, examples, meta or scores are malformed")
            token_strs = {}
            for pair in d["token_strs"]:
                k, text = pair
                if not isinstance(k, int) or isinstance(k, bool) or not isinstance(text, str):
                    raise ValueError("token_strs are malformed")
                token_strs[k] = text
            trie = Trie.from_json(d["trie"])
            g = cls(layer=int(d["layer"]), neuron=int(d["neuron"]), trie=trie,
                    max_activation=float(d["max_activation"]), config=N2GConfig.from_dict(d["config"]),
                    token_strs=token_strs, examples=dict(d["examples"]),
                    meta=dict(d.get("meta") or {}), scores=d.get("scores"),
                    fallback=_checked_fallback(d.get("fallback")), _tokenizer=tokenizer)
        except Exception as e:  # noqa: BLE001 - whatever is malformed, the file is not a graph of ours
            raise ScanFileError(f"{source} is not a consistent N2G neuron graph: {type(e).__name__}: "
                                f"{str(e)[:120]}") from None
        missing = [t for t in _tokens_of(trie) if t not in g.token_strs]
        if missing or not g.max_activation > 0 or not np.isfinite(g.max_activation):
            raise ScanFileError(f"{source} is not a consistent N2G neuron graph (tokens without strings or a "
                                "non-positive normaliser)")
        return g

    def save(self, path: str | os.PathLike, *, overwrite: bool = False) -> str:
        """Write JSON to ``path`` atomically. Returns the absolute path. Replaces only an N2G graph file; anything
        else at ``path`` is refused unless ``overwrite=True``."""
        from ...storage.write import save_text

        return save_text(path, self.to_json(), kind=GRAPH_FORMAT, overwrite=overwrite)

    @classmethod
    def load(cls, path: str | os.PathLike, model: Any = None, *, follow_symlinks: bool = True) -> "NeuronGraph":
        """Read a file written by :meth:`save`; ``model`` (or its tokenizer) lets :meth:`predict` take text.
        Raises :class:`~mri_lens.errors.ScanFileError` for a missing, truncated, corrupted or foreign file.
        ``follow_symlinks=False`` refuses a symbolic link (files found inside an output directory)."""
        from ...storage.write import read_json

        path = os.fspath(path)
        d = read_json(path, "N2G neuron graph", max_bytes=64 << 20, follow=follow_symlinks)
        tok = getattr(model, "tokenizer", model)
        return cls.from_dict(d, source=path, tokenizer=tok)


def _copy(p: Prompt) -> Prompt:
    return Prompt(p.ids, p.pivot, p.doc)


def _check_neuron(adapter: Any, layer: int, neuron: int) -> tuple[int, int]:
    if not isinstance(layer, (int, np.integer)) or not 0 <= int(layer) < adapter.n_layers:
        raise ModelAdapterError(f"layer must be in 0..{adapter.n_layers - 1}, got {layer!r}")
    d = adapter.d_mlp
    if not isinstance(neuron, (int, np.integer)) or int(neuron) < 0 or (d is not None and int(neuron) >= int(d)):
        raise ValueError(f"neuron must be in 0..{(d or 0) - 1}, got {neuron!r}")
    return int(layer), int(neuron)


def _checked_fallback(fb: Any) -> dict[str, Any] | None:
    """A saved fallback, checked (ValueError when malformed); its table sorted by token id."""
    if fb is None:
        return None
    if not isinstance(fb, dict) or fb.get("kind") not in ("token", "mean") or \
            not isinstance(fb.get("default"), (int, float)) or not isinstance(fb.get("table"), list):
        raise ValueError("fallback is malformed")
    table = []
    for pair in fb["table"]:
        if not isinstance(pair, list) or len(pair) != 2 or not isinstance(pair[0], int) or \
                not isinstance(pair[1], (int, float)):
            raise ValueError("fallback table is malformed")
        table.append([int(pair[0]), float(pair[1])])
    return {"kind": fb["kind"], "default": float(fb["default"]), "table": sorted(table)}
