"""Model adapter: one duck-typed view of a TransformerLens model, whatever its version, or of a plain Hugging Face
model.

Accepts a TL 2.x/3.x ``HookedTransformer``, a TL 3.x/4.x ``TransformerBridge`` (neither class is imported at module
level), or a plain ``transformers`` model wrapped in :class:`HFModel` (a bare ``PreTrainedModel`` is wrapped
automatically, its tokenizer loaded from ``model.name_or_path``). The adapter owns tokenisation, so BOS handling
and padding are explicit and identical on every TL version and backend (TL's own defaults differ between versions:
see ``prepend_bos``).
"""

from __future__ import annotations

import importlib.metadata
import os
import warnings
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np

from .errors import ModelAdapterError

__all__ = ["HFModel", "HookedModel", "ModelAdapter", "as_adapter", "load_model", "library_versions",
           "tl_major_version"]

# Short names users type in notebooks, mapped to Hugging Face ids for the bridge loader (TL >= 3).
HUB_ALIASES = {
    "gpt2-small": "gpt2",
    "gpt2-medium": "gpt2-medium",
    "pythia-70m": "EleutherAI/pythia-70m",
    "pythia-160m": "EleutherAI/pythia-160m",
    "gelu-1l": "NeelNanda/GELU_1L512W_C4_Code",
    "gelu-2l": "NeelNanda/GELU_2L512W_C4_Code",
    "solu-6l": "NeelNanda/SoLU_6L768W_C4_Code",
}


@runtime_checkable
class HookedModel(Protocol):
    """What mri_lens needs from a model: TL's shared surface on ``HookedTransformer`` and ``TransformerBridge``."""

    cfg: Any
    tokenizer: Any

    def run_with_hooks(self, *args: Any, **kwargs: Any) -> Any: ...


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def tl_major_version() -> int:
    """Major version of the installed TransformerLens (0 when it is not installed)."""
    v = _version("transformer-lens") or _version("transformer_lens")
    return int(v.split(".")[0]) if v else 0


def library_versions() -> dict[str, str | None]:
    """Versions recorded in every saved result."""
    from . import __version__

    return {
        "mri_lens": __version__,
        "transformer_lens": _version("transformer-lens"),
        "transformers": _version("transformers"),
        "torch": _version("torch"),
    }


