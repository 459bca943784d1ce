"""File-system primitives of saved results: confined, bounded reads; JSON; atomic single-file writes; locks.

Everything here is about one file at a time. What a save may replace, and directory results with their versions,
are in :mod:`mri_lens.storage.write`.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import operator
import os
import re
import stat
import tempfile
import time
from typing import Any, Iterable

from ..errors import ScanFileError
from .integrity import check_seal

MANIFEST = "manifest.json"
TENSORS = "arrays.safetensors"
LOCK = ".lock"
TMP_PREFIX = ".tmp-"
_VERSION_TMP = TMP_PREFIX + "v-"
_PROBE_TMP = TMP_PREFIX + "probe-"
_VERSION_RE = re.compile(r"v-[0-9a-f]{16}-[0-9a-f]{8}\Z")
RUN_RE = re.compile(r"run-[0-9a-f]{16}\Z")  # a sharded scan's work directory (its plan and its parts)
# One finished shard inside a run directory: at least five digits (zero-padded), more without a leading zero, so
# every index has exactly one name and no index is too large to have one.
PART_RE = re.compile(r"part-(?:[0-9]{5}|[1-9][0-9]{5,})\Z")


def run_dir_name(plan_hash: str) -> str:
    """The name of the work directory of the sharded run of a plan (inside the scan's ``out``)."""
    return f"run-{plan_hash[:16]}"


def part_dir_name(index: int) -> str:
    """The name of shard ``index``'s directory inside a run directory (``part-00007``, ``part-123456``)."""
    try:
        i = operator.index(index)  # an int or a numpy integer
    except TypeError:
        i = -1
    if isinstance(index, bool) or i < 0:
        raise ValueError(f"a part index is a non-negative integer, got {index!r}")
    return f"part-{i:05d}"


def part_index(name: str) -> int | None:
    """The shard index a part directory's name stands for (the inverse of :func:`part_dir_name`), else None."""
    return int(name[len("part-"):]) if isinstance(name, str) and PART_RE.match(name) else None


_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}\Z")
_SHA_RE = re.compile(r"[0-9a-f]{64}\Z")
_MARKER_RE = re.compile(rb"mri_lens-kind: ([a-z0-9_.]{1,64})")
MAX_MANIFEST_BYTES = 64 << 20
MAX_JSON_BYTES = 512 << 20
MAX_JSON_DEPTH = 64
_DTYPES = frozenset({"bool", "uint8", "int8", "uint16", "int16", "uint32", "int32", "uint64", "int64", "float16",
                     "float32", "float64"})
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


def parse_json(data: bytes, source: str, what: str, *, sealed: bool = True) -> Any:
    """Decode JSON bytes of a saved ``what``; every problem is a :class:`ScanFileError` naming ``source``.

    A seal (:mod:`mri_lens.storage.integrity`) is checked and removed (``sealed=False``: left as it is)."""
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
    return check_seal(obj, source, what) if sealed else obj


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


def write_error(path: str, e: OSError, doing: str = "write") -> ScanFileError:
    """The :class:`ScanFileError` for an ``OSError`` met while writing ``path``: it names the path and says what
    happened in words (a full disk, an exceeded quota, a read-only file system...)."""
    if isinstance(e, ScanFileError):
        return e
    code = e.errno
    if code == errno.ENOSPC:
        why = "the disk is full (no space left on the device); free some space or choose another path"
    elif code == getattr(errno, "EDQUOT", -1):
        why = "the disk quota is exceeded; free some space or choose another path"
    elif code == errno.EROFS:
        why = "the file system is read-only"
    elif code in (errno.EACCES, errno.EPERM):
        why = "permission denied"
    else:
        why = os.strerror(code) if code else str(e)
    return ScanFileError(f"cannot {doing} {path}: {why}")


def _check_name(name: Any, directory: str, allowed: Iterable[str] | None = None) -> str:
    if not isinstance(name, str) or not _NAME_RE.match(name) or (allowed is not None and name not in allowed):
        raise ScanFileError(f"{directory}: the manifest names a file that is not part of this format")
    return name


