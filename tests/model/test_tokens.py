"""Token display (mri_lens.model.tokens) and special-token strings in texts (ModelAdapter.encode).

Display: a character split over byte-level tokens is shown by the token it ends in, a token in which no character
ends shows its bytes as ``<0xNN>``; nothing becomes U+FFFD, and per-token strings stay one per token id.
Special tokens: a special token's string inside a text is encoded as plain text, never as the special token."""

from __future__ import annotations

import re

import numpy as np
import pytest

import mri_lens as ml
from mri_lens.model.adapter import SPECIAL_TOKENS_IN_TEXT, as_adapter
from mri_lens.model.tokens import byte_marker, display_tokens

from corpora import PROSE

BOS = "<|endoftext|>"
MARKER = re.compile(r"<0x[0-9A-F]{2}>")

# Texts whose characters byte-level BPE splits over several tokens (the tiny LM's small vocabulary splits most).
UNICODE_TEXTS = {
    "arabic": "مرحبا بالعالم، هذا نص عربي.",
    "emoji_zwj": "family 👩\u200d👩\u200d👧 thumbs 👍🏽 flag 🇵🇹 done",
    "combining": "e\u0301 a\u0308 n\u0303 o\u0302\u0323 end",
    "bom": "\ufeffBOM at the start and \ufeff inside",
    "rlo": "abc \u202edef ghi\u202c jkl",
    "clinical_pt_nl_zh": "Ação: paciënt é febril. 患者发烧三天。",
}


def _ids(adapter, text: str, **kw) -> list[int]:
    segs, _ = adapter.encode([text], **kw)
    return np.concatenate(segs[0]).tolist()


def _without_markers(s: str) -> str:
    return MARKER.sub("", s)


@pytest.fixture(scope="module")
def tiny_ad(tiny):
    return as_adapter(tiny)


@pytest.mark.parametrize("name", sorted(UNICODE_TEXTS))
def test_split_characters_survive(tiny_ad, name):
    text = UNICODE_TEXTS[name]
    ids = _ids(tiny_ad, text)
    toks = tiny_ad.str_tokens(ids)
    assert len(toks) == len(ids)
    assert not any("\ufffd" in t for t in toks), toks
    assert all(t for t in toks), "every token shows something"
    # joining gives the text back, once the markers of tokens in which no character ends are dropped
    assert _without_markers("".join(toks)) == BOS + text
    # a token showing markers shows nothing else: it is one in which no character ends
    assert all(re.fullmatch(r"(<0x[0-9A-F]{2}>)+", t) or not MARKER.search(t) for t in toks), toks


def test_a_split_emoji_is_shown_by_the_token_it_ends_in(tiny_ad):
    ids = _ids(tiny_ad, "👩")
    pieces = tiny_ad.tokenizer.convert_ids_to_tokens(ids[1:])
    assert len(pieces) == 4  # the tiny LM's vocabulary has one token per byte of this emoji
    assert tiny_ad.str_tokens(ids) == [BOS, "<0xF0>", "<0x9F>", "<0x91>", "👩"]
    assert byte_marker("👩".encode()[:3]) == "<0xF0><0x9F><0x91>"


def test_a_character_split_by_a_window_boundary_is_still_shown(tiny_ad):
    """Windows each start with BOS: a character cut by a window boundary is shown by the token it ends in, the
    BOS between its bytes does not break it."""
    text = "ab 👩‍👧 مرحبا Ação"
    segs, _ = tiny_ad.encode([text], max_length=4, overflow="windows")
    ids = np.concatenate(segs[0]).tolist()
    assert ids.count(0) == len(segs[0]) > 5
    toks = tiny_ad.str_tokens(ids)
    assert not any("\ufffd" in t for t in toks)
    assert _without_markers("".join(toks)).replace(BOS, "") == text


def test_a_text_cut_inside_a_character_shows_its_bytes(tiny_ad):
    ids = _ids(tiny_ad, "ok 👩 more")
    cut = ids[:ids.index(_ids(tiny_ad, "ok 👩")[-1])]  # up to the emoji's last byte, excluded
    toks = tiny_ad.str_tokens(cut)
    assert toks[-3:] == ["<0xF0>", "<0x9F>", "<0x91>"]
    assert not any("\ufffd" in t for t in toks)


def test_ascii_text_is_unchanged(tiny_ad):
    """Whole-character tokens decode exactly as the tokenizer decodes each alone, and join to the text."""
    backend = tiny_ad.tokenizer.backend_tokenizer
    for text in PROSE[:10]:
        ids = _ids(tiny_ad, text)
        toks = tiny_ad.str_tokens(ids)
        assert toks == [backend.decode([i], skip_special_tokens=False) for i in ids]
        assert "".join(toks) == BOS + text


def test_separate_vocabulary_entries_are_shown_each_on_its_own(tiny_ad):
    """``sequence=False`` (top logit tokens): two byte tokens that happen to form a character stay two bytes."""
    ids = _ids(tiny_ad, "ا")[1:]  # U+0627 = D8 A7, one token per byte in the tiny LM
    assert len(ids) == 2
    assert tiny_ad.str_tokens(ids) == ["<0xD8>", "ا"]
    assert tiny_ad.str_tokens(ids, sequence=False) == ["<0xD8>", "<0xA7>"]
    whole = _ids(tiny_ad, " the")[1:]
    assert tiny_ad.str_tokens(whole, sequence=False) == [" the"]


