"""Token display: one string per token id, decoded byte-correctly, so that non-ASCII text survives (a leaf module).

A byte-level BPE tokenizer (GPT-2, Pythia, Llama 3, Qwen, the bundled tiny LM) may split one character over several
tokens: an Arabic letter, a CJK character or an emoji is 2 to 4 bytes of UTF-8, and a small vocabulary gives each
byte its own token. Decoding such a token alone gives U+FFFD. :func:`display_tokens` decodes the bytes of the whole
sequence instead and gives each token:

- the characters that **end** in it (whose last byte it holds): a causal model has seen the whole character from
  that token on;
- when no character ends in it (it holds only the first bytes of a character that a later token completes), its
  bytes, as ``<0xNN>`` markers (the notation of SentencePiece's byte tokens), so every token shows something;
- a byte that belongs to no complete character (a text cut inside a character by ``overflow="truncate"``) as a
  ``<0xNN>`` marker, on the token that holds it.

So ``"".join(display_tokens(...))`` is the text (special tokens included, as their content) with one ``<0xNN>``
marker per byte of each token in which no character ends, and exactly the text when every token ends on a character
boundary (all ASCII text, and most text with a large vocabulary). Per-token values still line up one to one with the
strings. Special and added tokens show their content and do not interrupt a character split around them (a window's
BOS inside a character). A text that itself contains ``<0xNN>`` reads the same as a marker.

WordPiece (BERT, MiniLM) tokens are whole characters of the *normalized* text, which is what is shown: an uncased
model's tokenizer lower-cases, strips accents (``é`` -> ``e``), removes control and format characters (a BOM,
U+202E) and gives ``[UNK]`` for a character outside its vocabulary (most emoji). Other tokenizers (SentencePiece with
byte fallback, Unigram) are decoded incrementally with the tokenizer's own decoder, by the same rule: a token shows
the text it completes, and a token that completes none shows its vocabulary piece (``<0xE5>`` for a byte token).

Display decoding runs for pages and top examples, never per scanned token.
"""

from __future__ import annotations

import json
from typing import Any, Sequence

__all__ = ["byte_marker", "display_tokens"]


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte-level alphabet: byte -> the printable character a byte-level BPE vocabulary writes for it."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = {}, 0
    for b in range(256):
        if b in printable:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + extra)
            extra += 1
    return chars


_BYTE_OF_CHAR: dict[str, int] = {c: b for b, c in _bytes_to_unicode().items()}


def byte_marker(data: bytes) -> str:
    """The display of bytes that are not a whole character: ``<0xNN>`` per byte (``b"\\xf0\\x9f"`` ->
    ``"<0xF0><0x9F>"``)."""
    return "".join(f"<0x{b:02X}>" for b in data)


def _decoder_kind(tokenizer: Any) -> str | None:
    dec = getattr(tokenizer, "decoder", None)
    if dec is None:
        return None
    try:
        return json.loads(dec.__getstate__()).get("type")
    except Exception:  # noqa: BLE001 - a decoder that does not describe itself: the generic path
        return None


def _added_contents(tokenizer: Any) -> dict[int, str]:
    """Added (special or not) token ids -> their content (shown as is, never byte-decoded)."""
    get = getattr(tokenizer, "get_added_tokens_decoder", None)
    if get is None:
        return {}
    return {int(i): t.content for i, t in get().items()}


def display_tokens(tokenizer: Any, ids: Sequence[int], *, sequence: bool = True) -> list[str]:
    """One display string per token id ``[n_tokens]`` (see the module docstring for the rule).

    ``tokenizer`` is a ``tokenizers.Tokenizer`` (a fast tokenizer's ``backend_tokenizer``, or one parsed from a
    scan's stored ``tokenizer.json``). ``sequence=False``: the ids are separate vocabulary entries (a neuron's top
    logit tokens, the tokens of a graph), each shown on its own: its whole characters, and its other bytes as
    ``<0xNN>`` markers.
    """
    ids = [int(i) for i in ids]
    if not sequence:
        return [display_tokens(tokenizer, [i])[0] for i in ids]
    model = tokenizer.model
    prefix = getattr(model, "continuing_subword_prefix", None)
    if type(model).__name__ == "WordPiece" and prefix:
        return _wordpiece_tokens(tokenizer, ids, prefix)
    if _decoder_kind(tokenizer) == "ByteLevel":
        return _byte_level_tokens(tokenizer, ids)
    return _incremental_tokens(tokenizer, ids)


