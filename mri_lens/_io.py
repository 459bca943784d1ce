"""Saved results: a directory with a JSON manifest and a safetensors file, written atomically, validated on load.

No pickle anywhere. The manifest records the format name, schema version, the arrays' shapes/dtypes and the
SHA-256 of the tensor file, so truncation, corruption and foreign files are caught before any array is used.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from typing import Any

import numpy as np

from .errors import ScanFileError

MANIFEST = "manifest.json"
TENSORS = "arrays.safetensors"


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _ordinary_permissions(path: str, mode: int) -> None:
    """mkstemp/mkdtemp create private entries; saved results get what the user's umask gives new files."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, mode & ~umask)


def write_text_atomic(path: str | os.PathLike, text: str) -> str:
    """Write ``text`` (UTF-8) to ``path`` through a temporary sibling and a rename. Returns the absolute path."""
    path = os.path.abspath(os.fspath(path))
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-" + os.path.basename(path) + "-", dir=parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
        _ordinary_permissions(tmp, 0o666)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def read_json(path: str | os.PathLike, what: str) -> Any:
    """Parse a JSON file written by mri_lens; a missing, truncated or non-JSON file raises
    :class:`~mri_lens.errors.ScanFileError` naming ``what`` was expected there."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ScanFileError(f"{path} does not exist (no saved {what} there)")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ScanFileError(f"{path} is corrupted or truncated (not valid JSON: {e})") from None


def save_dir(path: str | os.PathLike, *, fmt: str, schema: int, arrays: dict[str, np.ndarray],
             meta: dict[str, Any], extra_files: dict[str, str] | None = None) -> str:
    """Write ``arrays`` + ``meta`` to directory ``path`` atomically (temporary sibling, then rename)."""
    from safetensors.numpy import save_file

    path = os.path.abspath(os.fspath(path))
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    if os.path.exists(path) and not os.path.isdir(path):
        raise ScanFileError(f"{path} exists and is not a directory")
    tmp = tempfile.mkdtemp(prefix=".tmp-" + os.path.basename(path) + "-", dir=parent)
    _ordinary_permissions(tmp, 0o777)
    try:
        arrays = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
        tensor_path = os.path.join(tmp, TENSORS)
        save_file(arrays, tensor_path)
        manifest = {
            "format": fmt, "schema_version": schema,
            "arrays": {k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in arrays.items()},
            "sha256": {TENSORS: _sha256(tensor_path)}, "meta": meta,
        }
        for name, text in (extra_files or {}).items():
            fp = os.path.join(tmp, name)
            with open(fp, "w", encoding="utf-8") as f:
                f.write(text)
            manifest["sha256"][name] = _sha256(fp)
        with open(os.path.join(tmp, MANIFEST), "w", encoding="utf-8") as f:
            json.dump(manifest, f, indent=1, sort_keys=True, allow_nan=False)
            f.flush()
            os.fsync(f.fileno())
        if os.path.isdir(path):
            old = path + ".old-" + os.path.basename(tmp)
            os.rename(path, old)
            os.rename(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def load_dir(path: str | os.PathLike, *, fmt: str, schema: int) -> tuple[dict[str, np.ndarray], dict[str, Any],
                                                                          dict[str, str]]:
    """Read and validate a directory written by :func:`save_dir`. Returns ``(arrays, meta, extra_files)``."""
    from safetensors.numpy import load_file

    path = os.fspath(path)
    mpath = os.path.join(path, MANIFEST)
    if not os.path.isdir(path):
        raise ScanFileError(f"{path} is not a saved {fmt} directory (no such directory)")
    if not os.path.exists(mpath):
        raise ScanFileError(f"{path} is not a saved {fmt} directory (no {MANIFEST})")
    manifest = read_json(mpath, f"{fmt} manifest")
    if not isinstance(manifest, dict) or manifest.get("format") != fmt:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise ScanFileError(f"{path} holds {found!r}, not a saved {fmt}")
    version = manifest.get("schema_version")
    if not isinstance(version, int) or version > schema:
        raise ScanFileError(f"{path} has schema version {version!r}; this mri_lens reads up to {schema} "
                            "(upgrade mri_lens)")
    hashes = manifest.get("sha256", {})
    for name, digest in hashes.items():
        fp = os.path.join(path, name)
        if not os.path.exists(fp):
            raise ScanFileError(f"{path} is incomplete: {name} is missing")
        if _sha256(fp) != digest:
            raise ScanFileError(f"{fp} is corrupted or truncated (checksum mismatch)")
    try:
        arrays = load_file(os.path.join(path, TENSORS))
    except Exception as e:  # safetensors raises its own error types for malformed headers
        raise ScanFileError(f"{os.path.join(path, TENSORS)} cannot be read: {e}") from None
    spec = manifest.get("arrays", {})
    if set(spec) != set(arrays):
        raise ScanFileError(f"{path}: arrays {sorted(arrays)} do not match the manifest {sorted(spec)}")
    for k, s in spec.items():
        a = arrays[k]
        if list(a.shape) != list(s["shape"]) or str(a.dtype) != s["dtype"]:
            raise ScanFileError(f"{path}: array {k} is {a.dtype}{list(a.shape)}, manifest says "
                                f"{s['dtype']}{s['shape']}")
    extras = {}
    for name in hashes:
        if name != TENSORS:
            with open(os.path.join(path, name), encoding="utf-8") as f:
                extras[name] = f.read()
    return arrays, manifest.get("meta", {}), extras


@contextlib.contextmanager
def interprocess_lock(name: str):
    """An exclusive lock shared by this user's processes (a no-op where ``fcntl`` is unavailable).

    Used around one-time JIT compilations, so that parallel processes of a fresh environment compile (and cache)
    the same code once instead of side by side.
    """
    try:
        import fcntl
    except ImportError:  # Windows
        yield
        return
    path = os.path.join(tempfile.gettempdir(), f"mri_lens-{name}-{os.getuid()}.lock")
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
