"""Small real corpora shared by the tests (import from here, not from conftest)."""

from __future__ import annotations

import glob
import os
import sysconfig

PROSE = [
    "The river was quiet in the morning, and the fishermen waited for the fog to lift.",
    "She opened the letter slowly, afraid of what the judge had decided about the house.",
    "Our village library lends books, maps and old newspapers to anyone who asks politely.",
    "After the storm, the children collected shells along the beach until the sun went down.",
    "He had never seen a city so large, with bridges stretching over every street and canal.",
    "The committee will meet again next week to discuss the budget for the new hospital.",
    "Grandmother baked bread every Sunday, and the whole street smelled of warm crust.",
    "A small bird landed on the window and looked at us as if it wanted to come inside.",
    "The train was late again, so we walked to the harbour and watched the ships arrive.",
    "Many farmers in the valley grow apples, pears and plums on the southern slopes.",
    "The museum closed early because the old roof had started to leak during the rain.",
    "When the music stopped, everyone in the hall stood up and applauded for a long time.",
    "The doctor told him to rest for a week and to drink plenty of water every day.",
    "In winter the lake freezes over and people skate on it from morning until evening.",
    "The teacher asked the students to write a short story about their favourite animal.",
    "They planted a row of oak trees along the road to give shade to future travellers.",
]


def code_snippets(n: int = 16, chars: int = 400) -> list[str]:
    """The first function definitions of standard-library modules: real Python code, available offline."""
    root = sysconfig.get_paths()["stdlib"]
    out = []
    for path in sorted(glob.glob(os.path.join(root, "*.py")), key=os.path.basename):
        with open(path, encoding="utf-8", errors="replace") as f:
            src = f.read()
        i = src.find("\ndef ")
        if i < 0:
            continue
        out.append(src[i + 1:i + 1 + chars])
        if len(out) == n:
            break
    return out


# Two short prompts of the Neuroscope lens tests: an in-context pattern and a few lines of code.
NEUROSCOPE_PROMPTS = ["Sequence: red, orange, yellow, green, blue. Next Word:", "def f(x):\n    return x + 1\n"]
