"""The output directory of a scan (``out=``): its plan, its run directory and parts, resume, repair and merge.

Layout (the names come from :mod:`mri_lens.storage.files`, defined there once)::

    out/manifest.json, v-.../          the merged scan (Scan.save), once every shard is done
    out/run-<plan hash>/plan.json      what the run computes (its hash names the directory)
    out/run-<plan hash>/part-<i>/      shard i, written atomically when it is finished
    out/run-<plan hash>/.shards.lock   byte i locked while a process computes shard i

Resume: a rerun of the same scan skips the shards whose part is intact (checksums of every file, its plan, the
shard its name says); a damaged or misplaced part is computed again, and so is a part missing from a finished scan.
Processes scanning into one ``out`` share the work: each takes a shard's lock before computing it, checks again
that nobody finished it meanwhile, and waits for the shards others hold before it merges. Every shard is
merged once, in plan order, through :func:`mri_lens.scanning.merge.assemble`.
"""

from __future__ import annotations

import json
import os
from collections import deque
from typing import Any

from ..errors import ScanFileError
from ..results import PartDocs, Scan, ScanPart
from ..storage import RUN_RE, check_save_target, part_dir_name, read_json, run_dir_name, write_text_atomic
from .merge import assemble

__all__ = ["ScanDir", "ShardQueue"]

_CLAIMS = ".shards.lock"
_ANOTHER = ("choose another out, or pass overwrite=True (command line --force) to replace it")


class ScanDir:
    """The output directory ``path`` of a scan of a corpus (its fingerprint), checked when made: before any model
    loads, a directory holding anything but a scan of this corpus (or an unfinished run of it) is refused unless
    ``overwrite``. :meth:`bind` then ties it to the scan's plan."""

    def __init__(self, path: str | os.PathLike, corpus_fingerprint: str, *, overwrite: bool):
        self.path = check_save_target(path, "mri_lens.scan", overwrite=overwrite)
        self.overwrite = bool(overwrite)
        self.plan: Any = None
        self.run = ""
        self.repairs: list[dict[str, Any]] = []
        self.damaged_scan = ""  # why the finished scan of this plan found here could not be loaded
        if not overwrite:
            self._refuse_another_corpus(corpus_fingerprint)

    # ------------------------------------------------------------------ the directory as found
    def _manifest_scan_meta(self) -> dict[str, Any] | None:
        """The ``meta.scan`` of the scan saved in ``path`` (read raw: no part is opened), None when there is none
        or it cannot be read."""
        p = os.path.join(self.path, "manifest.json")
        if not os.path.lexists(p):
            return None
        try:
            meta = read_json(p, "scan manifest", follow=False)["meta"]["scan"]
        except (ScanFileError, KeyError, TypeError):
            return {}
        return meta if isinstance(meta, dict) else {}

    def _runs(self) -> list[str]:
        return sorted(n for n in os.listdir(self.path) if RUN_RE.match(n)) if os.path.isdir(self.path) else []

    def _refuse_another_corpus(self, fingerprint: str) -> None:
        found = []
        meta = self._manifest_scan_meta()
        if meta:
            found.append(meta.get("corpus_fingerprint"))
        for name in self._runs():
            try:
                found.append(read_json(os.path.join(self.path, name, "plan.json"), "scan plan",
                                       follow=False)["corpus_fingerprint"])
            except (ScanFileError, KeyError, TypeError):
                pass
        if any(isinstance(f, str) and f != fingerprint for f in found):
            raise ScanFileError(f"{self.path} holds a scan of another corpus, model or options (here: another "
                                f"corpus); {_ANOTHER}")

    # ------------------------------------------------------------------ one plan's run
    def bind(self, plan: Any) -> Scan | None:
        """Tie the directory to ``plan``: returns the finished scan of this plan when it is there and intact (and
        not ``overwrite``); else prepares the run directory (refusing other scans and runs unless ``overwrite``)
        and returns None."""
        self.plan = plan
        self.run = os.path.join(self.path, run_dir_name(plan.hash))
        meta = self._manifest_scan_meta()
        if meta is not None:
            if meta.get("plan_hash") == plan.hash and not self.overwrite:
                try:
                    return Scan.load(self.path)
                except ScanFileError as e:  # ours, damaged (a part deleted...): its shards are checked below
                    self.damaged_scan = str(e)
            elif meta.get("plan_hash") != plan.hash and not self.overwrite:
                raise ScanFileError(f"{self.path} holds a scan of another corpus, model or options (or an "
                                    f"unreadable one); {_ANOTHER}")
        others = [n for n in self._runs() if n != os.path.basename(self.run)]
        if others and not self.overwrite:
            raise ScanFileError(f"{self.path} holds an unfinished scan run of another corpus, model or options "
                                f"({others[0]}); {_ANOTHER}")
        os.makedirs(self.run, exist_ok=True)
        self._write_plan()
        return None

    def _write_plan(self) -> None:
        plan_path = os.path.join(self.run, "plan.json")
        identity = json.loads(json.dumps(self.plan.identity))
        if os.path.lexists(plan_path):
            try:
                same = read_json(plan_path, "scan plan", follow=False) == identity
            except ScanFileError:
                same = False
            if same:
                return
            if not self.overwrite:
                raise ScanFileError(f"{self.run} holds another scan plan (a damaged plan.json?); {_ANOTHER}")
        write_text_atomic(plan_path, json.dumps(identity, indent=1, sort_keys=True) + "\n")

    def part_path(self, i: int) -> str:
        """The directory of shard ``i``'s part."""
        return os.path.join(self.run, part_dir_name(i))

    def check_part(self, i: int) -> str | None:
        """None when shard ``i``'s part is finished and intact: its plan, the shard its name says, and the
        checksum of every file; else why not (``"missing"`` or what is wrong)."""
        path = self.part_path(i)
        if not os.path.lexists(os.path.join(path, "manifest.json")):
            return "missing"
        try:
            part = PartDocs(path, plan_hash=self.plan.hash)
            if part.loaded.meta.get("index") != i:
                return f"it holds shard {part.loaded.meta.get('index')!r}, not shard {i}"
            part.loaded.verify()
        except ScanFileError as e:
            return str(e)
        return None

    def todo(self) -> list[int]:
        """The shards to compute (in plan order): every one with ``overwrite``, else those without an intact
        part; damaged and misplaced parts (and parts missing from a finished scan) are recorded in
        :attr:`repairs`."""
        n = self.plan.n_shards
        if self.overwrite:
            return list(range(n))
        out = []
        for i in range(n):
            why = self.check_part(i)
            if why is None:
                continue
            out.append(i)
            if why != "missing" or self.damaged_scan:
                self.repairs.append({"shard": i, "part": part_dir_name(i), "why": why})
        return out

    def queue(self, todo: list[int]) -> "ShardQueue":
        return ShardQueue(self, todo)

    def save_part(self, part: ScanPart) -> None:
        part.save(self.part_path(part.index), plan_hash=self.plan.hash, overwrite=True)

    def _parts(self):
        for i in range(self.plan.n_shards):
            part = ScanPart.load(self.part_path(i), plan_hash=self.plan.hash)
            if part.index != i:
                raise ScanFileError(f"{self.part_path(i)} holds shard {part.index}, not shard {i} (it changed while "
                                    "the scan ran): run the scan again to compute it")
            yield part

    def merge(self, meta: dict[str, Any], tokenizer_json: str | None) -> Scan:
        """Merge every part (each loaded once, in plan order), save the scan into ``path`` (its pooled values stay
        in the parts) and return it."""
        result = assemble(self.plan, self._parts(), meta=meta, tokenizer_json=tokenizer_json, in_memory=False)
        result.source_path = result.save(self.path, overwrite=True)  # ours: its plan was checked by bind()
        return result


