"""Model adapter: one duck-typed view of a TransformerLens model, whatever its version, or of a plain Hugging Face
model.

Accepts a TL 2.x/3.x ``HookedTransformer``, a TL 3.x/4.x ``TransformerBridge`` (neither class is imported at module
level), or a plain ``transformers`` model wrapped in :class:`HFModel` (a bare ``PreTrainedModel`` is wrapped
automatically, its tokenizer loaded from ``model.name_or_path``). The adapter owns tokenisation, so BOS handling
and padding are explicit and identical on every TL version and backend (TL's own defaults differ between versions:
see ``prepend_bos``).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np

from ..errors import ModelAdapterError
from .hf import HFModel, config_experts, down_projection_weight, hf_down_projections
from .tokens import display_tokens

__all__ = ["HookedModel", "ModelAdapter", "SPECIAL_TOKENS_IN_TEXT", "as_adapter"]

# How a special token's string inside a text is encoded, recorded in every scan as meta["special_tokens_in_text"]:
# "text" = as plain text, split like any other characters ("<|endoftext|>" in a document is never the BOS id).
SPECIAL_TOKENS_IN_TEXT = "text"


@runtime_checkable
class HookedModel(Protocol):
    """What mri_lens needs from a model: TL's shared surface on ``HookedTransformer`` and ``TransformerBridge``."""

    cfg: Any
    tokenizer: Any

    def run_with_hooks(self, *args: Any, **kwargs: Any) -> Any: ...


def _is_hf_pretrained(model: Any) -> bool:
    try:
        from transformers import PreTrainedModel
    except ImportError:
        return False
    return isinstance(model, PreTrainedModel)


