"""Saved results: one safe way to write and read everything mri_lens keeps.

**What a save replaces.** A save writes to a path only when that path is free, an empty directory, or already a
saved result of the same kind (recognised by its manifest, or for a single file by its format field / marker).
Anything else there (a user's directory, a non-empty working directory, a file) is refused with a
:class:`~mri_lens.errors.ScanFileError` before any work is done. ``overwrite=True`` lets a save write beside
foreign files or over a saved result of another kind; even then only mri_lens' own files are removed (a
``manifest.json`` that mri_lens did not write is never replaced).

**Directory results** (a scan, region maps) are versioned, so a kill at any instant leaves the old or the new
result loadable::

    run/
      manifest.json     format, schema version, data version, every file's size and SHA-256, array specs, metadata
      v-<time>-<rand>/  the data files of that version (arrays.safetensors, tokenizer.json, ...)
      .lock             writers take it in turn (flock); readers never lock

A save writes a new version directory under a temporary name, renames it into place, then atomically replaces
``manifest.json`` (the commit point), then removes the previous version. Readers read the manifest once and then
only the version it names; a reader that loses a race with a writer's clean-up reads the new manifest again. Left
over temporary directories and unreferenced versions (a killed save) are removed by the next save, under the lock.
Schema-1 results (files directly beside the manifest) still load and are replaced the same way.

**Writers take turns from the first byte.** The checks made before any work (:func:`check_save_target`) create
and remove nothing a writer uses: where the path is missing they only show, with a uniquely named temporary
entry in the nearest existing directory, that it can be created. A writer creates the result directory (with its
missing parents; creating one that another writer has just created is no error), takes its ``.lock``, and only
then looks at, writes or removes anything in it. So any number of concurrent saves into one new path succeed one
after the other. Every write failure is a :class:`~mri_lens.errors.ScanFileError` naming the path (a full disk
says so).

**Seals and bindings** (:mod:`mri_lens.storage.integrity`): every manifest and single-file JSON result carries a
checksum of its content, and every safetensors file of a directory result names the data version it belongs to,
so a damaged manifest or a data file copied in from another result is refused at load.

**Loads are confined**: only the file names the format defines are opened (never a name taken from a manifest
unchecked: no separators, no ``..``, no absolute paths), relative to the directory, regular files only (no
symlinks, FIFOs or devices), each size checked against the manifest before reading and every file checksummed (a
missing checksum is an error). JSON is bounded in size and depth. Every problem is a ``ScanFileError`` naming the
directory, never the content of a foreign file.

**Single-file results** (graph JSON, N2G graphs, the neuron index, HTML pages) are written through a temporary
sibling and an atomic rename; stale temporary files of a killed save are removed by the next save of that name.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
import tempfile
import time
from typing import Any, Iterable

import numpy as np

from .files import (LOCK, MANIFEST, MAX_JSON_BYTES, MAX_MANIFEST_BYTES, PAGE_KIND, TENSORS, TMP_PREFIX,
                    _FLAG_CLOEXEC, _FLAG_NOFOLLOW, _MARKER_RE, _PROBE_TMP, RUN_RE, _VERSION_RE, _VERSION_TMP,
                    _check_name, _fsync_dir, _open_regular, _read_fd, _umask, _write_new_file, check_format, marker,
                    page_marker, parse_json, read_json, read_json_in, write_error, write_file_atomic,
                    write_text_atomic)
from .integrity import binding, seal, seal_text
from .read import load_dir
from ..version import __version__
from ..errors import ScanFileError

__all__ = ["ResultWriter", "TENSORS", "DIR_KINDS", "FILE_KINDS", "PAGE_KIND", "check_save_target", "claim_dir",
           "save_text", "save_dir", "file_kind", "load_dir", "read_json", "write_text_atomic", "write_file_atomic",
           "marker", "page_marker", "check_format", "interprocess_lock"]


DIR_KINDS = {
    "mri_lens.scan": "saved scan",
    "mri_lens.region_maps": "saved region maps",
    "mri_lens.reduction_evaluation": "saved full-vs-reduced evaluation",
    "mri_lens.n2g": "N2G output directory",
    "mri_lens.site": "Neuroscope site",
    "mri_lens.mri_page": "MRI page directory",
    "mri_lens.demo": "demo output directory",
    "mri_lens.scan_part": "partial scan (one shard of a sharded run)",
}

FILE_KINDS = {
    "mri_lens.coactivation_graph": "co-activation graph",
    "mri_lens.component_graph": "component graph",
    "mri_lens.n2g.graph": "N2G neuron graph",
    "mri_lens.n2g.index": "N2G neuron index",
    "mri_lens.page": "mri_lens HTML page",
}


def file_kind(path: str) -> str | None:
    """The mri_lens kind of the file at ``path`` (a marker near the top, or a JSON format field), else None."""
    try:
        fd, st = _open_regular(path, None, path, follow=False)
    except (OSError, ScanFileError):
        return None
    try:
        head = os.read(fd, 4096)
        m = _MARKER_RE.search(head)
        if m:
            return m.group(1).decode("ascii")
        if not head.lstrip().startswith(b"{") or st.st_size > MAX_JSON_BYTES:
            return None
        os.lseek(fd, 0, os.SEEK_SET)
        data = _read_fd(fd, st.st_size)
    finally:
        os.close(fd)
    try:
        obj = parse_json(data, path, "result", sealed=False)  # what it claims to be, damaged or not
    except ScanFileError:
        return None
    if not isinstance(obj, dict):
        return None
    kind = obj.get("format")
    if kind is None and isinstance(obj.get("graph"), dict):
        kind = obj["graph"].get("kind")
    return kind if isinstance(kind, str) else None


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


class _DirState:
    """What is at a directory path: ``kind`` of its manifest (None: no manifest), whether it is recognisably ours,
    the parsed manifest, and the entries that are not mri_lens'."""

    def __init__(self, path: str):
        self.path = path
        self.exists = os.path.isdir(path)
        self.kind: str | None = None
        self.manifest: dict | None = None
        self.foreign_manifest = False
        self.foreign: list[str] = []
        self.ours_by_layout = False
        if not self.exists:
            return
        for name in os.listdir(path):
            if name == MANIFEST:
                continue
            if name == LOCK or name.startswith(TMP_PREFIX) or _VERSION_RE.match(name) or RUN_RE.match(name):
                self.ours_by_layout = True
                continue
            self.foreign.append(name)
        if os.path.lexists(os.path.join(path, MANIFEST)):
            try:
                m = read_json_in(None, path, MANIFEST, "manifest", max_bytes=MAX_MANIFEST_BYTES)
            except ScanFileError:
                m = None
            kind = m.get("format") if isinstance(m, dict) else None
            if isinstance(kind, str) and (kind in DIR_KINDS):
                self.kind, self.manifest = kind, m
            else:
                self.foreign_manifest = True


