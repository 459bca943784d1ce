"""Token display: one string per token id such that joining them reads like the text (a leaf module)."""

from __future__ import annotations

from typing import Sequence

__all__ = ["display_tokens"]


def display_tokens(tokenizer, ids: Sequence[int]) -> list[str]:
    """One display string per token id such that ``"".join(...)`` reads like the text.

    ``tokenizer`` is a ``tokenizers.Tokenizer``. Byte-level BPE (GPT-2 style) tokens decode one by one with their
    spaces. WordPiece (BERT) tokens do not: a word-initial piece gets a leading space, a ``##`` continuation loses
    its prefix, special tokens stay as they are.
    """
    model = tokenizer.model
    prefix = getattr(model, "continuing_subword_prefix", None)
    if type(model).__name__ != "WordPiece" or not prefix:
        return [tokenizer.decode([int(i)], skip_special_tokens=False) for i in ids]
    out = []
    for j, i in enumerate(ids):
        piece = tokenizer.id_to_token(int(i)) or ""
        if piece.startswith(prefix):
            out.append(piece[len(prefix):])
        elif j == 0 or (piece.startswith("[") and piece.endswith("]")):
            out.append(piece if j == 0 else " " + piece)
        else:
            out.append(" " + piece)
    return out
