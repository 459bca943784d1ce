"""Reading directory results (a scan, region maps, a scan part): the manifest, then only the files its format
defines, inside the data version it names, confined and checksummed (see :mod:`mri_lens.storage.write`).

Files are read in one of two ways. *Eager* files (``arrays.safetensors``, ``tokenizer.json``...: statistics,
top-k, tokens) are read and their SHA-256 checked at every load. *Lazy* files (per-layer pooled values, which can
be hundreds of GB) are size-checked at load and memory-mapped on demand; their content is checked by
:meth:`LoadedResult.verify` (their checksums are written when they are written), since hashing them on every load
would read everything. A lazy file is one safetensors tensor named ``values``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import stat
import struct
import time
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

from .files import (_FLAG_CLOEXEC, _FLAG_NOFOLLOW, _FLAG_NONBLOCK, MANIFEST, MAX_MANIFEST_BYTES, TENSORS, _DTYPES,
                  _SHA_RE, _VERSION_RE, _check_name, _is_int, _open_regular, _open_subdir, _sha256_bytes,
                  check_format, open_dir, parse_json, read_bytes)
from ..errors import ScanFileError

__all__ = ["LoadedResult", "load_dir", "load_result"]

# safetensors' dtype codes of the dtypes saved results use
_ST_DTYPES = {"F16": "float16", "F32": "float32", "F64": "float64", "I8": "int8", "I16": "int16", "I32": "int32",
              "I64": "int64", "U8": "uint8", "U16": "uint16", "U32": "uint32", "U64": "uint64", "BOOL": "bool"}


class _Changed(Exception):
    """The result was replaced while it was read: read the new manifest."""


@dataclass
class _FileSpec:
    size: int | None
    sha256: str
    lazy: bool = False
    shape: list[int] | None = None
    dtype: str | None = None
    deferred: bool = False  # read (and checked) only when asked for: LoadedResult.read_arrays


def _file_table(m: dict, p: str, allowed: frozenset, lazy_names: re.Pattern | None) -> dict[str, _FileSpec]:
    """Every data file of the manifest, each a name the format defines, with its size and SHA-256."""
    out: dict[str, _FileSpec] = {}
    if "version" in m:
        files = m.get("files")
        if not isinstance(files, dict):
            raise ScanFileError(f"{p} is not a consistent saved result: its manifest lists no files")
        for name, spec in files.items():
            lazy = isinstance(spec, dict) and spec.get("lazy") is True
            if not (lazy and lazy_names is not None and isinstance(name, str) and lazy_names.fullmatch(name)):
                _check_name(name, p, allowed)
            if not isinstance(spec, dict) or not _is_int(spec.get("size")) or spec["size"] < 0 \
                    or not isinstance(spec.get("sha256"), str) or not _SHA_RE.match(spec["sha256"]):
                raise ScanFileError(f"{p}: the manifest entry of {name} lacks a valid size and SHA-256")
            if lazy:
                shape, dtype = spec.get("shape"), spec.get("dtype")
                if not isinstance(shape, list) or not all(_is_int(x) and x >= 0 for x in shape) \
                        or not isinstance(dtype, str) or dtype not in _DTYPES:
                    raise ScanFileError(f"{p}: the manifest entry of {name} lacks a valid shape and dtype")
                out[name] = _FileSpec(spec["size"], spec["sha256"], True, shape, dtype)
            else:
                out[name] = _FileSpec(spec["size"], spec["sha256"], deferred=spec.get("deferred") is True)
    else:  # schema 1: names and checksums only
        hashes = m.get("sha256")
        if not isinstance(hashes, dict):
            raise ScanFileError(f"{p} is not a consistent saved result: its manifest has no checksums")
        for name, digest in hashes.items():
            _check_name(name, p, allowed)
            if not isinstance(digest, str) or not _SHA_RE.match(digest):
                raise ScanFileError(f"{p}: the checksum of {name} is malformed")
            out[name] = _FileSpec(None, digest)
    if TENSORS not in out or out[TENSORS].lazy or out[TENSORS].deferred:
        raise ScanFileError(f"{p} is not a consistent saved result: {TENSORS} has no checksum in the manifest")
    return out


def _array_specs(m: dict, p: str) -> dict[str, tuple[list[int], str]]:
    spec = m.get("arrays")
    if not isinstance(spec, dict):
        raise ScanFileError(f"{p} is not a consistent saved result: the manifest has no array list")
    out = {}
    for k, s in spec.items():
        if not isinstance(s, dict) or not isinstance(s.get("shape"), list) \
                or not all(_is_int(x) and x >= 0 for x in s["shape"]) or not isinstance(s.get("dtype"), str) \
                or s["dtype"] not in _DTYPES:
            raise ScanFileError(f"{p}: the manifest's entry for array {str(k)[:64]!r} is malformed")
        out[k] = (s["shape"], s["dtype"])
    return out


@dataclass
class LoadedResult:
    """A directory result as loaded: its eager arrays and texts, its metadata, and its lazy files (by name), which
    :meth:`array` memory-maps and :meth:`verify` checks."""

    path: str
    base: str
    manifest: dict[str, Any]
    meta: dict[str, Any]
    arrays: dict[str, np.ndarray]
    extras: dict[str, str]
    lazy: dict[str, _FileSpec] = field(default_factory=dict)

    def array(self, name: str) -> np.ndarray:
        """The ``values`` tensor of lazy file ``name``, memory-mapped read-only (not read until used)."""
        spec = self.lazy.get(name)
        if spec is None:
            raise ScanFileError(f"{self.path} has no data file {name}")
        return map_values(os.path.join(self.base, name), spec.shape, spec.dtype, spec.size, self.path)

    def read_arrays(self, name: str) -> dict[str, np.ndarray]:
        """The arrays of deferred file ``name``, read now and checked (size and SHA-256)."""
        from safetensors.numpy import load as st_load

        spec = self.lazy.get(name)
        if spec is None or not spec.deferred:
            raise ScanFileError(f"{self.path} has no data file {name}")
        path = os.path.join(self.base, name)
        try:
            data = read_bytes(path, None, path, max_bytes=1 << 62, size=spec.size)
        except FileNotFoundError:
            raise ScanFileError(f"{self.path} is incomplete or was replaced since it was loaded: {name} is "
                                "missing (load it again)") from None
        if _sha256_bytes(data) != spec.sha256:
            raise ScanFileError(f"{path} is corrupted or truncated (checksum mismatch)")
        try:
            return st_load(data)
        except Exception as e:  # noqa: BLE001 - safetensors raises its own error types
            raise ScanFileError(f"{path} cannot be read ({type(e).__name__})") from None

    def verify(self) -> None:
        """Check every lazy file's SHA-256 against the manifest (reads them all). Eager files were checked at
        load. Raises :class:`~mri_lens.errors.ScanFileError` naming the first file that differs."""
        for name, spec in self.lazy.items():
            path = os.path.join(self.base, name)
            try:
                fd, st = _open_regular(path, None, path)
            except FileNotFoundError:
                raise ScanFileError(f"{self.path} is incomplete: {name} is missing") from None
            try:
                h = hashlib.sha256()
                while True:
                    chunk = os.read(fd, 1 << 24)
                    if not chunk:
                        break
                    h.update(chunk)
            finally:
                os.close(fd)
            if h.hexdigest() != spec.sha256:
                raise ScanFileError(f"{path} is corrupted (checksum mismatch)")


def map_values(path: str, shape: list[int], dtype: str, size: int | None, result: str) -> np.ndarray:
    """Memory-map the single ``values`` tensor of a safetensors file written by mri_lens, after checking that the
    file is a regular file of the manifest's size and its header says exactly ``shape`` and ``dtype``.

    The header is parsed here, not by the safetensors library, because the library copies tensors into memory
    and a pooled layer of a large scan must stay on disk until it is used.
    """
    try:
        fd = os.open(path, os.O_RDONLY | _FLAG_NOFOLLOW | _FLAG_NONBLOCK | _FLAG_CLOEXEC)
    except FileNotFoundError:
        raise ScanFileError(f"{result} is incomplete or was replaced since it was loaded: {os.path.basename(path)} "
                            "is missing (load it again)") from None
    except OSError:
        raise ScanFileError(f"{path} cannot be opened as a regular file") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode) or (size is not None and st.st_size != size) or st.st_size < 8:
            raise ScanFileError(f"{path} is not the file the manifest names (wrong kind or size)")
        n = struct.unpack("<Q", f.read(8))[0]
        if n > min(st.st_size - 8, 1 << 24):
            raise ScanFileError(f"{path} has a malformed safetensors header")
        header = parse_json(f.read(n), path, "safetensors header")
        entry = header.get("values") if isinstance(header, dict) else None
        names = [k for k in header if k != "__metadata__"] if isinstance(header, dict) else []
        if names != ["values"] or not isinstance(entry, dict) or _ST_DTYPES.get(entry.get("dtype")) != dtype \
                or entry.get("shape") != shape:
            raise ScanFileError(f"{path} does not hold the {dtype}{shape} array its manifest names")
        off = entry.get("data_offsets")
        nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        if not (isinstance(off, list) and len(off) == 2 and all(_is_int(x) for x in off) and off[1] - off[0] == nbytes
                and 8 + n + off[1] == st.st_size and off[0] >= 0):
            raise ScanFileError(f"{path} has a malformed safetensors header")
        if nbytes == 0:
            return np.zeros(shape, dtype=dtype)
        return np.memmap(f, dtype=dtype, mode="r", offset=8 + n + off[0], shape=tuple(shape))


def _load_once(p: str, fmt: str, schema: int, allowed: frozenset, lazy_names: re.Pattern | None) -> LoadedResult:
    from safetensors.numpy import load as st_load

    with contextlib.ExitStack() as stack:
        try:
            dfd = stack.enter_context(open_dir(p))
        except FileNotFoundError:
            raise ScanFileError(f"{p} is not a saved {fmt} directory (no such directory)") from None
        mpath = os.path.join(p, MANIFEST)
        try:
            raw = read_bytes(MANIFEST if dfd is not None else mpath, dfd, mpath, max_bytes=MAX_MANIFEST_BYTES)
        except FileNotFoundError:
            raise ScanFileError(f"{p} is not a saved {fmt} directory (no {MANIFEST})") from None
        m = parse_json(raw, mpath, f"{fmt} manifest")
        check_format(m, fmt, schema, p)
        table = _file_table(m, p, allowed, lazy_names)
        specs = _array_specs(m, p)
        meta = m.get("meta", {})
        if not isinstance(meta, dict):
            raise ScanFileError(f"{p} is not a consistent saved result: its metadata is not an object")
        vfd, base = dfd, p
        if "version" in m:
            vname = m["version"]
            if not isinstance(vname, str) or not _VERSION_RE.match(vname):
                raise ScanFileError(f"{p}: the manifest names a data version that is not part of this format")
            base = os.path.join(p, vname)
            try:
                vfd = _open_subdir(vname, dfd, p)
            except FileNotFoundError:
                if _manifest_changed(p, raw):
                    raise _Changed from None
                raise ScanFileError(f"{p} is incomplete: its data version is missing") from None
            if vfd is not None:
                stack.callback(os.close, vfd)
        blobs = {}
        for name, spec in table.items():
            source = os.path.join(base, name)
            try:
                if spec.lazy or spec.deferred:  # size only, now; the content on verify() / read_arrays()
                    fd, st = _open_regular(name if vfd is not None else source, vfd, source)
                    os.close(fd)
                    if st.st_size != spec.size:
                        raise ScanFileError(f"{source} is corrupted or truncated (size {st.st_size}, the manifest "
                                            f"says {spec.size})")
                    continue
                data = read_bytes(name if vfd is not None else source, vfd, source, max_bytes=1 << 62,
                                  size=spec.size)
            except FileNotFoundError:
                if _manifest_changed(p, raw):
                    raise _Changed from None
                raise ScanFileError(f"{p} is incomplete: {name} is missing") from None
            if _sha256_bytes(data) != spec.sha256:
                raise ScanFileError(f"{source} is corrupted or truncated (checksum mismatch)")
            blobs[name] = data
    try:
        arrays = st_load(blobs[TENSORS])
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error types for malformed headers
        raise ScanFileError(f"{os.path.join(base, TENSORS)} cannot be read ({type(e).__name__})") from None
    if set(specs) != set(arrays):
        raise ScanFileError(f"{p}: the arrays in {TENSORS} do not match the manifest")
    for k, (shape, dtype) in specs.items():
        a = arrays[k]
        if list(a.shape) != shape or str(a.dtype) != dtype:
            raise ScanFileError(f"{p}: array {k} is {a.dtype}{list(a.shape)}, the manifest says {dtype}{shape}")
    extras = {}
    for name, data in blobs.items():
        if name != TENSORS:
            try:
                extras[name] = data.decode("utf-8")
            except UnicodeDecodeError:
                raise ScanFileError(f"{os.path.join(base, name)} is not UTF-8 text") from None
    return LoadedResult(p, base, m, meta, arrays, extras,
                        {k: v for k, v in table.items() if v.lazy or v.deferred})


def _manifest_changed(p: str, raw: bytes) -> bool:
    try:
        return read_bytes(os.path.join(p, MANIFEST), None, p, max_bytes=MAX_MANIFEST_BYTES) != raw
    except (OSError, ScanFileError):
        return True


def load_result(path: str | os.PathLike, *, fmt: str, schema: int, files: Iterable[str] = (TENSORS,),
                lazy: str | None = None) -> LoadedResult:
    """Read and validate a directory written by :class:`mri_lens.storage.write.ResultWriter`.

    ``files``: the eager file names this format defines (``arrays.safetensors`` and its texts); ``lazy``: a
    regular expression of the lazy file names it defines. A manifest naming any other file is refused. Every
    problem raises :class:`~mri_lens.errors.ScanFileError`.
    """
    p = os.fspath(path)
    allowed = frozenset(files) | {TENSORS}
    pattern = re.compile(lazy) if lazy else None
    for _ in range(20):  # a writer replacing the result under us: read its new manifest
        try:
            return _load_once(p, fmt, schema, allowed, pattern)
        except _Changed:
            time.sleep(0.01)
    raise ScanFileError(f"{p} kept changing while it was read (a writer is replacing it); try again")


def load_dir(path: str | os.PathLike, *, fmt: str, schema: int, files: Iterable[str] = (TENSORS,)
             ) -> tuple[dict[str, np.ndarray], dict[str, Any], dict[str, str]]:
    """:func:`load_result` of a format without lazy files: ``(arrays, meta, extra_files)``."""
    r = load_result(path, fmt=fmt, schema=schema, files=files)
    return r.arrays, r.meta, r.extras

