"""Helpers for tests that look inside saved results (the files a manifest names)."""

from __future__ import annotations

import json
import os

from mri_lens.storage.integrity import SEAL_KEY, seal


def manifest(result_dir) -> dict:
    """The manifest as it is on disk (its seal included, when it has one)."""
    with open(os.path.join(result_dir, "manifest.json"), encoding="utf-8") as f:
        return json.load(f)


def data_path(result_dir, name: str = "arrays.safetensors") -> str:
    """Path of data file ``name`` of the version the manifest names (schema 1: beside the manifest)."""
    m = manifest(result_dir)
    return os.path.join(result_dir, m.get("version", ""), name)


def write_manifest(result_dir, m: dict) -> None:
    """Write manifest ``m``, sealed again when it had a seal (an edit made to test what the loader checks behind
    the seal, not the seal itself); a manifest without one (an earlier format) is written as it is."""
    with open(os.path.join(result_dir, "manifest.json"), "w", encoding="utf-8") as f:
        json.dump(seal(m) if SEAL_KEY in m else m, f)


def tree(path) -> dict[str, bytes]:
    """Every file under ``path`` (relative name -> bytes): to show that nothing changed, byte for byte."""
    out = {}
    for root, dirs, files in os.walk(path):
        for d in dirs:
            out[os.path.relpath(os.path.join(root, d), path) + "/"] = b""
        for f in files:
            full = os.path.join(root, f)
            with open(full, "rb") as fh:
                out[os.path.relpath(full, path)] = fh.read()
    return out
