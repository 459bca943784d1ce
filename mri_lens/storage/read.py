"""Reading directory results (a scan, region maps, a scan part): the manifest, then only the files its format
defines, inside the data version it names, confined and checksummed (see :mod:`mri_lens.storage.write`).

Files are read in one of two ways. *Eager* files (``arrays.safetensors``, ``tokenizer.json``...: statistics,
top-k, tokens) are read and their SHA-256 checked at every load. *Lazy* files (per-layer pooled values, which can
be hundreds of GB) are size-checked at load and memory-mapped on demand; their content is checked by
:meth:`LoadedResult.verify` (their checksums are written when they are written), since hashing them on every load
would read everything. A lazy file is one safetensors tensor named ``values``. Every safetensors file's binding
(the data version it was written for, :mod:`mri_lens.storage.integrity`) is checked at load, lazy files included.
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
                    _SHA_RE, _VERSION_RE, _check_name, _is_int, _open_regular, _open_subdir, _read_fd,
                    _sha256_bytes, check_format, open_dir, parse_json, read_bytes)
from .integrity import check_binding
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


def st_header(head: bytes, size: int, source: str) -> tuple[dict, int]:
    """The parsed JSON header of a safetensors file of ``size`` bytes whose first bytes are ``head`` (at least
    8, and the header when it fits), and the header's length. Reads nothing itself: see :func:`_header_of`."""
    if size < 8 or len(head) < 8:
        raise ScanFileError(f"{source} has a malformed safetensors header")
    n = struct.unpack("<Q", head[:8])[0]
    if n > min(size - 8, 1 << 24) or len(head) < 8 + n:
        raise ScanFileError(f"{source} has a malformed safetensors header")
    header = parse_json(head[8:8 + n], source, "safetensors header")
    if not isinstance(header, dict):
        raise ScanFileError(f"{source} has a malformed safetensors header")
    return header, n


def _header_of(fd: int, size: int, source: str) -> tuple[dict, int]:
    """The header of the safetensors file open as ``fd`` (read from its start; the offset is left at 0)."""
    os.lseek(fd, 0, os.SEEK_SET)
    head = _read_fd(fd, 8) if size >= 8 else b""
    n = struct.unpack("<Q", head)[0] if len(head) == 8 else 0
    if len(head) == 8 and n <= min(size - 8, 1 << 24):
        head += _read_fd(fd, n)
    os.lseek(fd, 0, os.SEEK_SET)
    return st_header(head, size, source)


@dataclass
class LoadedResult:
    """A directory result as loaded: its eager arrays and texts, its metadata, and its lazy files (by name), which
    :meth:`array` memory-maps and :meth:`verify` checks. ``version``: the data version it was read from;
    ``bound``: its files must carry their binding to it."""

    path: str
    base: str
    manifest: dict[str, Any]
    meta: dict[str, Any]
    arrays: dict[str, np.ndarray]
    extras: dict[str, str]
    lazy: dict[str, _FileSpec] = field(default_factory=dict)
    version: str | None = None
    bound: bool = False

    def _bind(self, header: Any, source: str, name: str) -> None:
        check_binding(header, source, version=self.version, name=name, required=self.bound)

    def missing(self, name: str) -> ScanFileError:
        """The error for lazy file ``name`` gone since the load: the result was replaced by a newer version (its
        manifest names another one now), or it is incomplete."""
        now = _current_version(self.path)
        if now != self.version and now is not None:
            return ScanFileError(f"{self.path} was replaced by a newer version since it was loaded (by another "
                                 "save); load it again")
        if now is None:
            return ScanFileError(f"{self.path} is being replaced or was removed since it was loaded ({name} is gone "
                                 "and its manifest cannot be read); load it again")
        return ScanFileError(f"{self.path} is incomplete: {name} was deleted since it was loaded")

    def array(self, name: str) -> np.ndarray:
        """The ``values`` tensor of lazy file ``name``, memory-mapped read-only (not read until used)."""
        spec = self.lazy.get(name)
        if spec is None:
            raise ScanFileError(f"{self.path} has no data file {name}")
        return map_values(self, name, spec)

    def read_arrays(self, name: str) -> dict[str, np.ndarray]:
        """The arrays of deferred file ``name``, read now and checked (size, SHA-256 and binding)."""
        from safetensors.numpy import load as st_load

        spec = self.lazy.get(name)
        if spec is None or not spec.deferred:
            raise ScanFileError(f"{self.path} has no data file {name}")
        path = os.path.join(self.base, name)
        try:
            data = read_bytes(path, None, path, max_bytes=1 << 62, size=spec.size)
        except FileNotFoundError:
            raise self.missing(name) from None
        if _sha256_bytes(data) != spec.sha256:
            raise ScanFileError(f"{path} is corrupted or truncated (checksum mismatch)")
        self._bind(st_header(data, len(data), path)[0], path, name)
        try:
            return st_load(data)
        except Exception as e:  # noqa: BLE001 - safetensors raises its own error types
            raise ScanFileError(f"{path} cannot be read ({type(e).__name__})") from None

    def verify(self) -> None:
        """Check every lazy file's SHA-256 against the manifest, and its binding (reads them all). Eager files
        were checked at load. Raises :class:`~mri_lens.errors.ScanFileError` naming the first file that differs,
        or saying that the result was replaced by a newer version since it was loaded."""
        for name, spec in self.lazy.items():
            path = os.path.join(self.base, name)
            try:
                fd, st = _open_regular(path, None, path)
            except FileNotFoundError:
                raise self.missing(name) from None
            try:
                self._bind(_header_of(fd, st.st_size, path)[0], path, name)
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


