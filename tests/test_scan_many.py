"""Scanning at scale (issue 5, "Scale").

- aisbom.scan_many(paths, executor=None) on any concurrent.futures.Executor:
  its own thread pool, a ProcessPoolExecutor, an executor that finishes work
  out of order, and a Dask LocalCluster through client.get_executor();
  reports always come in path order.
- Files that vanish, turn into a FIFO or a directory, or can't be read between
  listing and scanning are error reports, never crashes or hangs.
- `aisbom scan DIR --jobs N` (parallel, same report for every N), `--exclude`
  on names and relative paths, the progress bar (a terminal only, only when
  the scan takes a moment; run under a pty), and [tool.aisbom] settings from
  pyproject.toml for the CLI and safe_load.

Malicious samples are inert payloads built from bytes; the `canary` fixture
checks that none of them ever ran.
"""
from __future__ import annotations

import concurrent.futures
import errno
import inspect
import json
import multiprocessing
import os
import pickle
import pty
import re
import select
import stat
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import pytest

import aisbom
import aisbom.walk as walk
from aisbom import DisallowedGlobalError, Verdict
from aisbom.walk import iter_files, scan_many, scan_paths
from asm import BINUNICODE, EMPTY_DICT, EMPTY_TUPLE, GLOBAL, REDUCE, SETITEM, pickle_of

CLEAN = pickle_of(EMPTY_DICT + BINUNICODE("k") + BINUNICODE("v") + SETITEM)
SUSPICIOUS = pickle_of(GLOBAL("mylib.models", "Net") + EMPTY_TUPLE + REDUCE)
BROKEN = pickle_of(EMPTY_DICT)[:-1]  # no STOP: an error verdict

# Fields of a JSON report that may legitimately differ between two runs of the
# same scan (none today; listed so a timing field added later is not a diff).
VOLATILE = frozenset({"elapsed", "duration", "seconds", "timestamp", "started", "finished"})


# ------------------------------------------------------------------ the trees


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture
def tree(tmp_path: Path, canary) -> Dict[str, Path]:
    """Two mixed directories and a loose file: every verdict, several formats, nesting."""
    a = tmp_path / "models"
    _write(a / "clean.pkl", CLEAN)
    _write(a / "suspicious.pkl", SUSPICIOUS)
    _write(a / "malicious.bin", canary.os_system())
    _write(a / "broken.pkl", BROKEN)
    _write(a / "notes.txt", b"not a model\n")
    _write(a / "sub" / "deep" / "exec.pt", canary.builtins_exec())
    _write(a / "sub" / "deep" / "state.pkl", pickle.dumps({"w": [1.0, 2.0], "step": 3}, protocol=4))
    _write(a / "sub" / "z_last.pkl", CLEAN)
    try:
        import numpy as np

        np.save(a / "sub" / "weights.npy", np.arange(12, dtype=np.float32))
        np.savez(a / "sub" / "bundle.npz", x=np.ones(3), y=np.zeros(2))
    except ImportError:
        pass
    b = tmp_path / "more"
    _write(b / "a.pkl", SUSPICIOUS)
    _write(b / "b" / "run.pkl", canary.subprocess_run())
    loose = _write(tmp_path / "loose.pkl", CLEAN)
    return {"a": a, "b": b, "loose": loose, "root": tmp_path}


@pytest.fixture
def many(tmp_path: Path, canary) -> Path:
    """60 files of varied sizes and verdicts in nested folders: enough for parallel
    workers to finish out of order."""
    d = tmp_path / "many"
    for i in range(60):
        sub = d / f"g{i % 4}" / (f"h{i % 3}" if i % 5 else "")
        kind = i % 6
        if kind == 0:
            data = canary.os_system()
        elif kind == 1:
            data = SUSPICIOUS
        elif kind == 2:
            data = BROKEN
        else:
            # Sizes from a few bytes to ~1 MB so scan times differ a lot.
            data = pickle.dumps({"i": i, "blob": bytes(4 ** (i % 10)), "xs": list(range(i * 50))}, protocol=4)
        _write(sub / f"m{i:03d}.pkl", data)
    return d


def _paths(reports) -> List[str]:
    return [r.path for r in reports]


def _listing(paths: Sequence[str], exclude: Sequence[str] = ()) -> List[str]:
    return [p for p, _ in iter_files(paths, exclude)]


def _reference(paths: Sequence[str], **kw: Any) -> List[Dict[str, Any]]:
    """The reports of a plain one-by-one scan, as JSON."""
    return [r.to_json() for r in scan_paths(paths, jobs=1, progress=False, **kw)]


# ------------------------------------------------------------------ scan_many


def test_scan_many_is_public_api():
    """The issue names it aisbom.scan_many."""
    assert aisbom.scan_many is scan_many
    assert "scan_many" in aisbom.__all__


