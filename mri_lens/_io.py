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
import errno
import hashlib
import json
import os
import re
import secrets
import shutil
import stat
import tempfile
import time
from typing import Any, Iterable

import numpy as np

from .errors import ScanFileError

MANIFEST = "manifest.json"
TENSORS = "arrays.safetensors"
LOCK = ".lock"
TMP_PREFIX = ".tmp-"
_VERSION_TMP = TMP_PREFIX + "v-"
_PROBE_TMP = TMP_PREFIX + "probe-"
_VERSION_RE = re.compile(r"v-[0-9a-f]{16}-[0-9a-f]{8}\Z")
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}\Z")
_SHA_RE = re.compile(r"[0-9a-f]{64}\Z")
_MARKER_RE = re.compile(rb"mri_lens-kind: ([a-z0-9_.]{1,64})")
MAX_MANIFEST_BYTES = 64 << 20
MAX_JSON_BYTES = 512 << 20
MAX_JSON_DEPTH = 64
_DTYPES = frozenset({"bool", "uint8", "int8", "uint16", "int16", "uint32", "int32", "uint64", "int64", "float16",
                     "float32", "float64"})

# Every kind of result mri_lens saves. Directory kinds hold a manifest.json; file kinds are recognised by their
# JSON "format" field (node-link graphs: graph.kind) or by a "mri_lens-kind: <kind>" marker near the top.
DIR_KINDS = {
    "mri_lens.scan": "saved scan",
    "mri_lens.region_maps": "saved region maps",
    "mri_lens.n2g": "N2G output directory",
    "mri_lens.site": "Neuroscope site",
    "mri_lens.mri_page": "MRI page directory",
    "mri_lens.demo": "demo output directory",
}
FILE_KINDS = {
    "mri_lens.coactivation_graph": "co-activation graph",
    "mri_lens.n2g.graph": "N2G neuron graph",
    "mri_lens.n2g.index": "N2G neuron index",
    "mri_lens.page": "mri_lens HTML page",
}
_FLAG_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_FLAG_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_FLAG_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_FLAG_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_HAS_DIR_FD = os.open in os.supports_dir_fd and os.stat in os.supports_dir_fd


PAGE_KIND = "mri_lens.page"


def marker(kind: str) -> str:
    """The comment that identifies a text file mri_lens wrote (HTML, GraphML, GEXF): ``mri_lens-kind: <kind>``."""
    return f"mri_lens-kind: {kind}"


def page_marker() -> str:
    """The HTML comment every generated page carries right after its doctype (see :func:`marker`)."""
    return f"<!-- {marker(PAGE_KIND)} -->"


# ---------------------------------------------------------------------------------------------- small helpers
def _umask() -> int:
    try:  # Linux: read it without changing it (os.umask is process-wide, briefly wrong in other threads)
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | _FLAG_DIRECTORY)
    except OSError:  # platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _sha256_bytes(data) -> str:
    return hashlib.sha256(data).hexdigest()