@dataclass
class HFModel:
    """A plain Hugging Face ``transformers`` model plus its tokenizer, scanned without TransformerLens.

    Captured with :class:`~mri_lens.capture.HuggingFaceBackend`: forward pre-hooks on each layer's MLP
    down-projection, whose input equals TL's ``blocks.{layer}.mlp.hook_post`` on the supported architectures
    (``mri_lens.capture.HF_ARCHITECTURES``). Tokenisation, BOS and padding are the adapter's, exactly as for a TL
    model, so both backends see the same tokens and masks.

    Parameters
    ----------
    model: a ``transformers.PreTrainedModel`` (a base model or one with a head: only ``model.base_model`` runs).
    tokenizer: its tokenizer (a fast tokenizer keeps token display exact).
    """

    model: Any
    tokenizer: Any
    cfg: Any = field(init=False, repr=False)

    def __post_init__(self) -> None:
        from .capture import hf_architecture

        if getattr(self.model, "config", None) is None or not hasattr(self.model, "base_model"):
            raise ModelAdapterError(f"{type(self.model).__name__} is not a transformers PreTrainedModel")
        if self.tokenizer is None:
            raise ModelAdapterError("HFModel needs a tokenizer")
        config = self.model.config
        arch = hf_architecture(config)  # raises for an architecture it does not know
        n_ctx = getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", None) or 0
        d_mlp = getattr(config, "n_inner", None) or getattr(config, "intermediate_size", None)
        if d_mlp is None and config.model_type == "gpt2":
            d_mlp = 4 * config.n_embd
        arch_names = getattr(config, "architectures", None) or [type(self.model).__name__]
        # TL-like facts read by ModelAdapter; attention_dir distinguishes encoders (BERT) from causal models.
        self.cfg = SimpleNamespace(
            n_layers=int(config.num_hidden_layers), d_mlp=int(d_mlp), n_ctx=int(n_ctx),
            attention_dir="causal" if arch.causal else "bidirectional",
            model_name=str(getattr(config, "name_or_path", "") or getattr(config, "_name_or_path", "") or ""),
            original_architecture=str(arch_names[0]), model_type=str(config.model_type))

    @classmethod
    def from_model(cls, model: Any, tokenizer: Any = None) -> "HFModel":
        """Wrap a bare ``PreTrainedModel``; without ``tokenizer`` it is loaded from ``model.name_or_path``."""
        if tokenizer is None:
            name = getattr(model, "name_or_path", "") or getattr(model.config, "_name_or_path", "")
            try:
                from transformers import AutoTokenizer

                tokenizer = AutoTokenizer.from_pretrained(name)
            except Exception as e:  # noqa: BLE001 - any loader failure means: ask the user for the tokenizer
                raise ModelAdapterError(
                    f"could not load a tokenizer for the {type(model).__name__} ({name!r}): {e}; "
                    "pass mri_lens.HFModel(model, tokenizer)") from e
        return cls(model, tokenizer)

    @property
    def model_class(self) -> str:
        return type(self.model).__name__

    def parameters(self):
        return self.model.parameters()

    def to(self, device: Any) -> "HFModel":
        self.model.to(device)
        return self

    def eval(self) -> "HFModel":
        self.model.eval()
        return self


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
        import torch

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
            from .capture import hf_down_projections

            hf_down_projections(self.model.model, range(self.n_layers))  # raises when a module is missing
            return
        names = set(self._hook_names())
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
        """
        if overflow not in ("truncate", "windows", "error"):
            raise ValueError(f"overflow must be 'truncate', 'windows' or 'error', got {overflow!r}")
        limit = self.max_length(max_length)
        room = limit - len(self._prefix) - len(self._suffix)
        if room < 1:
            raise ValueError(f"max_length={limit} leaves no room for text tokens")
        tok = self.model.tokenizer
        prefix = np.asarray(self._prefix, dtype=np.int32)
        suffix = np.asarray(self._suffix, dtype=np.int32)
        out: list[list[np.ndarray]] = []
        n_over = 0
        for start in range(0, len(texts), 512):
            for j, ids in enumerate(tok(list(texts[start:start + 512]), add_special_tokens=False)["input_ids"]):
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

    def str_tokens(self, ids: Sequence[int]) -> list[str]:
        """One display string per token (see :func:`mri_lens.store.display_tokens`)."""
        from .store import display_tokens

        backend = getattr(self.model.tokenizer, "backend_tokenizer", None)
        if backend is None:
            return [self.model.tokenizer.decode([int(i)]) for i in ids]
        return display_tokens(backend, ids)

    def tokenizer_json(self) -> str | None:
        """The fast tokenizer's JSON, stored with scans so tokens can be shown without the model."""
        backend = getattr(self.model.tokenizer, "backend_tokenizer", None)
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
        }


def as_adapter(model: Any, **kwargs: Any) -> ModelAdapter:
    """Wrap ``model`` (or return an existing adapter, refusing conflicting options)."""
    if isinstance(model, ModelAdapter):
        for k, v in kwargs.items():
            if v is not None and getattr(model, k) != v:
                raise ModelAdapterError(f"adapter already has {k}={getattr(model, k)!r}; got {v!r}")
        return model
    return ModelAdapter(model, **{k: v for k, v in kwargs.items() if v is not None})


