"""Neuroscope lens: the thresholded view's escaping, the static site's data files (layout, manifest, what the records
hold and that they decode to the scan's tokens and activations, determinism, refusals before any work, backends,
an encoder) and the CLI. The viewer itself is tested in a real browser (tests/render/test_site_viewer.py)."""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest

import mri_lens as ml
from mri_lens.cli import main
from mri_lens.lenses.neuroscope.site_data import ALPHABET, Q
from mri_lens.render.links import SiteLinks

from corpora import NEUROSCOPE_PROMPTS as PROMPTS
from corpora import PROSE

NASTY = ["<script>alert(1)</script> &amp; \"quoted\" 'single'\nnew line <b>bold</b>",
         "x = '<script>alert(1)</script>'  # &amp; \"\"\n\tif a < b and c > d:\n        pass"]
HTTP_REF = re.compile(r"""(?:src|href)\s*=\s*["']?https?:|url\(\s*["']?https?:|@import\s+["']?https?:""", re.I)


def read_data(path) -> list:
    """The arguments of the one loader call a data file makes: ``MRI_SITE.name(arg, ...);``."""
    text = open(path, encoding="utf-8").read()
    m = re.fullmatch(r"MRI_SITE\.(\w+)\((.*)\);\n", text, re.S)
    assert m, text[:80]
    return json.loads("[" + m.group(2) + "]")


def decode_ints(s: str, width: int) -> list[int]:
    out = []
    for i in range(0, len(s), width):
        v = 0
        for ch in s[i:i + width]:
            v = v * len(ALPHABET) + ALPHABET.index(ch)
        out.append(v)
    return out


def records(site_dir, layer: int, chunk: int = 0) -> dict[int, dict]:
    return {r["n"]: r for r in read_data(os.path.join(site_dir, "data", f"L{layer}_{chunk}.js"))[2]}


def test_escaping_everywhere(tiny, tmp_path):
    view = ml.neuroscope.view(tiny, NASTY, hi=-100.0, max_neurons_per_layer=2, layers=[0])
    path = view.save_html(tmp_path / "view.html")
    cv = view.circuitsvis(0)
    props = cv.src.split("CircuitsVis.TextNeuronActivations,")[1]  # the offline bundle comes before the props
    assert "&lt;" in props and '" &amp;"' in props and '"<' not in props and '" <' not in props
    assert "unpkg.com" not in cv.src  # never the CDN version
    scan = ml.scan(tiny, NASTY * 3, batch_size=6, pooling=("mean", "max"), progress=False, layers=[0])
    index = ml.neuroscope.site(scan, tiny, tmp_path / "site", neurons=range(4), k=3, progress=False)
    html = open(index, encoding="utf-8").read()
    assert re.findall(r"<script[^>]*src='([^']+)'", html) == ["assets/viewer.js", "data/tokens.js", "data/index.js"]
    assert "<script>" not in html  # no inline script: the page holds no data
    for root, _, files in os.walk(tmp_path / "site"):
        for f in files:
            assert not HTTP_REF.search(open(os.path.join(root, f), encoding="utf-8").read()), f
    tokens = read_data(tmp_path / "site" / "data" / "tokens.js")[0]
    assert "script" in tokens and "<" in "".join(tokens)  # raw text: the viewer inserts it with textContent


@pytest.fixture(scope="module")
def small_site(tiny, tiny_scan, tmp_path_factory):
    out = tmp_path_factory.mktemp("site") / "site"
    index = ml.neuroscope.site(tiny_scan, tiny, out, layers=[0, 1], neurons=range(6), k=5, progress=False)
    return out, index


