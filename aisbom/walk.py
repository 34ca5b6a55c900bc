"""Scanning many paths: directory walks, exclusions, parallel jobs, progress."""
from __future__ import annotations

import fnmatch
import os
import signal
import sys
import time
from typing import IO, TYPE_CHECKING, Any, Iterable, Iterator, List, Optional, Sequence, Tuple

from aisbom.policy import Policy, default_policy
from aisbom.report import FileReport, Finding, Severity, Verdict
from aisbom.scanning import Limits, scan

if TYPE_CHECKING:  # pragma: no cover
    import concurrent.futures

# concurrent.futures and multiprocessing are imported where used: a scan of
# one file should not pay for them at start-up.

__all__ = ["MissingPath", "iter_files", "scan_paths", "scan_many", "scan_file_or_error"]

# Version-control stores hold compressed copies of everything; they are never models.
DEFAULT_SKIP_DIRS = frozenset({".git", ".hg", ".svn"})


class MissingPath(Exception):
    """A path named on the command line does not exist."""


def _excluded(path: str, rel: str, patterns: Sequence[str]) -> bool:
    base = os.path.basename(path)
    return any(fnmatch.fnmatch(rel, p) or fnmatch.fnmatch(base, p) or fnmatch.fnmatch(path, p) for p in patterns)


def _within(path: str, root: str) -> bool:
    try:
        return os.path.commonpath([path, root]) == root
    except ValueError:
        return False


def iter_files(paths: Iterable[str], exclude: Sequence[str] = ()) -> Iterator[Tuple[str, Optional[str]]]:
    """Yield (path, problem) for every regular file under paths.

    problem is None for files to scan, or why a path is reported without
    being read (a symlink leading out of the scanned tree, which is never
    followed). Raises MissingPath for a path that does not exist. Each
    directory's files come before its subdirectories, both in sorted order.
    """
    for top in paths:
        if not os.path.lexists(top):
            raise MissingPath(f"no such file or directory: {top}")
        if not os.path.isdir(top):
            yield top, None  # scan() refuses a FIFO or device without blocking on it
            continue
        yield from _walk(top, os.path.realpath(top), exclude)


def _walk(top: str, root: str, exclude: Sequence[str]) -> Iterator[Tuple[str, Optional[str]]]:
    # scandir's entry types spare a stat per file; a walk of thousands of
    # small files is otherwise a good part of the scan.
    pending = [top]
    while pending:
        folder = pending.pop()
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError:
            continue  # vanished or unreadable: as os.walk, nothing to list
        subdirs: List[str] = []
        files = []
        for entry in entries:
            try:
                is_dir = entry.is_dir()
            except OSError:
                is_dir = False
            if not is_dir:
                files.append(entry)
                continue
            if entry.name in DEFAULT_SKIP_DIRS:
                continue
            full = entry.path
            if exclude and _excluded(full, os.path.relpath(full, top), exclude):
                continue
            if entry.is_symlink():  # never descended into
                if not _within(os.path.realpath(full), root):
                    yield full, "a symlink to a directory outside the scanned tree; not followed"
                continue
            subdirs.append(full)
        for entry in files:
            full = entry.path
            if exclude and _excluded(full, os.path.relpath(full, top), exclude):
                continue
            if entry.is_symlink():
                target = os.path.realpath(full)
                if not _within(target, root):
                    yield full, "a symlink to a file outside the scanned tree; not followed"
                    continue
                if not os.path.isfile(target):
                    continue
            elif not entry.is_file(follow_symlinks=False):
                continue  # sockets, fifos, devices: not files to read
            yield full, None
        pending.extend(reversed(subdirs))


def _problem_report(path: str, message: str) -> FileReport:
    return FileReport(
        path=path,
        format="unread",
        verdict=Verdict.ERROR,
        findings=(Finding("unreadable", Severity.ERROR, message),),
    )


def scan_file_or_error(path: str, policy: Optional[Policy] = None, lint: bool = False, limits: Optional[Limits] = None,
                       hash: bool = True) -> FileReport:
    """scan(), with files that vanish or can't be read reported as errors instead of raised."""
    try:
        return scan(path, policy=policy, lint=lint, limits=limits, hash=hash)
    except OSError as exc:
        return _problem_report(path, f"cannot read the file: {exc.strerror or exc}")


class _Progress:
    """A one-line counter on a terminal, shown only when the scan takes a moment."""

    def __init__(self, total: int, enabled: bool, stream: IO[str] = sys.stderr) -> None:
        self.total = total
        self.stream = stream
        self.enabled = enabled and total > 1 and stream.isatty()
        self.start = time.monotonic()
        self.shown = False

    def update(self, done: int, path: str) -> None:
        if not self.enabled or time.monotonic() - self.start < 0.5:
            return
        width = 30
        filled = width * done // self.total
        label = path if len(path) <= 40 else "..." + path[-37:]
        self.stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{self.total} {label:<40}")
        self.stream.flush()
        self.shown = True

    def close(self) -> None:
        if self.shown:
            self.stream.write("\r" + " " * 90 + "\r")
            self.stream.flush()


# With processes=True, directories of at least this many files are shared out
# to forked children; fewer are not worth a fork.
_PROCESS_MIN_FILES = 200


