"""The command line, run in-process the way a user runs it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pandas as pd
import pytest

import mri_lens as ml
from mri_lens.cli import main

from corpora import PROSE, code_snippets


def test_scan_and_report(tmp_path, capsys):
    code = code_snippets(6)
    df = pd.DataFrame({"body": code + PROSE[:6], "kind": ["code"] * 6 + ["prose"] * 6})
    df.to_csv(tmp_path / "data.csv", index=False)
    out = tmp_path / "runs" / "x"
    assert main(["scan", "--model", "tiny", "--corpus", str(tmp_path / "data.csv"), "--text-col", "body",
                 "--label-col", "kind", "--out", str(out), "--layers", "0-1", "--quiet"]) == 0
    s = ml.Scan.load(out)
    assert s.layers == [0, 1] and s.n_docs == 12 and s.label_names == ["code", "prose"]
    assert main(["report", "--scan", str(out)]) == 0
    page = open(out / "report.html", encoding="utf-8").read()
    assert "Category differences" in page
    assert not re.search(r"<script[^>]+src=[\"']https?:", page)  # plotly.js is inline
    assert "saved to" in capsys.readouterr().out


def test_cli_errors_are_one_line(tmp_path, capsys):
    (tmp_path / "d.csv").write_text("text,label\nhello,a\n")
    code = main(["scan", "--model", "tiny", "--corpus", str(tmp_path / "d.csv"), "--label-col", "nope",
                 "--out", str(tmp_path / "o"), "--quiet"])
    assert code == 2
    assert "unknown label column 'nope'" in capsys.readouterr().err


def test_mri_command(tmp_path, tiny, tiny_scan, capsys):
    scan_dir = tiny_scan.save(tmp_path / "scan")
    out = tmp_path / "mri"
    assert main(["mri", "--scan", scan_dir, "--grid", "4", "--out", str(out), "--n-jobs", "1", "--min-weight", "2",
                 "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "region maps:" in printed and "graph:" in printed
    page = open(out / "index.html", encoding="utf-8").read()
    for section in ("Region images, all layers", "Co-activation graph", "Graph metrics", "enriched regions",
                    "separability probe"):
        assert section in page, section
    assert not re.search(r"<script[^>]+src=[\"']?https?:", page)
    maps = ml.mri.RegionMaps.load(out / "maps")
    assert maps.grid == 4 and maps.layers == tiny_scan.layers
    g = ml.mri.load_graph_json(out / "graph.json")
    assert all(isinstance(n, tuple) for n in g.nodes) and g.number_of_nodes() == 16 * len(maps.layers)
    assert (out / "graph.graphml").exists() and (out / "graph.gexf").exists()
    assert json.loads((out / "manifest.json").read_text())["format"] == "mri_lens.mri_page"  # claimed as ours
    assert main(["mri", "--scan", scan_dir, "--grid", "3", "--out", str(out), "--n-jobs", "1", "--min-weight", "2",
                 "--quiet"]) == 0  # the same --out again: our own MRI page directory is replaced
    assert ml.mri.RegionMaps.load(out / "maps").grid == 3
    assert main(["mri", "--scan", str(tmp_path / "missing"), "--quiet"]) == 2
    assert "not a saved" in capsys.readouterr().err


def test_mri_report_escapes_tokens(tmp_path, tiny):
    """A token like <script> in a region's top examples, or a category named like one, renders as text."""
    texts = [f"<script>alert({i})</script> def f(x): return x" for i in range(6)] + PROSE[:6]
    label = "</script><script>alert(2)</script>"  # a hostile category name, inside plotly's JSON and the tables
    s = ml.scan(tiny, ml.Corpus(texts, [label] * 6 + ["prose"] * 6), progress=False)
    maps = ml.mri.RegionMaps.fit(s, grid=3, seed=0, n_jobs=1)
    g = ml.mri.coactivation_graph(maps, min_weight=1)
    from mri_lens.render.report import write_mri_report

    page = open(write_mri_report(maps, g, s, tmp_path / "m.html"), encoding="utf-8").read()
    assert "<script>alert(" not in page and "</script><script>" not in page
    assert "&lt;" in page or "&#x27;&lt;" in page  # the tokens are there, escaped


