"""Helpers for tests that look inside saved results (the files a manifest names)."""

from __future__ import annotations

import json
import os


def manifest(result_dir) -> dict:
    with open(os.path.join(result_dir, "manifest.json"), encoding="utf-8") as f:
        return json.load(f)


def data_path(result_dir, name: str = "arrays.safetensors") -> str:
    """Path of data file ``name`` of the version the manifest names (schema 1: beside the manifest)."""
    m = manifest(result_dir)
    return os.path.join(result_dir, m.get("version", ""), name)


def write_manifest(result_dir, m: dict) -> None:
    with open(os.path.join(result_dir, "manifest.json"), "w", encoding="utf-8") as f:
        json.dump(m, f)


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
