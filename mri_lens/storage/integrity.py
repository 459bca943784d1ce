"""What ties a saved file to its content and to its result: seals on JSON files, bindings in data files.

**Seals.** Every JSON result file mri_lens writes (a directory result's ``manifest.json``; graph, N2G and index
files) carries ``"mri_lens_sha256"``: the SHA-256 of the rest of the object in a canonical form (keys sorted,
ASCII, no spaces), so it does not depend on the file's layout. A reader checks the seal and removes it: a file
changed in any way that changes what it says is a :class:`~mri_lens.errors.ScanFileError`. A JSON file without a
seal (written before seals existed, or by another program) is read as it is.

**Bindings.** Every safetensors file of a directory result names, in its header's ``__metadata__``, the data
version of the result it was written for and its own file name. A manifest written with bindings says
``"bound": true``; each of its files must then carry its binding, and a file that carries one is checked whatever
the manifest says. So a data file copied in from another result (or from another save of the same one), with or
without its manifest entry, is refused when the result loads, not used.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from ..errors import ScanFileError

SEAL_KEY = "mri_lens_sha256"
BIND_VERSION = "mri_lens.version"
BIND_FILE = "mri_lens.file"
_HEX64 = re.compile(r"[0-9a-f]{64}\Z")

__all__ = ["SEAL_KEY", "BIND_VERSION", "BIND_FILE", "seal", "seal_text", "check_seal", "binding", "check_binding"]


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode("ascii")


def _digest(obj: dict) -> str:
    return hashlib.sha256(_canonical({k: v for k, v in obj.items() if k != SEAL_KEY})).hexdigest()


def seal(obj: dict) -> dict:
    """``obj`` (a JSON object) with its seal, as the first key (any earlier seal is replaced)."""
    if not isinstance(obj, dict):
        raise TypeError("only a JSON object can be sealed")
    rest = {k: v for k, v in obj.items() if k != SEAL_KEY}
    return {SEAL_KEY: _digest(rest), **rest}


def seal_text(text: str) -> str:
    """``text`` with a seal when it is a JSON object (inserted as its first key, the rest of the text kept as it
    is); any other text (HTML, GraphML, GEXF, a JSON array) is returned unchanged."""
    start = len(text) - len(text.lstrip())
    if not text.startswith("{", start):
        return text
    try:
        obj = json.loads(text)
    except ValueError:
        return text
    if not isinstance(obj, dict):
        return text
    if SEAL_KEY in obj:
        return json.dumps(seal(obj), allow_nan=False)
    entry = f'"{SEAL_KEY}": "{_digest(obj)}"'
    rest = text[start + 1:]
    return text[:start + 1] + entry + ("" if not obj else ", ") + rest


def check_seal(obj: Any, source: str, what: str) -> Any:
    """``obj`` (parsed JSON) without its seal, after checking it; unsealed objects are returned as they are."""
    if not isinstance(obj, dict) or SEAL_KEY not in obj:
        return obj
    found = obj[SEAL_KEY]
    try:
        digest = _digest(obj)
    except ValueError:  # a number too large for a float: no file mri_lens wrote holds one
        raise ScanFileError(f"{source} is not a saved {what} (it holds a number out of range)") from None
    if not isinstance(found, str) or not _HEX64.match(found):
        raise ScanFileError(f"{source} is damaged: its mri_lens checksum ({SEAL_KEY}) is malformed")
    if found != digest:
        raise ScanFileError(f"{source} was changed after mri_lens wrote it (its content does not match its "
                            f"{SEAL_KEY} checksum): it is damaged or was edited by hand; save it again")
    return {k: v for k, v in obj.items() if k != SEAL_KEY}


def binding(version: str, name: str) -> dict[str, str]:
    """The ``__metadata__`` that binds safetensors file ``name`` to data version ``version`` of a result."""
    return {BIND_VERSION: version, BIND_FILE: name}


def check_binding(header: Any, source: str, *, version: str | None, name: str, required: bool) -> None:
    """Check a safetensors ``header`` (parsed) of file ``name`` in data version ``version``: a binding it carries
    must be this one; ``required`` (a manifest written with bindings): it must carry one."""
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    meta = meta if isinstance(meta, dict) else {}
    found = (meta.get(BIND_VERSION), meta.get(BIND_FILE))
    if found == (None, None):
        if required:
            raise ScanFileError(f"{source} does not name the result it belongs to, so it was not written for this "
                                "result (a file copied in from elsewhere, or damaged); save the result again")
        return
    if found != (version, name):
        raise ScanFileError(f"{source} belongs to another saved result (or another save of this one), not to this "
                            "one: a data file was copied in from elsewhere; save the result again")
