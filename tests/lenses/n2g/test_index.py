"""N2G search index (mri_lens.lenses.n2g.index): search, similar neurons, round trip."""

from __future__ import annotations

import pytest

from mri_lens.lenses.n2g.config import N2GConfig
from mri_lens.lenses.n2g.index import NeuronIndex
from mri_lens.lenses.n2g.neuron_graph import NeuronGraph

from .builders import _synthetic_graph, _trie


def test_index_search_similar_and_round_trip(tmp_path):
    a = _synthetic_graph({5: " try", 6: " except"})
    b = NeuronGraph(layer=1, neuron=7, trie=_trie(([6], 0.8)), max_activation=1.0, config=N2GConfig(),
                    token_strs={6: " except"}, examples={})
    idx = NeuronIndex([a, b])
    assert [r[:2] for r in idx.search(activating="except")] == [(1, 7), (0, 3)]   # by activation
    assert [r[:2] for r in idx.search(activating="except", important="try")] == []   # the pattern is "except, then try"
    assert [r[:2] for r in idx.search(activating="try", important="except")] == [(0, 3)]
    assert [r[:2] for r in idx.search(important="except")] == [(0, 3)]
    assert idx.similar(threshold=0.5) == [((0, 3), (1, 7), 0.5)]
    idx2 = NeuronIndex.load(idx.save(tmp_path / "index.json"))
    assert idx2.search(activating="try", important="except") == idx.search(activating="try", important="except")
    with pytest.raises(ValueError):
        idx.search()
