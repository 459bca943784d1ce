"""The N2G trie: paths that start at a firing token and walk back through its context.

A path is a list of labels read backwards from the firing token: ``[token_j, label_{j-1}, ..., label_k]`` where each
context label is the token itself when it was important for token j, or :data:`IGNORE` (matches any token). The last
node of a path carries an END mark holding the normalised activation seen there (the mean when several training
paths end on the same node: every stored value is a firing activation, above the activation threshold, so max, mean
or last give the same firing decisions; the mean is the least-squares estimate the pooled correlation rewards,
where the max would overshoot and the last would depend on the order of the examples). Prediction walks every
position of a text backwards through the trie, vectorised over all positions at once, and returns the stored
activation of the longest path that matches (0 when none does).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

__all__ = ["IGNORE", "Trie", "importance_matrix", "paths_from_prompt"]

IGNORE = -1  # label of a node that matches any token
_ROOT = -2


def importance_matrix(base: np.ndarray, masked: np.ndarray, masked_positions: Sequence[int]) -> np.ndarray:
    """Importance of each context token for each token, by masking.

    Parameters
    ----------
    base: ``[L]`` activations of the unmasked prompt.
    masked: ``[R, L]`` activations of the prompt with token ``masked_positions[r]`` replaced by the mask token.
    masked_positions: ``[R]`` the masked position of each row.

    Returns
    -------
    ``[L, L]`` matrix ``I[k, j] = clip(1 - a_j(token k masked) / a_j, 0, 1)``; NaN where it was not measured (row k
    not masked, or ``a_j <= 0`` so the ratio means nothing). Clipped because masking can raise an activation
    (negative importance) or push it below zero (importance above 1); only the threshold matters.
    """
    base = np.asarray(base, dtype=np.float64)
    masked = np.asarray(masked, dtype=np.float64)
    L = len(base)
    out = np.full((L, L), np.nan)
    pos = np.asarray(masked_positions, dtype=np.int64)
    if len(pos) == 0:
        return out
    live = base > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        imp = np.clip(1.0 - masked / np.where(live, base, 1.0)[None, :], 0.0, 1.0)
    imp[:, ~live] = np.nan
    out[pos] = imp
    return out


def paths_from_prompt(ids: Sequence[int], acts: np.ndarray, importance: np.ndarray, activation_threshold: float,
                      importance_threshold: float) -> list[tuple[list[int], list[float], float]]:
    """Trie paths of one prompt (step 4 of the method).

    Parameters
    ----------
    ids: ``[L]`` token ids of the prompt (no special tokens).
    acts: ``[L]`` normalised activations.
    importance: ``[L, L]`` from :func:`importance_matrix` (NaN counts as unimportant).
    activation_threshold, importance_threshold: see :class:`~mri_lens.lenses.n2g.N2GConfig`.

    Returns
    -------
    One ``(labels, weights, activation)`` per firing token j (``acts[j] > activation_threshold``): ``labels`` read
    backwards from j, ``weights[0]`` the activation and ``weights[i]`` the importance of each context label; the
    path stops at the furthest important token (just ``[token_j]`` when none is important).
    """
    ids = [int(t) for t in ids]
    out = []
    for j in np.flatnonzero(np.asarray(acts) > activation_threshold).tolist():
        col = np.nan_to_num(importance[:j, j], nan=0.0)
        important = np.flatnonzero(col > importance_threshold)
        labels, weights = [ids[j]], [float(acts[j])]
        if len(important):
            for k in range(j - 1, int(important[0]) - 1, -1):
                labels.append(ids[k] if col[k] > importance_threshold else IGNORE)
                weights.append(float(col[k]))
        out.append((labels, weights, float(acts[j])))
    return out


class Trie:
    """Paths from firing tokens backwards through their important context.

    Nodes live in flat lists; node 0 is the root, whose children are firing tokens (never IGNORE). Node ``i`` has
    ``token[i]`` (or :data:`IGNORE`), ``parent[i]``, ``depth[i]`` (1 for the firing token, d for the token d - 1
    positions before it), ``weight[i]`` (max activation for a firing token, max importance for a context token),
    and ``end_sum[i] / end_count[i]``, the mean activation of the training paths that end there (an END node).
    """

    def __init__(self) -> None:
        self.token: list[int] = [_ROOT]
        self.parent: list[int] = [-1]
        self.depth: list[int] = [0]
        self.weight: list[float] = [0.0]
        self.end_sum: list[float] = [0.0]
        self.end_count: list[int] = [0]
        self.children: list[dict[int, int]] = [{}]
        self._compiled: dict[str, Any] | None = None

    # ------------------------------------------------------------------ building
    def __len__(self) -> int:
        return len(self.token)

    def _child(self, node: int, label: int) -> int:
        c = self.children[node].get(label)
        if c is None:
            c = len(self.token)
            self.token.append(int(label))
            self.parent.append(node)
            self.depth.append(self.depth[node] + 1)
            self.weight.append(0.0)
            self.end_sum.append(0.0)
            self.end_count.append(0)
            self.children.append({})
            self.children[node][int(label)] = c
        return c

    def add_path(self, labels: Sequence[int], weights: Sequence[float], activation: float) -> None:
        """Add one path (``labels[0]`` the firing token, then context labels backwards) ending with ``activation``."""
        if not labels or labels[0] == IGNORE:
            raise ValueError("a path starts with its firing token, not IGNORE")
        if len(weights) != len(labels):
            raise ValueError("labels and weights differ in length")
        node = 0
        for lab, w in zip(labels, weights):
            node = self._child(node, int(lab))
            self.weight[node] = max(self.weight[node], float(w))
        self.end_sum[node] += float(activation)
        self.end_count[node] += 1
        self._compiled = None

    def merge_ignorable_siblings(self) -> int:
        """Fold a token child into its IGNORE sibling when every path below it also exists below the IGNORE node.

        Such a token adds nothing to what matches (IGNORE matches it too, at the same depth); merging keeps one path
        whose END values pool both. Returns the number of merges.
        """
        merges = 0
        sig: dict[int, frozenset] = {}

        def signature(u: int) -> frozenset:
            # the set of label sequences from u (exclusive) to every END below it; () when u itself ends a path
            s = set()
            if self.end_count[u]:
                s.add(())
            for lab, c in self.children[u].items():
                for rest in sig[c]:
                    s.add((lab,) + rest)
            return frozenset(s)

        order = sorted(range(len(self.token)), key=lambda i: -self.depth[i])
        for u in order:  # deepest first, so children are final when their parent is looked at
            ign = self.children[u].get(IGNORE)
            if ign is not None and u != 0:
                for lab in sorted(k for k in self.children[u] if k != IGNORE):
                    c = self.children[u][lab]
                    if sig[c] <= sig[ign]:
                        self._fold(c, ign)
                        del self.children[u][lab]
                        merges += 1
            sig[u] = signature(u)
        if merges:
            self._compact()
        return merges

    def _fold(self, src: int, dst: int) -> None:
        """Add the END values and weights of subtree ``src`` into the same-shaped part of subtree ``dst``."""
        self.end_sum[dst] += self.end_sum[src]
        self.end_count[dst] += self.end_count[src]
        self.weight[dst] = max(self.weight[dst], self.weight[src])
        for lab, c in self.children[src].items():
            self._fold(c, self.children[dst][lab])

    def _compact(self) -> None:
        """Renumber reachable nodes breadth-first, children by label: identical tries get identical numbering."""
        order, q = [0], 0
        while q < len(order):
            u = order[q]
            q += 1
            order.extend(self.children[u][k] for k in sorted(self.children[u]))
        new = {old: i for i, old in enumerate(order)}
        self.token = [self.token[o] for o in order]
        self.parent = [-1 if self.parent[o] < 0 else new[self.parent[o]] for o in order]
        self.depth = [self.depth[o] for o in order]
        self.weight = [self.weight[o] for o in order]
        self.end_sum = [self.end_sum[o] for o in order]
        self.end_count = [self.end_count[o] for o in order]
        self.children = [{k: new[c] for k, c in sorted(self.children[o].items())} for o in order]
        self._compiled = None

    def finalize(self) -> "Trie":
        """Merge ignorable siblings and renumber canonically. Returns self."""
        self.merge_ignorable_siblings()
        self._compact()
        return self

    # ------------------------------------------------------------------ queries
    def end_value(self, node: int) -> float | None:
        return self.end_sum[node] / self.end_count[node] if self.end_count[node] else None

    def paths(self) -> list[tuple[tuple[int, ...], float]]:
        """Every ``(labels, activation)`` ending at an END, in node order."""
        out = []
        for u in range(1, len(self.token)):
            if self.end_count[u]:
                labels, v = [], u
                while v > 0:
                    labels.append(self.token[v])
                    v = self.parent[v]
                out.append((tuple(reversed(labels)), self.end_sum[u] / self.end_count[u]))
        return out

    def activating_tokens(self) -> list[int]:
        return sorted(self.children[0])

    def _compile(self) -> dict[str, Any]:
        if self._compiled is None:
            n = len(self.token)
            K = max([t for t in self.token if t >= 0], default=0) + 2
            keys, kids = [], []
            ign = np.full(n, -1, dtype=np.int64)
            for u in range(n):
                for lab, c in self.children[u].items():
                    if lab == IGNORE:
                        ign[u] = c
                    else:
                        keys.append(u * K + lab + 1)
                        kids.append(c)
            order = np.argsort(np.asarray(keys, dtype=np.int64), kind="stable")
            ends = np.array([self.end_sum[u] / self.end_count[u] if self.end_count[u] else np.nan for u in range(n)])
            self._compiled = {"K": K, "keys": np.asarray(keys, dtype=np.int64)[order],
                              "kids": np.asarray(kids, dtype=np.int64)[order], "ign": ign, "end": ends}
        return self._compiled

    def predict(self, ids: np.ndarray, starts: np.ndarray | None = None) -> np.ndarray:
        """Predicted normalised activation of every position: the longest matching path's END value, else 0.

        Parameters
        ----------
        ids: ``[n]`` token ids (several texts may be concatenated).
        starts: ``[n]`` index in ``ids`` where each position's own text starts (paths never cross it); default 0.

        Returns
        -------
        ``[n]`` float64. Ties between equally long matches take the larger value.
        """
        return self.match(ids, starts)[0]

    def match(self, ids: np.ndarray, starts: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`predict` plus the END node that gave each prediction.

        Returns
        -------
        ``([n] float64 values, [n] int64 END node ids)``; node -1 and value 0 where no path matches.
        """
        ids = np.asarray(ids, dtype=np.int64)
        n = len(ids)
        out = np.zeros(n)
        out_node = np.full(n, -1, dtype=np.int64)
        if n == 0 or len(self.token) == 1:
            return out, out_node
        starts = np.zeros(n, dtype=np.int64) if starts is None else np.asarray(starts, dtype=np.int64)
        c = self._compile()
        K, keys, kids, ign, end = c["K"], c["keys"], c["kids"], c["ign"], c["end"]

        def lookup(node: np.ndarray, tok: np.ndarray) -> np.ndarray:
            ok = (tok >= 0) & (tok + 1 < K)
            key = node * K + np.where(ok, tok, -1) + 1
            i = np.minimum(np.searchsorted(keys, key), max(len(keys) - 1, 0))
            hit = ok & (len(keys) > 0) & (keys[i] == key) if len(keys) else np.zeros(len(node), bool)
            return np.where(hit, kids[i] if len(keys) else -1, -1)

        pos = np.arange(n)
        node = lookup(np.zeros(n, dtype=np.int64), ids)
        keep = node >= 0
        pos, node = pos[keep], node[keep]
        depth = 1
        while len(pos):
            v = end[node]
            e = ~np.isnan(v)
            if e.any():
                # longer matches come later (depth grows), so they overwrite; the largest value among ties at this
                # depth (sorted by position, then value: the last of each position's run is its max)
                pe, ve, ne = pos[e], v[e], node[e]
                order = np.lexsort((ve, pe))
                pe, ve, ne = pe[order], ve[order], ne[order]
                last = np.r_[pe[1:] != pe[:-1], True]
                out[pe[last]] = ve[last]
                out_node[pe[last]] = ne[last]
            q = pos - depth  # the context position this depth reads
            inside = q >= starts[pos]
            pos, node, q = pos[inside], node[inside], q[inside]
            exact = lookup(node, ids[q])
            ig = ign[node]
            ke, ki = exact >= 0, ig >= 0
            pos = np.concatenate([pos[ke], pos[ki]])
            node = np.concatenate([exact[ke], ig[ki]])
            depth += 1
        return out, out_node

    def calibrate(self, ids: np.ndarray, starts: np.ndarray | None, acts: np.ndarray) -> int:
        """Re-estimate END values from whole texts (an extension, ``N2GConfig(end_values="calibrated")``).

        Every END node that is the prediction (longest match) at some position of the texts gets the mean true
        normalised activation over all such positions, firing or not; END nodes never reached keep their value.
        The paper's END values come from firing tokens only, so they are never below the activation threshold and
        a path never learns that its pattern usually does *not* fire; this gives it that negative evidence.
        Returns the number of END nodes re-estimated.
        """
        acts = np.asarray(acts, dtype=np.float64)
        _, nodes = self.match(ids, starts)
        hit = nodes >= 0
        if not hit.any():
            return 0
        u, inv = np.unique(nodes[hit], return_inverse=True)
        sums = np.bincount(inv, weights=acts[hit])
        counts = np.bincount(inv)
        for node, s, c in zip(u.tolist(), sums.tolist(), counts.tolist()):
            self.end_sum[node], self.end_count[node] = float(s), int(c)
        self._compiled = None
        return len(u)

    # ------------------------------------------------------------------ serialisation
    def to_json(self) -> list[list[Any]]:
        """Nodes as ``[token, parent, weight, end_sum, end_count]`` rows, node 0 the root."""
        return [[int(self.token[i]), int(self.parent[i]), float(self.weight[i]), float(self.end_sum[i]),
                 int(self.end_count[i])] for i in range(len(self.token))]

    @classmethod
    def from_json(cls, rows: list[list[Any]]) -> "Trie":
        """Inverse of :meth:`to_json`; raises ValueError for anything malformed."""
        t = cls()
        if not isinstance(rows, list) or not rows or rows[0][:2] != [_ROOT, -1]:
            raise ValueError("trie rows must start with the root [-2, -1, ...]")
        for i, row in enumerate(rows[1:], start=1):
            if not isinstance(row, list) or len(row) != 5:
                raise ValueError(f"trie node {i} is malformed")
            tok, par, w, es, ec = row
            if not isinstance(tok, int) or tok < IGNORE or not isinstance(par, int) or not 0 <= par < i:
                raise ValueError(f"trie node {i} has a bad token or parent")
            if par == 0 and tok == IGNORE:
                raise ValueError("a firing-token node cannot be IGNORE")
            if tok in t.children[par]:
                raise ValueError(f"trie node {i} duplicates a sibling")
            t.token.append(tok)
            t.parent.append(par)
            t.depth.append(t.depth[par] + 1)
            t.weight.append(float(w))
            t.end_sum.append(float(es))
            t.end_count.append(int(ec))
            t.children.append({})
            t.children[par][tok] = i
        return t