def test_scan_many_signature():
    params = list(inspect.signature(scan_many).parameters.values())
    assert params[0].name == "paths"
    assert params[1].name == "executor" and params[1].default is None


def test_scan_many_default_executor_path_order(tree):
    paths = [str(tree["a"]), str(tree["loose"]), str(tree["b"])]
    reports = list(scan_many(paths))
    assert _paths(reports) == _listing(paths)
    # The order follows the arguments, then the walk of each directory.
    first_b = next(i for i, r in enumerate(reports) if r.path.startswith(str(tree["b"])))
    assert reports[first_b - 1].path == str(tree["loose"])
    assert all(r.path.startswith(str(tree["a"])) for r in reports[:first_b - 1])
    assert [r.to_json() for r in reports] == _reference(paths)
    verdicts = {os.path.relpath(r.path, tree["root"]): r.verdict for r in reports}
    assert verdicts["models/clean.pkl"] is Verdict.CLEAN
    assert verdicts["models/suspicious.pkl"] is Verdict.SUSPICIOUS
    assert verdicts["models/malicious.bin"] is Verdict.MALICIOUS
    assert verdicts["models/broken.pkl"] is Verdict.ERROR
    assert verdicts["models/sub/deep/exec.pt"] is Verdict.MALICIOUS
    assert verdicts["more/b/run.pkl"] is Verdict.MALICIOUS
    assert verdicts["loose.pkl"] is Verdict.CLEAN


def test_scan_many_is_lazy_iterator_of_reports(tree):
    it = scan_many([str(tree["a"])])
    assert iter(it) is it
    first = next(it)
    assert isinstance(first, aisbom.FileReport)
    rest = list(it)
    assert len(rest) + 1 == len(_listing([str(tree["a"])]))


class _Deferred(concurrent.futures.Future):
    def __init__(self, owner: "OutOfOrderExecutor") -> None:
        super().__init__()
        self._owner = owner

    def result(self, timeout=None):
        self._owner.drain()
        return super().result(timeout)


class OutOfOrderExecutor(concurrent.futures.Executor):
    """An Executor that runs nothing until a result is asked for (or, for
    callers that only wait, until submissions pause for a moment), then runs
    every pending task in reverse order of submission: work that completes
    out of order, deterministically."""

    def __init__(self) -> None:
        self.pending: List[Tuple[_Deferred, Callable[..., Any], tuple, dict]] = []
        self.ran = 0
        self.shut = False
        self._lock = threading.Lock()
        self._last_submit = time.monotonic()
        self._stop = threading.Event()
        self._idle = threading.Thread(target=self._drain_when_idle, daemon=True)
        self._idle.start()

    def submit(self, fn, /, *args, **kwargs):
        fut = _Deferred(self)
        with self._lock:
            self.pending.append((fut, fn, args, kwargs))
            self._last_submit = time.monotonic()
        return fut

    def _drain_when_idle(self) -> None:
        while not self._stop.wait(0.05):
            with self._lock:
                idle = self.pending and time.monotonic() - self._last_submit > 0.2
            if idle:
                self.drain()

    def drain(self) -> None:
        with self._lock:
            batch, self.pending = self.pending, []
            for fut, fn, args, kwargs in reversed(batch):
                if fut.set_running_or_notify_cancel():
                    try:
                        fut.set_result(fn(*args, **kwargs))
                    except BaseException as exc:  # pragma: no cover - reported through the future
                        fut.set_exception(exc)
                self.ran += 1

    def shutdown(self, wait=True, *, cancel_futures=False):
        self.shut = True
        self.drain()
        self._stop.set()


def test_scan_many_any_executor_out_of_order(tree, many):
    paths = [str(many), str(tree["a"])]
    ex = OutOfOrderExecutor()
    try:
        reports = _with_timeout(lambda: list(scan_many(paths, ex)))
        assert ex.ran == len(reports) > 60  # every file went through the given executor
        assert _paths(reports) == _listing(paths)
        assert [r.to_json() for r in reports] == _reference(paths)
        assert not ex.shut  # the caller's executor is the caller's to shut down
    finally:
        ex.shutdown()


def _spawn_pool(workers: int = 2) -> concurrent.futures.ProcessPoolExecutor:
    # spawn: no fork of a process that may hold torch's or pytest's threads.
    return concurrent.futures.ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))


def _pid_of_scan(_path: str) -> int:
    return os.getpid()


def test_scan_many_process_pool(tree, many):
    paths = [str(tree["a"]), str(many), str(tree["loose"]), str(tree["b"])]
    with _spawn_pool() as pool:
        reports = list(scan_many(paths, pool))
        # The pool still works: scan_many did not shut down an executor it was given.
        assert pool.submit(_pid_of_scan, "x").result(timeout=60) != os.getpid()
    assert _paths(reports) == _listing(paths)
    assert [r.to_json() for r in reports] == _reference(paths)
    assert {r.verdict for r in reports} == set(Verdict)