def test_wordpiece_shows_the_normalized_text(minilm):
    """MiniLM (uncased WordPiece): lower-cased, accents stripped, BOM and U+202E removed, characters outside
    its vocabulary (emoji, these CJK characters) as [UNK]."""
    ad = as_adapter(minilm)
    text = "Ação 👩 \ufeffPaciënt \u202eABC مرحبا 患者"
    toks = ad.str_tokens(_ids(ad, text))
    assert not any("\ufffd" in t for t in toks)
    assert "".join(toks) == "[CLS] acao [UNK] pacient abc مرحبا [UNK] [UNK] [SEP]"


def _byte_fallback_tokenizer():
    """A real SentencePiece-style tokenizer (BPE with byte fallback, Metaspace, the Llama 2 decoder chain), built
    in memory: the display's generic path."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for b in range(256):
        vocab[f"<0x{b:02X}>"] = len(vocab)
    for piece in ("▁", "a", "b", "▁a", "é", "▁é"):
        vocab[piece] = len(vocab)
    tok = Tokenizer(models.BPE(vocab, [("▁", "a"), ("▁", "é")], unk_token="<unk>", byte_fallback=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=False)
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    tok.add_special_tokens([AddedToken("<s>", special=True)])
    return tok


def test_byte_fallback_tokenizers_follow_the_same_rule():
    tok = _byte_fallback_tokenizer()
    text = "a 👩 é \u202eb 患"
    ids = [1] + tok.encode(text, add_special_tokens=False).ids
    toks = display_tokens(tok, ids)
    assert len(toks) == len(ids)
    assert toks[3:7] == ["<0xF0>", "<0x9F>", "<0x91>", "👩"]
    assert not any("\ufffd" in t for t in toks)
    assert _without_markers("".join(toks)) == tok.decode(ids, skip_special_tokens=False) == "<s> " + text


# ---------------------------------------------------------------------------------------------- scans and pages
@pytest.fixture(scope="module")
def unicode_scan(tiny):
    texts = list(UNICODE_TEXTS.values())
    return ml.scan(tiny, ml.Corpus(texts), top_k=len(texts), pooling=("mean", "max"), progress=False)


def test_scan_str_tokens_and_top_examples_keep_the_text(unicode_scan, tmp_path):
    texts = list(UNICODE_TEXTS.values())
    for doc, text in enumerate(texts):
        assert _without_markers("".join(unicode_scan.str_tokens(doc))) == BOS + text
    loaded = ml.Scan.load(unicode_scan.save(tmp_path / "scan"))  # the display from the stored tokenizer.json
    assert [loaded.str_tokens(d) for d in range(len(texts))] == [unicode_scan.str_tokens(d) for d in
                                                                 range(len(texts))]
    n_examples = 0
    for layer in unicode_scan.layers:
        for neuron in range(0, unicode_scan.d_mlp, 97):
            ex = unicode_scan.top_examples(layer, neuron)
            for i, doc in enumerate(ex.docs.tolist()):
                snip, at = ex.snippet(i, before=1000, after=1000)
                assert _without_markers("".join(snip)) == BOS + texts[doc]
                assert snip[at] == ex.max_tokens()[i] == unicode_scan.str_tokens(doc)[int(ex.positions[i])]
                n_examples += 1
            assert not any("\ufffd" in t for t in ex.max_tokens())
    assert n_examples > 0


# ---------------------------------------------------------------------------------------------- special tokens
@pytest.mark.parametrize("backend", ["transformer_lens", "hf"])
def test_special_token_strings_in_a_text_are_plain_text(tiny, backend):
    model = tiny if backend == "transformer_lens" else ml.models.tiny_lm(backend="hf", device="cpu")
    ad = as_adapter(model)
    texts = ["a <|endoftext|> b", BOS, f"x{BOS}{BOS}y"]
    segs, _ = ad.encode(texts)
    for text, seg in zip(texts, segs):
        ids = seg[0].tolist()
        assert ids[0] == 0 and 0 not in ids[1:], (text, ids)  # the one BOS is the adapter's own
        assert "".join(ad.str_tokens(ids)) == BOS + text  # and the text shows as written
    assert ad.describe()["special_tokens_in_text"] == SPECIAL_TOKENS_IN_TEXT == "text"


def test_encoder_special_token_strings_are_plain_text(minilm):
    ad = as_adapter(minilm)
    tok = ad.tokenizer
    ids = _ids(ad, "before [SEP] [CLS] [PAD] [MASK] after")
    assert ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id
    assert not set(ids[1:-1]) & {tok.cls_token_id, tok.sep_token_id, tok.pad_token_id, tok.mask_token_id}


def test_a_scan_records_the_choice_and_stores_no_injected_bos(tiny):
    s = ml.scan(tiny, ml.Corpus(["first part <|endoftext|> second part", "plain"]), progress=False)
    assert s.meta["special_tokens_in_text"] == "text"
    toks = s.tokens(0).tolist()
    assert toks[0] == 0 and 0 not in toks[1:]
    assert "".join(s.str_tokens(0)) == BOS + "first part <|endoftext|> second part"