@dataclass
class ModelAdapter:
    """A TransformerLens model plus the explicit choices a scan depends on.

    Parameters
    ----------
    model:
        ``HookedTransformer`` (TL 2/3), ``TransformerBridge`` (TL 3/4), or :class:`HFModel` (a bare
        ``transformers`` model is wrapped in one, its tokenizer loaded from ``model.name_or_path``).
    prepend_bos:
        Causal models: put the tokenizer's BOS token before every text. ``None`` means True when the tokenizer has a
        BOS token (GPT-2, Pythia, tiny LM). Passed explicitly because TL's default differs between versions.
        Encoder models (BERT) always get ``[CLS] ... [SEP]``; the value is recorded as True.
    padding_side:
        ``"right"`` (default; causal attention keeps real tokens independent of right pads) or ``"left"``.
        An attention mask is always passed, so both give the same activations on real tokens.
    hook_template:
        Hook whose output is "the neuron". ``None`` picks ``blocks.{layer}.mlp.hook_post``, or
        ``blocks.{layer}.mlp.hook_mid`` on SoLU models (the activation before SoLU's extra LayerNorm).
    """

    model: Any
    prepend_bos: bool | None = None
    padding_side: str = "right"
    hook_template: str | None = None

    def __post_init__(self) -> None:
        m = self.model
        if isinstance(m, ModelAdapter):
            raise ModelAdapterError("pass the model itself, not a ModelAdapter, or use as_adapter()")
        if _is_hf_pretrained(m):
            m = self.model = HFModel.from_model(m)
        required = ("cfg",) if isinstance(m, HFModel) else ("cfg", "run_with_hooks")
        for attr in required:
            if not hasattr(m, attr):
                raise ModelAdapterError(
                    f"{type(m).__name__} is not a TransformerLens model (no `{attr}`); pass a HookedTransformer, "
                    "a TransformerBridge or a transformers model (mri_lens.HFModel), or load one with "
                    "mri_lens.load_model()")
        if getattr(m, "tokenizer", None) is None:
            raise ModelAdapterError("the model has no tokenizer; load it with a tokenizer (model.set_tokenizer(...))")
        if self.padding_side not in ("left", "right"):
            raise ModelAdapterError(f"padding_side must be 'left' or 'right', got {self.padding_side!r}")
        cfg = m.cfg
        self.n_layers: int = int(cfg.n_layers)
        self.d_mlp: int | None = getattr(cfg, "d_mlp", None)
        self.n_ctx: int = int(getattr(cfg, "n_ctx", 0) or 0) or 1024
        self.is_causal: bool = getattr(cfg, "attention_dir", "causal") != "bidirectional"
        tok = m.tokenizer
        if self.is_causal:
            if self.prepend_bos is None:
                self.prepend_bos = tok.bos_token_id is not None
            if self.prepend_bos and tok.bos_token_id is None:
                raise ModelAdapterError("prepend_bos=True but the tokenizer has no BOS token")
            self._prefix = [int(tok.bos_token_id)] if self.prepend_bos else []
            self._suffix: list[int] = []
        else:
            if tok.cls_token_id is None or tok.sep_token_id is None:
                raise ModelAdapterError("encoder model whose tokenizer lacks [CLS]/[SEP] tokens")
            if self.padding_side == "left":
                # Encoders number positions from the first slot, pads included (wrong on TL 2's HookedEncoder).
                raise ModelAdapterError("left padding would shift an encoder's absolute positions; use "
                                        "padding_side='right' (the attention mask already hides the pads)")
            self.prepend_bos = True
            self._prefix, self._suffix = [int(tok.cls_token_id)], [int(tok.sep_token_id)]
        pad = tok.pad_token_id
        if pad is None:
            pad = tok.eos_token_id if tok.eos_token_id is not None else 0
        # Pad positions are excluded by the mask, never by id: GPT-2's pad id equals its BOS id.
        self.pad_token_id: int = int(pad)
        self.hook_template = self.hook_template or self._default_hook_template()
        self._check_hooks()

    # ------------------------------------------------------------------ model facts
    @property
    def architecture(self) -> str:
        cfg = self.model.cfg
        return str(getattr(cfg, "original_architecture", None) or getattr(cfg, "architecture", None)
                   or type(self.model).__name__)

    @property
    def model_id(self) -> str:
        name = str(getattr(self.model.cfg, "model_name", "") or "")
        # A local directory is recorded by its base name: saved results never carry a machine path.
        return os.path.basename(os.path.normpath(name)) if os.path.isabs(name) else name

    @property
    def is_hf(self) -> bool:
        """True for a plain Hugging Face model (:class:`HFModel`), captured by the ``"hf"`` backend."""
        return isinstance(self.model, HFModel)

    @property
    def family(self) -> str:
        """``"bridge"`` for TL >= 3 TransformerBridge, ``"hooked"`` for HookedTransformer / HookedEncoder,
        ``"hf"`` for a plain Hugging Face model."""
        if self.is_hf:
            return "hf"
        return "bridge" if "Bridge" in type(self.model).__name__ else "hooked"

    @property
    def device(self):
        """Where input tokens and masks go: a Hugging Face model's input embedding's device (with a
        ``device_map`` it need not hold the first parameter), else the model's first parameter's."""
        import torch

        if self.is_hf:
            return self.model.input_device
        try:
            return next(self.model.parameters()).device
        except (StopIteration, AttributeError, TypeError):
            return torch.device(getattr(self.model.cfg, "device", None) or "cpu")

    @property
    def mask_kwarg(self) -> str:
        """Name of the forward's attention-mask argument (TL 2's HookedEncoder calls it one_zero_attention_mask)."""
        import inspect

        try:
            params = inspect.signature(self.model.forward).parameters
        except (TypeError, ValueError):
            return "attention_mask"
        return "one_zero_attention_mask" if "one_zero_attention_mask" in params else "attention_mask"

    @property
    def n_special_prefix(self) -> int:
        """Number of special tokens put before the text (BOS or [CLS])."""
        return len(self._prefix)

    @property
    def special_prefix(self) -> list[int]:
        """Token ids put before every text: ``[BOS]`` (causal, ``prepend_bos``), ``[CLS]`` (encoders) or ``[]``."""
        return list(self._prefix)

    @property
    def special_suffix(self) -> list[int]:
        """Token ids put after every text: ``[SEP]`` for encoders, else ``[]``."""
        return list(self._suffix)

    # ------------------------------------------------------------------ weights (the only door to them)
    def input_embedding(self):
        """The token embedding matrix ``[d_vocab, d_model]`` (a torch tensor on the model's device, not a copy)."""
        m = self.model
        if self.is_hf:
            return m.model.get_input_embeddings().weight
        w = getattr(m, "W_E", None)
        if w is None:
            raise ModelAdapterError(f"{type(m).__name__} exposes no token embedding (W_E)")
        return w

    def neuron_output_weights(self, layer: int):
        """Each MLP neuron's output direction in the residual stream, ``[d_mlp, d_model]`` (TL's
        ``W_out[layer]``; for a Hugging Face model the down-projection's weight, transposed where it is stored
        ``[d_model, d_mlp]``). A torch tensor on the model's device."""
        layer = self.check_layers([layer])[0]
        if self.is_hf:
            return down_projection_weight(hf_down_projections(self.model.model, [layer], self.model.arch)[layer])
        w = getattr(self.model, "W_out", None)
        if w is None:
            raise ModelAdapterError(f"{type(self.model).__name__} exposes no MLP output weights (W_out)")
        return w[layer]

    def unembedding(self):
        """The unembedding ``[d_model, d_vocab]`` (TL's ``W_U``; for a Hugging Face model its output embedding, or
        the input embedding transposed where the two are tied, as in GPT-2). Raises
        :class:`~mri_lens.errors.ModelAdapterError` when the model has none (an encoder, a base model loaded
        without its untied head). The final LayerNorm is not included. A torch tensor on the model's device."""
        m = self.model
        if self.is_hf:
            hf = m.model
            head = hf.get_output_embeddings() if hasattr(hf, "get_output_embeddings") else None
            if head is not None:
                return head.weight.T
            if self.is_causal and getattr(hf.config, "tie_word_embeddings", False):
                return hf.get_input_embeddings().weight.T
            raise ModelAdapterError(f"the {type(hf).__name__} has no unembedding (a base model without a tied "
                                    "language-model head); load it with its head, e.g. AutoModelForCausalLM")
        if not self.is_causal:
            raise ModelAdapterError("an encoder has no unembedding to the vocabulary here")
        try:
            w = m.W_U
        except (AttributeError, KeyError, NotImplementedError):
            w = None
        if w is None:
            raise ModelAdapterError(f"{type(m).__name__} exposes no unembedding (W_U)")
        return w

    def hook_name(self, layer: int) -> str:
        return self.hook_template.format(layer=layer)

    def _hook_names(self) -> list[str]:
        hd = getattr(self.model, "hook_dict", None)
        return list(hd.keys()) if hd is not None else []

    def _default_hook_template(self) -> str:
        act = str(getattr(self.model.cfg, "act_fn", "") or "")
        names = set(self._hook_names())
        if act.startswith("solu") and "blocks.0.mlp.hook_mid" in names:
            return "blocks.{layer}.mlp.hook_mid"
        return "blocks.{layer}.mlp.hook_post"

    def _check_hooks(self) -> None:
        if self.is_hf:
            # raises when a module is missing
            hf_down_projections(self.model.model, range(self.n_layers), self.model.arch)
            return
        names = set(self._hook_names())
        moe = config_experts(self.model.cfg)
        if moe is not None:
            d_model = getattr(self.model.cfg, "d_model", None)
            where = (f"its mlp.hook_post is the block output (d_model={d_model}), not MLP neurons"
                     if "blocks.0.mlp.hook_post" in names else
                     "its MLP neurons are per expert (blocks.{l}.mlp.experts.{e}.hook_post), not one set per block")
            raise ModelAdapterError(
                f"{self.model_id or type(self.model).__name__} is a mixture-of-experts model ({moe[0]}={moe[1]}): "
                f"{where} (d_mlp={self.d_mlp} per expert); mri_lens scans dense MLPs only")
        missing = [self.hook_name(l) for l in range(self.n_layers) if self.hook_name(l) not in names]
        if missing or getattr(self.model.cfg, "attn_only", False):
            block0 = sorted((n for n in names if n.startswith("blocks.0.")), key=lambda n: ("mlp" not in n, n))
            raise ModelAdapterError(
                f"the model has no MLP neuron hook `{missing[0] if missing else self.hook_name(0)}`"
                f" ({len(missing)} of {self.n_layers} layers missing; attention-only models have no MLP neurons). "
                f"Hooks it has in block 0: {', '.join(block0[:40]) or 'none'}")

    def check_layers(self, layers: Sequence[int] | None) -> list[int]:
        """Validate layer indices; ``None`` means every layer. Returns a sorted, de-duplicated list."""
        if layers is None:
            return list(range(self.n_layers))
        if isinstance(layers, int):
            layers = [layers]
        out = sorted({int(l) for l in layers})
        bad = [l for l in out if not 0 <= l < self.n_layers]
        if bad or not out:
            raise ModelAdapterError(f"layers must be in 0..{self.n_layers - 1}, got {list(layers)}")
        return out

    # ------------------------------------------------------------------ tokenisation
    def encode(self, texts: Sequence[str], *, max_length: int | None = None,
               overflow: str = "truncate") -> tuple[list[list[np.ndarray]], int]:
        """Tokenise texts into model inputs (special tokens included).

        Returns ``(segments, n_truncated)``: ``segments[i]`` is the list of input sequences for text i (int32
        arrays): one sequence, or several windows when ``overflow="windows"``. Each sequence is at most
        ``max_length`` tokens and starts with BOS/[CLS] as configured (every window gets its own). Texts are
        tokenised in chunks and kept as int32 arrays, so a large corpus never exists as Python int lists.

        Texts are data: a special token's string inside a text (``"<|endoftext|>"``, ``"[SEP]"``) is encoded as
        plain text, split like any other characters, never as the special token (see
        :data:`SPECIAL_TOKENS_IN_TEXT`), so a corpus cannot put a BOS, EOS or pad token in the middle of a
        document. The only special tokens of a sequence are the ones the adapter adds on purpose.
        """
        if overflow not in ("truncate", "windows", "error"):
            raise ValueError(f"overflow must be 'truncate', 'windows' or 'error', got {overflow!r}")
        limit = self.max_length(max_length)
        room = limit - len(self._prefix) - len(self._suffix)
        if room < 1:
            raise ValueError(f"max_length={limit} leaves no room for text tokens")
        prefix = np.asarray(self._prefix, dtype=np.int32)
        suffix = np.asarray(self._suffix, dtype=np.int32)
        out: list[list[np.ndarray]] = []
        n_over = 0
        for start in range(0, len(texts), 512):
            for j, ids in enumerate(self._text_ids(list(texts[start:start + 512]))):
                ids = np.asarray(ids, dtype=np.int32)
                if len(ids) > room:
                    n_over += 1
                    if overflow == "error":
                        raise ValueError(f"text {start + j} has {len(ids)} tokens, more than max_length={limit} "
                                         "allows")
                    chunks = [ids[s:s + room] for s in range(0, len(ids), room)] if overflow == "windows" \
                        else [ids[:room]]
                else:
                    chunks = [ids]
                out.append([np.concatenate([prefix, c, suffix]) for c in chunks])
        return out, n_over

    def _text_ids(self, texts: list[str]) -> list[list[int]]:
        """Token ids of ``texts`` (no special tokens added), special-token strings in them encoded as plain text."""
        encode = self.__dict__.get("_encode_as_text")
        if encode is None:
            encode = self.__dict__["_encode_as_text"] = _text_encoder(self.model.tokenizer, self._prefix
                                                                      + self._suffix)
        return encode(texts)

    def max_length(self, max_length: int | None = None) -> int:
        if max_length is None:
            return self.n_ctx
        if max_length < 1:
            raise ValueError(f"max_length must be positive, got {max_length}")
        if max_length > self.n_ctx:
            warnings.warn(f"max_length={max_length} exceeds the model's context ({self.n_ctx}); using {self.n_ctx}",
                          stacklevel=3)
            return self.n_ctx
        return int(max_length)

    def pad_batch(self, seqs: Sequence[Sequence[int]]):
        """Pad sequences into ``(tokens [batch, pos], attention_mask [batch, pos], starts [batch])`` on the model's
        device; ``starts[i]`` is the position of sequence i's first token (non-zero only with left padding)."""
        import torch

        width = max(len(s) for s in seqs)
        tokens = torch.full((len(seqs), width), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        starts = torch.zeros(len(seqs), dtype=torch.long)
        for i, s in enumerate(seqs):
            n = len(s)
            start = width - n if self.padding_side == "left" else 0
            tokens[i, start:start + n] = torch.as_tensor(np.asarray(s, dtype=np.int64))
            mask[i, start:start + n] = 1
            starts[i] = start
        dev = self.device
        return tokens.to(dev), mask.to(dev), starts

    @property
    def tokenizer(self) -> Any:
        """The model's Hugging Face tokenizer (the same object for TL 2, TL 4 and HF models)."""
        return self.model.tokenizer

    def str_tokens(self, ids: Sequence[int], *, sequence: bool = True) -> list[str]:
        """One display string per token ``[n_tokens]``, decoded byte-correctly: a character split over several
        tokens is shown by the token it ends in, a token in which no character ends shows its bytes as
        ``<0xNN>`` (see :mod:`mri_lens.model.tokens`). ``sequence=False`` for separate vocabulary entries (top
        logit tokens), each shown on its own."""
        backend = getattr(self.tokenizer, "backend_tokenizer", None)
        if backend is None:
            return display_tokens(_SlowTokenizer(self.tokenizer), ids, sequence=sequence)
        return display_tokens(backend, ids, sequence=sequence)

    def tokenizer_json(self) -> str | None:
        """The fast tokenizer's JSON, stored with scans so tokens can be shown without the model."""
        backend = getattr(self.tokenizer, "backend_tokenizer", None)
        return backend.to_str() if backend is not None else None

    def describe(self) -> dict[str, Any]:
        """Facts recorded in saved results."""
        return {
            "model_id": self.model_id, "architecture": self.architecture,
            "model_class": getattr(self.model, "model_class", type(self.model).__name__),
            "n_layers": self.n_layers, "d_mlp": self.d_mlp, "n_ctx": self.n_ctx, "is_causal": self.is_causal,
            "hook_template": self.hook_template, "prepend_bos": bool(self.prepend_bos),
            "special_prefix": list(self._prefix), "special_suffix": list(self._suffix),
            "padding_side": self.padding_side, "pad_token_id": self.pad_token_id,
            "special_tokens_in_text": SPECIAL_TOKENS_IN_TEXT,
        }


class _SlowTokenizer:
    """A slow (Python) Hugging Face tokenizer seen through the few ``tokenizers.Tokenizer`` methods that
    :func:`~mri_lens.model.tokens.display_tokens` uses (its generic, incremental path)."""

    def __init__(self, tok: Any) -> None:
        self.tok, self.model, self.decoder = tok, None, None

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        return self.tok.decode(list(ids), skip_special_tokens=skip_special_tokens,
                               clean_up_tokenization_spaces=False)

    def id_to_token(self, i: int) -> str | None:
        return self.tok.convert_ids_to_tokens(int(i))


def _keeps_specials_as_text(encode: Any, probes: list[tuple[str, int]]) -> bool:
    """True when ``encode`` turns none of the probe strings (special tokens' contents) into their ids."""
    try:
        got = encode([f"a {content} a" for content, _ in probes])
    except TypeError:  # an older transformers: no split_special_tokens
        return False
    return not any(i in set(ids) for (_, i), ids in zip(probes, got))


def _text_encoder(tok: Any, own_specials: Sequence[int]):
    """``texts -> ids`` that encodes special-token strings in a text as plain text (:data:`SPECIAL_TOKENS_IN_TEXT`).

    Tries the tokenizer's ``split_special_tokens`` (transformers >= 4.42, and slow tokenizers), then a copy of its
    fast backend with ``encode_special_tokens`` on; checked on the adapter's own special tokens (BOS, [CLS],
    [SEP]). Where neither works, texts holding a special token's string are refused (never silently encoded as it).
    """
    ids_of = dict(zip(tok.all_special_tokens, tok.all_special_ids))
    probes = [(c, int(i)) for c, i in ids_of.items() if int(i) in set(own_specials)]
    if not probes:
        probes = [(c, int(i)) for c, i in ids_of.items() if i != tok.unk_token_id][:1]

    def split_kwarg(texts: list[str]) -> list[list[int]]:
        return tok(texts, add_special_tokens=False, split_special_tokens=True)["input_ids"]

    if not probes or _keeps_specials_as_text(split_kwarg, probes):
        return split_kwarg if probes else (lambda texts: tok(texts, add_special_tokens=False)["input_ids"])
    backend = getattr(tok, "backend_tokenizer", None)
    if backend is not None and hasattr(backend, "encode_special_tokens"):
        copy = type(backend).from_str(backend.to_str())
        copy.encode_special_tokens = True

        def split_backend(texts: list[str]) -> list[list[int]]:
            return [e.ids for e in copy.encode_batch(texts, add_special_tokens=False)]

        if _keeps_specials_as_text(split_backend, probes):
            return split_backend
    specials = [c for c in ids_of if c]

    def refuse_specials(texts: list[str]) -> list[list[int]]:
        for text in texts:
            found = next((c for c in specials if c in text), None)
            if found is not None:
                raise ModelAdapterError(
                    f"a text holds the special token string {found!r} and this tokenizer cannot encode it as plain "
                    "text (upgrade transformers to >= 4.42 for split_special_tokens); remove it from the text")
        return tok(texts, add_special_tokens=False)["input_ids"]

    return refuse_specials


def as_adapter(model: Any, **kwargs: Any) -> ModelAdapter:
    """Wrap ``model`` (or return an existing adapter, refusing conflicting options)."""
    if isinstance(model, ModelAdapter):
        for k, v in kwargs.items():
            if v is not None and getattr(model, k) != v:
                raise ModelAdapterError(f"adapter already has {k}={getattr(model, k)!r}; got {v!r}")
        return model
    return ModelAdapter(model, **{k: v for k, v in kwargs.items() if v is not None})