def test_scan_many_process_pool_allow_and_exclude(tree):
    """Options travel to the workers as plain values: allow= and exclude=."""
    paths = [str(tree["a"]), str(tree["b"])]
    with _spawn_pool() as pool:
        reports = list(scan_many(paths, pool, allow=["mylib.models.Net"], exclude=["*.npy", "deep"]))
    got = {os.path.relpath(r.path, tree["root"]): r.verdict for r in reports}
    assert got["models/suspicious.pkl"] is Verdict.CLEAN
    assert got["more/a.pkl"] is Verdict.CLEAN
    assert got["models/malicious.bin"] is Verdict.MALICIOUS  # allowing one global does not hide others
    assert not any(p.endswith(".npy") or "/deep/" in p for p in got)


def _distributed():
    try:
        import distributed  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"dask.distributed is not installed (pip install 'dask[distributed]'): {exc}")
    return distributed


def _listening_addresses() -> List[str]:
    """The IPs this process and its children listen on (TCP)."""
    import psutil  # a dependency of distributed

    me = psutil.Process()
    ips = []
    for proc in [me] + me.children(recursive=True):
        try:
            conns = proc.net_connections(kind="inet") if hasattr(proc, "net_connections") else proc.connections("inet")
        except psutil.Error:
            continue
        ips += [c.laddr.ip for c in conns if c.status == psutil.CONN_LISTEN]
    return ips