def test_layout_and_manifest(small_site, tiny_scan):
    out, index = small_site
    assert index == os.path.join(str(out), "index.html")
    assert sorted(os.listdir(out)) == ["assets", "data", "index.html", "manifest.json"]
    assert sorted(os.listdir(out / "assets")) == ["viewer.css", "viewer.js"]
    assert sorted(os.listdir(out / "data")) == ["D0.js", "L0_0.js", "L1_0.js", "index.js", "tokens.js"]
    manifest = json.load(open(out / "manifest.json"))
    assert manifest["kind"] == "mri_lens.site" and manifest["layers"] == {"0": list(range(6)), "1": list(range(6))}
    links = SiteLinks.from_site(out, "../site")
    assert links.href(1, 5) == "../site/index.html#L1/N5" and links.href(1, 6) is None
    meta = read_data(out / "data" / "index.js")[0]
    assert meta["layers"] == [0, 1] and meta["ids"] == list(range(6)) and len(meta["rows"]["1"]) == 6
    assert meta["label_names"] == tiny_scan.label_names and meta["categories"]["names"] == tiny_scan.label_names


def test_records_decode_to_the_scan(small_site, tiny, tiny_scan):
    out, _ = small_site
    meta = read_data(out / "data" / "index.js")[0]
    tokens = read_data(out / "data" / "tokens.js")[0]
    rec = records(out, 1)[3]
    top = rec["ex"]["top"]
    assert [e[0] for e in top] == tiny_scan.top.docs[1, 3, :5].tolist()
    assert abs(top[0][3] - float(tiny_scan.top.values[1, 3, 0])) < 1e-3 * abs(top[0][3]) + 1e-6
    assert set(rec["ex"]) == {"top", "b0", "b1", "b2", "rnd"} and len(rec["ex"]["rnd"]) == 5
    doc, start, at, vmax, vmin, scale, toks, acts = top[1]
    ids = decode_ints(toks, meta["width"])
    shown = tiny_scan.str_tokens(doc)[start:start + len(ids)]
    assert [tokens[i] for i in ids] == shown and len(acts) == len(ids)
    real = tiny_scan.token_activations(tiny, [doc], 1)[0][start:start + len(ids), 3]
    decoded = np.array([(ALPHABET.index(c) - Q) / Q * scale for c in acts])
    assert np.abs(decoded - real).max() <= scale / Q  # one level of the encoding at most
    assert int(np.argmax(real)) == at and abs(real.max() - vmax) < 1e-3 * abs(vmax) + 1e-6
    full = read_data(out / "data" / "D0.js")[1][str(doc)]
    assert [tokens[i] for i in decode_ints(full, meta["width"])] == tiny_scan.str_tokens(doc)
    # what the page shows beside the examples
    assert len(rec["lg"][0]) == 10 and len(rec["lg"][2]) == 5 and rec["lg"][1] == sorted(rec["lg"][1], reverse=True)
    assert len(rec["sw"][0]) == 8 and len(rec["sa"][0]) == 8 and len(rec["cm"]) == len(tiny_scan.label_names)
    assert isinstance(rec["ab"], float) and rec["s"][0] == pytest.approx(float(tiny_scan.stats.max[1, 3]), rel=1e-3)
    assert sum(rec["h"][1:]) == tiny_scan.stats.count
    row = [r for r in meta["rows"]["1"] if r[0] == 3][0]
    assert row[6] == rec["tt"] and sum(rec["tt"][1::2]) == 5


def test_determinism_and_stale_files(tiny, tiny_scan, small_site, tmp_path):
    out, _ = small_site
    again = ml.neuroscope.site(tiny_scan, tiny, tmp_path / "b", layers=[0, 1], neurons=range(6), k=5, progress=False)
    for root, _, files in os.walk(out):
        for f in files:
            pa = os.path.join(root, f)
            pb = pa.replace(str(out), str(tmp_path / "b"))
            assert open(pa, "rb").read() == open(pb, "rb").read(), f
    # a smaller site into the same directory leaves none of the larger one's data files
    ml.neuroscope.site(tiny_scan, tiny, tmp_path / "b", layers=[1], neurons=[2], k=2, ablation=False,
                       progress=False)
    assert sorted(os.listdir(tmp_path / "b" / "data")) == ["D0.js", "L1_0.js", "index.js", "tokens.js"]
    assert read_data(tmp_path / "b" / "data" / "index.js")[0]["ablation"] == "off"
    assert "ab" not in records(tmp_path / "b", 1)[2]
    assert again and ml.neuroscope.view(tiny, PROMPTS, hi=1.0).to_html() == \
        ml.neuroscope.view(tiny, PROMPTS, hi=1.0).to_html()


