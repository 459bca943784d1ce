"""Scan against an independent brute-force reference, on the tiny LM and the real MiniLM-L6."""

from __future__ import annotations


import numpy as np
import pytest
import torch

import mri_lens as ml
from mri_lens.errors import ModelAdapterError
from mri_lens.model import ModelAdapter
from mri_lens.model.capture import scan_token_activations

from oracle import reference, topk_reference

ATOL = 1e-5


def _segments(model, corpus, **kw):
    adapter = ModelAdapter(model)
    segs, _ = adapter.encode(corpus.texts, **kw)
    return adapter, segs


def _check_against_reference(result, ref, layers):
    for p in result.poolings:
        np.testing.assert_allclose(result.pooled(p), ref[p], atol=ATOL, rtol=0, err_msg=f"pooling {p}")
    T = ref["tokens"].shape[1]
    assert result.stats.count == T
    tokens64 = ref["tokens"].astype(np.float64)  # numpy's float32 std is itself off by ~1e-5 at this size
    np.testing.assert_allclose(result.stats.mean, tokens64.mean(1), atol=ATOL)
    np.testing.assert_allclose(result.stats.std, tokens64.std(1), atol=ATOL)
    np.testing.assert_allclose(result.stats.max, ref["tokens"].max(1), atol=ATOL)
    np.testing.assert_allclose(result.stats.min, ref["tokens"].min(1), atol=ATOL)
    np.testing.assert_allclose(result.stats.frac_positive, (ref["tokens"] > 0).mean(1), atol=1e-3)
    assert (result.stats.hist_counts.sum(-1) == T).all()


def _check_topk(result, ref):
    k = result.top.values.shape[-1]
    for which, largest, key, arg in (("top", True, "max", "argmax"), ("bottom", False, "min", "argmin")):
        tk = getattr(result, which)
        for li in range(result.n_layers):
            vals = ref[key][:, li]  # [n_docs, d]
            want_docs = topk_reference(vals, k, largest)
            n = want_docs.shape[1]
            got_docs = tk.docs[li, :, :n]
            got_vals = tk.values[li, :, :n]
            # Values along the ranking equal the brute-force sorted values.
            want_vals = np.take_along_axis(vals.T, want_docs, 1)
            np.testing.assert_allclose(got_vals, want_vals, atol=ATOL)
            # Each kept document really has that value; ranks differ only where values tie within tolerance.
            np.testing.assert_allclose(np.take_along_axis(vals.T, got_docs, 1), got_vals, atol=ATOL)
            # Where the order differs from the brute force, the documents tie within tolerance.
            differ = got_docs != want_docs
            ties = np.abs(np.take_along_axis(vals.T, got_docs, 1) - want_vals) <= 2 * ATOL
            assert (ties | ~differ).all()
            # The recorded position holds that value (BOS positions are NaN in the reference: never chosen).
            pos = tk.positions[li, :, :n]
            at_pos = np.array([[ref["doc_acts"][doc][li, p, j] for doc, p in zip(got_docs[j], pos[j])]
                               for j in range(got_docs.shape[0])])
            np.testing.assert_allclose(at_pos, got_vals, atol=ATOL)
            assert (tk.docs[li, :, n:] == -1).all()


@pytest.fixture(scope="module")
def code_prose_ref(tiny, code_prose):
    """The brute-force reference of ``code_prose`` on every layer of the tiny LM, computed once for the module."""
    _, segs = _segments(tiny, code_prose)
    return reference(tiny, segs, list(range(4)), skip_first=1)


@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_tiny_lm_matches_bruteforce(tiny, code_prose, code_prose_ref, padding_side):
    layers = list(range(4))
    result = ml.scan(tiny, code_prose, batch_size=5, padding_side=padding_side,
                     pooling=("mean", "max", "min", "last"), top_k=6, progress=False)
    ref = code_prose_ref
    _check_against_reference(result, ref, layers)
    _check_topk(result, ref)
    assert result.meta["padding_side"] == padding_side
    assert result.meta["prepend_bos"] is True and result.meta["bos_excluded_from_stats"] is True


def test_minilm_matches_bruteforce(minilm, reviews):
    layers = list(range(6))
    corpus = reviews.subset(range(16))
    result = ml.scan(minilm, corpus, batch_size=6, pooling=("mean", "max", "min"), top_k=5, progress=False)
    _, segs = _segments(minilm, corpus)
    ref = reference(minilm, segs, layers, skip_first=0)  # [CLS] and [SEP] are contextual: counted
    _check_against_reference(result, ref, layers)
    _check_topk(result, ref)
    assert result.meta["is_causal"] is False


def test_minilm_left_padding_is_refused(minilm, reviews):
    with pytest.raises(ModelAdapterError, match="left padding would shift an encoder's absolute positions"):
        ml.scan(minilm, reviews.subset(range(4)), padding_side="left", progress=False)


