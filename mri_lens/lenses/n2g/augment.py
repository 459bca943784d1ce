"""Augmenters: substitutes for important tokens, so a fitted graph learns which tokens generalise (step 3).

An augmenter gets ``(prompt ids, position)`` requests and returns substitute token ids of the *analysed* model's
vocabulary for each. The default, :class:`EmbeddingNeighbours`, needs no extra model: the nearest tokens in the
analysed model's own input embedding. :class:`TokenProbe` (an extension, also offline) proposes the tokens the neuron
itself responds to most when run alone. :class:`FillMaskAugmenter` reproduces the paper's setup for users who have a
BERT-style fill-mask model; :class:`NoAugmentation` switches the step off.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Callable, Sequence

from ...errors import ModelAdapterError

__all__ = ["Augmenter", "EmbeddingNeighbours", "FillMaskAugmenter", "NoAugmentation", "TokenProbe",
           "get_augmenter"]


class Augmenter(ABC):
    """Interface: ``substitutes(adapter, requests, n, min_prob) -> [[token id, ...], ...]``, one list per request."""

    name = "abstract"

    @abstractmethod
    def substitutes(self, adapter: Any, requests: Sequence[tuple[Sequence[int], int]], n: int,
                    min_prob: float) -> list[list[int]]:
        """Up to ``n`` substitute ids for ``ids[position]`` of each ``(ids, position)`` request (never the token
        itself, never a special token), best first."""

    def substitutes_for(self, run: Any, requests: Sequence[tuple[Sequence[int], int]], neurons: Sequence[int],
                        n: int, min_prob: float) -> list[list[int]]:
        """What fitting calls: the same, with the neuron each request is for and the layer's forward runner
        (``run.adapter`` is the adapter). Augmenters that ignore the neuron need only :meth:`substitutes`."""
        return self.substitutes(run.adapter, requests, n, min_prob)

    def to_dict(self) -> dict[str, Any]:
        """What is recorded in a fitted graph."""
        return {"name": self.name}


class NoAugmentation(Augmenter):
    """No substitutes: the graph is built from the pruned prompts only."""

    name = "none"

    def substitutes(self, adapter, requests, n, min_prob):
        return [[] for _ in requests]


def _special_ids(adapter: Any) -> set[int]:
    tok = adapter.tokenizer
    ids = set(adapter.special_prefix) | set(adapter.special_suffix) | {int(adapter.pad_token_id)}
    for name in ("bos_token_id", "eos_token_id", "unk_token_id", "mask_token_id", "cls_token_id", "sep_token_id"):
        v = getattr(tok, name, None)
        if v is not None:
            ids.add(int(v))
    return ids


def _embedding(adapter: Any):
    """``adapter.input_embedding()``, its error naming the way out (another augmenter)."""
    try:
        return adapter.input_embedding()
    except ModelAdapterError as e:
        raise ModelAdapterError(f"{e}; pass augmenter=NoAugmentation() or another Augmenter") from None


class EmbeddingNeighbours(Augmenter):
    """Nearest tokens by cosine similarity in the analysed model's input embedding (offline; no extra model).

    Parameters
    ----------
    min_similarity: neighbours below this cosine similarity are not used (default 0: any positive similarity).
    """

    name = "embedding_neighbours"

    def __init__(self, min_similarity: float = 0.0):
        if not -1.0 <= min_similarity <= 1.0:
            raise ValueError(f"min_similarity must be in [-1, 1], got {min_similarity}")
        self.min_similarity = float(min_similarity)
        self._cache: tuple[Any, Any] | None = None  # (the embedding it was made from, its unit rows)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "min_similarity": self.min_similarity}

    def substitutes(self, adapter, requests, n, min_prob):
        import torch

        if not requests or n == 0:
            return [[] for _ in requests]
        emb = _embedding(adapter)
        # Keyed by the embedding's storage (held, so its address cannot be reused by another model's).
        if self._cache is None or self._cache[0].data_ptr() != emb.data_ptr() or self._cache[0].shape != emb.shape:
            with torch.inference_mode():
                w = emb.detach().float()
                w = w / w.norm(dim=-1, keepdim=True).clamp(min=1e-8)
            self._cache = (emb, w)
        w = self._cache[1]
        special = sorted(i for i in _special_ids(adapter) if 0 <= i < w.shape[0])
        targets = [int(ids[p]) for ids, p in requests]
        uniq = sorted(set(targets))
        with torch.inference_mode():
            sims = w[torch.as_tensor(uniq, device=w.device)] @ w.T  # [u, d_vocab]
            sims[torch.arange(len(uniq)), torch.as_tensor(uniq)] = -2.0  # never the token itself
            if special:
                sims[:, torch.as_tensor(special)] = -2.0
            vals, idx = sims.topk(min(n, sims.shape[1]), dim=-1)
        vals, idx = vals.cpu().numpy(), idx.cpu().numpy()
        by_token = {t: [int(i) for v, i in zip(vals[r], idx[r]) if v > self.min_similarity and v > -2.0]
                    for r, t in enumerate(uniq)}
        return [list(by_token[t]) for t in targets]


class TokenProbe(Augmenter):
    """Substitutes the neuron itself ranks highest (an extension; offline, no extra model).

    Every vocabulary token is run alone (after the model's special prefix) in one pooled pass for all the neurons
    being fitted, and each request gets the next untried tokens of its neuron's ranking: successive requests of a
    neuron walk down the ranking (the r-th gets ranks ``r * n ...``), so a neuron's windows try many distinct
    tokens instead of the same few. Only tokens with a positive activation alone are proposed, and a substitute is
    kept only where it fires in the window's context: the ranking proposes, the neuron in context decides.
    """

    name = "token_probe"

    def substitutes(self, adapter, requests, n, min_prob):
        raise ModelAdapterError("TokenProbe needs the neuron of each request: it works inside N2G fitting only "
                                "(NeuronGraph.fit / explain_layer with augmenter='probe')")

    def substitutes_for(self, run, requests, neurons, n, min_prob):
        import numpy as np

        if not requests or n == 0:
            return [[] for _ in requests]
        special = _special_ids(run.adapter)
        n_vocab = int(_embedding(run.adapter).shape[0])
        tok = run.adapter.tokenizer
        if tok is not None:
            n_vocab = min(n_vocab, len(tok))  # embeddings padded past the tokenizer (Pythia) are not tokens
        vocab = np.array([t for t in range(n_vocab) if t not in special])
        units = sorted({int(u) for u in neurons})
        alone = run.single_tokens(vocab.tolist(), units)  # [n_vocab, n_units]
        rankings = {}
        for c, u in enumerate(units):
            order = np.argsort(-alone[:, c], kind="stable")
            rankings[u] = vocab[order[alone[order, c] > 0]].tolist()
        cursor: dict[int, int] = {}
        out = []
        for (ids, p), u in zip(requests, neurons):
            c = cursor.get(int(u), 0)
            out.append([t for t in rankings[int(u)][c:c + n + 1] if t != int(ids[p])][:n])
            cursor[int(u)] = c + n
        return out


class FillMaskAugmenter(Augmenter):
    """The paper's augmentation: a fill-mask model proposes words for the masked important token.

    Parameters
    ----------
    fill_mask: a ``transformers`` fill-mask pipeline, a model name to build one from (downloads when not
        cached), or any callable ``f(text_with_mask) -> [{"token_str": str, "score": float}, ...]``.
    mask: the mask string of that model (default: the pipeline tokenizer's ``mask_token``, else ``"[MASK]"``).

    A proposed word is used when the analysed model's tokenizer encodes it (with the original token's leading
    space) as exactly one token.
    """

    name = "fill_mask"

    def __init__(self, fill_mask: Any = "distilbert-base-uncased", mask: str | None = None):
        if isinstance(fill_mask, str):
            from transformers import pipeline

            self.model_name = fill_mask
            fill_mask = pipeline("fill-mask", model=fill_mask)
        else:
            self.model_name = getattr(getattr(fill_mask, "model", None), "name_or_path", None)
        if not callable(fill_mask):
            raise ValueError("fill_mask must be a pipeline, a model name or a callable")
        self.fill_mask: Callable = fill_mask
        tok = getattr(fill_mask, "tokenizer", None)
        self.mask = mask or getattr(tok, "mask_token", None) or "[MASK]"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "model": self.model_name}

    def substitutes(self, adapter, requests, n, min_prob):
        tok = adapter.tokenizer
        special = _special_ids(adapter)
        out = []
        for ids, p in requests:
            before = tok.decode([int(i) for i in ids[:p]])
            after = tok.decode([int(i) for i in ids[p + 1:]])
            original = tok.decode([int(ids[p])])
            space = " " if original.startswith(" ") else ""
            text = before + space + self.mask + after
            try:
                cands = self.fill_mask(text, top_k=max(4 * n, 10))
            except TypeError:  # plain callables without top_k
                cands = self.fill_mask(text)
            subs: list[int] = []
            for c in cands:
                if float(c.get("score", 1.0)) < min_prob:
                    continue
                word = str(c.get("token_str", "")).strip()
                if not word:
                    continue
                enc = tok(space + word, add_special_tokens=False)["input_ids"]
                if len(enc) == 1 and int(enc[0]) != int(ids[p]) and int(enc[0]) not in special \
                        and int(enc[0]) not in subs:
                    subs.append(int(enc[0]))
                if len(subs) == n:
                    break
            out.append(subs)
        return out


def get_augmenter(augmenter: Augmenter | str | None) -> Augmenter:
    """``None`` / ``"embedding"``: :class:`EmbeddingNeighbours`; ``"probe"``: :class:`TokenProbe`; ``"none"``:
    :class:`NoAugmentation`."""
    if isinstance(augmenter, Augmenter):
        return augmenter
    if augmenter in (None, "embedding", "embedding_neighbours"):
        return EmbeddingNeighbours()
    if augmenter == "none":
        return NoAugmentation()
    if augmenter in ("probe", "token_probe"):
        return TokenProbe()
    raise ValueError(f"augmenter must be an Augmenter, None, 'embedding', 'probe' or 'none', got {augmenter!r}")
