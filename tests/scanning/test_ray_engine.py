"""The Ray engine on a local cluster of two CPU workers: the same result as one process, also when an actor dies
mid-shard; the driver never loads the model; it gives up instead of waiting forever (a shard that kills its worker
every time, an address nothing answers at, resources the cluster lacks); a failing shard fails the run with its
error."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import mri_lens as ml
from mri_lens import ScanError

from corpora import PROSE, code_snippets

ray = pytest.importorskip("ray", reason="the Ray engine needs ray (pip install 'mri-lens[ray]')")

pytestmark = pytest.mark.slow
KW = dict(batch_size=4, pooling=("mean", "max"), progress=False, shard_tokens=500)


def test_an_unreachable_address_fails_within_the_bound(tmp_path):
    """A mistyped port fails at once (nothing answers: Ray is never started); a port that answers but is no Ray
    cluster fails within connect_timeout_s (in a separate process: its Ray is left half-connected)."""
    for address in ("127.0.0.1:1", "ray://127.0.0.1:1"):
        t0 = time.perf_counter()
        with pytest.raises(ScanError, match=f"cannot reach the Ray cluster at {address} within 5 s"):
            ml.scan("tiny", ["x = 1"], engine=ml.RayEngine(address=address, connect_timeout_s=5),
                    out=tmp_path / "o", progress=False)
        assert time.perf_counter() - t0 < 5
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    threading.Thread(target=lambda: [srv.accept() for _ in iter(int, 1)], daemon=True).start()
    code = ("import mri_lens as ml, time, sys\nt0 = time.perf_counter()\ntry:\n"
            f"    ml.scan('tiny', ['x = 1'], engine=ml.RayEngine(address='127.0.0.1:{srv.getsockname()[1]}', "
            f"connect_timeout_s=3), out={str(tmp_path / 'o2')!r}, progress=False)\n"
            "except ml.ScanError as e:\n    print(round(time.perf_counter() - t0, 1), e)\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    seconds, _, message = p.stdout.strip().partition(" ")
    assert "within 3 s (the port answers but no Ray cluster does)" in message, p.stdout + p.stderr
    assert 2.5 < float(seconds) < 10


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray.cluster_resources()
    ray.shutdown()


@pytest.fixture(scope="module")
def corpus():
    code = code_snippets(12)
    return ml.Corpus(code + PROSE[:8], ["code"] * 12 + ["prose"] * 8)


@pytest.fixture(scope="module")
def one_process(tiny, corpus):
    return ml.scan(tiny, corpus, **KW)


def _same(a: ml.Scan, b: ml.Scan) -> None:
    for p in a.poolings:
        np.testing.assert_array_equal(a.pooled(p), b.pooled(p))
    for k in ("min", "max", "frac_positive", "hist_counts"):
        np.testing.assert_array_equal(getattr(a.stats, k), getattr(b.stats, k))
    np.testing.assert_allclose(a.stats.mean, b.stats.mean, rtol=1e-9, atol=1e-12)
    for t in ("top", "bottom"):
        np.testing.assert_array_equal(getattr(a, t).docs, getattr(b, t).docs)
        np.testing.assert_array_equal(getattr(a, t).values, getattr(b, t).values)


def test_ray_scan_equals_one_process_and_the_driver_never_loads_the_model(cluster, corpus, one_process, tmp_path,
                                                                         monkeypatch):
    """A worker plans (the driver holds no model: loading one here fails the test), the plan is the one-process
    plan (same hash), the result the one-process scan."""
    def no_load(*a, **k):
        raise AssertionError("the driver loaded the model")

    monkeypatch.setattr(ml.ModelSpec, "load", no_load)
    r = ml.scan("tiny", corpus, out=tmp_path / "run", engine=ml.RayEngine(workers=2), **KW)
    assert r.meta["run"]["engine"] == "ray" and r.meta["n_shards"] >= 3
    local = ml.scan(ml.models.tiny_lm(device="cpu"), corpus, out=tmp_path / "local", **KW)
    assert r.meta["plan_hash"] == local.meta["plan_hash"]
    _same(one_process, r)


def test_a_killed_actor_gives_the_same_result(cluster, corpus, one_process, tmp_path, monkeypatch):
    """The actor running shard 1 kills itself (SIGKILL) after its first batch, once: Ray restarts it, the shard is
    computed again, and the result is the one-process scan."""
    from mri_lens.scanning.ray_engine import FAULT_ENV

    marker = tmp_path / "killed-once"
    monkeypatch.setenv(FAULT_ENV, f"1:{marker}")
    r = ml.scan("tiny", corpus, out=tmp_path / "run", engine=ml.RayEngine(workers=2), **KW)
    assert marker.read_text().count("\n") == 1, "the fault hook did not fire once"
    _same(one_process, r)


def test_a_shard_that_kills_its_worker_every_time_fails_the_scan(cluster, corpus, tmp_path, monkeypatch):
    """Shard 2's worker dies every time it starts it (as an out-of-memory kill would): after max_attempts starts
    the scan raises ScanError naming the shard, in bounded time, instead of retrying forever."""
    from mri_lens.scanning.ray_engine import FAULT_ENV

    marker = tmp_path / "kills"
    monkeypatch.setenv(FAULT_ENV, f"2:{marker}:1000")
    t0 = time.perf_counter()
    with pytest.raises(ScanError, match=r"shard 2 killed its Ray worker 2 times \(max_attempts=2\)"):
        ml.scan("tiny", corpus, out=tmp_path / "run", engine=ml.RayEngine(workers=2, max_attempts=2), **KW)
    assert time.perf_counter() - t0 < 300
    assert marker.read_text().count("\n") == 2


def test_gpus_that_do_not_exist_fail_fast(cluster, corpus, tmp_path):
    t0 = time.perf_counter()
    with pytest.raises(ScanError, match="GPU"):
        ml.scan("tiny", corpus, out=tmp_path / "run", engine=ml.RayEngine(workers=2, gpus_per_worker=1), **KW)
    with pytest.raises(ScanError, match="CPU"):
        ml.scan("tiny", corpus, out=tmp_path / "run2", engine=ml.RayEngine(workers=3, threads_per_worker=4), **KW)
    assert time.perf_counter() - t0 < 120  # a refusal, not a wait for resources that never come


def test_a_failing_shard_fails_the_run(cluster, tiny, corpus, tmp_path):
    """An exception inside a shard (here: a plan asking for a layer the model lacks) fails the run with it."""
    from mri_lens.model.adapter import as_adapter
    from mri_lens.scanning.histogram import default_histogram_edges
    from mri_lens.scanning.plan import make_plan
    from mri_lens.scanning.ray_engine import actor_pool

    options = {"batch_size": 4, "max_batch_tokens": 2048, "max_length": 256, "overflow": "truncate",
               "pooling": ["mean"], "top_k": 5, "dtype": "float32", "include_bos": False}
    plan = make_plan(as_adapter(tiny), corpus, layers=[9], options=options)
    edges = default_histogram_edges()
    with actor_pool(ml.ModelSpec("tiny"), workers=1) as pool:
        with pytest.raises(ScanError, match="shard 0 failed on a Ray worker"):
            list(pool.map(lambda a, i: a.run.remote(plan.shard(i), plan.layers, edges, str(tmp_path / "p"),
                                                    plan.hash), [0], what="shard"))
    assert not (tmp_path / "p").exists()


def test_ray_needs_out_and_a_spec(tiny, corpus):
    with pytest.raises(ValueError, match="out="):
        ml.scan("tiny", corpus, engine=ml.RayEngine())
    with pytest.raises(ValueError, match="spec"):
        ml.scan(tiny, corpus, engine=ml.RayEngine(), out=os.devnull + "-never")


def test_explain_layer_on_ray_equals_one_process(cluster, tiny, tiny_scan, tmp_path):
    """N2G graphs of a layer's neurons fitted on the actor pool (the same chunks) equal the one-process graphs."""
    path = tiny_scan.save(tmp_path / "scan")
    neurons = [int(n) for n in np.argsort(-tiny_scan.stats.max[0])[:6]]
    kw = dict(k=8, seed=0, chunk_size=3, progress=False)
    local = ml.n2g.explain_layer(tiny, tiny_scan, 0, neurons, **kw)
    remote = ml.n2g.explain_layer("tiny", path, 0, neurons, engine="ray", workers=2, out_dir=tmp_path / "n2g", **kw)
    assert sorted(remote) == sorted(local) == sorted(neurons)
    for n in neurons:
        assert remote[n].to_json() == local[n].to_json(), n
    back = ml.n2g.load_layer(tmp_path / "n2g", 0)
    assert sorted(back) == sorted(neurons)
    with pytest.raises(ValueError, match="saved scan"):
        ml.n2g.explain_layer("tiny", tiny_scan, 0, neurons, engine="ray", **kw)