def map_values(loaded: LoadedResult, name: str, spec: _FileSpec) -> np.ndarray:
    """Memory-map the single ``values`` tensor of lazy file ``name`` of ``loaded``, after checking that the file is
    a regular file of the manifest's size, bound to this result, and that its header says exactly the manifest's
    shape and dtype.

    The header is parsed here, not by the safetensors library, because the library copies tensors into memory
    and a pooled layer of a large scan must stay on disk until it is used.
    """
    path, shape, dtype = os.path.join(loaded.base, name), spec.shape, spec.dtype
    try:
        fd = os.open(path, os.O_RDONLY | _FLAG_NOFOLLOW | _FLAG_NONBLOCK | _FLAG_CLOEXEC)
    except FileNotFoundError:
        raise loaded.missing(name) from None
    except OSError:
        raise ScanFileError(f"{path} cannot be opened as a regular file") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode) or (spec.size is not None and st.st_size != spec.size) or st.st_size < 8:
            raise ScanFileError(f"{path} is not the file the manifest names (wrong kind or size)")
        header, n = _header_of(f.fileno(), st.st_size, path)
        loaded._bind(header, path, name)
        entry = header.get("values")
        names = [k for k in header if k != "__metadata__"]
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


def _current_version(p: str) -> str | None:
    """The data version the manifest of ``p`` names now (None: unreadable)."""
    try:
        m = parse_json(read_bytes(os.path.join(p, MANIFEST), None, p, max_bytes=MAX_MANIFEST_BYTES), p, "manifest")
    except (OSError, ScanFileError):
        return None
    v = m.get("version") if isinstance(m, dict) else None
    return v if isinstance(v, str) else None


def _read_manifest(dfd: int | None, p: str, fmt: str, schema: int) -> tuple[bytes, dict]:
    mpath = os.path.join(p, MANIFEST)
    try:
        raw = read_bytes(MANIFEST if dfd is not None else mpath, dfd, mpath, max_bytes=MAX_MANIFEST_BYTES)
    except FileNotFoundError:
        raise ScanFileError(f"{p} is not a saved {fmt} directory (no {MANIFEST})") from None
    m = parse_json(raw, mpath, f"{fmt} manifest")
    check_format(m, fmt, schema, p)
    if m.get("bound", False) is not True and "bound" in m:
        raise ScanFileError(f"{p}: the manifest's binding flag is malformed")
    return raw, m


def _open_version(stack: contextlib.ExitStack, dfd: int | None, p: str, m: dict, raw: bytes
                  ) -> tuple[int | None, str, str | None]:
    """The fd and path of the data version the manifest names (schema 1: the directory itself) and its name."""
    if "version" not in m:
        return dfd, p, None
    vname = m["version"]
    if not isinstance(vname, str) or not _VERSION_RE.match(vname):
        raise ScanFileError(f"{p}: the manifest names a data version that is not part of this format")
    try:
        vfd = _open_subdir(vname, dfd, p)
    except FileNotFoundError:
        if _manifest_changed(p, raw):
            raise _Changed from None
        raise ScanFileError(f"{p} is incomplete: its data version is missing") from None
    if vfd is not None:
        stack.callback(os.close, vfd)
    return vfd, os.path.join(p, vname), vname


def _read_files(loaded: LoadedResult, vfd: int | None, table: dict[str, _FileSpec], raw: bytes) -> dict[str, bytes]:
    """The eager files' bytes (sizes and checksums checked); lazy and deferred files' sizes; every safetensors
    file's binding."""
    blobs = {}
    for name, spec in table.items():
        source = os.path.join(loaded.base, name)
        try:
            if spec.lazy or spec.deferred:  # size and binding now; the content on verify() / read_arrays()
                fd, st = _open_regular(name if vfd is not None else source, vfd, source)
                try:
                    if st.st_size != spec.size:
                        raise ScanFileError(f"{source} is corrupted or truncated (size {st.st_size}, the manifest "
                                            f"says {spec.size})")
                    loaded._bind(_header_of(fd, st.st_size, source)[0], source, name)
                finally:
                    os.close(fd)
                continue
            data = read_bytes(name if vfd is not None else source, vfd, source, max_bytes=1 << 62, size=spec.size)
        except FileNotFoundError:
            if _manifest_changed(loaded.path, raw):
                raise _Changed from None
            raise ScanFileError(f"{loaded.path} is incomplete: {name} is missing") from None
        if _sha256_bytes(data) != spec.sha256:
            raise ScanFileError(f"{source} is corrupted or truncated (checksum mismatch)")
        if name == TENSORS:
            loaded._bind(st_header(data, len(data), source)[0], source, name)
        blobs[name] = data
    return blobs