def check_depth(obj: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    """True when the decoded JSON ``obj`` nests no deeper than ``limit`` (iterative: never recurses)."""
    stack = [(obj, 1)]
    while stack:
        o, d = stack.pop()
        if isinstance(o, dict):
            if d > limit:
                return False
            stack.extend((v, d + 1) for v in o.values())
        elif isinstance(o, list):
            if d > limit:
                return False
            stack.extend((v, d + 1) for v in o)
    return True


def _reject_constant(name: str):
    raise ValueError(f"{name} is not allowed in a saved result")


def parse_json(data: bytes, source: str, what: str) -> Any:
    """Decode JSON bytes of a saved ``what``; every problem is a :class:`ScanFileError` naming ``source``."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ScanFileError(f"{source} is not a saved {what} (not UTF-8 text)") from None
    try:
        obj = json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise ScanFileError(f"{source} is not a saved {what} (JSON nested too deeply)") from None
    except json.JSONDecodeError as e:
        raise ScanFileError(f"{source} is corrupted or truncated (not valid JSON: {e.msg} at line {e.lineno} "
                            f"column {e.colno})") from None
    except ValueError as e:
        raise ScanFileError(f"{source} is not a saved {what} ({e})") from None
    if not check_depth(obj):
        raise ScanFileError(f"{source} is not a saved {what} (JSON nested deeper than {MAX_JSON_DEPTH} levels)")
    return obj


# ---------------------------------------------------------------------------------------------- confined reads
def _open_regular(name: str, dir_fd: int | None, source: str, *, follow: bool = False) -> tuple[int, os.stat_result]:
    """Open ``name`` (relative to ``dir_fd``) for reading: a regular file, never a symlink, FIFO or device.

    Opens without blocking (a FIFO would otherwise wait for a writer forever). Returns ``(fd, stat)``.
    """
    flags = os.O_RDONLY | _FLAG_NONBLOCK | _FLAG_CLOEXEC | (0 if follow else _FLAG_NOFOLLOW)
    try:
        if dir_fd is not None:
            fd = os.open(name, flags, dir_fd=dir_fd)
        else:
            fd = os.open(name, flags)
    except FileNotFoundError:
        raise
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.EMLINK):
            raise ScanFileError(f"{source} is a symbolic link; saved results hold regular files only") from None
        raise ScanFileError(f"{source} cannot be opened ({os.strerror(e.errno) if e.errno else e})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ScanFileError(f"{source} is not a regular file; saved results hold regular files only")
    except BaseException:
        os.close(fd)
        raise
    return fd, st


def _read_fd(fd: int, size: int) -> bytes:
    chunks, left = [], size
    while left > 0:
        b = os.read(fd, min(left, 1 << 24))
        if not b:
            break
        chunks.append(b)
        left -= len(b)
    return b"".join(chunks)


def read_bytes(name: str, dir_fd: int | None, source: str, *, max_bytes: int, size: int | None = None,
               follow: bool = False) -> bytes:
    """The bytes of one regular file, its size checked first (``size``: exact, else at most ``max_bytes``)."""
    fd, st = _open_regular(name, dir_fd, source, follow=follow)
    try:
        if size is not None and st.st_size != size:
            raise ScanFileError(f"{source} is corrupted or truncated (size {st.st_size}, the manifest says {size})")
        if st.st_size > max_bytes:
            raise ScanFileError(f"{source} is too large for a saved result of this kind ({st.st_size} bytes)")
        data = _read_fd(fd, st.st_size)
        if len(data) != st.st_size:
            raise ScanFileError(f"{source} changed while it was read")
        return data
    finally:
        os.close(fd)


def read_json(path: str | os.PathLike, what: str, *, max_bytes: int = MAX_JSON_BYTES, follow: bool = True) -> Any:
    """Parse a JSON file written by mri_lens (a regular file, size bounded). ``follow=False`` for files found
    inside a result directory (never through a symbolic link); the path a caller names may be one.

    A missing, truncated, non-JSON, too deep or too large file raises :class:`~mri_lens.errors.ScanFileError`.
    """
    path = os.fspath(path)
    try:
        data = read_bytes(path, None, path, max_bytes=max_bytes, follow=follow)
    except FileNotFoundError:
        raise ScanFileError(f"{path} does not exist (no saved {what} there)") from None
    except IsADirectoryError:
        raise ScanFileError(f"{path} is a directory, not a saved {what}") from None
    return parse_json(data, path, what)


def read_json_in(dir_fd: int | None, directory: str, name: str, what: str, *,
                 max_bytes: int = MAX_JSON_BYTES) -> Any:
    """Parse the JSON file ``name`` (a name the format defines) inside an open directory, confined to it."""
    _check_name(name, directory)
    source = os.path.join(directory, name)
    try:
        data = read_bytes(name if dir_fd is not None else source, dir_fd, source, max_bytes=max_bytes)
    except FileNotFoundError:
        raise ScanFileError(f"{source} does not exist (no saved {what} there)") from None
    return parse_json(data, source, what)


def _check_name(name: Any, directory: str, allowed: Iterable[str] | None = None) -> str:
    if not isinstance(name, str) or not _NAME_RE.match(name) or (allowed is not None and name not in allowed):
        raise ScanFileError(f"{directory}: the manifest names a file that is not part of this format")
    return name


@contextlib.contextmanager
def open_dir(path: str):
    """An fd of directory ``path`` for confined reads (None where the platform has no directory fds)."""
    if not _HAS_DIR_FD:
        yield None
        return
    try:
        fd = os.open(path, os.O_RDONLY | _FLAG_DIRECTORY | _FLAG_CLOEXEC)
    except FileNotFoundError:
        raise
    except NotADirectoryError:
        raise ScanFileError(f"{path} is not a directory") from None
    except OSError as e:
        raise ScanFileError(f"{path} cannot be opened ({os.strerror(e.errno) if e.errno else e})") from None
    try:
        yield fd
    finally:
        os.close(fd)


def _open_subdir(name: str, dir_fd: int | None, parent: str) -> int | None:
    """An fd of the version directory ``name`` inside ``parent`` (not a symlink). FileNotFoundError if absent."""
    if dir_fd is None:
        p = os.path.join(parent, name)
        if os.path.islink(p):
            raise ScanFileError(f"{parent}: the version directory is a symbolic link")
        if not os.path.isdir(p):
            raise FileNotFoundError(p)
        return None
    try:
        return os.open(name, os.O_RDONLY | _FLAG_DIRECTORY | _FLAG_NOFOLLOW | _FLAG_CLOEXEC, dir_fd=dir_fd)
    except FileNotFoundError:
        raise
    except OSError:
        raise ScanFileError(f"{parent}: the version directory is not a plain directory") from None


# ---------------------------------------------------------------------------------------------- recognising
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
        obj = parse_json(data, path, "result")
    except ScanFileError:
        return None
    if not isinstance(obj, dict):
        return None
    kind = obj.get("format")
    if kind is None and isinstance(obj.get("graph"), dict):
        kind = obj["graph"].get("kind")
    return kind if isinstance(kind, str) else None


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
            if name == LOCK or name.startswith(TMP_PREFIX) or _VERSION_RE.match(name):
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
    """Show that ``path`` (a directory, to hold ``file_name`` when given) can be written, leaving nothing behind.

    Missing directories are created and removed again; in an existing one a temporary entry is created and
    removed (the name a cleaner of that kind of save removes, should a kill come in between).
    """
    missing = []
    probe_in = path
    while not os.path.isdir(probe_in):
        if os.path.lexists(probe_in):
            raise ScanFileError(f"cannot write {path}: {probe_in} exists and is not a directory")
        missing.append(probe_in)
        parent = os.path.dirname(probe_in)
        if parent == probe_in:
            break
        probe_in = parent
    try:
        if missing:
            created = []
            try:
                for d in reversed(missing):
                    os.mkdir(d)
                    created.append(d)
            finally:
                for d in reversed(created):
                    with contextlib.suppress(OSError):
                        os.rmdir(d)
        elif file_name is not None:
            fd, tmp = tempfile.mkstemp(prefix=f"{TMP_PREFIX}{file_name}-", dir=path)
            os.close(fd)
            os.unlink(tmp)
        else:
            d = tempfile.mkdtemp(prefix=_PROBE_TMP, dir=path)
            with contextlib.suppress(FileNotFoundError):
                os.rmdir(d)
    except OSError as e:
        raise ScanFileError(f"cannot write {path}: {os.strerror(e.errno) if e.errno else e}") from None


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


# ---------------------------------------------------------------------------------------------- writing
@contextlib.contextmanager
def _dir_lock(path: str):
    """Exclusive lock of a result directory for writers (``.lock`` inside it; a no-op without fcntl)."""
    try:
        import fcntl
    except ImportError:  # Windows: no lock; concurrent writers are not supported there
        yield
        return
    try:
        fd = os.open(os.path.join(path, LOCK), os.O_RDWR | os.O_CREAT | _FLAG_NOFOLLOW | _FLAG_CLOEXEC, 0o666)
    except OSError as e:
        raise ScanFileError(f"cannot lock {path} for writing ({os.strerror(e.errno) if e.errno else e})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _write_new_file(path: str, data, mode: int) -> None:
    """Create ``path`` (must not exist), write ``data`` (bytes or a list of buffers), fsync."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _FLAG_NOFOLLOW | _FLAG_CLOEXEC, 0o600)
    try:
        for chunk in (data if isinstance(data, list) else [data]):
            view = memoryview(chunk).cast("B")
            while view:
                n = os.write(fd, view)
                view = view[n:]
        if hasattr(os, "fchmod"):
            os.fchmod(fd, mode)
        os.fsync(fd)
    finally:
        os.close(fd)


def _clean_stale_tmp_files(parent: str, base: str, min_age_s: float = 30.0) -> None:
    """Remove ``.tmp-<base>-*`` files of killed writes: unlocked (their writer is gone) and not recent."""
    try:
        import fcntl
    except ImportError:
        return
    prefix = f"{TMP_PREFIX}{base}-"
    try:
        names = [n for n in os.listdir(parent) if n.startswith(prefix)]
    except OSError:
        return
    now = time.time()
    for n in names:
        p = os.path.join(parent, n)
        try:
            fd, st = _open_regular(p, None, p)
        except (OSError, ScanFileError):
            continue
        try:
            if now - st.st_mtime < min_age_s:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue  # a live writer holds it
            if os.lstat(p).st_ino == st.st_ino:
                os.unlink(p)
        except OSError:
            pass
        finally:
            os.close(fd)


def write_file_atomic(path: str | os.PathLike, data: bytes) -> str:
    """Write ``data`` to ``path`` through a locked temporary sibling and an atomic rename (no ownership check:
    for files inside a directory mri_lens owns, or after :func:`check_save_target`). Returns the absolute path."""
    path = os.path.abspath(os.fspath(path))
    parent, base = os.path.split(path)
    os.makedirs(parent, exist_ok=True)
    _clean_stale_tmp_files(parent, base)
    fd, tmp = tempfile.mkstemp(prefix=f"{TMP_PREFIX}{base}-", dir=parent)
    try:
        try:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held until closed: tells cleaners the writer is alive
        except (ImportError, OSError):
            pass
        view = memoryview(data).cast("B")
        while view:
            n = os.write(fd, view)
            view = view[n:]
        if hasattr(os, "fchmod"):
            os.fchmod(fd, 0o666 & ~_umask())
        os.fsync(fd)
        os.replace(tmp, path)
        tmp = None
    finally:
        os.close(fd)
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    _fsync_dir(parent)
    return path


def write_text_atomic(path: str | os.PathLike, text: str) -> str:
    """Write UTF-8 ``text`` to ``path`` atomically (see :func:`write_file_atomic`). Returns the absolute path."""
    return write_file_atomic(path, text.encode("utf-8"))


def save_text(path: str | os.PathLike, text: str, *, kind: str, overwrite: bool = False) -> str:
    """Save a single-file result of ``kind`` atomically; replaces only a file of the same kind (see
    :func:`check_save_target`). Returns the absolute path."""
    p = check_save_target(path, kind, overwrite=overwrite)
    return write_text_atomic(p, text)


def claim_dir(path: str | os.PathLike, kind: str, *, overwrite: bool = False) -> str:
    """Make ``path`` an output directory of ``kind`` (site, MRI page, N2G graphs, demo): free, empty or already
    of that kind, else refused as in :func:`check_save_target`. Writes its manifest. Returns the absolute path."""
    from . import __version__

    p = check_save_target(path, kind, overwrite=overwrite)
    os.makedirs(p, exist_ok=True)
    state = _DirState(p)
    if state.kind != kind:
        manifest = {"format": kind, "schema_version": 1, "mri_lens_version": __version__}
        write_text_atomic(os.path.join(p, MANIFEST), json.dumps(manifest, indent=1, sort_keys=True) + "\n")
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


def _remove_old(path: str, old_manifest: dict | None, keep: str | None, allowed: Iterable[str] = (TENSORS,)) -> None:
    """Remove what earlier or killed saves left: version directories other than ``keep``, this directory's
    temporary version directories and manifests, and a replaced schema-1 result's data files. Never anything else.
    Call with the directory lock held."""
    for name in os.listdir(path):
        full = os.path.join(path, name)
        if name.startswith(_PROBE_TMP):
            with contextlib.suppress(OSError):
                os.rmdir(full)  # only ever an empty directory
            continue
        if (_VERSION_RE.match(name) and name != keep) or name.startswith(_VERSION_TMP) \
                or name.startswith(f"{TMP_PREFIX}{MANIFEST}-"):
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


def save_dir(path: str | os.PathLike, *, fmt: str, schema: int, arrays: dict[str, np.ndarray],
             meta: dict[str, Any], extra_files: dict[str, str] | None = None, overwrite: bool = False) -> str:
    """Save a directory result of kind ``fmt`` (see the module docstring). Returns the absolute path.

    ``arrays`` go to ``arrays.safetensors``, ``extra_files`` (name -> text) beside it; ``meta`` must be
    JSON-serialisable (checked before anything is written).
    """
    from safetensors.numpy import save as st_save

    from . import __version__

    extra_files = dict(extra_files or {})
    allowed = {TENSORS, *extra_files}
    for name in allowed:
        _check_name(name, os.fspath(path))
    json.dumps(meta, allow_nan=False)  # fail before writing anything
    p = check_save_target(path, fmt, overwrite=overwrite)
    arrays = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
    blobs = {TENSORS: st_save(arrays), **{k: v.encode("utf-8") for k, v in extra_files.items()}}
    os.makedirs(p, exist_ok=True)
    mode = 0o666 & ~_umask()
    with _dir_lock(p):
        state = _DirState(p)  # again, under the lock: another writer may have been first
        _refuse_dir(state, fmt, overwrite)
        old_version = state.manifest.get("version") if state.manifest else None
        _remove_old(p, None, keep=old_version if isinstance(old_version, str) else None)
        vname = _version_name()
        tmp = os.path.join(p, TMP_PREFIX + vname)
        os.mkdir(tmp)
        files = {}
        for name, blob in blobs.items():
            _write_new_file(os.path.join(tmp, name), blob, mode)
            files[name] = {"size": len(blob), "sha256": _sha256_bytes(blob)}
        _fsync_dir(tmp)
        os.rename(tmp, os.path.join(p, vname))
        _fsync_dir(p)
        manifest = {
            "format": fmt, "schema_version": schema, "mri_lens_version": __version__, "version": vname,
            "files": files, "arrays": {k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in arrays.items()},
            "meta": meta,
        }
        # The commit: before this rename the old result is what loads, after it the new one.
        write_text_atomic(os.path.join(p, MANIFEST), json.dumps(manifest, indent=1, sort_keys=True,
                                                                allow_nan=False) + "\n")
        _remove_old(p, state.manifest, keep=vname, allowed=allowed | {TENSORS})
    return p


# ---------------------------------------------------------------------------------------------- loading
class _Changed(Exception):
    """The result was replaced while it was read: read the new manifest."""


def _manifest_fields(m: Any, p: str, fmt: str, schema: int) -> int:
    if not isinstance(m, dict) or m.get("format") != fmt:
        found = m.get("format") if isinstance(m, dict) else type(m).__name__
        shown = found if isinstance(found, str) and len(found) <= 64 else type(found).__name__
        raise ScanFileError(f"{p} holds {shown!r}, not a saved {fmt}")
    version = m.get("schema_version")
    if not _is_int(version) or not 1 <= version <= schema:
        shown = version if _is_int(version) else type(version).__name__
        raise ScanFileError(f"{p} has schema version {shown!r}; this mri_lens reads versions 1 to {schema}"
                            + (" (upgrade mri_lens)" if _is_int(version) and version > schema else ""))
    return version


def _file_table(m: dict, p: str, allowed: frozenset) -> dict[str, tuple[int | None, str]]:
    """``{name: (size or None, sha256)}`` of every data file, every name one the format defines."""
    if "version" in m:
        files = m.get("files")
        if not isinstance(files, dict):
            raise ScanFileError(f"{p} is not a consistent saved result: its manifest lists no files")
        out = {}
        for name, spec in files.items():
            _check_name(name, p, allowed)
            if not isinstance(spec, dict) or not _is_int(spec.get("size")) or spec["size"] < 0 \
                    or not isinstance(spec.get("sha256"), str) or not _SHA_RE.match(spec["sha256"]):
                raise ScanFileError(f"{p}: the manifest entry of {name} lacks a valid size and SHA-256")
            out[name] = (spec["size"], spec["sha256"])
    else:  # schema 1: names and checksums only
        hashes = m.get("sha256")
        if not isinstance(hashes, dict):
            raise ScanFileError(f"{p} is not a consistent saved result: its manifest has no checksums")
        out = {}
        for name, digest in hashes.items():
            _check_name(name, p, allowed)
            if not isinstance(digest, str) or not _SHA_RE.match(digest):
                raise ScanFileError(f"{p}: the checksum of {name} is malformed")
            out[name] = (None, digest)
    if TENSORS not in out:
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


def _load_once(p: str, fmt: str, schema: int, allowed: frozenset):
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
        _manifest_fields(m, p, fmt, schema)
        table = _file_table(m, p, allowed)
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
        for name, (size, digest) in table.items():
            source = os.path.join(base, name)
            try:
                data = read_bytes(name if vfd is not None else source, vfd, source, max_bytes=1 << 62, size=size)
            except FileNotFoundError:
                if _manifest_changed(p, raw):
                    raise _Changed from None
                raise ScanFileError(f"{p} is incomplete: {name} is missing") from None
            if _sha256_bytes(data) != digest:
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
    return arrays, meta, extras


def _manifest_changed(p: str, raw: bytes) -> bool:
    try:
        return read_bytes(os.path.join(p, MANIFEST), None, p, max_bytes=MAX_MANIFEST_BYTES) != raw
    except (OSError, ScanFileError):
        return True


def load_dir(path: str | os.PathLike, *, fmt: str, schema: int, files: Iterable[str] = (TENSORS,)
             ) -> tuple[dict[str, np.ndarray], dict[str, Any], dict[str, str]]:
    """Read and validate a directory written by :func:`save_dir`. Returns ``(arrays, meta, extra_files)``.

    ``files``: the data file names this format defines (``arrays.safetensors`` and its extra files); a manifest
    naming any other file is refused. Every problem raises :class:`~mri_lens.errors.ScanFileError`.
    """
    p = os.fspath(path)
    allowed = frozenset(files) | {TENSORS}
    for _ in range(20):  # a writer replacing the result under us: read its new manifest
        try:
            return _load_once(p, fmt, schema, allowed)
        except _Changed:
            time.sleep(0.01)
    raise ScanFileError(f"{p} kept changing while it was read (a writer is replacing it); try again")


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
