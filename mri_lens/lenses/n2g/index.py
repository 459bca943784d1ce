"""NeuronIndex: from tokens to the neurons whose N2G graphs fire on them (step 7)."""

from __future__ import annotations

import json
import os
from typing import Any, Iterable

from ...errors import ScanFileError
from .trie import IGNORE

__all__ = ["NeuronIndex"]

INDEX_FORMAT = "mri_lens.n2g.index"
INDEX_SCHEMA = 1


def _norm(s: str) -> str:
    return s.strip()


class NeuronIndex:
    """Search neurons by the tokens that make them fire and by the important context before those tokens.

    Tokens are matched on their display string with surrounding whitespace stripped (``"except"`` finds the token
    ``" except"``). Built from fitted graphs (a dict or any iterable of :class:`~mri_lens.lenses.n2g.NeuronGraph`).

    >>> idx = NeuronIndex(graphs)                                   # doctest: +SKIP
    >>> idx.search(activating="except", important="try")            # doctest: +SKIP
    """

    def __init__(self, graphs: Iterable[Any] | dict | None = None):
        self.entries: dict[tuple[int, int], dict[str, Any]] = {}
        if isinstance(graphs, dict):
            graphs = graphs.values()
        for g in graphs or []:
            self.add(g)

    def add(self, g: Any) -> None:
        """Index one graph: its firing tokens (max activation), important context tokens (max importance) and
        the (firing, context) pairs that occur on one pattern."""
        t = g.trie
        act: dict[str, float] = {}
        imp: dict[str, float] = {}
        pairs: set[tuple[str, str]] = set()
        for u in range(1, len(t)):
            tok = t.token[u]
            if tok == IGNORE:
                continue
            s = _norm(g.token_str(tok))
            if t.depth[u] == 1:
                act[s] = max(act.get(s, 0.0), t.weight[u])
            else:
                imp[s] = max(imp.get(s, 0.0), t.weight[u])
                v = u
                while t.depth[v] > 1:
                    v = t.parent[v]
                pairs.add((_norm(g.token_str(t.token[v])), s))
        f1 = ((g.scores or {}).get("n2g") or {}).get("firing_f1")
        self.entries[(int(g.layer), int(g.neuron))] = {"activating": act, "important": imp,
                                                       "pairs": sorted(pairs), "firing_f1": f1}

    def __len__(self) -> int:
        return len(self.entries)

    def search(self, activating: str | None = None, important: str | None = None) -> list[tuple[int, int, float]]:
        """Neurons that fire on ``activating`` and/or have ``important`` as context (on the same pattern when both
        are given): ``[(layer, neuron, score)]`` best first, score = max activation (or importance) matched."""
        if activating is None and important is None:
            raise ValueError("give activating=..., important=... or both")
        a = None if activating is None else _norm(activating)
        i = None if important is None else _norm(important)
        out = []
        for key, e in self.entries.items():
            if a is not None and i is not None:
                if (a, i) in e["pairs"]:
                    out.append((*key, min(e["activating"][a], e["important"][i])))
            elif a is not None and a in e["activating"]:
                out.append((*key, e["activating"][a]))
            elif i is not None and i in e["important"]:
                out.append((*key, e["important"][i]))
        return sorted(out, key=lambda r: (-r[2], r[0], r[1]))

    def similar(self, threshold: float = 0.5, min_tokens: int = 1) -> list[tuple[tuple[int, int], tuple[int, int],
                                                                               float]]:
        """Pairs of neurons whose firing-token sets overlap: Jaccard >= ``threshold``, best first."""
        keys = sorted(k for k, e in self.entries.items() if len(e["activating"]) >= min_tokens)
        sets = {k: set(self.entries[k]["activating"]) for k in keys}
        out = []
        for x in range(len(keys)):
            for y in range(x + 1, len(keys)):
                a, b = sets[keys[x]], sets[keys[y]]
                j = len(a & b) / len(a | b) if a | b else 0.0
                if j >= threshold:
                    out.append((keys[x], keys[y], j))
        return sorted(out, key=lambda r: (-r[2], r[0], r[1]))

    def to_dict(self) -> dict[str, Any]:
        return {"format": INDEX_FORMAT, "schema_version": INDEX_SCHEMA,
                "entries": [[l, n, {**e, "pairs": [list(p) for p in e["pairs"]]}]
                            for (l, n), e in sorted(self.entries.items())]}

    def save(self, path: str | os.PathLike, *, overwrite: bool = False) -> str:
        """Write JSON to ``path`` atomically; replaces only a saved index unless ``overwrite=True``."""
        from ...storage.write import save_text

        return save_text(path, json.dumps(self.to_dict(), sort_keys=True, allow_nan=False), kind=INDEX_FORMAT,
                         overwrite=overwrite)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "NeuronIndex":
        """Read a file written by :meth:`save`; every problem is a :class:`~mri_lens.errors.ScanFileError`."""
        from ...storage.write import check_format, read_json

        path = os.fspath(path)
        d = read_json(path, "N2G index")
        check_format(d, INDEX_FORMAT, INDEX_SCHEMA, path, what=f"N2G index ({INDEX_FORMAT})")
        idx = cls()
        try:
            for l, n, e in d["entries"]:
                if not all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in (l, n)):
                    raise ValueError("neuron ids must be non-negative integers")
                pairs = [tuple(p) for p in e["pairs"]]
                if not all(len(p) == 2 and all(isinstance(t, str) for t in p) for p in pairs):
                    raise ValueError("pairs are malformed")
                act, imp = dict(e["activating"]), dict(e["important"])
                if not all(isinstance(k, str) and isinstance(x, (int, float)) for m in (act, imp)
                           for k, x in m.items()):
                    raise ValueError("token weights are malformed")
                f1 = e.get("firing_f1")
                if f1 is not None and not isinstance(f1, (int, float)):
                    raise ValueError("firing_f1 is malformed")
                idx.entries[(int(l), int(n))] = {"activating": act, "important": imp, "pairs": pairs,
                                                 "firing_f1": f1}
        except Exception as e:  # noqa: BLE001 - whatever is malformed, the file is not an index of ours
            raise ScanFileError(f"{path} is not a consistent N2G index: {type(e).__name__}") from None
        return idx

    def __repr__(self) -> str:
        return f"NeuronIndex(neurons={len(self)})"
