"""Fitting N2G tries: prune, importance by masking, augmentation, trie building (steps 1-4), batched.

Every forward pass goes through the public capture API (``as_adapter`` + ``get_backend`` + ``adapter.pad_batch``)
and stops after the analysed layer. One forward of a layer gives every neuron's activations, so the prompts of
*all* neurons being fitted are pooled: each stage (prune candidates, masked variants, augmented variants, their
masked variants) is one list of unique sequences, length-sorted and cut into batches by a token budget.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ...scanning.batching import plan_batches
from ...errors import ModelAdapterError
from .augment import Augmenter
from .config import N2GConfig
from .fallback import fit_fallback
from .trie import Trie, importance_matrix, paths_from_prompt

__all__ = ["Forward", "Prompt", "default_mask_token", "fit_tries", "split_examples", "check_causal"]


def check_causal(adapter: Any) -> None:
    """N2G reads context backwards from a firing token, which is only the whole story for a causal model."""
    if not adapter.is_causal:
        raise ModelAdapterError(
            "N2G needs a causal (left-to-right) language model: it explains a token's activation by the tokens "
            "before it, but an encoder such as BERT/MiniLM also attends to the tokens after it, so masking-based "
            "importance and backward-only trie paths would be silently incomplete. Use a causal model "
            "(GPT-2, Pythia, the tiny LM)")


def default_mask_token(adapter: Any) -> int:
    """The token that stands in for a removed token when measuring importance.

    A real pad token when the tokenizer has one distinct from BOS/EOS (NeoX-style tokenisers: what the reference's
    id 1 was meant to be); ``[MASK]`` when the tokenizer has one; otherwise the end-of-text token (GPT-2 style,
    where pad = BOS = EOS): a document boundary, the closest thing such a model has to "no token here".
    """
    tok = adapter.tokenizer
    bos, eos, pad = tok.bos_token_id, tok.eos_token_id, tok.pad_token_id
    if pad is not None and pad not in (bos, eos):
        return int(pad)
    if getattr(tok, "mask_token_id", None) is not None:
        return int(tok.mask_token_id)
    for t in (eos, bos, pad):
        if t is not None:
            return int(t)
    raise ModelAdapterError("no pad, mask, EOS or BOS token to mask with; set N2GConfig(mask_token=...)")


class Forward:
    """Runs text-token sequences through one layer and hands back the requested neurons' activations.

    The adapter's special prefix (BOS) is added here, once; activations come back for text positions only, so pad
    and BOS positions never reach a caller. Counts forward calls and tokens (real and padded).
    ``share_prefixes``: a requested sequence that is the start of a longer requested one is read from the longer
    one's forward instead of being run (the model is causal: its activations are the same). N2G's prune
    candidates, windows and masked rows are often starts of each other's, across pivots and neurons.
    """

    def __init__(self, adapter: Any, backend: Any, layer: int, max_batch_tokens: int = 8192,
                 max_batch_rows: int = 512, share_prefixes: bool = False):
        self.adapter, self.backend, self.layer = adapter, backend, int(layer)
        self.share_prefixes = bool(share_prefixes)
        self.prefix, self.suffix = adapter.special_prefix, adapter.special_suffix
        self.max_batch_tokens, self.max_batch_rows = int(max_batch_tokens), int(max_batch_rows)
        self.limit = adapter.n_ctx - len(self.prefix) - len(self.suffix)
        self.calls = 0
        self.tokens = 0
        self.padded_tokens = 0

    def counts(self) -> dict[str, int]:
        return {"forward_calls": self.calls, "tokens": self.tokens, "padded_tokens": self.padded_tokens}

    def _forward(self, seqs: Sequence[Sequence[int]]):
        """One counted forward of text-token sequences (special tokens added here): ``(activations [b, pos,
        d_mlp], first text position of each row [b])``."""
        tokens, mask, starts = self.adapter.pad_batch([self.prefix + list(s) + self.suffix for s in seqs])
        acts = self.backend.forward(tokens, mask, [self.layer])[self.layer]
        self.calls += 1
        self.tokens += int(mask.sum())
        self.padded_tokens += int(mask.numel())
        return acts, [int(st) + len(self.prefix) for st in starts]

    def single_tokens(self, tokens: Sequence[int], neurons: Sequence[int]) -> np.ndarray:
        """Activations of ``neurons`` on each token run alone (after the special prefix): float32
        ``[len(tokens), len(neurons)]``. As many rows per call as the token budget allows (a whole small vocabulary
        in one call): equal-length rows need no planning, and no per-request bookkeeping."""
        import torch

        rows = max(1, self.max_batch_tokens // (len(self.prefix) + 1 + len(self.suffix)))
        cols = torch.as_tensor([int(n) for n in neurons])
        out = np.empty((len(tokens), len(cols)), dtype=np.float32)
        for b in range(0, len(tokens), rows):
            acts, at = self._forward([[int(t)] for t in tokens[b:b + rows]])
            row, pos = torch.arange(len(at)), torch.as_tensor(at)
            out[b:b + len(at)] = acts[row.to(acts.device), pos.to(acts.device)][:, cols.to(acts.device)] \
                .float().cpu().numpy()
        return out

    def __call__(self, requests: Sequence[tuple[tuple[int, ...], int]]) -> list[np.ndarray]:
        """``requests``: ``(text ids, neuron)`` pairs. Returns one float32 ``[len(ids)]`` array per request."""
        import torch

        need: dict[tuple[int, ...], set[int]] = {}
        for seq, n in requests:
            if len(seq) == 0:
                raise ValueError("cannot run an empty token sequence")
            if len(seq) > self.limit:
                raise ValueError(f"a sequence of {len(seq)} tokens exceeds the model's context ({self.limit})")
            need.setdefault(seq, set()).add(int(n))
        host = _hosts(need) if self.share_prefixes else {s: s for s in need}
        runs: dict[tuple[int, ...], set[int]] = {}
        for s, ns in need.items():
            runs.setdefault(host[s], set()).update(ns)
        order = sorted(runs, key=lambda s: (len(s), s))  # deterministic, whatever the request order
        got: dict[tuple[tuple[int, ...], int], np.ndarray] = {}
        extra = len(self.prefix) + len(self.suffix)
        # no batch of 16+ rows more than a quarter padding: many short prompts of mixed lengths
        for idx in plan_batches([len(s) + extra for s in order], self.max_batch_rows, self.max_batch_tokens,
                                max_padding=0.25):
            batch = [order[k] for k in idx]
            acts, at = self._forward(batch)
            for r, s in enumerate(batch):
                cols = sorted(runs[s])
                a = acts[r, at[r]:at[r] + len(s)][:, torch.as_tensor(cols, device=acts.device)].float().cpu().numpy()
                for c, n in enumerate(cols):
                    got[(s, n)] = a[:, c]
        return [got[(host[tuple(s)], int(n))][:len(s)] for s, n in requests]


def _hosts(seqs: Any) -> dict[tuple[int, ...], tuple[int, ...]]:
    """Each sequence -> the longest of ``seqs`` that starts with it (itself when none does). In lexicographic
    order a sequence's extensions follow it directly, so one backward walk finds them all."""
    lex = sorted(seqs)
    host: dict[tuple[int, ...], tuple[int, ...]] = {}
    for i in range(len(lex) - 1, -1, -1):
        s = lex[i]
        nxt = lex[i + 1] if i + 1 < len(lex) else None
        host[s] = host[nxt] if nxt is not None and nxt[:len(s)] == s else s
    return host