def _what(kind: str) -> str:
    return DIR_KINDS.get(kind) or FILE_KINDS.get(kind) or kind


def _refuse_dir(state: _DirState, kind: str, overwrite: bool) -> None:
    p, what = state.path, _what(kind)
    hint = "choose another path, or pass overwrite=True (command line: --force) to write beside them; nothing " \
           "that is not mri_lens' is ever removed"
    if state.foreign_manifest and not (overwrite and state.ours_by_layout):
        raise ScanFileError(f"{p} holds a manifest.json that is not a saved mri_lens result; refusing to replace "
                            f"it with a {what} (even with overwrite=True): choose another path")
    if state.kind is not None and state.kind != kind and not overwrite:
        raise ScanFileError(f"{p} holds a {_what(state.kind)}, not a {what}; refusing to replace it "
                            "(pass overwrite=True, command line --force, to replace it)")
    if state.kind is None and state.foreign and not overwrite:
        n = len(state.foreign)
        raise ScanFileError(f"{p} is not empty and is not a {what} ({n} entr{'y' if n == 1 else 'ies'} that "
                            f"mri_lens did not write); refusing to save there: {hint}")


def _probe_writable(path: str, *, file_name: str | None = None) -> None:
    """Show that ``path`` (a directory, to hold ``file_name`` when given) can be written, leaving nothing behind
    and touching nothing another writer uses: a uniquely named temporary entry is created and removed in ``path``
    or, where ``path`` is missing, in its nearest existing ancestor (the missing directories are never created
    here: a writer creates them, then locks)."""
    probe_in = path
    while not os.path.isdir(probe_in):
        if os.path.lexists(probe_in) and not os.path.isdir(probe_in):  # again: another writer may just have made it
            raise ScanFileError(f"cannot write {path}: {probe_in} exists and is not a directory")
        parent = os.path.dirname(probe_in)
        if parent == probe_in:
            break
        probe_in = parent
    try:
        if file_name is not None and probe_in == path:  # the name a cleaner of that kind of save removes
            fd, tmp = tempfile.mkstemp(prefix=f"{TMP_PREFIX}{file_name}-", dir=path)
            os.close(fd)
            os.unlink(tmp)
        else:
            d = tempfile.mkdtemp(prefix=_PROBE_TMP, dir=probe_in)
            with contextlib.suppress(FileNotFoundError):  # a writer's clean-up in ``path`` may have been first
                os.rmdir(d)
    except OSError as e:
        raise write_error(path, e) from None