def _wordpiece_tokens(tokenizer: Any, ids: list[int], prefix: str) -> list[str]:
    """WordPiece: a word-initial piece gets a leading space, a ``##`` continuation loses its prefix, special tokens
    stay as they are (the first token has no space)."""
    out = []
    for j, i in enumerate(ids):
        piece = tokenizer.id_to_token(i) or ""
        if piece.startswith(prefix):
            out.append(piece[len(prefix):])
        elif j == 0:
            out.append(piece)
        else:
            out.append(" " + piece)
    return out


def _token_bytes(piece: str) -> bytes:
    """A byte-level vocabulary piece as the bytes it stands for (as the ByteLevel decoder does: a piece with a
    character outside the byte alphabet stands for its own UTF-8)."""
    try:
        return bytes(_BYTE_OF_CHAR[c] for c in piece)
    except KeyError:
        return piece.encode("utf-8")


def _utf8_length(lead: int) -> int:
    """Length of the UTF-8 sequence a lead byte starts (0: not a lead byte)."""
    if lead < 0x80:
        return 1
    if 0xC2 <= lead <= 0xDF:
        return 2
    if 0xE0 <= lead <= 0xEF:
        return 3
    if 0xF0 <= lead <= 0xF4:
        return 4
    return 0


def _byte_level_tokens(tokenizer: Any, ids: list[int]) -> list[str]:
    """Byte-level BPE: the sequence's bytes decoded as a whole, each character given to the token it ends in."""
    added = _added_contents(tokenizer)
    data: list[bytes | None] = []  # per token: its bytes, or None for an added token (shown as its content)
    for i in ids:
        if i in added:
            data.append(None)
        else:
            data.append(_token_bytes(tokenizer.id_to_token(i) or ""))
    out: list[str] = []
    whole = True
    for i, b in zip(ids, data):
        if b is None:
            out.append(added[i])
            continue
        try:
            out.append(b.decode("utf-8"))
        except UnicodeDecodeError:
            whole = False
            break
    if whole:  # every token is whole characters: the common case
        return out
    return _assign_characters(ids, data, added)


def _assign_characters(ids: list[int], data: list[bytes | None], added: dict[int, str]) -> list[str]:
    """Characters split over tokens: decode the byte stream of the non-added tokens, give each character to the
    token holding its last byte, each stray byte to its own token as a marker, and its bytes as markers to a
    token in which nothing ends."""
    stream = bytearray()
    owner: list[int] = []
    for t, b in enumerate(data):
        if b:
            stream += b
            owner.extend([t] * len(b))
    shown: list[list[str]] = [[] for _ in ids]
    k, n = 0, len(stream)
    while k < n:
        size = _utf8_length(stream[k])
        ch = None
        if size and k + size <= n:
            try:
                ch = bytes(stream[k:k + size]).decode("utf-8")
            except UnicodeDecodeError:
                ch = None
        if ch is None:
            shown[owner[k]].append(byte_marker(bytes(stream[k:k + 1])))
            k += 1
        else:
            shown[owner[k + size - 1]].append(ch)
            k += size
    out = []
    for t, (i, b) in enumerate(zip(ids, data)):
        if b is None:
            out.append(added[i])
        elif shown[t]:
            out.append("".join(shown[t]))
        else:
            out.append(byte_marker(b))
    return out


def _incremental_tokens(tokenizer: Any, ids: list[int]) -> list[str]:
    """Any other tokenizer: its own decoder over a short sliding window (the text each token adds to the decoded
    prefix); a token after which the text ends inside a character (U+FFFD) shows its vocabulary piece."""
    out = [""] * len(ids)
    prefix_at = read_at = 0  # decode window start; end of the text already given out
    waiting: list[int] = []
    for t in range(len(ids)):
        before = tokenizer.decode(ids[prefix_at:read_at], skip_special_tokens=False) if read_at > prefix_at else ""
        now = tokenizer.decode(ids[prefix_at:t + 1], skip_special_tokens=False)
        if now.endswith("\ufffd") or len(now) <= len(before):
            waiting.append(t)
            continue
        out[t] = now[len(before):]
        for w in waiting:
            out[w] = tokenizer.id_to_token(ids[w]) or ""
        waiting = []
        prefix_at, read_at = read_at, t + 1
    for w in waiting:
        out[w] = tokenizer.id_to_token(ids[w]) or ""
    return out