@dataclass
class Prompt:
    """One training text of one neuron: text token ids (no special tokens) and its pivot (max token) or None."""

    ids: tuple[int, ...]
    pivot: int | None = None
    doc: int | None = None


@dataclass
class FitStats:
    """What happened while fitting one neuron (recorded in the graph's meta)."""

    prompts: int = 0
    pruned_lengths: list[int] = field(default_factory=list)
    prune_fallbacks: int = 0
    variants: int = 0
    firing_variants: int = 0
    paths: int = 0
    calibrated_ends: int = 0


def split_examples(n: int, train_proportion: float, rng: np.random.Generator) -> tuple[list[int], list[int]]:
    """Random train/test split of ``n`` examples (indices kept in rank order)."""
    if n < 1:
        raise ValueError("no examples to split")
    n_train = min(n, max(1, int(round(n * train_proportion))))
    perm = rng.permutation(n)
    return sorted(perm[:n_train].tolist()), sorted(perm[n_train:].tolist())


def _prune_candidates(pivot: int, cfg: N2GConfig) -> list[int]:
    """Start positions of the prefixes tried, shortest first; the last one (0) is the whole prefix."""
    starts = [pivot - s for s in range(cfg.prune_step, cfg.prune_max_context + 1, cfg.prune_step) if pivot - s > 0]
    return starts + [0]