@pytest.mark.parametrize("processes", [False, True], ids=["inproc", "2-worker-processes"])
def test_scan_many_on_dask_local_cluster(tree, many, processes):
    distributed = _distributed()
    import logging

    before = set(_listening_addresses())
    # Every server (scheduler, workers, their HTTP endpoints) on 127.0.0.1 only, on free ports.
    kw: Dict[str, Any] = dict(dashboard_address="127.0.0.1:0", worker_dashboard_address="127.0.0.1:0",
                              silence_logs=logging.ERROR)
    if processes:
        kw.update(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1")
    else:
        kw.update(n_workers=1, threads_per_worker=2, processes=False)  # inproc:// transport
    paths = [str(tree["a"]), str(many), str(tree["b"])]
    with distributed.LocalCluster(**kw) as cluster, distributed.Client(cluster) as client:
        addr = cluster.scheduler_address
        assert addr.startswith("inproc://") or addr.startswith("tcp://127.0.0.1:"), addr
        assert set(_listening_addresses()) - before <= {"127.0.0.1"}
        executor = client.get_executor()
        reports = list(scan_many(paths, executor))
        assert _paths(reports) == _listing(paths)
        # The files were really scanned as tasks of this cluster.
        prefixes = set(cluster.scheduler.task_prefixes)
        assert any("scan" in p for p in prefixes), prefixes
        # Still usable afterwards: scan_many does not shut down a given executor.
        assert executor.submit(len, "abc").result(timeout=60) == 3
    assert [r.to_json() for r in reports] == _reference(paths)
    assert sum(r.verdict is Verdict.MALICIOUS for r in reports) == 3 + 10


# ------------------------------------------------------------------ files that change under the scan


def _listing_then(action: Callable[[str], None], victims: Sequence[str]):
    """A replacement for walk.iter_files that lists everything first, then applies
    `action` to the victims: the files change between listing and scanning."""
    real = walk.iter_files

    def fake(paths, exclude=()):
        items = list(real(paths, exclude))
        for v in victims:
            action(v)
        yield from items

    return fake


def _vanish(path: str) -> None:
    os.unlink(path)


def _to_fifo(path: str) -> None:
    os.unlink(path)
    os.mkfifo(path)


def _to_dir(path: str) -> None:
    os.unlink(path)
    os.mkdir(path)


def _with_timeout(fn: Callable[[], Any], seconds: float = 60) -> Any:
    """Run fn in a thread; fail (instead of hanging the suite) if it blocks."""
    box: Dict[str, Any] = {}

    def target():
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            box["error"] = exc

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"the scan blocked for more than {seconds}s"
    if "error" in box:
        raise box["error"]
    return box["value"]


def _unblock_fifos(paths: Sequence[str]) -> None:
    for p in paths:
        if os.path.exists(p) and stat.S_ISFIFO(os.stat(p).st_mode):
            try:  # a reader blocked on it would get EOF
                os.close(os.open(p, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                pass


def _assert_error_reports(reports, victims: Sequence[str], expected_total: int) -> None:
    assert len(reports) == expected_total
    by_path = {r.path: r for r in reports}
    for v in victims:
        r = by_path[v]
        assert r.verdict is Verdict.ERROR, (v, r)
        assert r.findings and all(f.severity.label == "error" for f in r.findings), r.findings
        assert r.sha256 is None
    others = [r for r in reports if r.path not in victims]
    assert any(r.verdict is Verdict.CLEAN for r in others)  # the rest of the scan went on


ACTIONS = {"deleted": _vanish, "became-a-fifo": _to_fifo, "became-a-directory": _to_dir}


@pytest.mark.parametrize("how", list(ACTIONS))
@pytest.mark.parametrize("runner", ["scan_many", "scan_many-process-pool", "scan_paths-jobs-1", "scan_paths-jobs-2"])
def test_files_changing_after_listing_are_error_reports(tree, monkeypatch, how, runner):
    a = str(tree["a"])
    victims = [os.path.join(a, "clean.pkl"), os.path.join(a, "sub", "deep", "state.pkl")]
    listed = _listing([a])
    monkeypatch.setattr(walk, "iter_files", _listing_then(ACTIONS[how], victims))

    def go():
        if runner == "scan_many":
            return list(scan_many([a]))
        if runner == "scan_many-process-pool":
            with _spawn_pool() as pool:
                return list(scan_many([a], pool))
        return list(scan_paths([a], jobs=int(runner[-1]), progress=False))

    try:
        reports = _with_timeout(go)
    finally:
        _unblock_fifos(victims)
    _assert_error_reports(reports, victims, len(listed))
    assert _paths(reports) == listed  # still in path order, the victims in their places


def test_unreadable_file_is_an_error_report(tree, monkeypatch):
    """A file without read permission. Root reads it anyway, so there the
    kernel's refusal is stood in for: open() fails with EACCES as it would."""
    import errno

    from aisbom import scanning

    victim = tree["a"] / "clean.pkl"
    victim.chmod(0)
    if os.access(victim, os.R_OK):
        real_open = os.open

        def refusing_open(path, flags, *args, **kwargs):
            if os.fspath(path) == str(victim):
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
            return real_open(path, flags, *args, **kwargs)

        monkeypatch.setattr(scanning.os, "open", refusing_open)
    try:
        reports = list(scan_many([str(tree["a"])]))
    finally:
        victim.chmod(0o644)
    _assert_error_reports(reports, [str(victim)], len(_listing([str(tree["a"])])))
    assert "Permission denied" in next(r for r in reports if r.path == str(victim)).findings[0].message


def test_fifo_named_on_the_command_line_is_an_error_not_a_hang(tmp_path):
    fifo = tmp_path / "pipe.pkl"
    os.mkfifo(fifo)
    good = _write(tmp_path / "good.pkl", CLEAN)
    try:
        reports = _with_timeout(lambda: list(scan_many([str(fifo), str(good)])))
    finally:
        _unblock_fifos([str(fifo)])
    assert [r.verdict for r in reports] == [Verdict.ERROR, Verdict.CLEAN]


def test_cli_file_vanishing_mid_scan(tree, monkeypatch, capsys):
    from aisbom.cli import main

    a = str(tree["a"])
    victim = os.path.join(a, "sub", "z_last.pkl")
    monkeypatch.setattr(walk, "iter_files", _listing_then(_vanish, [victim]))
    rc = _with_timeout(lambda: main(["scan", a, "--format", "json", "--jobs", "2"]))
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    doc = json.loads(captured.out)
    got = {f["path"]: f for f in doc["files"]}
    assert got[victim]["verdict"] == "error"
    assert got[victim]["findings"][0]["severity"] == "error"
    assert rc == 1  # an error verdict always fails


# ------------------------------------------------------------------ the CLI: --jobs


def _env() -> Dict[str, str]:
    env = dict(os.environ)
    env.pop("NO_COLOR", None)
    return env


def run_cli(*args: str, cwd: Optional[Path] = None, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "aisbom", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, env=_env())


def _strip(doc: Any) -> Any:
    if isinstance(doc, dict):
        return {k: _strip(v) for k, v in doc.items() if k not in VOLATILE}
    if isinstance(doc, list):
        return [_strip(v) for v in doc]
    return doc


@pytest.mark.parametrize("jobs", ["2", "3"])
def test_cli_jobs_give_identical_json(tree, many, jobs):
    args = ("scan", "--format", "json", str(tree["a"]), str(many), str(tree["loose"]), str(tree["b"]))
    one = run_cli(*args, "--jobs", "1", cwd=tree["root"])
    par = run_cli(*args, "--jobs", jobs, cwd=tree["root"])
    default = run_cli(*args, cwd=tree["root"])
    assert one.returncode == par.returncode == default.returncode == 1
    assert one.stderr == par.stderr == default.stderr == ""
    doc1, docn, docd = (_strip(json.loads(p.stdout)) for p in (one, par, default))
    assert doc1 == docn == docd
    assert [f["path"] for f in doc1["files"]] == _listing(args[3:])


class _Rendezvous:
    """A stand-in for walk.scan whose first two calls wait for each other: it
    passes only if two files really are scanned at the same time."""

    def __init__(self) -> None:
        self.barrier = threading.Barrier(2, timeout=20)
        self.calls = 0
        self.threads = set()
        self.lock = threading.Lock()
        self.real = walk.scan

    def __call__(self, path, *a, **kw):
        with self.lock:
            self.calls += 1
            n = self.calls
            self.threads.add(threading.get_ident())
        if n <= 2:
            self.barrier.wait()
        return self.real(path, *a, **kw)


@pytest.mark.parametrize("argv, cpus", [(["--jobs", "2"], 1), ([], 2)], ids=["jobs-2", "default-is-cpu-count"])
def test_cli_jobs_scan_in_parallel(many, monkeypatch, capsys, argv, cpus):
    from aisbom.cli import main

    monkeypatch.setattr(os, "cpu_count", lambda: cpus)
    rv = _Rendezvous()
    monkeypatch.setattr(walk, "scan", rv)
    rc = _with_timeout(lambda: main(["scan", str(many), "--format", "json", *argv]), 90)
    doc = json.loads(capsys.readouterr().out)
    assert rc == 1 and len(doc["files"]) == 60 == rv.calls
    assert len(rv.threads) >= 2


def test_cli_jobs_1_is_sequential(many, monkeypatch, capsys):
    from aisbom.cli import main

    seen: List[int] = []
    real = walk.scan

    def one_at_a_time(path, *a, **kw):
        seen.append(threading.get_ident())
        return real(path, *a, **kw)

    monkeypatch.setattr(walk, "scan", one_at_a_time)
    main(["scan", str(many), "--format", "json", "--jobs", "1"])
    json.loads(capsys.readouterr().out)
    assert len(seen) == 60 and len(set(seen)) == 1


def test_cli_jobs_use_worker_processes_on_many_files(many, monkeypatch, capsys, tmp_path):
    """Many small files: a forked child takes a share of them (their per-file
    Python work would serialise threads on the GIL); the report is the same."""
    from aisbom.cli import main

    log = tmp_path / "pids"
    real = walk.scan

    def logged(path, *a, **kw):
        with open(log, "a") as f:  # forked workers inherit this patch; O_APPEND lines don't interleave
            f.write(f"{os.getpid()}\n")
        return real(path, *a, **kw)

    assert main(["scan", str(many), "--format", "json", "--jobs", "1"]) == 1
    serial = capsys.readouterr().out
    monkeypatch.setattr(walk, "scan", logged)
    monkeypatch.setattr(walk, "_PROCESS_MIN_FILES", 10)
    rc = _with_timeout(lambda: main(["scan", str(many), "--format", "json", "--jobs", "2"]), 90)
    assert rc == 1 and capsys.readouterr().out == serial
    pids = log.read_text().split()
    assert len(pids) == 60 and len(set(pids)) == 2 and pids.count(str(os.getpid())) == 30


def test_cli_jobs_a_failed_child_share_is_scanned_by_the_parent(many, monkeypatch, capsys):
    """A child that dies leaves its share to the parent: the report is whole."""
    from aisbom.cli import main

    assert main(["scan", str(many), "--format", "json", "--jobs", "1"]) == 1
    serial = capsys.readouterr().out
    parent = os.getpid()
    real = walk.scan

    def dies_in_a_child(path, *a, **kw):
        if os.getpid() != parent:
            os._exit(3)
        return real(path, *a, **kw)

    monkeypatch.setattr(walk, "scan", dies_in_a_child)
    monkeypatch.setattr(walk, "_PROCESS_MIN_FILES", 10)
    rc = _with_timeout(lambda: main(["scan", str(many), "--format", "json", "--jobs", "3"]), 90)
    assert rc == 1 and capsys.readouterr().out == serial


# ------------------------------------------------------------------ the CLI: --exclude


def _scanned(p: subprocess.CompletedProcess, root: Path) -> List[str]:
    assert "Traceback" not in p.stderr, p.stderr
    return sorted(os.path.relpath(f["path"], root) for f in json.loads(p.stdout)["files"])


@pytest.mark.parametrize(
    "globs, gone",
    [
        (["*.txt"], ["notes.txt"]),  # a name, at the top
        (["state.pkl"], ["sub/deep/state.pkl"]),  # a name, deep down
        (["*.np?"], ["sub/weights.npy", "sub/bundle.npz"]),  # a name glob, in a subfolder
        (["sub/deep/*"], ["sub/deep/exec.pt", "sub/deep/state.pkl"]),  # a relative path
        (["sub/z_*.pkl"], ["sub/z_last.pkl"]),  # a relative path of one file
        (["deep"], ["sub/deep/exec.pt", "sub/deep/state.pkl"]),  # a directory by name: pruned
        (["sub"], ["sub/deep/exec.pt", "sub/deep/state.pkl", "sub/z_last.pkl", "sub/weights.npy",
                   "sub/bundle.npz"]),
        (["*.txt", "malicious.bin"], ["notes.txt", "malicious.bin"]),  # repeatable
    ],
)
def test_cli_exclude(tree, globs, gone):
    a = tree["a"]
    everything = _scanned(run_cli("scan", "--format", "json", str(a), cwd=tree["root"]), a)
    gone = [g for g in gone if g in everything]  # numpy may be missing
    assert gone
    args = [x for g in globs for x in ("--exclude", g)]
    p = run_cli("scan", "--format", "json", *args, str(a), cwd=tree["root"])
    assert _scanned(p, a) == sorted(set(everything) - set(gone))


def test_cli_exclude_relative_to_each_scanned_directory(tree):
    """A relative glob matches below every directory named on the command line."""
    p = run_cli("scan", "--format", "json", "--exclude", "b/*", str(tree["a"]), str(tree["b"]), cwd=tree["root"])
    paths = _scanned(p, tree["root"])
    assert "more/b/run.pkl" not in paths and "more/a.pkl" in paths
    assert "models/clean.pkl" in paths


def test_cli_exclude_everything_malicious_exits_0_only_when_clean(tree):
    a = tree["a"]
    p = run_cli("scan", str(a), "--exclude", "malicious.bin", "--exclude", "deep", "--exclude", "suspicious.pkl",
                "--exclude", "broken.pkl", cwd=tree["root"])
    assert p.returncode == 0, p.stdout + p.stderr
    p = run_cli("scan", str(a), "--exclude", "deep", "--exclude", "suspicious.pkl", "--exclude", "broken.pkl",
                cwd=tree["root"])
    assert p.returncode == 1 and "malicious.bin" in p.stdout


# ------------------------------------------------------------------ the CLI: progress


_SLOW_CLI = textwrap.dedent(
    """
    import sys, time
    import aisbom.walk as walk

    real = walk.scan

    def slow(*a, **kw):
        time.sleep({delay})
        return real(*a, **kw)

    walk.scan = slow
    from aisbom.cli import main

    sys.exit(main(sys.argv[1:]))
    """
)


def _slow_cli(tmp_path: Path, delay: float) -> List[str]:
    """The aisbom command with every file's scan slowed down: a scan that takes a while."""
    script = tmp_path / "slow_aisbom.py"
    script.write_text(_SLOW_CLI.format(delay=delay))
    return [sys.executable, str(script)]


def run_on_tty(argv: Sequence[str], cwd: Optional[Path] = None, timeout: float = 120) -> Tuple[int, str, bytes]:
    """Run argv with stderr on a pseudo-terminal (stdout a pipe): (status, stdout, what the terminal got)."""
    master, slave = pty.openpty()
    p = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave,
                         cwd=cwd, env=_env())
    os.close(slave)
    out: List[bytes] = []
    reader = threading.Thread(target=lambda: out.append(p.stdout.read()), daemon=True)
    reader.start()
    tty = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError as exc:  # EIO: the child closed the terminal
                    if exc.errno != errno.EIO:
                        raise
                    break
                if not chunk:
                    break
                tty += chunk
            elif p.poll() is not None:
                break
        else:
            p.kill()
            pytest.fail("the command did not finish on the terminal")
        rc = p.wait(timeout=30)
        reader.join(30)
    finally:
        os.close(master)
    return rc, (out[0] if out else b"").decode(), bytes(tty)


def test_progress_on_a_terminal_when_the_scan_takes_a_while(many, tmp_path):
    rc, out, tty = run_on_tty(_slow_cli(tmp_path, 0.05) + ["scan", "--format", "json", "--jobs", "2", str(many)])
    assert rc == 1
    assert len(json.loads(out)["files"]) == 60  # stdout is the report only
    text = tty.decode(errors="replace")
    assert "Traceback" not in text, text
    assert "\r" in text and re.search(r"\b\d+/60\b", text), text
    # The bar is cleared at the end: the last thing on the line is not the bar.
    assert text.rstrip(" ").endswith("\r") or text.endswith("\n"), repr(text[-120:])


def test_no_progress_on_a_terminal_for_a_quick_scan(tree):
    rc, out, tty = run_on_tty([sys.executable, "-m", "aisbom", "scan", "--format", "json", str(tree["b"])])
    assert rc == 1 and len(json.loads(out)["files"]) == 2
    assert tty == b"", tty


def test_no_progress_with_quiet(many, tmp_path):
    rc, out, tty = run_on_tty(_slow_cli(tmp_path, 0.05) + ["scan", "-q", "--format", "json", str(many)])
    assert rc == 1 and len(json.loads(out)["files"]) == 60
    assert tty == b"", tty


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_no_progress_when_stderr_is_not_a_terminal(many, tmp_path, jobs):
    p = subprocess.run(_slow_cli(tmp_path, 0.03) + ["scan", "--jobs", jobs, str(many)],
                       capture_output=True, text=True, timeout=180, env=_env())
    assert p.returncode == 1
    assert "60 files" in p.stdout
    assert p.stderr == ""


def test_text_report_is_unchanged_by_progress(many, tmp_path):
    """On a terminal the progress goes to stderr only: the report on stdout is the same."""
    _, out_tty, tty = run_on_tty(_slow_cli(tmp_path, 0.03) + ["scan", "--jobs", "2", str(many)])
    plain = subprocess.run(_slow_cli(tmp_path, 0.0) + ["scan", "--jobs", "2", str(many)],
                           capture_output=True, text=True, timeout=180, env=_env())
    assert tty  # it was shown
    assert out_tty == plain.stdout


# ------------------------------------------------------------------ [tool.aisbom] in pyproject.toml


def _pyproject(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("[project]\nname = 'demo'\n\n" + textwrap.dedent(body))
    return path


ALLOW_NET = """
    [tool.aisbom]
    allow = ["mylib.models.Net"]
"""


def _verdicts(p: subprocess.CompletedProcess, root: Path) -> Dict[str, str]:
    assert "Traceback" not in p.stderr, p.stderr
    return {os.path.relpath(f["path"], root): f["verdict"] for f in json.loads(p.stdout)["files"]}


def test_config_file_allow(tree, tmp_path):
    cfg = _pyproject(tmp_path / "cfg" / "pyproject.toml", ALLOW_NET)
    b = tree["b"]
    before = _verdicts(run_cli("scan", "--format", "json", str(b), cwd=tree["root"]), b)
    p = run_cli("scan", "--format", "json", "--config", str(cfg), str(b), cwd=tree["root"])
    after = _verdicts(p, b)
    assert before["a.pkl"] == "suspicious" and after["a.pkl"] == "clean"
    assert after["b/run.pkl"] == "malicious"
    p = run_cli("scan", "--config", str(cfg), str(b / "a.pkl"), cwd=tree["root"])
    assert p.returncode == 0, p.stdout + p.stderr


def test_config_file_fail_on(tree, tmp_path):
    sus = str(tree["b"] / "a.pkl")
    cfg = _pyproject(tmp_path / "cfg" / "pyproject.toml", '[tool.aisbom]\nfail-on = "malicious"\n')
    assert run_cli("scan", sus, cwd=tree["root"]).returncode == 1
    assert run_cli("scan", "--config", str(cfg), sus, cwd=tree["root"]).returncode == 0
    # The command line wins over the file.
    assert run_cli("scan", "--config", str(cfg), "--fail-on", "suspicious", sus, cwd=tree["root"]).returncode == 1
    # fail-on malicious still fails a malicious file and an error verdict.
    assert run_cli("scan", "--config", str(cfg), str(tree["b"]), cwd=tree["root"]).returncode == 1
    assert run_cli("scan", "--config", str(cfg), str(tree["a"] / "broken.pkl"), cwd=tree["root"]).returncode == 1


def test_config_file_exclude_adds_to_the_command_line(tree, tmp_path):
    cfg = _pyproject(tmp_path / "cfg" / "pyproject.toml", '[tool.aisbom]\nexclude = ["*.txt", "sub/deep/*"]\n')
    a = tree["a"]
    got = _verdicts(run_cli("scan", "--format", "json", "--config", str(cfg), "--exclude", "broken.pkl", str(a),
                            cwd=tree["root"]), a)
    assert "notes.txt" not in got and "broken.pkl" not in got
    assert not any(k.startswith("sub/deep/") for k in got)
    assert "sub/z_last.pkl" in got and "clean.pkl" in got


def test_config_discovered_from_the_current_directory_and_upwards(tree):
    proj = tree["root"] / "proj"  # the project; the scanned folder is elsewhere
    _pyproject(proj / "pyproject.toml", """
        [tool.aisbom]
        allow = ["mylib.models.Net"]
        fail-on = "malicious"
        exclude = ["run.pkl"]
    """)
    b = tree["b"]
    inner = proj / "inner"
    inner.mkdir()
    for cwd in (proj, inner):  # the project folder, and a folder below it
        p = run_cli("scan", "--format", "json", str(b), cwd=cwd)
        assert _verdicts(p, b) == {"a.pkl": "clean"}
        assert p.returncode == 0
    # Without a project around, the defaults.
    p = run_cli("scan", "--format", "json", str(b), cwd=tree["root"])
    assert _verdicts(p, b) == {"a.pkl": "suspicious", "b/run.pkl": "malicious"}
    # A nearer pyproject.toml without [tool.aisbom] does not hide the project's.
    _pyproject(inner / "pyproject.toml", "[tool.black]\nline-length = 100\n")
    assert _verdicts(run_cli("scan", "--format", "json", str(b), cwd=inner), b) == {"a.pkl": "clean"}
    # A nearer one with the table wins.
    near = inner / "near"
    _pyproject(near / "pyproject.toml", "[tool.aisbom]\nfail-on = \"suspicious\"\n")
    p = run_cli("scan", "--format", "json", str(b), cwd=near)
    assert _verdicts(p, b) == {"a.pkl": "suspicious", "b/run.pkl": "malicious"}
    # --config beats discovery.
    cfg = _pyproject(tree["root"] / "other" / "pyproject.toml", ALLOW_NET)
    p = run_cli("scan", "--format", "json", "--config", str(cfg), str(b), cwd=near)
    assert _verdicts(p, b) == {"a.pkl": "clean", "b/run.pkl": "malicious"}


def test_no_config_outside_a_project(tree):
    p = run_cli("scan", "--format", "json", str(tree["b"]), cwd=tree["root"])
    assert _verdicts(p, tree["b"]) == {"a.pkl": "suspicious", "b/run.pkl": "malicious"}


@pytest.mark.parametrize("body, words", [
    ('[tool.aisbom]\nfail-on = "never"\n', "fail-on"),
    ('[tool.aisbom]\nallow = "mylib.models.Net"\n', "allow"),
    ('[tool.aisbom]\nexclude = [1, 2]\n', "exclude"),
    ('[tool.aisbom\nallow = [\n', "pyproject.toml"),
    ('[tool.aisbom]\nallow = ["os.system"]\n', "os.system"),  # a blocklisted global: never from a file
])
def test_bad_config_is_a_usage_error(tree, tmp_path, body, words):
    cfg = tmp_path / "bad" / "pyproject.toml"
    cfg.parent.mkdir()
    cfg.write_text(body)
    p = run_cli("scan", "--config", str(cfg), str(tree["b"]), cwd=tree["root"])
    assert p.returncode == 2
    assert "Traceback" not in p.stderr and words in p.stderr and p.stdout == ""


def test_missing_config_file_is_a_usage_error(tree, tmp_path):
    p = run_cli("scan", "--config", str(tmp_path / "nope.toml"), str(tree["b"]), cwd=tree["root"])
    assert p.returncode == 2 and "Traceback" not in p.stderr and p.stderr


class TrainConfig:
    """A user class a project trusts through [tool.aisbom] allow."""

    def __init__(self, lr: float = 0.1) -> None:
        self.lr = lr


TRAIN_CONFIG = f"{TrainConfig.__module__}.{TrainConfig.__qualname__}"


@pytest.fixture
def user_pickle(tmp_path: Path) -> Path:
    return _write(tmp_path / "run" / "cfg.pkl", pickle.dumps({"cfg": TrainConfig(0.5), "epochs": 3}, protocol=4))


def test_safe_load_honours_config_allow(tmp_path, user_pickle, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DisallowedGlobalError):
        aisbom.safe_load(user_pickle, sandbox="never")
    cfg = _pyproject(tmp_path / "proj" / "pyproject.toml", f'[tool.aisbom]\nallow = ["{TRAIN_CONFIG}"]\n')
    # A named file.
    obj = aisbom.safe_load(str(user_pickle), sandbox="never", config=str(cfg))
    assert isinstance(obj["cfg"], TrainConfig) and obj["cfg"].lr == 0.5 and obj["epochs"] == 3
    # Discovered from the current directory (the default, config=None).
    monkeypatch.chdir(cfg.parent)
    obj = aisbom.safe_load(user_pickle, sandbox="never")
    assert isinstance(obj["cfg"], TrainConfig)
    sub = cfg.parent / "src" / "pkg"
    sub.mkdir(parents=True)
    monkeypatch.chdir(sub)  # and upwards
    assert isinstance(aisbom.safe_loads(user_pickle.read_bytes(), sandbox="never")["cfg"], TrainConfig)
    # config=False ignores the project's settings.
    with pytest.raises(DisallowedGlobalError):
        aisbom.safe_load(user_pickle, sandbox="never", config=False)


def test_safe_load_config_allow_never_allows_blocked_globals(tmp_path, canary):
    """allow = ["os.system"] in a pyproject.toml cannot make a payload load."""
    cfg = _pyproject(tmp_path / "proj" / "pyproject.toml", '[tool.aisbom]\nallow = ["os.system"]\n')
    bad = _write(tmp_path / "bad.pkl", canary.os_system())
    with pytest.raises(Exception) as err:
        aisbom.safe_load(bad, sandbox="never", config=str(cfg))
    assert isinstance(err.value, (aisbom.UnsafeModelError, ValueError)), err.value