# ---------------------------------------------------------------------- loading
def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_model(name_or_dir: str | os.PathLike, *, device: str | None = None, dtype: Any = None,
               backend: str = "transformer_lens", **kwargs: Any) -> Any:
    """Load a TransformerLens model with the installed TL's own loader, or a plain Hugging Face model.

    ``backend="hf"``: an :class:`HFModel` (``transformers.AutoModel`` base model + ``AutoTokenizer``, eval mode),
    scanned with forward pre-hooks on each layer's MLP down-projection; same activations as the TL model, without
    TL's wrapping overhead.

    TL >= 3: ``TransformerBridge.boot_transformers`` (hub names and local Hugging Face directories).
    TL 2.x: ``HookedTransformer.from_pretrained`` for hub names; a local GPT-2-style Hugging Face directory is
    converted with TL's own weight conversion (TL 2 cannot load local directories by name).

    Parameters
    ----------
    name_or_dir: a TL/hub model name (``"gpt2-small"``, ``"pythia-70m"``...) or a local HF-format directory.
    device: ``"cpu"``, ``"cuda"``...; default: CUDA when available.
    dtype: torch dtype (default float32).
    backend: ``"transformer_lens"`` (default; also ``"tl"``) or ``"hf"``.

    A model that cannot be loaded (an unknown name, no network and no cached copy, a broken directory) raises
    :class:`ModelAdapterError` ``cannot load model '<name>': <the first line of the loader's error>`` (the loader's
    error is its ``__cause__``); other exceptions (bugs) propagate unchanged.
    """
    if backend not in ("transformer_lens", "tl", "hf"):
        raise ValueError(f"backend must be 'transformer_lens' or 'hf', got {backend!r}")
    try:
        return _load_model(name_or_dir, device=device, dtype=dtype, backend=backend, **kwargs)
    except ModelAdapterError:
        raise
    except _load_errors() as e:
        first = next((line.strip() for line in str(e).splitlines() if line.strip()), type(e).__name__)
        raise ModelAdapterError(f"cannot load model {os.fspath(name_or_dir)!r}: {first}") from e


def _load_errors() -> tuple[type[BaseException], ...]:
    """What the loaders raise for a model that cannot be loaded: OSError (transformers' "not a valid model
    identifier" / "couldn't connect", the hub's HTTP, offline-mode and missing-entry errors, missing files),
    ValueError (unrecognised configs, the hub's repo-id validation), and the hub's and httpx's errors that are
    neither (a missing entry, a failed HTTP request)."""
    errors: list[type[BaseException]] = [OSError, ValueError]
    try:
        from huggingface_hub import errors as hub

        errors += [c for c in (getattr(hub, "EntryNotFoundError", None), getattr(hub, "HTTPError", None))
                   if isinstance(c, type) and issubclass(c, Exception)]
    except ImportError:
        pass
    try:
        import httpx

        errors.append(httpx.HTTPError)
    except ImportError:
        pass
    return tuple(errors)


def _load_model(name_or_dir: str | os.PathLike, *, device: str | None, dtype: Any, backend: str, **kwargs: Any) -> Any:
    import torch

    device = device or _default_device()
    dtype = dtype or torch.float32
    name = os.fspath(name_or_dir)
    local = os.path.isdir(name)
    if not local and (name.startswith((".", "/", "~")) or os.sep in name and os.path.exists(os.path.dirname(name))):
        if not os.path.exists(os.path.expanduser(name)):
            raise ModelAdapterError(f"no model directory at {name!r}")
    if backend == "hf":
        return _load_hf(name, local=local, device=device, dtype=dtype, **kwargs)
    major = tl_major_version()
    if major == 0:
        raise ModelAdapterError("TransformerLens is not installed: pip install transformer-lens")
    if major >= 3:
        from transformer_lens.model_bridge import TransformerBridge

        target = name if local else HUB_ALIASES.get(name, name)
        if local:
            if not os.path.exists(os.path.join(name, "config.json")):
                raise ModelAdapterError(f"{name!r} is not a Hugging Face model directory (no config.json)")
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
        return TransformerBridge.boot_transformers(target, device=device, dtype=dtype, **kwargs)
    if local:
        return _load_local_tl2(name, device=device, dtype=dtype)
    from transformer_lens import HookedTransformer

    return HookedTransformer.from_pretrained(name, device=device, dtype=dtype, **kwargs)


def _load_hf(name: str, *, local: bool, device: str, dtype: Any, **kwargs: Any) -> HFModel:
    """A plain Hugging Face base model and its tokenizer (local directories offline)."""
    from transformers import AutoModel, AutoTokenizer

    target = name if local else HUB_ALIASES.get(name, name)
    if local:
        if not os.path.exists(os.path.join(name, "config.json")):
            raise ModelAdapterError(f"{name!r} is not a Hugging Face model directory (no config.json)")
        kwargs.setdefault("local_files_only", True)
    dkw = {"dtype": dtype} if _accepts_dtype() else {"torch_dtype": dtype}
    model = AutoModel.from_pretrained(target, **dkw, **kwargs)
    tok = AutoTokenizer.from_pretrained(target, local_files_only=kwargs.get("local_files_only", False))
    model.to(device)
    model.eval()
    return HFModel(model, tok)