def test_windows_cover_every_token(tiny, code_prose):
    # four code documents (2, 3, 8 and 9 windows of 24 tokens) and three prose ones (2 windows each): batches of
    # 7 windows mix documents and cut through them
    corpus = code_prose.subset([0, 1, 12, 15, 16, 17, 18])
    result = ml.scan(tiny, corpus, batch_size=7, max_length=24, overflow="windows",
                     pooling=("mean", "max", "last"), top_k=4, progress=False)
    _, segs = _segments(tiny, corpus, max_length=24, overflow="windows")
    assert max(len(s) for s in segs) >= 8 and sum(len(s) for s in segs) > 7 * 3
    ref = reference(tiny, segs, list(range(4)), skip_first=1)
    _check_against_reference(result, ref, list(range(4)))
    _check_topk(result, ref)
    assert result.meta["n_sequences"] == sum(len(s) for s in segs)
    # Recomputing a windowed document's activations runs it window by window, like the scan.
    long_doc = max(range(len(segs)), key=lambda i: len(segs[i]))
    again = scan_token_activations(tiny, result, [long_doc], layer=2)[0]
    want = ref["doc_acts"][long_doc][2]
    real = ~np.isnan(want[:, 0])
    np.testing.assert_allclose(again[real], want[real], atol=ATOL)
    # A document appears at most once per neuron's top list.
    docs = result.top.docs
    for li in range(result.n_layers):
        for n in range(0, result.d_mlp, 37):
            d = docs[li, n][docs[li, n] >= 0]
            assert len(set(d.tolist())) == len(d)


def test_wordpiece_tokens_read_like_text(minilm):
    s = ml.scan(minilm, ["Works great for my headaches, thanks"], progress=False)
    assert "".join(s.str_tokens(0)) == "[CLS] works great for my headaches , thanks [SEP]"


def test_truncation_warns_once_and_never_crashes(tiny):
    long_text = "x = 1\n" * 2000
    with pytest.warns(UserWarning, match="truncated") as rec:
        result = ml.scan(tiny, [long_text, long_text, "y = 2"], progress=False)
    assert sum("truncated" in str(w.message) for w in rec) == 1
    assert result.meta["n_truncated"] == 2
    assert len(result.tokens(0)) == tiny.cfg.n_ctx
    with pytest.raises(ValueError, match="more than max_length"):
        ml.scan(tiny, [long_text], overflow="error", progress=False)


def test_layer_subset_equals_full_scan_slice(tiny, code_prose, tiny_scan):
    sub = ml.scan(tiny, code_prose, layers=[1], batch_size=8, pooling=("mean", "max", "min", "last"),
                  progress=False)
    assert sub.layers == [1] and sub.pooled("mean").shape == (len(code_prose), 1, 512)
    np.testing.assert_allclose(sub.pooled("mean")[:, 0], tiny_scan.pooled("mean", layer=1), atol=ATOL)
    np.testing.assert_array_equal(sub.top.docs[0], tiny_scan.top.docs[1])


def test_capture_stops_after_last_requested_layer(tiny, code_prose):
    fired = []
    hook_name = "blocks.3.mlp.hook_post"
    tiny.add_hook(hook_name, lambda act, hook: fired.append(1))
    try:
        ml.scan(tiny, code_prose.subset(range(3)), layers=[0, 1], progress=False)
        assert fired == []
        ml.scan(tiny, code_prose.subset(range(3)), layers=[3], progress=False)
        assert fired
    finally:
        tiny.reset_hooks()


def test_deterministic_and_batch_size_independent(tiny, code_prose, tiny_scan):
    again = ml.scan(tiny, code_prose, batch_size=8, pooling=("mean", "max", "min", "last"), progress=False)
    for p in tiny_scan.poolings:
        np.testing.assert_array_equal(again.pooled(p), tiny_scan.pooled(p))
    np.testing.assert_array_equal(again.top.docs, tiny_scan.top.docs)
    np.testing.assert_array_equal(again.stats.hist_counts, tiny_scan.stats.hist_counts)
    other = ml.scan(tiny, code_prose, batch_size=3, pooling=("mean",), progress=False)
    np.testing.assert_allclose(other.pooled("mean"), tiny_scan.pooled("mean"), atol=ATOL)
    assert (other.top.docs == tiny_scan.top.docs).mean() > 0.99


def test_include_bos_counts_bos(tiny, code_prose, tiny_scan):
    with_bos = ml.scan(tiny, code_prose, include_bos=True, pooling=("mean",), progress=False)
    assert with_bos.stats.count == tiny_scan.stats.count + len(code_prose)
    assert with_bos.meta["bos_excluded_from_stats"] is False