class ShardQueue:
    """The shards one process computes, handed out one at a time, each under its lock (taken without waiting
    while other shards are left; a shard another process holds is waited for at the end, then checked again).
    :meth:`done` releases a computed shard. ``computed``, ``shared`` (finished by another process meanwhile)."""

    def __init__(self, outdir: ScanDir, todo: list[int]):
        self.outdir, self.plan = outdir, outdir.plan
        self.pending, self.held_elsewhere = deque(todo), deque()
        self.tokens = sum(self.plan.shard_tokens(i) for i in todo)
        self.computed: list[int] = []
        self.shared: list[int] = []
        self._skipped_tokens = 0
        self._claims = _Claims(os.path.join(outdir.run, _CLAIMS))

    WAIT = "wait"  # next(block=False): only shards other processes hold are left

    def next(self, block: bool = True):
        """The next shard to compute, claimed; None when none is left; :attr:`WAIT` (``block=False``) when only
        shards other processes hold are left."""
        while self.pending:
            i = self.pending.popleft()
            if not self._claims.take(i, block=False):
                self.held_elsewhere.append(i)
            elif self._still_todo(i):
                return i
        while self.held_elsewhere:
            i = self.held_elsewhere[0]
            if not self._claims.take(i, block=block):
                return self.WAIT
            self.held_elsewhere.popleft()
            if self._still_todo(i):
                return i
        return None

    def close(self) -> None:
        """Let go of every claim (call once the computed shards are saved)."""
        self._claims.close()

    def _still_todo(self, i: int) -> bool:
        """Shard ``i`` (claimed) still needs computing; else it is released and counted as shared."""
        if self.outdir.overwrite or self.outdir.check_part(i) is not None:
            return True
        self._claims.release(i)
        self.shared.append(i)
        self._skipped_tokens += self.plan.shard_tokens(i)
        return False

    def done(self, i: int) -> None:
        """Shard ``i`` is computed and saved: release it."""
        self._claims.release(i)
        self.computed.append(i)

    def pop_skipped_tokens(self) -> int:
        """Tokens of the shards found finished by another process since the last call (for a progress bar)."""
        n, self._skipped_tokens = self._skipped_tokens, 0
        return n


class _Claims:
    """Byte ``i`` of one lock file locked while this process computes shard ``i`` (POSIX record locks: released
    when the process ends, however it ends). Without fcntl (Windows) every claim succeeds."""

    def __init__(self, path: str):
        try:
            import fcntl
        except ImportError:
            self.fd = None
            return
        self.fcntl = fcntl
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        try:
            self.fd = os.open(path, flags, 0o666)
        except OSError as e:
            raise ScanFileError(f"cannot open {path} to share the scan's shards ({e.strerror or e})") from None

    def take(self, i: int, *, block: bool) -> bool:
        if self.fd is None:
            return True
        try:
            self.fcntl.lockf(self.fd, self.fcntl.LOCK_EX | (0 if block else self.fcntl.LOCK_NB), 1, i)
        except OSError:
            if block:
                raise
            return False
        return True

    def release(self, i: int) -> None:
        if self.fd is not None:
            self.fcntl.lockf(self.fd, self.fcntl.LOCK_UN, 1, i)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