def _load_local_tl2(path: str, *, device: str, dtype: Any) -> Any:
    """TL 2.x: build a HookedTransformer from a local GPT-2-style HF directory (TL's own weight conversion)."""
    import json

    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast
    from transformer_lens import HookedTransformer, HookedTransformerConfig
    from transformer_lens.pretrained.weight_conversions import convert_gpt2_weights

    with open(os.path.join(path, "config.json")) as f:
        hf_cfg = json.load(f)
    arch = (hf_cfg.get("architectures") or ["?"])[0]
    if hf_cfg.get("model_type") == "bert":
        return _load_local_bert_tl2(path, hf_cfg, device=device, dtype=dtype)
    if arch != "GPT2LMHeadModel":
        raise ModelAdapterError(
            f"TransformerLens 2.x cannot load a local {arch} directory; upgrade to transformer-lens>=3 "
            "(TransformerBridge) or load a hub model by name")
    n_embd, n_head = hf_cfg["n_embd"], hf_cfg["n_head"]
    cfg = HookedTransformerConfig(
        n_layers=hf_cfg["n_layer"], d_model=n_embd, n_heads=n_head, d_head=n_embd // n_head,
        d_mlp=hf_cfg.get("n_inner") or 4 * n_embd, d_vocab=hf_cfg["vocab_size"], n_ctx=hf_cfg["n_positions"],
        act_fn=hf_cfg.get("activation_function", "gelu_new"), normalization_type="LN",
        original_architecture="GPT2LMHeadModel", default_prepend_bos=True, model_name=os.path.basename(path),
        eps=hf_cfg.get("layer_norm_epsilon", 1e-5), device=device, dtype=dtype,
    )
    # from_pretrained (not the bare constructor) records name_or_path, which TL 2 needs to re-load it with BOS.
    tok = PreTrainedTokenizerFast.from_pretrained(path)
    hf_model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype) if _accepts_dtype() else \
        AutoModelForCausalLM.from_pretrained(path, torch_dtype=dtype)
    model = HookedTransformer(cfg, tokenizer=tok, default_padding_side="right")
    model.load_and_process_state_dict(convert_gpt2_weights(hf_model, cfg), fold_ln=False, center_writing_weights=False,
                                      center_unembed=False, fold_value_biases=False, refactor_factored_attn_matrices=False)
    model.to(device)
    model.eval()
    return model


def _load_local_bert_tl2(path: str, hf_cfg: dict, *, device: str, dtype: Any) -> Any:
    """TL 2.x: a local BERT directory (e.g. MiniLM-L6) as a ``HookedEncoder``, with TL's own weight conversion.

    The checkpoint may lack the masked-LM head (sentence-transformers models do); TL's converter wants one, so
    the heads come from a freshly initialised ``BertForPreTraining``. They never affect MLP activations.
    """
    import torch
    from transformers import AutoTokenizer, BertForPreTraining
    from transformer_lens import HookedEncoder, HookedTransformerConfig
    from transformer_lens.pretrained.weight_conversions import convert_bert_weights

    hidden, heads = hf_cfg["hidden_size"], hf_cfg["num_attention_heads"]
    cfg = HookedTransformerConfig(
        d_model=hidden, d_head=hidden // heads, n_heads=heads, d_mlp=hf_cfg["intermediate_size"],
        n_layers=hf_cfg["num_hidden_layers"], n_ctx=hf_cfg["max_position_embeddings"],
        eps=hf_cfg.get("layer_norm_eps", 1e-12), d_vocab=hf_cfg["vocab_size"], act_fn=hf_cfg.get("hidden_act", "gelu"),
        attention_dir="bidirectional", original_architecture="BertForMaskedLM", model_name=os.path.basename(path),
        device=device, dtype=dtype,
    )
    torch.manual_seed(0)  # the unused heads are initialised deterministically
    hf_model = BertForPreTraining.from_pretrained(path)
    model = HookedEncoder(cfg, tokenizer=AutoTokenizer.from_pretrained(path))
    model.load_state_dict(convert_bert_weights(hf_model, cfg), strict=False)
    model.to(device)
    model.eval()
    return model


def _accepts_dtype() -> bool:
    v = _version("transformers") or "0"
    return int(v.split(".")[0]) >= 5