def test_float16_storage(tiny, code_prose, tiny_scan):
    half = ml.scan(tiny, code_prose, dtype="float16", pooling=("mean",), progress=False)
    assert half.pooled("mean").dtype == np.float16
    np.testing.assert_allclose(half.pooled("mean").astype(np.float32), tiny_scan.pooled("mean"), atol=2e-3)


def test_nan_activations_raise_clear_error(code_prose):
    broken = ml.models.tiny_lm(device="cpu")
    with torch.no_grad():
        w = [p for n, p in broken.named_parameters() if "mlp" in n][0]
        w.view(-1)[:7] = float("nan")
    with pytest.raises(ml.ScanError, match="non-finite"):
        ml.scan(broken, code_prose.subset(range(4)), progress=False)


def test_bad_arguments(tiny, code_prose):
    with pytest.raises(ValueError, match="unknown pooling"):
        ml.scan(tiny, code_prose, pooling=("median",), progress=False)
    with pytest.raises(ValueError, match="dtype"):
        ml.scan(tiny, code_prose, dtype="int8", progress=False)
    with pytest.raises(TypeError, match="unexpected option 'topk'"):
        ml.scan(tiny, code_prose, topk=5, progress=False)
    with pytest.raises(TypeError, match=r"engine=mri_lens.RayEngine\(workers=...\)"):
        ml.scan("tiny", code_prose, workers=2, progress=False)
    with pytest.raises(TypeError, match="engine must be"):
        ml.scan(tiny, code_prose, engine="ray", progress=False)
    with pytest.raises(ModelAdapterError, match="layers must be"):
        ml.scan(tiny, code_prose, layers=[7], progress=False)
    with pytest.raises(ml.CorpusError, match="empty"):
        ml.scan(tiny, [], progress=False)
    with pytest.raises(ml.ScanError, match="was not scanned"):
        ml.scan(tiny, code_prose.subset(range(2)), layers=[0], progress=False).pooled("mean", layer=2)


def test_quantiles_from_histogram(tiny_scan, code_prose_ref):
    x = code_prose_ref["tokens"][2]  # layer 2's counted tokens, [T, d_mlp]
    q = tiny_scan.stats.quantile(0.5)[2]
    true = np.quantile(x, 0.5, axis=0)
    width = np.diff(np.sinh(np.arcsinh(true).clip(-3, 6) + np.array([[-0.06], [0.06]])), axis=0)[0]
    assert np.mean(np.abs(q - true) <= width + 1e-3) > 0.9


def test_token_activations_recompute_top_example(tiny, tiny_scan):
    ex = tiny_scan.top_examples(layer=1, neuron=10, k=3)
    acts = scan_token_activations(tiny, tiny_scan, ex.docs, layer=1)
    for a, v, p in zip(acts, ex.values, ex.positions):
        assert a.shape[1] == 512
        assert abs(a[p, 10] - v) < ATOL
        assert a[1:, 10].max() == pytest.approx(v, abs=ATOL)


def test_topk_independent_of_batching_with_exact_ties(tiny):
    """Duplicated documents give exactly equal values: the kept top/bottom-k (and their document order) must not
    depend on how documents were batched, including the neurons whose lists stop changing early."""
    texts = [f"def f{i % 5}(x):\n    return x * {i % 5}\n" for i in range(40)]
    a = ml.scan(tiny, texts, batch_size=3, top_k=7, progress=False)
    b = ml.scan(tiny, texts, batch_size=16, top_k=7, progress=False)
    for x, y in ((a.top, b.top), (a.bottom, b.bottom)):
        assert np.array_equal(x.docs, y.docs) and np.array_equal(x.values, y.values)
        assert np.array_equal(x.positions, y.positions)