def check_save_target(path: str | os.PathLike, kind: str, *, overwrite: bool = False) -> str:
    """Refuse, before any work is done, a save of ``kind`` to ``path`` that would replace something else.

    Directory kinds (:data:`DIR_KINDS`): the path must be free, an empty directory, or a saved result of the same
    kind (``overwrite=True``: also a directory of other files, written beside them, or a result of another kind).
    File kinds (:data:`FILE_KINDS`): the path must be free or a file of the same kind (``overwrite=True``: any
    regular file). Also checks that the location is writable. Returns the absolute path.
    """
    if kind not in DIR_KINDS and kind not in FILE_KINDS:
        raise ValueError(f"unknown result kind {kind!r}")
    p = os.path.abspath(os.fspath(path))
    if kind in DIR_KINDS:
        if os.path.lexists(p) and not os.path.isdir(p):
            raise ScanFileError(f"{p} exists and is not a directory; refusing to replace it with a {_what(kind)}")
        _refuse_dir(_DirState(p), kind, overwrite)
        _probe_writable(p)
    else:
        if os.path.isdir(p):
            raise ScanFileError(f"{p} is a directory; a {_what(kind)} is a file")
        if os.path.lexists(p):
            if os.path.islink(p) or not os.path.isfile(p):
                raise ScanFileError(f"{p} exists and is not a regular file; refusing to replace it")
            found = file_kind(p)
            if found != kind and not overwrite:
                extra = f" (it holds a {_what(found)})" if found else " (mri_lens did not write it)"
                raise ScanFileError(f"{p} exists and is not a {_what(kind)}{extra}; refusing to replace it: choose "
                                    "another path, or pass overwrite=True (command line: --force)")
        _probe_writable(os.path.dirname(p), file_name=os.path.basename(p))
    return p


@contextlib.contextmanager
def _dir_lock(path: str):
    """Exclusive lock of a result directory for writers: the directory is created first where it is missing
    (with its parents; one that another writer has just created is fine), then its ``.lock`` is taken (flock;
    without fcntl, no lock: concurrent writers are not supported there). Nothing else is touched before."""
    try:
        os.makedirs(path, exist_ok=True)
    except FileExistsError:
        raise ScanFileError(f"cannot write {path}: it exists and is not a directory") from None
    except OSError as e:
        raise write_error(path, e) from None
    try:
        import fcntl
    except ImportError:  # Windows
        yield
        return
    try:
        fd = os.open(os.path.join(path, LOCK), os.O_RDWR | os.O_CREAT | _FLAG_NOFOLLOW | _FLAG_CLOEXEC, 0o666)
    except OSError as e:
        raise write_error(path, e, "lock") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def save_text(path: str | os.PathLike, text: str, *, kind: str, overwrite: bool = False) -> str:
    """Save a single-file result of ``kind`` atomically; replaces only a file of the same kind (see
    :func:`check_save_target`). A JSON object is sealed (:func:`~mri_lens.storage.integrity.seal_text`).
    Returns the absolute path."""
    p = check_save_target(path, kind, overwrite=overwrite)
    return write_text_atomic(p, seal_text(text))


def _manifest_text(manifest: dict[str, Any]) -> str:
    return json.dumps(seal(manifest), indent=1, sort_keys=True, allow_nan=False) + "\n"