@pytest.mark.slow
def test_demo_small(small_demo):
    """``mri-lens demo --limit 60`` (run once per session by the shared fixture, which checks its exit status;
    what it writes is checked in test_pipelines.py): it says where the report and the scan are."""
    printed = small_demo["stdout"]
    report = re.search(r"^report: (\S+)", printed, re.MULTILINE)
    assert report and report.group(1) == os.path.join(small_demo["out"], "index.html")
    assert f"saved scan: {os.path.join(small_demo['out'], 'scan')}\n" in printed


def test_compile_command_leaves_the_kernels_usable(capsys):
    from mri_lens.scanning import kernels as _kernels

    assert main(["compile"]) == 0
    out = capsys.readouterr().out
    assert "scan statistics kernel: compiled" in out and "umap-learn: compiled" in out
    assert _kernels._kernel is not None  # the scan's kernel is built (and cached on disk by numba)


# ---------------------------------------------------------------------------------------------- user mistakes
def _one_line_error(capsys, *, command: str | None = None) -> str:
    """The captured stderr: exactly one line, ``mri-lens[ <cmd>]: error: ...``, no traceback."""
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    prefix = f"mri-lens {command}: error: " if command else "mri-lens: error: "
    assert lines[0].startswith(prefix), err
    return lines[0]


@pytest.fixture
def no_model(monkeypatch):
    """Fail the test if a command loads a model: its arguments and --out must be checked first."""
    def fail(*a, **k):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr("mri_lens.cli._model", fail)