@pytest.mark.parametrize("kwargs, error, match", [
    ({"layers": [9]}, ml.ScanError, "layer 9 was not scanned"),
    ({"neurons": [600]}, ml.ScanError, "neurons must be in"),
    ({"k": 0}, ValueError, "k must be"),
    ({"links": lambda l, n: [("evil", "javascript:alert(1)")]}, ValueError, "scheme 'javascript' is not allowed"),
])
def test_refused_before_any_work(tiny, tiny_scan, tmp_path, kwargs, error, match):
    calls = []
    hook = ("blocks.0.hook_resid_pre", lambda act, hook: calls.append(1))
    with tiny.hooks(fwd_hooks=[hook]), pytest.raises(error, match=match):
        ml.neuroscope.site(tiny_scan, tiny, tmp_path / "x", progress=False, **kwargs)
    assert not calls and not os.path.exists(tmp_path / "x")  # no forward pass, no directory


def test_hf_backend_gives_the_same_data(tiny, tiny_scan, tmp_path):
    hf = ml.models.tiny_lm(device="cpu", backend="hf")
    ml.neuroscope.site(tiny_scan, tiny, tmp_path / "tl", layers=[0], neurons=[7], k=3, progress=False)
    ml.neuroscope.site(tiny_scan, hf, tmp_path / "hf", layers=[0], neurons=[7], k=3, progress=False)
    a, b = records(tmp_path / "tl", 0)[7], records(tmp_path / "hf", 0)[7]
    assert a["lg"] == b["lg"] and a["sw"] == b["sw"] and a["sa"] == b["sa"] and a["tt"] == b["tt"]
    for sec in a["ex"]:
        for x, y in zip(a["ex"][sec], b["ex"][sec]):
            assert x[:3] + x[6:7] == y[:3] + y[6:7]  # same documents, snippets, max positions, tokens
            assert x[3] == pytest.approx(y[3], rel=1e-3, abs=1e-5)
    assert a["ab"] == pytest.approx(b["ab"], rel=1e-2, abs=1e-5)
    assert read_data(tmp_path / "tl" / "data" / "tokens.js") == read_data(tmp_path / "hf" / "data" / "tokens.js")


def test_encoder_site_without_logit_effects(minilm, tmp_path):
    scan = ml.scan(minilm, PROSE[:6], layers=[0], pooling=("mean", "max"), progress=False)
    ml.neuroscope.site(scan, minilm, tmp_path / "site", neurons=[0, 1], k=2, progress=False)
    meta = read_data(tmp_path / "site" / "data" / "index.js")[0]
    assert "encoder has no unembedding" in meta["no_logits"] and meta["ablation"] == "not causal"
    rec = records(tmp_path / "site", 0)[0]
    assert "lg" not in rec and rec.get("ab") is None and len(rec["ex"]["top"]) == 2 and "sw" in rec


def test_cli_neuroscope_and_site(tiny_scan, tmp_path, capsys):
    out = tmp_path / "view.html"
    assert main(["neuroscope", "--model", "tiny", "--prompt", "Sequence: red, green, blue", "--out", str(out),
                 "--hi", "1", "--layers", "0-1"]) == 0
    assert "Layer 1" in out.read_text(encoding="utf-8")
    scan_dir = tiny_scan.save(tmp_path / "scan")
    assert main(["site", "--scan", scan_dir, "--model", "tiny", "--out", str(tmp_path / "site"), "--layers", "0",
                 "--neurons", "0-2", "--top-k", "3"]) == 0
    assert json.load(open(tmp_path / "site" / "manifest.json"))["layers"] == {"0": [0, 1, 2]}
    assert main(["neuroscope", "--model", "tiny", "--out", str(out), "--relative", "0.99"]) == 2
    assert "needs --scan" in capsys.readouterr().err