def _open_below(fd: int, rel: str, top: str) -> int:
    """An fd of directory ``rel`` below the open directory ``fd`` (of ``top``), opened one component at a time
    without following a symbolic link. Closes ``fd``."""
    for part in [x for x in rel.split(os.sep) if x and x != "."]:
        try:
            nxt = os.open(part, os.O_RDONLY | _FLAG_DIRECTORY | _FLAG_NOFOLLOW | _FLAG_CLOEXEC, dir_fd=fd)
        except FileNotFoundError:
            os.close(fd)
            raise
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
                raise ScanFileError(f"{top}: {part} is a symbolic link or not a directory; a saved result's "
                                    "directories are plain directories") from None
            raise ScanFileError(f"{top}: {part} cannot be opened ({os.strerror(e.errno) if e.errno else e})") from None
        os.close(fd)
        fd = nxt
    return fd


@contextlib.contextmanager
def open_dir(path: str, *, under: str | None = None):
    """An fd of directory ``path`` for confined reads (None where the platform has no directory fds).

    ``under``: a directory above ``path``; the components of ``path`` below it are opened without following
    symbolic links (a result's run and part directories), ``under`` itself may be one."""
    rel = None
    if under is not None:
        rel = os.path.relpath(os.path.abspath(path), os.path.abspath(under))
        if rel == os.pardir or rel.startswith(os.pardir + os.sep) or os.path.isabs(rel):
            raise ValueError(f"{path} is not below {under}")
    if not _HAS_DIR_FD:
        if rel is not None:
            cur = under
            for part in [x for x in rel.split(os.sep) if x and x != "."]:
                cur = os.path.join(cur, part)
                if os.path.islink(cur):
                    raise ScanFileError(f"{under}: {part} is a symbolic link; a saved result's directories are "
                                        "plain directories")
        yield None
        return
    try:
        fd = os.open(under if rel is not None else path, os.O_RDONLY | _FLAG_DIRECTORY | _FLAG_CLOEXEC)
    except FileNotFoundError:
        raise
    except NotADirectoryError:
        raise ScanFileError(f"{path} is not a directory") from None
    except OSError as e:
        raise ScanFileError(f"{path} cannot be opened ({os.strerror(e.errno) if e.errno else e})") from None
    if rel is not None:
        fd = _open_below(fd, rel, under)
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


# A new file's data (and the size needed to read it back) must be on disk before the manifest naming it is
# committed; fdatasync says that much for less than fsync (no timestamps).
_sync_data = getattr(os, "fdatasync", os.fsync)


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
        _sync_data(fd)
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
    for files inside a directory mri_lens owns, or after :func:`check_save_target`). Returns the absolute path.
    A failure (a full disk...) is a :class:`ScanFileError` naming ``path``; ``path`` is then as it was."""
    path = os.path.abspath(os.fspath(path))
    parent, base = os.path.split(path)
    try:
        os.makedirs(parent, exist_ok=True)
        _clean_stale_tmp_files(parent, base)
        fd, tmp = tempfile.mkstemp(prefix=f"{TMP_PREFIX}{base}-", dir=parent)
    except OSError as e:
        raise write_error(path, e) from None
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
    except OSError as e:
        raise write_error(path, e) from None
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


def check_format(obj: Any, fmt: str, schema: int, source: str, *, header: Any = None, what: str | None = None,
                 hint: str = "") -> int:
    """The one format and schema check of every loader: ``obj`` (a parsed manifest or JSON result; its
    ``format`` and ``schema_version`` are read from ``header``, default ``obj`` itself) must be of format ``fmt``
    with a schema version in ``1..schema``. Returns the version; otherwise a :class:`ScanFileError` naming
    ``source`` (``what`` names the kind, default ``fmt``; ``hint`` is added to the wrong-format message)."""
    head = obj if header is None else header
    found = head.get("format", head.get("kind")) if isinstance(head, dict) else type(obj).__name__
    if not isinstance(obj, dict) or not isinstance(head, dict) or found != fmt:
        shown = found if isinstance(found, str) and len(found) <= 64 else type(found).__name__
        raise ScanFileError(f"{source} holds {shown!r}, not a saved {what or fmt}{hint}")
    version = head.get("schema_version", 1 if header is not None else None)
    if not _is_int(version) or not 1 <= version <= schema:
        shown = version if _is_int(version) else type(version).__name__
        raise ScanFileError(f"{source} has schema version {shown!r}; this mri_lens reads versions 1 to {schema}"
                            + (" (upgrade mri_lens)" if _is_int(version) and version > schema else ""))
    return version