def test_a_killed_cli_scan_resumes_without_recomputing(tiny, tmp_path, capsys):
    """SIGKILL a command-line scan part way, run it again: the result equals an uninterrupted scan and the shards
    finished before the kill were not computed again (counted tokens say so)."""
    import json
    import signal
    import subprocess
    import sys
    import time

    from corpora import PROSE, code_snippets

    texts = code_snippets(24, chars=500) + PROSE
    corpus_file = tmp_path / "c.jsonl"
    corpus_file.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    out = tmp_path / "run"
    argv = [sys.executable, "-m", "mri_lens.cli", "scan", "--model", "tiny", "--corpus", str(corpus_file),
            "--out", str(out), "--shard-tokens", "400", "--batch-size", "4", "--quiet"]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    finished = []
    while time.time() < deadline and proc.poll() is None:
        runs = list(out.glob("run-*")) if out.exists() else []
        finished = [p for p in (runs[0].glob("part-*") if runs else []) if (p / "manifest.json").exists()]
        if len(finished) >= 2:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the scan finished before it could be killed: " + proc.stderr.read().decode()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    n_before = len(finished)
    assert not (out / "manifest.json").exists()
    done = subprocess.run(argv, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    resumed = ml.Scan.load(out)
    run = resumed.meta["run"]
    assert run["resumed"] >= n_before >= 2 and run["computed"] == run["shards"] - run["resumed"]
    assert run["shared"] == 0 and run["repaired"] == []
    assert run["computed_tokens"] < resumed.stats.count
    fresh = ml.scan(tiny, ml.Corpus(texts), batch_size=4, progress=False, pooling=("mean", "max"))
    for p in ("mean", "max"):
        np.testing.assert_array_equal(resumed.pooled(p), fresh.pooled(p))
    for k in ("min", "max", "hist_counts", "frac_positive"):
        np.testing.assert_array_equal(getattr(resumed.stats, k), getattr(fresh.stats, k))
    np.testing.assert_allclose(resumed.stats.mean, fresh.stats.mean, rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(resumed.top.docs, fresh.top.docs)
    # a different corpus in the same directory is refused: exit status 2, one line (the command's own main, in
    # this process: a third interpreter start would only repeat what the two above show)
    from mri_lens.cli import main

    other = tmp_path / "other.jsonl"
    other.write_text(json.dumps({"text": "something else entirely"}) + "\n")
    cli_args = argv[3:]
    cli_args[cli_args.index(str(corpus_file))] = str(other)
    capsys.readouterr()
    assert main(cli_args) == 2
    err = capsys.readouterr().err
    assert "another corpus, model or options" in err and len(err.strip().splitlines()) == 1


def test_options_object_and_overrides_give_the_same_scan(tiny, code_prose):
    """``ml.scan(model, corpus, ScanOptions(...), **overrides)``: the overrides replace the options' fields; the
    same scan as the keyword form."""
    sub = code_prose.subset(range(6))
    opts = ml.ScanOptions(layers=[1, 2], pooling="mean", top_k=5, batch_size=3)
    a = ml.scan(tiny, sub, opts, top_k=3, progress=False)
    b = ml.scan(tiny, sub, layers=[2, 1], pooling=("mean",), top_k=3, batch_size=3, progress=False)
    assert a.layers == b.layers == [1, 2] and a.poolings == ["mean"] and a.meta["top_k"] == 3
    assert a.top.values.shape[-1] == 3
    np.testing.assert_array_equal(a.pooled("mean"), b.pooled("mean"))
    np.testing.assert_array_equal(a.top.docs, b.top.docs)
    assert opts.top_k == 5  # frozen: the overrides made a new options object


@pytest.mark.parametrize("bad, match", [(dict(top_k=2.5), "top_k must be a positive integer"),
                                        (dict(batch_size=2.5), "batch_size must be a positive integer"),
                                        (dict(layers=True), "layers must be")])
def test_a_bad_option_raises_before_any_model_loads(bad, match, tmp_path):
    """The model spec names nothing that exists: a bad option is reported, not the missing model."""
    with pytest.raises(ValueError, match=match):
        ml.scan(str(tmp_path / "no-such-model"), ["x = 1"], progress=False, **bad)


def test_top_k_is_capped_at_the_number_of_documents(tiny, code_prose):
    """20 documents never fill 20000 slots: the lists keep one slot per document, and a top_k above the default
    that had to be capped says so; the default top_k on a small corpus is capped silently."""
    import warnings

    sub = code_prose.subset(range(5))
    with pytest.warns(UserWarning, match="top_k=20000 is more than the corpus's 5 documents"):
        big = ml.scan(tiny, sub, top_k=20000, pooling="mean", progress=False)
    assert big.top.values.shape == (4, 512, 5) and big.bottom.docs.shape == (4, 512, 5)
    assert big.meta["top_k"] == 20000
    assert (np.sort(big.top.docs, axis=-1) == np.arange(5)).all()  # every document once in every list
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        small = ml.scan(tiny, sub, pooling="mean", progress=False)
    np.testing.assert_array_equal(small.top.docs, big.top.docs)


def test_merged_small_scans_keep_the_lists_of_one_scan_of_all(tiny, code_prose):
    """Scans of 5 and 7 documents keep lists of 5 and 7 (top_k capped); merged, the lists are those of one scan of
    the 12 (each scan's list held every one of its documents)."""
    a, b = code_prose.subset(range(5)), code_prose.subset(range(5, 12))
    kw = dict(pooling="max", batch_size=4, progress=False)
    merged = ml.merge_scans([ml.scan(tiny, a, **kw), ml.scan(tiny, b, **kw)])
    whole = ml.scan(tiny, code_prose.subset(range(12)), **kw)
    assert merged.top.docs.shape == whole.top.docs.shape == (4, 512, 12)
    for which in ("top", "bottom"):
        np.testing.assert_allclose(getattr(merged, which).values, getattr(whole, which).values, atol=ATOL)
        assert (getattr(merged, which).docs == getattr(whole, which).docs).mean() > 0.99