def _eager_contents(loaded: LoadedResult, blobs: dict[str, bytes], specs: dict[str, tuple[list[int], str]]) -> None:
    """Fill ``loaded.arrays`` (checked against the manifest's array list) and ``loaded.extras`` (UTF-8 texts)."""
    from safetensors.numpy import load as st_load

    p = loaded.path
    try:
        arrays = st_load(blobs[TENSORS])
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error types for malformed headers
        raise ScanFileError(f"{os.path.join(loaded.base, TENSORS)} cannot be read ({type(e).__name__})") from None
    if set(specs) != set(arrays):
        raise ScanFileError(f"{p}: the arrays in {TENSORS} do not match the manifest")
    for k, (shape, dtype) in specs.items():
        a = arrays[k]
        if list(a.shape) != shape or str(a.dtype) != dtype:
            raise ScanFileError(f"{p}: array {k} is {a.dtype}{list(a.shape)}, the manifest says {dtype}{shape}")
    loaded.arrays = arrays
    for name, data in blobs.items():
        if name != TENSORS:
            try:
                loaded.extras[name] = data.decode("utf-8")
            except UnicodeDecodeError:
                raise ScanFileError(f"{os.path.join(loaded.base, name)} is not UTF-8 text") from None


def _load_once(p: str, fmt: str, schema: int, allowed: frozenset, lazy_names: re.Pattern | None,
               under: str | None) -> LoadedResult:
    with contextlib.ExitStack() as stack:
        try:
            dfd = stack.enter_context(open_dir(p, under=under))
        except FileNotFoundError:
            raise ScanFileError(f"{p} is not a saved {fmt} directory (no such directory)") from None
        raw, m = _read_manifest(dfd, p, fmt, schema)
        table = _file_table(m, p, allowed, lazy_names)
        specs = _array_specs(m, p)
        meta = m.get("meta", {})
        if not isinstance(meta, dict):
            raise ScanFileError(f"{p} is not a consistent saved result: its metadata is not an object")
        vfd, base, vname = _open_version(stack, dfd, p, m, raw)
        loaded = LoadedResult(p, base, m, meta, {}, {}, {k: v for k, v in table.items() if v.lazy or v.deferred},
                              version=vname, bound=m.get("bound") is True)
        blobs = _read_files(loaded, vfd, table, raw)
    _eager_contents(loaded, blobs, specs)
    return loaded


def _manifest_changed(p: str, raw: bytes) -> bool:
    try:
        return read_bytes(os.path.join(p, MANIFEST), None, p, max_bytes=MAX_MANIFEST_BYTES) != raw
    except (OSError, ScanFileError):
        return True


def load_result(path: str | os.PathLike, *, fmt: str, schema: int, files: Iterable[str] = (TENSORS,),
                lazy: str | None = None, under: str | os.PathLike | None = None) -> LoadedResult:
    """Read and validate a directory written by :class:`mri_lens.storage.write.ResultWriter`.

    ``files``: the eager file names this format defines (``arrays.safetensors`` and its texts); ``lazy``: a
    regular expression of the lazy file names it defines. A manifest naming any other file is refused.
    ``under``: a directory above ``path`` (a scan holding its run and part directories); the directories between
    them must not be symbolic links. Every problem raises :class:`~mri_lens.errors.ScanFileError`.
    """
    p = os.fspath(path)
    allowed = frozenset(files) | {TENSORS}
    pattern = re.compile(lazy) if lazy else None
    # A writer replacing the result under us: read its new manifest, waiting longer each time (writers saving in a
    # loop on a busy machine could otherwise replace it on every one of a few quick tries).
    for attempt in range(40):
        try:
            return _load_once(p, fmt, schema, allowed, pattern, None if under is None else os.fspath(under))
        except _Changed:
            time.sleep(min(0.25, 0.01 * 1.5 ** attempt))
    raise ScanFileError(f"{p} kept changing while it was read (a writer is replacing it); try again")


def load_dir(path: str | os.PathLike, *, fmt: str, schema: int, files: Iterable[str] = (TENSORS,)
             ) -> tuple[dict[str, np.ndarray], dict[str, Any], dict[str, str]]:
    """:func:`load_result` of a format without lazy files: ``(arrays, meta, extra_files)``."""
    r = load_result(path, fmt=fmt, schema=schema, files=files)
    return r.arrays, r.meta, r.extras