@pytest.fixture
def corpus_file(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text("".join(json.dumps({"text": t, "label": lab}) + "\n"
                            for t, lab in zip(PROSE[:2] + code_snippets(2, 80), ["prose"] * 2 + ["code"] * 2)),
                    encoding="utf-8")
    return str(path)


SCAN = ["scan", "--model", "tiny", "--corpus", "{corpus}", "--out", "{out}"]
SITE = ["site", "--scan", "{out}", "--model", "tiny", "--out", "{out}/site"]
EXPLAIN = ["explain", "--scan", "{out}", "--model", "tiny", "--layer", "0", "--out", "{out}/n2g"]
NEURO = ["neuroscope", "--model", "tiny", "--out", "{out}/v.html"]
MRI = ["mri", "--scan", "{out}"]
BAD_ARGS = [  # (argv, the message's telling part)
    (SCAN + ["--layers", "x"], "'x' is not a layer list"),
    (SCAN + ["--layers", "9-3"], "9-3: a range's start must not be above its end"),
    (SCAN + ["--layers=-1"], "-1: layer numbers must not be negative"),
    (SCAN + ["--layers", "-2"], "layer numbers must not be negative"),
    (SCAN + ["--layers", "0,,1"], "has an empty part"),
    (SCAN + ["--layers", ""], "empty layer list"),
    (SCAN + ["--batch-size", "0"], "argument --batch-size: must be a positive integer (1 or more), got 0"),
    (SCAN + ["--top-k", "0"], "argument --top-k: must be a positive integer"),
    (SCAN + ["--max-length", "0"], "argument --max-length: must be a positive integer"),
    (SCAN + ["--max-batch-tokens", "-1"], "argument --max-batch-tokens: must be 0 or more, got -1"),
    (SCAN + ["--batch-size", "many"], "'many' is not an integer"),
    (SCAN + ["--pooling", "median"], "unknown pooling 'median'; choose from mean,max,min,last"),
    (SCAN + ["--pooling", "mean,"], "has an empty part"),
    (SCAN + ["--overflow", "wrap"], "invalid choice: 'wrap'"),
    (["scan", "--model", "tiny"], "the following arguments are required: --corpus, --out"),
    (["report", "--scan", "{out}", "--categories", "a,,b"], "has an empty name"),
    (MRI + ["--grid", "0"], "argument --grid: must be a positive integer"),
    (MRI + ["--top-edges", "-1"], "argument --top-edges: must be 0 or more"),
    (MRI + ["--min-weight", "-1"], "argument --min-weight: must be 0 or more"),
    (MRI + ["--n-jobs", "0"], "argument --n-jobs: must be a number of worker processes"),
    (MRI + ["--seed", "-1"], "argument --seed: must be 0 or more"),
    (SITE + ["--layers", "x"], "not a layer list"),
    (SITE + ["--layers", "9-3"], "9-3: a range's start must not be above its end"),
    (SITE + ["--neurons=-1"], "neuron numbers must not be negative"),
    (SITE + ["--neurons", "0,,5"], "has an empty part"),
    (SITE + ["--neurons", "5-2"], "5-2: a range's start must not be above its end"),
    (SITE + ["--top-k", "0"], "argument --top-k: must be a positive integer"),
    (EXPLAIN[:-4] + ["--layer", "x", "--out", "{out}/n2g"], "'x' is not a layer list"),
    (EXPLAIN[:-4] + ["--layer", "3-1", "--out", "{out}/n2g"], "3-1: a range's start must not be above its end"),
    (EXPLAIN + ["--neurons", "x"], "'x' is not a neuron list"),
    (EXPLAIN + ["--neurons=-3"], "neuron numbers must not be negative"),
    (EXPLAIN + ["--top-k", "1"], "argument --top-k: must be at least 2"),
    (EXPLAIN + ["--pivots", "0"], "argument --pivots: must be a positive integer"),
    (EXPLAIN + ["--substitutes", "-1"], "argument --substitutes: must be 0 or more"),
    (NEURO + ["--layers", "x"], "not a layer list"),
    (NEURO + ["--layers", "2-1"], "2-1: a range's start must not be above its end"),
    (NEURO + ["--max-neurons", "-1"], "argument --max-neurons: must be 0 or more"),
    (NEURO + ["--relative", "2"], "argument --relative: must be a quantile in (0.5, 1)"),
    (NEURO + ["--hi", "nan"], "argument --hi: must be a finite number"),
    (["demo", "--out", "{out}/demo", "--limit", "0"], "argument --limit: must be a positive integer"),
    (["demo", "--out", "{out}/demo", "--batch-size", "0"], "argument --batch-size: must be a positive integer"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
]


@pytest.mark.parametrize("argv,expected", BAD_ARGS, ids=[" ".join(a[:1] + a[-2:]) for a, _ in BAD_ARGS])
def test_bad_arguments_are_one_line_before_any_model_loads(argv, expected, tmp_path, corpus_file, no_model, capsys):
    argv = [a.format(corpus=corpus_file, out=tmp_path / "out") for a in argv]
    assert main(argv) == 2
    command = argv[0] if argv[0] != "frobnicate" else None
    assert expected in _one_line_error(capsys, command=command)
    assert not (tmp_path / "out").exists()  # nothing was written


BAD_VALUES = [  # checked by the command before any model loads (and before --out is written)
    (NEURO + ["--lo", "5", "--hi", "1"], "--lo must not be greater than --hi"),
    (NEURO + ["--select", "either", "--lo", "1", "--hi", "1"], "--select either needs --lo below --hi"),
    (NEURO + ["--relative", "0.99"], "--relative needs --scan"),
    (NEURO + ["--prompt", " "], "--prompt must not be empty"),
    (NEURO + ["--hi", "9"], "ColorBins needs lo <= orange <= red"),
]


@pytest.mark.parametrize("argv,expected", BAD_VALUES, ids=[" ".join(a[-4:]) for a, _ in BAD_VALUES])
def test_bad_values_are_one_line_before_any_model_loads(argv, expected, tmp_path, no_model, capsys):
    (tmp_path / "out").mkdir()
    assert main([a.format(out=tmp_path / "out") for a in argv]) == 2
    assert expected in _one_line_error(capsys)
    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.parametrize("argv, old", [(SITE + ["--k", "3"], "--k"), (EXPLAIN + ["--k", "4"], "--k"),
                                       (MRI + ["--top-k", "3"], "--top-k")])
def test_the_second_spellings_are_gone(argv, old, tmp_path, no_model, capsys):
    """One spelling per flag: examples per neuron are ``--top-k`` everywhere, the graph's edges ``--top-edges``."""
    assert main([a.format(out=tmp_path / "out") for a in argv]) == 2
    assert f"unrecognized arguments: {old}" in _one_line_error(capsys)


def test_scan_flags_are_checked_as_scan_options_and_engine_settings(tmp_path, corpus_file, no_model, capsys):
    argv = SCAN + ["--engine", "ray", "--connect-timeout", "0"]
    assert main([a.format(corpus=corpus_file, out=tmp_path / "out") for a in argv]) == 2
    assert "argument --connect-timeout: must be a positive number" in _one_line_error(capsys, command="scan")
    argv = SCAN + ["--gpus-per-worker", "-1"]
    assert main([a.format(corpus=corpus_file, out=tmp_path / "out") for a in argv]) == 2
    assert "argument --gpus-per-worker: must be a number >= 0" in _one_line_error(capsys, command="scan")
    assert not (tmp_path / "out").exists()


def test_a_rerun_of_a_finished_scan_says_nothing_was_computed(tmp_path, tiny, corpus_file, monkeypatch, capsys):
    monkeypatch.setattr("mri_lens.cli._model", lambda name, device: tiny)
    argv = ["scan", "--model", "tiny", "--corpus", corpus_file, "--out", str(tmp_path / "o"), "--shard-tokens", "20",
            "--batch-size", "1", "--quiet"]
    assert main(argv) == 0
    first = capsys.readouterr().out
    n = int(re.search(r"(\d+) of (\d+) shards computed now, 0 resumed", first)[2])
    assert n >= 2 and f"{n} of {n} shards computed now" in first
    assert main(argv) == 0
    again = capsys.readouterr().out
    assert "shards computed now" not in again
    assert f"already holds this scan, complete: nothing computed (all {n} shards were done)" in again


def test_pooling_names_match_the_scanner():
    from mri_lens import cli_args
    from mri_lens.scanning import options

    assert cli_args.POOLINGS is options.POOLINGS


def test_layers_beyond_the_model_are_one_line(tmp_path, tiny, corpus_file, monkeypatch, capsys):
    monkeypatch.setattr("mri_lens.cli._model", lambda name, device: tiny)
    assert main(["scan", "--model", "tiny", "--corpus", corpus_file, "--out", str(tmp_path / "o"), "--layers", "0-99",
                 "--quiet"]) == 2
    assert "layers must be in 0..3" in _one_line_error(capsys)


def test_unknown_model_is_one_line(tmp_path, corpus_file, capsys):
    assert main(["scan", "--model", "no-such-model-xyz", "--corpus", corpus_file, "--out", str(tmp_path / "o"),
                 "--quiet"]) == 2
    assert "cannot load model 'no-such-model-xyz': " in _one_line_error(capsys)
    assert not (tmp_path / "o").exists()


def test_bugs_keep_their_traceback(tmp_path, corpus_file, monkeypatch, capsys):
    argv = ["scan", "--model", "tiny", "--corpus", corpus_file, "--out", str(tmp_path / "o"), "--quiet"]

    def bug(*a, **k):
        raise AttributeError("a genuine bug")

    monkeypatch.setattr("mri_lens.cli._model", bug)
    with pytest.raises(AttributeError, match="a genuine bug"):
        main(argv)


def test_ctrl_c_is_one_line(tmp_path, corpus_file, monkeypatch, capsys):
    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr("mri_lens.cli._model", interrupted)
    assert main(["scan", "--model", "tiny", "--corpus", corpus_file, "--out", str(tmp_path / "o"), "--quiet"]) == 130
    err = capsys.readouterr().err
    assert err.splitlines() == ["mri-lens: interrupted"]


@pytest.mark.parametrize("name,content,expected", [
    ("missing.jsonl", None, "no such file: "),
    ("latin1.jsonl", '{"text": "caf\xe9"}\n'.encode("latin-1"), "latin1.jsonl:1 is not UTF-8 text (byte 0xe9"),
    ("latin1.csv", "text\ncaf\xe9\n".encode("latin-1"), "latin1.csv is not UTF-8 text (byte 0xe9"),
    ("broken.jsonl", b'{"text": "a"}\n{"text": \n', "broken.jsonl:2 is not valid JSON"),
    ("dir.jsonl", "dir", "cannot read "),
])
def test_bad_corpus_files_are_one_line(name, content, expected, tmp_path, no_model, capsys):
    path = tmp_path / name
    if content == "dir":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content)
    assert main(["scan", "--model", "tiny", "--corpus", str(path), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    assert expected in _one_line_error(capsys)
    with pytest.raises(ml.CorpusError, match=re.escape(expected)):
        (ml.Corpus.from_csv if name.endswith(".csv") else ml.Corpus.from_jsonl)(path)


@pytest.fixture
def saved_scan(tmp_path_factory, tiny_scan):
    return tiny_scan.save(tmp_path_factory.mktemp("saved") / "scan")


@pytest.mark.parametrize("argv,expected", [
    (["report", "--categories", "pos"], "unknown category 'pos'; the scan's categories are 'code', 'prose'"),
    (["report", "--categories", "pos,neg"], "unknown categories 'pos', 'neg'; the scan's categories are 'code', "
                                            "'prose'"),
    (["report", "--categories", "code"], "the report compares two different categories, got 1 ('code'); give two "
                                         "of 'code', 'prose'"),
    (["report", "--categories", "code,code"], "two different categories"),
    (["mri", "--categories", "pos", "--n-jobs", "1"], "unknown category 'pos'; the scan's categories are 'code', "
                                                      "'prose'"),
])
def test_unknown_categories_are_one_line(argv, expected, saved_scan, capsys):
    before = _tree(saved_scan)
    assert main(argv[:1] + ["--scan", saved_scan] + argv[1:]) == 2
    assert expected in _one_line_error(capsys)
    assert _tree(saved_scan) == before  # no report, no MRI directory


def test_category_differences_names_the_known_categories(tmp_path, tiny_scan):
    from mri_lens.lenses.mri import category_differences
    from mri_lens.render.report import write_scan_report

    with pytest.raises(ml.ScanError, match="unknown category 'pos'; the scan's categories are 'code', 'prose'"):
        category_differences(tiny_scan, "pos")
    with pytest.raises(ml.ScanError, match="two different categories"):
        category_differences(tiny_scan, "code", "code")
    with pytest.raises(ml.ScanError, match="got 1"):
        write_scan_report(tiny_scan, tmp_path / "r.html", categories=("code",))
    assert not (tmp_path / "r.html").exists()


# ---------------------------------------------------------------------------------------------- --out and --force
def _tree(root) -> dict[str, bytes | None]:
    """Every path under ``root`` (relative) with its bytes (None for a directory)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            out[os.path.relpath(os.path.join(dirpath, d), root)] = None
        for f in filenames:
            p = os.path.join(dirpath, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, root)] = fh.read()
    return out


@pytest.fixture
def user_dir(tmp_path):
    d = tmp_path / "userdir"
    (d / "sub").mkdir(parents=True)
    (d / "thesis.txt").write_text("four years of work\n")
    (d / "sub" / "data.bin").write_bytes(bytes(range(256)))
    return d


def test_scan_out_unwritable_fails_before_any_work(tmp_path, corpus_file, no_model, monkeypatch, capsys):
    def no_corpus(*a, **k):
        raise AssertionError("the corpus was read")

    monkeypatch.setattr("mri_lens.cli._corpus", no_corpus)
    assert main(["scan", "--model", "tiny", "--corpus", corpus_file, "--out", "/proc/forbidden", "--quiet"]) != 0
    assert "cannot write /proc/forbidden" in _one_line_error(capsys)


OUT_TARGETS = [  # (argv with {out} the refused path, refused kind: a directory or a file)
    (["scan", "--model", "tiny", "--corpus", "{corpus}", "--out", "{out}"], "dir"),
    (["report", "--scan", "{scan}", "--out", "{out}"], "file"),
    (["mri", "--scan", "{scan}", "--out", "{out}"], "dir"),
    (["site", "--scan", "{scan}", "--model", "tiny", "--out", "{out}"], "dir"),
    (["explain", "--scan", "{scan}", "--model", "tiny", "--layer", "0", "--out", "{out}"], "dir"),
    (["neuroscope", "--model", "tiny", "--out", "{out}"], "file"),
    (["demo", "--out", "{out}"], "dir"),
]


@pytest.mark.parametrize("argv,kind", OUT_TARGETS, ids=[a[0] for a, _ in OUT_TARGETS])
def test_out_holding_user_files_is_refused_before_any_work(argv, kind, tmp_path, user_dir, corpus_file, no_model,
                                                           monkeypatch, capsys):
    """A user directory (or file) at --out survives byte for byte; the command fails with one line before it loads
    a scan, a corpus or a model (the --scan given does not even exist)."""
    import mri_lens.model.bundled

    monkeypatch.setattr(mri_lens.model.bundled, "minilm", lambda *a, **k: pytest.fail("the demo model was loaded"))
    monkeypatch.setattr("mri_lens.data.datasets.drug_reviews", lambda *a, **k: pytest.fail("the demo corpus was read"))
    out = user_dir if kind == "dir" else user_dir / "thesis.txt"
    before = _tree(tmp_path)
    assert main([a.format(out=out, corpus=corpus_file, scan=tmp_path / "no-scan") for a in argv]) == 2
    line = _one_line_error(capsys)
    assert "refusing" in line and str(out) in line and "--force" in line
    assert _tree(tmp_path) == before


def test_out_dot_in_a_non_empty_working_directory_is_refused(user_dir, corpus_file, no_model, monkeypatch, capsys):
    monkeypatch.chdir(user_dir)
    before = _tree(user_dir)
    assert main(["scan", "--model", "tiny", "--corpus", corpus_file, "--out", ".", "--quiet"]) == 2
    assert "is not empty" in _one_line_error(capsys)
    assert _tree(user_dir) == before


def test_force_writes_beside_user_files_and_a_rescan_replaces_our_own(tmp_path, tiny, user_dir, corpus_file,
                                                                      monkeypatch, capsys):
    monkeypatch.setattr("mri_lens.cli._model", lambda name, device: tiny)
    before = _tree(user_dir)
    argv = ["scan", "--model", "tiny", "--corpus", corpus_file, "--out", str(user_dir), "--layers", "0", "--quiet"]
    assert main(argv + ["--force"]) == 0
    after = _tree(user_dir)
    assert {k: v for k, v in after.items() if k in before} == before  # every user file, byte for byte
    assert ml.Scan.load(user_dir).n_docs == 4
    # the same --out with other options: a scan directory resumes only its own plan, so another one is refused
    # (one line) unless --force replaces it; the user's files stay untouched either way
    capsys.readouterr()
    assert main(argv[:-3] + ["--layers", "1", "--quiet"]) == 2
    assert "another corpus, model or options" in _one_line_error(capsys)
    assert main(argv[:-3] + ["--layers", "1", "--quiet", "--force"]) == 0
    assert ml.Scan.load(user_dir).layers == [1]
    assert {k: v for k, v in _tree(user_dir).items() if k in before} == before
    # a plain scan directory, twice: the second run finds the finished scan of the same plan
    out = tmp_path / "again"
    for _ in range(2):
        assert main(["scan", "--model", "tiny", "--corpus", corpus_file, "--out", str(out), "--quiet"]) == 0
    assert ml.Scan.load(out).n_docs == 4
    assert capsys.readouterr().err == ""


def test_errors_in_a_real_process_are_one_line(tmp_path):
    """The console script, as a user runs it: one line on stderr, no traceback, exit status 2."""
    script = os.path.join(os.path.dirname(sys.executable), "mri-lens")
    cmd = [script] if os.path.exists(script) else [sys.executable, "-m", "mri_lens.cli"]
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    for args, expected in ((["--batch-size", "0"], "mri-lens scan: error: argument --batch-size"),
                           ([], "mri-lens: error: no such file: ")):
        p = subprocess.run(cmd + ["scan", "--model", "tiny", "--corpus", str(tmp_path / "missing.jsonl"),
                                  "--out", str(tmp_path / "o")] + args,
                           capture_output=True, text=True, env=env, timeout=300)
        assert p.returncode == 2, p.stderr
        assert len(p.stderr.splitlines()) == 1 and "Traceback" not in p.stderr, p.stderr
        assert p.stderr.startswith(expected), p.stderr


def test_find_ranks_the_neurons_of_a_token(tmp_path, code_scan, capsys):
    """`mri-lens find` prints (or writes as CSV) the table ml.neuroscope.find gives for the same scan."""
    import pandas as pd

    path = str(tmp_path / "scan")
    code_scan.save(path)
    want = ml.neuroscope.find(code_scan, tokens=[" except"], limit=5)
    assert main(["find", "--scan", path, "--token", " except", "--limit", "5",
                 "--csv", str(tmp_path / "f.csv")]) == 0
    got = pd.read_csv(tmp_path / "f.csv")
    assert got[["layer", "neuron"]].values.tolist() == want[["layer", "neuron"]].values.tolist()
    assert (int(got.layer[0]), int(got.neuron[0])) == (1, 88)
    capsys.readouterr()
    assert main(["find", "--scan", path, "--by", "max", "--layers", "2", "--limit", "3"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 4 and lines[0].split()[:2] == ["layer", "neuron"]
    assert {ln.split()[0] for ln in lines[1:]} == {"2"}


# ---------------------------------------------------------------------------------------------- papercuts
@pytest.mark.parametrize("argv,expected", [
    (["site", "--layers", "7"], "layer 7 was not scanned; this scan has layers [0, 1, 2, 3]"),
    (["site", "--layers", "0", "--neurons", "0,5000"], "neuron 5000 is beyond the scan's 512 neurons per layer"),
    (["explain", "--layer", "0,9"], "layer 9 was not scanned"),
    (["explain", "--layer", "0", "--neurons", "600"], "neuron 600 is beyond the scan's 512 neurons per layer"),
    (["neuroscope", "--layers", "8"], "layer 8 was not scanned"),
])
def test_layers_and_neurons_are_checked_against_the_scan_before_the_model_loads(argv, expected, saved_scan,
                                                                                 tmp_path, no_model, capsys):
    """``site --layers 7`` on a scan of layers 0-3 is one line, and no model was loaded to say so (``no_model``)."""
    out = ["--out", str(tmp_path / ("v.html" if argv[0] == "neuroscope" else "out"))]
    model = ["--model", "tiny"]
    assert main(argv[:1] + ["--scan", saved_scan] + model + argv[1:] + out) == 2
    assert expected in _one_line_error(capsys)
    assert not (tmp_path / "out").exists() and not (tmp_path / "v.html").exists()


@pytest.mark.parametrize("make,expected", [
    (lambda p: None, "no such directory (give the --out of mri-lens explain)"),
    (lambda p: (p.mkdir(), (p / "manifest.json").write_text('{"format": "mri_lens.site"}')),
     "is not an output directory of mri-lens explain"),
])
def test_site_n2g_must_be_an_explain_directory(make, expected, saved_scan, tmp_path, no_model, capsys):
    make(tmp_path / "n2g")
    assert main(["site", "--scan", saved_scan, "--model", "tiny", "--out", str(tmp_path / "site"),
                 "--n2g", str(tmp_path / "n2g")]) == 2
    assert expected in _one_line_error(capsys)
    assert not (tmp_path / "site").exists()


def test_explain_writes_pages_and_site_shows_its_graphs(saved_scan, tiny, tmp_path, monkeypatch, capsys):
    """``explain`` writes ``index.html`` (a row per neuron, linking to its card) and ``L0/index.html`` (each graph
    as SVG with its scores) beside the JSON; ``site --n2g`` puts those graphs on the neurons' pages."""
    monkeypatch.setattr("mri_lens.cli._model", lambda name, device: tiny)
    n2g = tmp_path / "n2g"
    assert main(["explain", "--scan", saved_scan, "--layer", "0", "--neurons", "0-1", "--top-k", "4",
                 "--augmenter", "none", "--quiet", "--out", str(n2g)]) == 0
    assert f"pages: {n2g / 'index.html'}" in capsys.readouterr().out
    graphs = ml.n2g.load_layer(n2g, 0)
    assert graphs
    index = (n2g / "index.html").read_text(encoding="utf-8")
    layer_page = (n2g / "L0" / "index.html").read_text(encoding="utf-8")
    for n in graphs:
        assert f"href='L0/index.html#N{n}'>L0/N{n}</a>" in index
        assert f"<h2 id='N{n}'>" in layer_page and f"L0 N{n}: context \u2192 firing token" in layer_page
    assert layer_page.count("<svg") == len(graphs) and "<script" not in layer_page + index  # offline, no script
    assert ml.n2g.load_layer(n2g, 0).keys() == graphs.keys()  # the pages sit beside the JSON, which still loads

    site = tmp_path / "site"
    assert main(["site", "--scan", saved_scan, "--layers", "0", "--neurons", "0-1", "--top-k", "3",
                 "--n2g", str(n2g), "--out", str(site)]) == 0
    written = "".join(p.read_text(encoding="utf-8", errors="replace") for p in site.rglob("*") if p.is_file())
    n = min(graphs)
    assert f"L0 N{n}: context" in written  # the graph's SVG is in the site's data

    # another layer into the same --out: the index keeps the layer explained before
    assert main(["explain", "--scan", saved_scan, "--layer", "1", "--neurons", "0", "--top-k", "4",
                 "--augmenter", "none", "--no-eval", "--quiet", "--out", str(n2g)]) == 0
    index = (n2g / "index.html").read_text(encoding="utf-8")
    assert f"href='L0/index.html#N{n}'" in index and "href='L1/index.html#N" in index
    assert (n2g / "L1" / "index.html").exists()


def test_cli_warnings_are_one_line_without_a_source_path(tmp_path, tiny, corpus_file, monkeypatch, capsys):
    import warnings

    monkeypatch.setattr("mri_lens.cli._model", lambda name, device: tiny)
    before = (warnings.showwarning, warnings.formatwarning)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        assert main(["scan", "--model", "tiny", "--corpus", corpus_file, "--out", str(tmp_path / "o"),
                     "--top-k", "50", "--layers", "0", "--quiet"]) == 0
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert any(ln.startswith("warning: top_k=50 is more than the corpus's 4 documents") for ln in lines), err
    assert all(ln.startswith("warning: ") for ln in lines), err
    assert ".py" not in err and "UserWarning" not in err
    assert (warnings.showwarning, warnings.formatwarning) == before  # restored after main


def test_a_rerun_of_a_finished_one_shard_scan_says_it_was_complete(tmp_path, tiny, corpus_file, monkeypatch,
                                                                   capsys):
    monkeypatch.setattr("mri_lens.cli._model", lambda name, device: tiny)
    argv = ["scan", "--model", "tiny", "--corpus", corpus_file, "--out", str(tmp_path / "o"), "--layers", "0",
            "--quiet"]
    assert main(argv) == 0
    assert "1 of 1 shards computed now" in capsys.readouterr().out
    assert main(argv) == 0
    again = capsys.readouterr().out
    assert "computed now" not in again
    assert "already holds this scan, complete: nothing computed (its one shard was done)" in again