def claim_dir(path: str | os.PathLike, kind: str, *, overwrite: bool = False) -> str:
    """Make ``path`` an output directory of ``kind`` (site, MRI page, N2G graphs, demo): free, empty or already
    of that kind, else refused as in :func:`check_save_target`. Writes its manifest. Returns the absolute path."""
    p = check_save_target(path, kind, overwrite=overwrite)
    try:
        os.makedirs(p, exist_ok=True)
    except OSError as e:
        raise write_error(p, e) from None
    state = _DirState(p)
    _refuse_dir(state, kind, overwrite)  # again: another writer may have been first
    if state.kind != kind:  # one atomic write; the directory's files are its owner's (a site, a page...)
        manifest = {"format": kind, "schema_version": 1, "mri_lens_version": __version__}
        write_text_atomic(os.path.join(p, MANIFEST), _manifest_text(manifest))
        if state.kind is not None:  # a result of another kind, replaced on request: its data versions go
            with _dir_lock(p):
                _remove_old(p, state.manifest, keep=None)
    return p


def _version_name() -> str:
    return f"v-{time.time_ns():016x}-{secrets.token_hex(4)}"


def _legacy_names(manifest: dict | None, allowed: Iterable[str]) -> list[str]:
    """Data files of a schema-1 result (beside its manifest) that a new version replaces."""
    if not isinstance(manifest, dict) or "version" in manifest:
        return []
    hashes = manifest.get("sha256")
    names = list(hashes) if isinstance(hashes, dict) else []
    return [n for n in names if isinstance(n, str) and n in allowed]