def scan_paths(
    paths: Iterable[str],
    *,
    policy: Optional[Policy] = None,
    lint: bool = False,
    exclude: Sequence[str] = (),
    jobs: Optional[int] = None,
    progress: bool = True,
    limits: Optional[Limits] = None,
    hash: bool = True,
    processes: bool = False,
) -> Iterator[FileReport]:
    """Scan files and directories in parallel; reports come in path order.
    hash=False skips the sha256 (the text report does not show it).

    Workers are threads (the engine releases the GIL while it parses, which
    pays off on big files), or with processes=True forked children that take
    a share of the files each, which pays off on many small files, where the
    per-file Python work holds the GIL. Only the CLI asks for processes:
    forking is not something a library does behind its caller's back."""
    policy = policy or default_policy()
    files: List[Tuple[str, Optional[str]]] = list(iter_files(paths, exclude))
    jobs = jobs or os.cpu_count() or 1
    bar = _Progress(len(files), progress)
    try:
        if jobs == 1 or len(files) <= 1:
            for i, (path, problem) in enumerate(files, 1):
                yield _scan_one(path, problem, policy, lint, limits, hash)
                bar.update(i, path)
            return
        import concurrent.futures

        if processes and len(files) >= _PROCESS_MIN_FILES and hasattr(os, "fork"):
            yield from _in_processes(files, jobs, bar, policy, lint, limits, hash)
            return
        with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
            futures = [pool.submit(_scan_one, path, problem, policy, lint, limits, hash) for path, problem in files]
            for i, fut in enumerate(futures, 1):
                yield fut.result()
                bar.update(i, files[i - 1][0])
    finally:
        bar.close()


def _scan_one(path: str, problem: Optional[str], policy: Policy, lint: bool, limits: Optional[Limits],
              hash: bool) -> FileReport:
    return _problem_report(path, problem) if problem else scan_file_or_error(path, policy, lint, limits, hash)


def _in_processes(files: List[Tuple[str, Optional[str]]], jobs: int, bar: _Progress, *args: Any) -> Iterator[FileReport]:
    """jobs - 1 forked children and this process each scan every jobs-th file;
    a child sends its reports back pickled through a pipe when it is done.

    This process does a share too, so nothing waits idle, and the only traffic
    is one message per child: a process pool's per-chunk round trips cost as
    much as they saved. A child that fails leaves its share to this process."""
    import pickle

    children: List[Tuple[int, int, int]] = []  # (share, pid, read end)
    for share in range(1, jobs):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            status = 1
            try:
                os.close(r)
                out = [_scan_one(path, problem, *args) for path, problem in files[share::jobs]]
                data = pickle.dumps(out, protocol=pickle.HIGHEST_PROTOCOL)
                view = memoryview(data)
                while view:
                    view = view[os.write(w, view):]
                status = 0
            finally:
                os._exit(status)  # never the caller's atexit handlers, buffers or finally blocks
        os.close(w)
        children.append((share, pid, r))
    shares: List[List[FileReport]] = [[] for _ in range(jobs)]
    try:
        for i, (path, problem) in enumerate(files[0::jobs]):
            shares[0].append(_scan_one(path, problem, *args))
            bar.update(min(len(files), (i + 1) * jobs), path)
        for share, pid, r in children:
            with os.fdopen(r, "rb") as f:
                data = f.read()
            _, status = os.waitpid(pid, 0)
            children = [c for c in children if c[1] != pid]
            if status == 0 and data:
                shares[share] = pickle.loads(data)
            else:
                shares[share] = [_scan_one(path, problem, *args) for path, problem in files[share::jobs]]
    finally:
        for _share, pid, r in children:  # only after an error or an interrupt here
            for undo in (lambda: os.close(r), lambda: os.kill(pid, signal.SIGKILL), lambda: os.waitpid(pid, 0)):
                try:
                    undo()
                except OSError:
                    pass
    for i in range(len(files)):
        yield shares[i % jobs][i // jobs]


def _scan_task(path: str, problem: Optional[str], allow: Tuple[str, ...], lint: bool,
               limits: Optional[Limits]) -> FileReport:
    """One file, in whatever process or machine the executor chose: only names
    and plain values travel, the policy is rebuilt there."""
    if problem:
        return _problem_report(path, problem)
    policy = default_policy().allowing(allow) if allow else default_policy()
    return scan_file_or_error(path, policy, lint, limits)


def scan_many(
    paths: Iterable[str],
    executor: Optional[concurrent.futures.Executor] = None,
    *,
    allow: Sequence[str] = (),
    lint: bool = False,
    exclude: Sequence[str] = (),
    limits: Optional[Limits] = None,
) -> Iterator[FileReport]:
    """Scan many files and directories on any concurrent.futures.Executor.

    With no executor, a thread pool of os.cpu_count() threads is used (the
    engine releases the GIL). Any Executor works: a ProcessPoolExecutor, or a
    Dask or Ray cluster through their executor interfaces, for registries of
    millions of files. Reports come in path order; files that vanish or can't
    be read are error reports, not exceptions.
    """
    import concurrent.futures

    files = list(iter_files(paths, exclude))
    allow = tuple(allow)
    own = executor is None
    pool = executor or concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 1)
    try:
        futures = [pool.submit(_scan_task, path, problem, allow, lint, limits) for path, problem in files]
        for fut in futures:
            yield fut.result()
    finally:
        if own:
            pool.shutdown(wait=True)