def fit_tries(run: Forward, jobs: Sequence[tuple[int, float, Sequence[Prompt]]], cfg: N2GConfig,
              augmenter: Augmenter, mask_token: int) -> list[tuple[Trie, FitStats, dict[str, Any] | None]]:
    """Fit one trie per job, every job's forwards pooled stage by stage; with its fit statistics and its fallback
    (:mod:`.fallback`; None unless ``cfg.fallback`` asks for one).

    Parameters
    ----------
    run: the :class:`Forward` of the analysed layer.
    jobs: ``(neuron, normaliser, prompts)``; the normaliser is the neuron's max activation over the dataset.
    cfg: thresholds.
    augmenter: substitute generator (step 3).
    mask_token: token id used for masking.
    """
    fit = _Fit(run, jobs, cfg, mask_token)
    fit.whole_prompts()
    pruned = fit.prune()
    keys, measured = fit.pruned_paths(pruned)
    if cfg.n_substitutes > 0:
        fit.augment(augmenter, pruned, keys, measured)
    for t in fit.tries:
        t.finalize()
    if cfg.end_values == "calibrated":
        fit.calibrate()
    return list(zip(fit.tries, fit.stats, fit.fallbacks()))


# (job, ids of a pruned window) -> (example, pivot index in ids, main pivot?)
_Pruned = dict[tuple[int, tuple[int, ...]], tuple[int, int, bool]]