def _remove_old(path: str, old_manifest: dict | None, keep: str | None, allowed: Iterable[str] = (TENSORS,),
                keep_runs: Iterable[str] | None = None) -> None:
    """Remove what earlier or killed saves left: version directories other than ``keep``, this directory's
    temporary version directories and manifests, and a replaced schema-1 result's data files. With ``keep_runs``
    (a scan's commit) also the sharded runs (``run-<hash>``) the new result does not use. Never anything else.
    Call with the directory lock held."""
    keep_runs = None if keep_runs is None else set(keep_runs)
    for name in os.listdir(path):
        full = os.path.join(path, name)
        if name.startswith(_PROBE_TMP):
            with contextlib.suppress(OSError):
                os.rmdir(full)  # only ever an empty directory
            continue
        if (_VERSION_RE.match(name) and name != keep) or name.startswith(_VERSION_TMP) \
                or name.startswith(f"{TMP_PREFIX}{MANIFEST}-") \
                or (keep_runs is not None and RUN_RE.match(name) and name not in keep_runs):
            if os.path.isdir(full) and not os.path.islink(full):
                shutil.rmtree(full, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    os.unlink(full)
    for name in _legacy_names(old_manifest, allowed):
        full = os.path.join(path, name)
        if os.path.isfile(full) and not os.path.islink(full):
            with contextlib.suppress(OSError):
                os.unlink(full)


class ResultWriter:
    """Writes one new version of a directory result (see the module docstring), as a context manager::

        with ResultWriter(path, fmt="mri_lens.scan", schema=3) as w:
            w.write_arrays("arrays.safetensors", {"a": a})                 # read and checked at every load
            w.write_arrays("pooled.mean.L0.safetensors", {"values": v}, lazy=True)   # size-checked at load,
            w.write_text("tokenizer.json", text)                         # content checked by verify()
            w.commit(meta)

    Everything goes into a fresh version directory under a temporary name; :meth:`commit` renames it into place
    and switches ``manifest.json`` atomically (the commit point), then removes the previous version. Leaving the
    block without a commit removes what was written and leaves the old result as it was. The directory lock is
    taken before anything in the directory is looked at or written and held throughout (writers take turns).
    Every file's size and SHA-256 are computed as it is written; every safetensors file names the version it is
    written for (its binding) and the manifest is sealed. A write that fails (a full disk...) raises
    :class:`~mri_lens.errors.ScanFileError` naming the path.
    """

    def __init__(self, path: str | os.PathLike, *, fmt: str, schema: int, overwrite: bool = False,
                 keep_runs: Iterable[str] | None = None):
        self.path = check_save_target(path, fmt, overwrite=overwrite)
        self.fmt, self.schema, self.overwrite = fmt, schema, overwrite
        self.keep_runs = None if keep_runs is None else list(keep_runs)
        self.files: dict[str, dict[str, Any]] = {}
        self.arrays: dict[str, dict[str, Any]] = {}
        self._stack = contextlib.ExitStack()
        self._tmp: str | None = None
        self.committed = False

    def __enter__(self) -> "ResultWriter":
        self._mode = 0o666 & ~_umask()
        self._stack.enter_context(_dir_lock(self.path))  # creates the directory if missing, then locks
        try:
            self._state = _DirState(self.path)  # again, under the lock: another writer may have been first
            _refuse_dir(self._state, self.fmt, self.overwrite)
            old = self._state.manifest.get("version") if self._state.manifest else None
            _remove_old(self.path, None, keep=old if isinstance(old, str) else None)
            self.version = _version_name()
            self._tmp = os.path.join(self.path, TMP_PREFIX + self.version)
            try:
                os.mkdir(self._tmp)
            except OSError as e:
                self._tmp = None
                raise write_error(self.path, e) from None
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if not self.committed and self._tmp is not None:
                shutil.rmtree(self._tmp, ignore_errors=True)
        finally:
            self._stack.close()

    def _add(self, name: str, data, **spec: Any) -> None:
        _check_name(name, self.path)
        if name in self.files or name == MANIFEST:
            raise ValueError(f"{name} is written twice")
        try:
            _write_new_file(os.path.join(self._tmp, name), data, self._mode)
        except OSError as e:
            raise write_error(self.path, e) from None
        size = sum(memoryview(c).nbytes for c in (data if isinstance(data, list) else [data]))
        digest = hashlib.sha256()
        for c in (data if isinstance(data, list) else [data]):
            digest.update(c)
        self.files[name] = {"size": size, "sha256": digest.hexdigest(), **spec}

    def write_arrays(self, name: str, arrays: dict[str, np.ndarray], *, lazy: bool = False,
                     deferred: bool = False) -> None:
        """A safetensors file of ``arrays``. ``lazy``: one array named ``values``, memory-mapped on demand by the
        loader (its content checked by ``verify()``); ``deferred``: read (and checked) only when the loader asks
        for it; otherwise read and checked at every load."""
        from safetensors.numpy import save as st_save

        arrays = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
        bound = binding(self.version, name)  # the file names the result version it belongs to
        if deferred:
            self._add(name, st_save(arrays, metadata=bound), deferred=True)
        elif lazy:
            if set(arrays) != {"values"}:
                raise ValueError("a lazily read file holds one array named 'values'")
            v = arrays["values"]
            self._add(name, st_save(arrays, metadata=bound), lazy=True, shape=list(v.shape), dtype=str(v.dtype))
        else:
            self._add(name, st_save(arrays, metadata=bound))
            self.arrays.update({k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in arrays.items()})

    def write_text(self, name: str, text: str) -> None:
        self._add(name, text.encode("utf-8"))

    def commit(self, meta: dict[str, Any], **extra: Any) -> str:
        """Publish the new version: ``meta`` (JSON) in the manifest, with ``extra`` top-level manifest fields."""
        if TENSORS not in self.files:
            self.write_arrays(TENSORS, {})
        text = _manifest_text({"format": self.fmt, "schema_version": self.schema, "mri_lens_version": __version__,
                               "version": self.version, "bound": True, "files": self.files, "arrays": self.arrays,
                               "meta": meta, **extra})
        _fsync_dir(self._tmp)
        try:
            os.rename(self._tmp, os.path.join(self.path, self.version))
        except OSError as e:
            raise write_error(self.path, e) from None
        self._tmp = os.path.join(self.path, self.version)  # removed if the commit fails
        _fsync_dir(self.path)
        # The commit: before this rename the old result is what loads, after it the new one.
        write_text_atomic(os.path.join(self.path, MANIFEST), text)
        self._tmp = None
        self.committed = True
        _remove_old(self.path, self._state.manifest, keep=self.version, allowed=set(self.files) | {TENSORS},
                    keep_runs=self.keep_runs)
        return self.path


def save_dir(path: str | os.PathLike, *, fmt: str, schema: int, arrays: dict[str, np.ndarray],
             meta: dict[str, Any], extra_files: dict[str, str] | None = None, overwrite: bool = False) -> str:
    """Save a directory result of kind ``fmt`` (see the module docstring and :class:`ResultWriter`). Returns the
    absolute path. ``arrays`` go to ``arrays.safetensors``, ``extra_files`` (name -> text) beside it; ``meta``
    must be JSON-serialisable (checked before anything is written)."""
    json.dumps(meta, allow_nan=False)  # fail before writing anything
    for name in extra_files or {}:
        _check_name(name, os.fspath(path))
    with ResultWriter(path, fmt=fmt, schema=schema, overwrite=overwrite) as w:
        w.write_arrays(TENSORS, arrays)
        for name, text in (extra_files or {}).items():
            w.write_text(name, text)
        return w.commit(meta)
