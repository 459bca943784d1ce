"""Neuroscope lens, ready-made prompts."""

from __future__ import annotations

import mri_lens as ml


def test_sequence_prompts():
    prompts = ml.neuroscope.prompts.sequence_prompts()
    assert len(prompts) == 3 and "indigo" in prompts[0] and "banana" in prompts[1] and "7 -> 9" in prompts[2]