class _Fit:
    """The stages of :func:`fit_tries`, sharing the jobs, the forward runner, each job's trie and stats, and the
    whole prompts' activations (``full_acts``: ``(job, example) -> [len(ids)]``)."""

    def __init__(self, run: Forward, jobs: Sequence[tuple[int, float, Sequence[Prompt]]], cfg: N2GConfig,
                 mask_token: int):
        self.run, self.jobs, self.cfg, self.mask_token = run, jobs, cfg, mask_token
        self.stats = [FitStats(prompts=len(p)) for _, _, p in jobs]
        self.tries = [Trie() for _ in jobs]
        self.full_acts: dict[tuple[int, int], np.ndarray] = {}

    def whole_prompts(self) -> None:
        """Stage 0: whole prompts, when a pivot is unknown or extra pivots are wanted: the pivot is the argmax,
        extra pivots the next-highest firing tokens; their unpruned activations are the reference for pruning."""
        jobs = self.jobs
        want = [(ji, pi) for ji, (_, _, ps) in enumerate(jobs) for pi, p in enumerate(ps)
                if p.pivot is None or self.cfg.pivots_per_example > 1]
        if not want:
            return
        for key, a in zip(want, self.run([(jobs[ji][2][pi].ids, jobs[ji][0]) for ji, pi in want])):
            self.full_acts[key] = a
            p = jobs[key[0]][2][key[1]]
            if p.pivot is None:
                p.pivot = int(np.argmax(a))

    def prune(self) -> _Pruned:
        """Stage 1: prune. Candidate prefixes end at the pivot; the shortest that keeps the pivot the argmax with
        more than prune_keep of its original activation wins (else the whole prefix). Extra pivots need to keep
        their activation and still fire; they fall back to the longest candidate (extensions, never worth a whole
        prefix). A main pivot's candidates run at once (its rule needs the whole prefix's activation); an extra
        pivot's run shortest first, round by round, and stop at the first kept: the same window, fewer tokens."""
        cfg = self.cfg
        todo: dict[tuple[int, int, int, bool], list[int]] = {}  # (job, example, pivot, main) -> starts to try
        for ji, (n, norm, ps) in enumerate(self.jobs):
            for pi, p in enumerate(ps):
                piv = [(p.pivot, True)]
                if cfg.pivots_per_example > 1:
                    a = self.full_acts[(ji, pi)]
                    order = [int(j) for j in np.argsort(-a, kind="stable") if a[j] / norm > cfg.activation_threshold]
                    piv += [(j, False) for j in order if j != p.pivot][:cfg.pivots_per_example - 1]
                for q, main in piv:
                    starts = _prune_candidates(q, cfg)
                    todo[(ji, pi, q, main)] = starts if main else (starts[:-1] or [0])
        cands: dict[tuple[int, int, int, bool], list[tuple[int, np.ndarray]]] = {}
        while todo:
            batch = [(key, st) for key, starts in todo.items() for st in (starts if key[3] else starts[:1])]
            acts = self.run([(self.jobs[ji][2][pi].ids[st:q + 1], self.jobs[ji][0]) for (ji, pi, q, _), st in batch])
            for (key, st), a in zip(batch, acts):
                cands.setdefault(key, []).append((st, a))
            todo = {key: starts[1:] for key, starts in todo.items()
                    if not key[3] and len(starts) > 1 and not self._extra_kept(key, cands[key][-1][1])}
        pruned: _Pruned = {}
        for (ji, pi, q, main), lst in cands.items():
            self._prune_one(pruned, ji, pi, q, main, lst)
        return pruned

    def _extra_kept(self, key: tuple[int, int, int, bool], a: np.ndarray) -> bool:
        """Whether an extra pivot's candidate window (activations ``a``, the pivot last) keeps it (see _prune_one)."""
        ji, pi, q, _ = key
        a0 = float(self.full_acts[(ji, pi)][q])
        return a0 > 0 and a[-1] > self.cfg.prune_keep * a0 and a[-1] / self.jobs[ji][1] > self.cfg.activation_threshold

    def _prune_one(self, pruned: _Pruned, ji: int, pi: int, q: int, main: bool,
                   lst: list[tuple[int, np.ndarray]]) -> None:
        """The window kept for pivot ``q`` of example ``pi`` of job ``ji``, from its candidates' activations."""
        cfg = self.cfg
        p = self.jobs[ji][2][pi]
        if main:
            a0 = float(lst[-1][1][-1])
            tried = lst[:-1]
        else:
            a0 = float(self.full_acts[(ji, pi)][q])
            tried = lst
        if a0 <= 0:
            return  # the neuron does not fire on this example: nothing to explain
        start = 0 if main else tried[-1][0]
        norm = self.jobs[ji][1]
        for s, a in tried:
            # The main pivot: the paper's rule. An extra pivot must also still fire in its window: one that keeps
            # half its activation but drops below the activation threshold would never start a path.
            if (not main or int(np.argmax(a)) == len(a) - 1) and a[-1] > cfg.prune_keep * a0 and \
                    (main or a[-1] / norm > cfg.activation_threshold):
                start = s
                break
        else:
            self.stats[ji].prune_fallbacks += int(main)
        ids = p.ids[start:q + 1 + cfg.post_context]
        if main:
            pruned[(ji, ids)] = (pi, q - start, True)  # augmented around its pivot
            self.stats[ji].pruned_lengths.append(len(ids))
        else:
            pruned.setdefault((ji, ids), (pi, q - start, False))

    # Stage 2's measurement: the pruned prompts unmasked, then with each token masked in turn. The model is causal
    # (checked by every caller), so masking token k changes nothing before k, and only tokens up to the last one
    # that matters (the last firing token, or the pivot) need an importance: each masked row stops there, and
    # tokens after it are never masked. Same importances as masking every token of the whole window, with fewer
    # tokens.
    def measure(self, items: list[tuple[int, tuple[int, ...], np.ndarray, int]]) -> list[np.ndarray]:
        """items: (job, ids, normalised activations [L], last position needing an importance) -> importance
        [L, L] (NaN in the columns after that position)."""
        jobs, mask_token = self.jobs, self.mask_token
        req, spans = [], []
        for ji, ids, _, upto in items:
            spans.append((len(req), upto + 1))
            req.extend((ids[:k] + (mask_token,) + ids[k + 1:upto + 1], jobs[ji][0]) for k in range(upto + 1))
        acts = self.run(req)
        out = []
        for (ji, ids, base, upto), (a, m) in zip(items, spans):
            masked = np.full((m, len(ids)), np.nan)
            masked[:, :upto + 1] = np.stack(acts[a:a + m]) / jobs[ji][1]
            out.append(importance_matrix(base, masked, range(m)))
        return out

    def last_needed(self, base: np.ndarray, at_least: int) -> int:
        fires = np.flatnonzero(base > self.cfg.activation_threshold)
        return max(int(fires[-1]) if len(fires) else -1, at_least)

    def add_paths(self, ji: int, ids: tuple[int, ...], acts: np.ndarray, imp: np.ndarray) -> None:
        """The paths of one measured window into job ``ji``'s trie."""
        for labels, weights, act in paths_from_prompt(ids, acts, imp, self.cfg.activation_threshold,
                                                       self.cfg.importance_threshold):
            self.tries[ji].add_path(labels, weights, act)
            self.stats[ji].paths += 1

    def pruned_paths(self, pruned: _Pruned) -> tuple[list, list[tuple[np.ndarray, np.ndarray]]]:
        """Stage 2: the pruned windows measured and their paths added. Returns the windows' keys in a fixed order
        and, for each, (normalised activations [L], importance [L, L])."""
        jobs = self.jobs
        keys = sorted(pruned, key=lambda k: (k[0], len(k[1]), k[1]))
        bases = [a / jobs[ji][1] for (ji, _), a in zip(keys, self.run([(ids, jobs[ji][0]) for ji, ids in keys]))]
        measured = list(zip(bases, self.measure([(ji, ids, b, self.last_needed(b, pruned[(ji, ids)][1]))
                                                 for (ji, ids), b in zip(keys, bases)])))
        for (ji, ids), (base, imp) in zip(keys, measured):
            self.add_paths(ji, ids, base, imp)
        return keys, measured

    def augment(self, augmenter: Augmenter, pruned: _Pruned, keys: list, measured: list) -> None:
        """Stage 3: augmentation. Tokens important for the pivot are replaced by substitutes; each variant is
        measured unmasked first, and only variants with a firing token get the masked rows."""
        cfg, jobs = self.cfg, self.jobs
        targets = self._augment_targets(pruned, keys, measured)
        subs = augmenter.substitutes_for(self.run, [(keys[i][1], k) for _, i, k in targets],
                                         [jobs[ji][0] for ji, _, _ in targets], cfg.n_substitutes,
                                         cfg.min_substitute_prob) if targets else []
        variants: dict[tuple[int, tuple[int, ...]], tuple[int, int]] = {}  # -> (window it came from, position)
        for (ji, i, k), ss in zip(targets, subs):
            ids = keys[i][1]
            for s in ss[:cfg.n_substitutes]:
                variants.setdefault((ji, ids[:k] + (int(s),) + ids[k + 1:]), (i, k))
        vkeys = list(variants)
        for ji, _ in vkeys:
            self.stats[ji].variants += 1
        firing = []
        for (ji, v), a in zip(vkeys, self.run([(v, jobs[ji][0]) for ji, v in vkeys])):
            base = a / jobs[ji][1]
            if (base > cfg.activation_threshold).any():
                firing.append((ji, v, base))
                self.stats[ji].firing_variants += 1
        # Causality again: before the substituted position k a variant is its window, so its firing tokens there,
        # their activations and importances are the window's (already measured): only firing tokens from k on
        # need the variant's own masked rows.
        fresh = [(ji, v, base, self.last_needed(base, -1)) for ji, v, base in firing
                 if (base[variants[(ji, v)][1]:] > cfg.activation_threshold).any()]
        fresh_imp = {(ji, v): imp for (ji, v, _, _), imp in zip(fresh, self.measure(fresh))}
        for ji, v, base in firing:
            i, k = variants[(ji, v)]
            before = np.arange(len(v)) < k
            sources = [(keys[i][1], np.where(before, measured[i][0], 0.0), measured[i][1])]
            if (ji, v) in fresh_imp:
                sources.append((v, np.where(before, 0.0, base), fresh_imp[(ji, v)]))
            for ids, acts, imp in sources:
                self.add_paths(ji, ids, acts, imp)

    def _augment_targets(self, pruned: _Pruned, keys: list, measured: list) -> list[tuple[int, int, int]]:
        """``(job, window, position)`` of every token to substitute, sorted by job and window."""
        cfg = self.cfg
        targets = []
        done: dict[tuple[int, int, bool], int] = {}  # (job, token, is the pivot) -> windows augmented around it
        order = sorted(range(len(keys)), key=lambda i: not pruned[keys[i]][2])  # main pivots' windows first
        for i in order:
            (ji, ids), (_, imp) = keys[i], measured[i]
            _, piv, main = pruned[(ji, ids)]
            if not main and cfg.augment_pivots == "main":
                continue  # the paper's step 3: only the main pivots' prompts are augmented
            col = np.nan_to_num(imp[:, piv], nan=0.0)
            for k in np.flatnonzero(col >= cfg.augment_threshold).tolist():
                key = (ji, ids[k], k == piv)
                if not main and done.get(key, 0) >= cfg.augment_repeats:
                    continue  # extra pivots: a token already tried in enough windows teaches little more
                done[key] = done.get(key, 0) + 1
                targets.append((ji, i, k))
        targets.sort(key=lambda t: (t[0], len(keys[t[1]][1]), keys[t[1]][1], t[2]))
        return targets

    def training_tokens(self, ji: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Job ``ji``'s whole training examples: ids, each position's text start and normalised activations, all
        ``[n_tokens]`` (whole prompts not run yet are run for every job at once)."""
        jobs = self.jobs
        miss = [(j, pi) for j, (_, _, ps) in enumerate(jobs) for pi in range(len(ps)) if (j, pi) not in self.full_acts]
        for key, a in zip(miss, self.run([(jobs[j][2][pi].ids, jobs[j][0]) for j, pi in miss])):
            self.full_acts[key] = a
        _, norm, ps = jobs[ji]
        lens = [len(p.ids) for p in ps]
        ids = np.concatenate([np.asarray(p.ids, dtype=np.int64) for p in ps])
        starts = np.repeat(np.cumsum([0] + lens[:-1]), lens)
        acts = np.concatenate([self.full_acts[(ji, pi)] for pi in range(len(ps))]) / norm
        return ids, starts, acts

    def calibrate(self) -> None:
        """Extension (end_values="calibrated"): END values re-estimated on the whole training examples, firing
        or not."""
        for ji, (_, _, ps) in enumerate(self.jobs):
            if ps:
                self.stats[ji].calibrated_ends = self.tries[ji].calibrate(*self.training_tokens(ji))

    def fallbacks(self) -> list[dict[str, Any] | None]:
        """Extension (``fallback``): what uncovered tokens predict, fitted on the whole training examples."""
        out: list[dict[str, Any] | None] = []
        for ji, (_, _, ps) in enumerate(self.jobs):
            if self.cfg.fallback == "none" or not ps:
                out.append(None)
                continue
            ids, starts, acts = self.training_tokens(ji)
            out.append(fit_fallback(self.cfg.fallback, ids, self.tries[ji].match(ids, starts)[1], acts))
        return out
