"""Ready-made prompts for the Neuroscope lens.

>>> from mri_lens.lenses.neuroscope import prompts
>>> len(prompts.sequence_prompts())
3
"""

from __future__ import annotations

__all__ = ["sequence_prompts"]


def sequence_prompts() -> list[str]:
    """In-context pattern prompts (colour sequence, fruit sequence, a numeric odd series): a model that follows
    the pattern predicts the next item, so late layers tend to have neurons active across the whole prompt."""
    return [
        "Sequence: red, orange, yellow, green, blue, indigo, violet. Sequence: red, orange, yellow, green, blue. "
        "Next Word: indigo",
        "Sequence: apple, banana, cherry, date, elderberry. Sequence: apple, banana, cherry, date. Next Word:",
        "1, 3, 5, 7 -> 9. 11, 13, 15, 17 -> 19. 21, 23, 25, 27 ->",
    ]
