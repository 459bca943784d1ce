"""N2G settings: every threshold of the method in one validated dataclass. The defaults are the best configuration
measured on held-out neurons (bench/RESULTS.md); :meth:`N2GConfig.paper` is the paper's method (with the reference
code's pruning window)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

__all__ = ["N2GConfig"]


@dataclass(frozen=True)
class N2GConfig:
    """Thresholds and sizes of Neuron to Graph (Foote et al., 2023).

    ``N2GConfig()`` is the best configuration measured on held-out neurons (bench/RESULTS.md): 20 pivots per
    example, calibrated END values, 10 substitutes proposed by the neuron itself (``augmenter="probe"``) and the
    token fallback for tokens no pattern covers; the paper's thresholds are kept. :meth:`paper` is the paper's
    method: one pivot, END values from firing tokens, 5 embedding-neighbour substitutes, 0 where nothing matches.
    Both use the reference code's pruning window (the paper adds context one token at a time and its pruned
    example ends at the key token, while ``prune_step=5``, ``prune_max_context=30`` and ``post_context=5`` are the
    reference code's choices); a comparison against that
    reference code (same splits, augmentation off) agreed on nearly all held-out tokens (bench/RESULTS.md).

    Attributes
    ----------
    activation_threshold: a token *fires* when its normalised activation (activation / the neuron's max over the
        dataset) is above this; only firing tokens start trie paths (paper: 0.5).
    importance_threshold: a context token whose masking importance for a firing token is above this enters the
        path as itself, any other as an IGNORE node (paper: 0.75).
    prune_step, prune_max_context: pruning tries prefixes that end at the pivot (the example's max token) and start
        ``prune_step, 2 * prune_step, ..., prune_max_context`` tokens before it (5 and 30: the reference code's
        choice; the paper adds context one token at a time).
    prune_keep: a pruned prefix must keep more than this fraction of the pivot's original activation and the
        pivot must stay the prefix's argmax (paper: 0.5).
    post_context: tokens re-appended after the pivot once pruned (5: the reference code's choice; the paper's
        pruned example ends at the key token).
    pivots_per_example: firing tokens of each example pruned and measured as pivots of their own (paper: 1, the
        example's max token). More pivots give the trie the example's other firing tokens with their own pruned
        context (an extension; augmentation still starts from the main pivot only). An extra pivot's window is the
        shortest candidate in which it keeps more than ``prune_keep`` of its activation and still fires.
    end_values: what an END node stores. ``"firing"`` (the paper): the mean normalised activation of the firing
        tokens whose path ends there. ``"calibrated"`` (an extension): after the trie is built, each END node that
        is the longest match somewhere in the whole training examples stores the mean true activation over those
        positions, firing or not, so a pattern that usually does not fire predicts non-firing.
    augment_pivots: whose pruned windows are augmented: ``"main"`` (the paper: each example's main pivot) or
        ``"all"`` (an extension: the extra pivots' windows too, so substitutes are tried for every firing token,
        not only for the example's maximum).
    augment_repeats: with ``augment_pivots="all"``, an extra pivot's window is augmented around a token only while
        that token (as the pivot, or as a context token) has been augmented in fewer than this many windows of
        the neuron; main pivots always are. A dense neuron fires on the same token in many windows, and trying
        the same substitutes in each of them costs forwards and teaches little more.
    augment_threshold: tokens with at least this importance for the pivot are replaced by substitutes (paper: 0.8).
    n_substitutes: substitutes tried per important token (paper: 5).
    min_substitute_prob: lowest probability of a fill-mask substitute (paper: 1e-5; ignored by augmenters that
        have no probabilities).
    mask_token: token id that replaces a token when measuring its importance; ``None`` picks one per model (the
        pad token when it is a real pad token, [MASK] for encoders, otherwise the end-of-text token) and the
        choice is recorded in the fitted graph. (The reference used id 1, a pad token only for NeoX tokenisers.)
    train_proportion: share of the given top examples used for fitting; the rest is held out (paper: 0.5).
    firing_threshold: normalised activation at which truth and prediction count as firing in evaluation (0.5).
    ngram: n of the n-gram lookup baseline (paper's comparison: 5).
    augmenter: the substitute generator used when none is passed to fitting: ``"probe"`` (the tokens the neuron
        itself ranks highest, an extension), ``"embedding"`` (nearest tokens in the model's input embedding: the
        offline stand-in for the paper's fill-mask model) or ``"none"``.
    fallback: what a token no pattern covers predicts (an extension): ``"none"`` (the paper: 0), ``"token"`` (the
        token's mean activation over the training examples, as token lookup predicts) or ``"mean"`` (the mean
        activation of the uncovered training tokens). Fitted on the training examples. The token fallback raises
        the simulation correlation above token lookup's and leaves firing F1 about unchanged, at a small cost in
        firing precision (bench/RESULTS.md).
    max_batch_tokens: padded tokens per forward pass (a cost knob, not part of the method).
    share_prefixes: a sequence to run that is the start of another one is read from that one's forward (a cost
        knob: the model is causal, so the activations are the same up to float rounding of other batch shapes;
        off in :meth:`paper`, which runs every sequence as the reference-agreement code did).
    """

    activation_threshold: float = 0.5
    importance_threshold: float = 0.75
    prune_step: int = 5
    prune_max_context: int = 30
    prune_keep: float = 0.5
    post_context: int = 5
    pivots_per_example: int = 20
    end_values: str = "calibrated"
    augment_pivots: str = "main"
    augment_repeats: int = 2
    augment_threshold: float = 0.8
    n_substitutes: int = 10
    min_substitute_prob: float = 1e-5
    mask_token: int | None = None
    train_proportion: float = 0.5
    firing_threshold: float = 0.5
    ngram: int = 5
    augmenter: str = "probe"
    fallback: str = "token"
    max_batch_tokens: int = 8192
    share_prefixes: bool = True

    @classmethod
    def paper(cls, **overrides: Any) -> "N2GConfig":
        """The paper's method (Foote et al., 2023) with the reference code's pruning window: one pivot per
        example, END values from firing tokens, 5 substitutes from the embedding-neighbour augmenter."""
        return replace(cls(), **{**_PAPER, **overrides})

    def __post_init__(self) -> None:
        for name in ("activation_threshold", "importance_threshold", "prune_keep", "augment_threshold",
                     "firing_threshold"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not 0.0 <= float(v) <= 1.0:
                raise ValueError(f"{name} must be a number in [0, 1], got {v!r}")
        for name in ("prune_step", "prune_max_context", "ngram", "max_batch_tokens", "pivots_per_example",
                     "augment_repeats"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        for name in ("post_context", "n_substitutes"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {v!r}")
        if self.augment_pivots not in ("main", "all"):
            raise ValueError(f"augment_pivots must be 'main' or 'all', got {self.augment_pivots!r}")
        if self.end_values not in ("firing", "calibrated"):
            raise ValueError(f"end_values must be 'firing' or 'calibrated', got {self.end_values!r}")
        if not isinstance(self.share_prefixes, bool):
            raise ValueError(f"share_prefixes must be True or False, got {self.share_prefixes!r}")
        if self.augmenter not in ("probe", "embedding", "none"):
            raise ValueError(f"augmenter must be 'probe', 'embedding' or 'none', got {self.augmenter!r}")
        if self.fallback not in ("none", "token", "mean"):
            raise ValueError(f"fallback must be 'none', 'token' or 'mean', got {self.fallback!r}")
        if self.prune_max_context < self.prune_step:
            raise ValueError(f"prune_max_context ({self.prune_max_context}) must be >= prune_step "
                             f"({self.prune_step})")
        if not 0.0 < float(self.train_proportion) < 1.0:
            raise ValueError(f"train_proportion must be in (0, 1), got {self.train_proportion!r}")
        if not 0.0 <= float(self.min_substitute_prob) <= 1.0:
            raise ValueError(f"min_substitute_prob must be in [0, 1], got {self.min_substitute_prob!r}")
        if self.mask_token is not None and (not isinstance(self.mask_token, int) or self.mask_token < 0):
            raise ValueError(f"mask_token must be a token id or None, got {self.mask_token!r}")

    def to_dict(self) -> dict[str, Any]:
        """Every field; the fields added after the first file format only when they differ from what files without
        them meant, so a graph fitted as older code did is written exactly as older code wrote it."""
        d = asdict(self)
        for name, old in _LATER.items():
            if d[name] == old:
                del d[name]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "N2GConfig":
        """Inverse of :meth:`to_dict`; unknown keys are an error (a foreign or newer file). A file's missing field
        means the value older code used (the paper's for the method's fields, since those were its defaults)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown N2GConfig fields: {unknown}")
        return cls(**{**_PAPER, **_LATER, **d})


# The paper's values of the fields whose default is the measured best configuration.
_PAPER: dict[str, Any] = {"pivots_per_example": 1, "end_values": "firing", "n_substitutes": 5,
                          "augmenter": "embedding", "fallback": "none", "share_prefixes": False}
# Fields that files written before them lack, and the behaviour those files had.
_LATER: dict[str, Any] = {"augmenter": "embedding", "fallback": "none", "share_prefixes": False}
