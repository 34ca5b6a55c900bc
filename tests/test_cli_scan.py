"""The `aisbom scan` and `aisbom demo` commands, run as a user runs them (a subprocess)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest

from asm import BINUNICODE, EMPTY_DICT, EMPTY_TUPLE, GLOBAL, REDUCE, SETITEM, pickle_of

CLEAN = pickle_of(EMPTY_DICT + BINUNICODE("k") + BINUNICODE("v") + SETITEM)
SUSPICIOUS = pickle_of(GLOBAL("mylib.models", "Net") + EMPTY_TUPLE + REDUCE)
BROKEN = pickle_of(EMPTY_DICT)[:-1]  # no STOP: an error verdict


def run(*args: str, cwd=None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("NO_COLOR", None)
    return subprocess.run(
        [sys.executable, "-m", "aisbom", *args],
        capture_output=True, text=True, timeout=120, cwd=cwd, env=env,
    )


def json_run(*args: str) -> tuple:
    p = run("scan", "--format", "json", *args)
    assert p.stderr == "" or "Traceback" not in p.stderr, p.stderr
    return p.returncode, json.loads(p.stdout)


@pytest.fixture
def files(tmp_path: Path, canary):
    d = tmp_path / "models"
    d.mkdir()
    (d / "clean.pkl").write_bytes(CLEAN)
    (d / "suspicious.pkl").write_bytes(SUSPICIOUS)
    (d / "malicious.bin").write_bytes(canary.os_system())
    (d / "broken.pkl").write_bytes(BROKEN)
    return d


# ---------------------------------------------------------------- exit codes


class TestExitCodes:
    def test_all_clean_exits_0(self, files):
        p = run("scan", str(files / "clean.pkl"))
        assert p.returncode == 0, p.stdout + p.stderr
        assert "clean" in p.stdout

    def test_malicious_exits_1(self, files):
        p = run("scan", str(files / "malicious.bin"))
        assert p.returncode == 1
        assert "malicious" in p.stdout and "os.system" in p.stdout

    def test_suspicious_exits_1_by_default(self, files):
        assert run("scan", str(files / "suspicious.pkl")).returncode == 1

    def test_fail_on_malicious_lets_suspicious_pass(self, files):
        assert run("scan", "--fail-on", "malicious", str(files / "suspicious.pkl")).returncode == 0
        assert run("scan", "--fail-on", "malicious", str(files / "clean.pkl")).returncode == 0

    def test_fail_on_malicious_still_fails_malicious(self, files):
        assert run("scan", "--fail-on", "malicious", str(files / "malicious.bin")).returncode == 1

    def test_fail_on_suspicious_explicit(self, files):
        assert run("scan", "--fail-on", "suspicious", str(files / "suspicious.pkl")).returncode == 1

    @pytest.mark.parametrize("fail_on", ["suspicious", "malicious"])
    def test_error_verdict_always_fails(self, files, fail_on):
        assert run("scan", "--fail-on", fail_on, str(files / "broken.pkl")).returncode == 1

    def test_one_bad_file_among_clean_ones(self, files):
        p = run("scan", str(files / "clean.pkl"), str(files / "malicious.bin"))
        assert p.returncode == 1

    def test_allow_makes_a_suspicious_global_acceptable(self, files):
        p = run("scan", "--allow", "mylib.models.Net", str(files / "suspicious.pkl"))
        assert p.returncode == 0, p.stdout + p.stderr

    def test_allowing_a_blocked_global_is_refused(self, files):
        p = run("scan", "--allow", "os.system", str(files / "malicious.bin"))
        assert p.returncode == 2
        assert "Traceback" not in p.stderr


# ---------------------------------------------------------------- usage errors


class TestUsageErrors:
    def test_missing_path(self, tmp_path):
        missing = tmp_path / "does-not-exist.pt"
        p = run("scan", str(missing))
        assert p.returncode == 2
        lines = p.stderr.strip().splitlines()
        assert len(lines) == 1, p.stderr
        assert str(missing) in lines[0]
        assert "Traceback" not in p.stderr
        assert p.stdout == ""

    def test_missing_path_among_good_ones(self, files, tmp_path):
        p = run("scan", str(files / "clean.pkl"), str(tmp_path / "nope"))
        assert p.returncode == 2
        assert len(p.stderr.strip().splitlines()) == 1
        assert "Traceback" not in p.stderr

    @pytest.mark.parametrize(
        "args",
        [["scan"], ["scan", "--fail-on", "never", "x"], ["scan", "--format", "xml", "x"], ["scan", "--bogus", "x"], []],
        ids=["no-path", "bad-fail-on", "bad-format", "unknown-option", "no-command"],
    )
    def test_usage_errors_exit_2(self, args):
        p = run(*args)
        assert p.returncode == 2
        assert "Traceback" not in p.stderr

    def test_unwritable_output(self, files, tmp_path):
        p = run("scan", "--output", str(tmp_path / "no-such-dir" / "out.json"), str(files / "clean.pkl"))
        assert p.returncode == 2
        assert "Traceback" not in p.stderr


# ---------------------------------------------------------------- JSON and --output


class TestJson:
    def test_schema(self, files):
        code, doc = json_run(str(files / "malicious.bin"), str(files / "clean.pkl"))
        assert code == 1
        assert doc["version"] == 1
        assert isinstance(doc["tool"], dict)
        assert [Path(f["path"]).name for f in doc["files"]] == ["malicious.bin", "clean.pkl"]
        for f in doc["files"]:
            assert {"path", "format", "verdict", "findings"} <= set(f)
            assert f["verdict"] in {"clean", "suspicious", "error", "malicious"}
            for finding in f["findings"]:
                assert {"rule", "severity", "message", "global", "member", "offset"} <= set(finding)
        mal, clean = doc["files"]
        assert mal["verdict"] == "malicious" and mal["format"] == "pickle"
        (hit,) = [x for x in mal["findings"] if x["rule"] == "blocked-global"]
        assert hit["global"] == "os.system"
        assert hit["severity"] == "malicious"
        assert hit["offset"] == 2
        assert hit["member"] is None
        assert clean["verdict"] == "clean" and clean["findings"] == []

    def test_members_in_json(self, tmp_path, canary):
        import gzip

        path = tmp_path / "wrapped.gz"
        path.write_bytes(gzip.compress(canary.os_system()))
        code, doc = json_run(str(path))
        assert code == 1
        (f,) = doc["files"]
        assert f["format"] == "gzip"
        assert any(x["member"] == "<gzip>" and x["global"] == "os.system" for x in f["findings"])

    def test_output_writes_file(self, files, tmp_path):
        out = tmp_path / "report.json"
        p = run("scan", "--format", "json", "--output", str(out), str(files / "malicious.bin"))
        assert p.returncode == 1
        assert "os.system" not in p.stdout
        doc = json.loads(out.read_text())
        assert doc["files"][0]["verdict"] == "malicious"

    def test_output_text(self, files, tmp_path):
        out = tmp_path / "report.txt"
        p = run("scan", "-o", str(out), str(files / "clean.pkl"))
        assert p.returncode == 0
        text = out.read_text()
        assert "clean" in text and "clean.pkl" in text
        assert "\033[" not in text  # no colour codes in a file


# ---------------------------------------------------------------- directories


def scanned_paths(doc) -> List[str]:
    return sorted(f["path"] for f in doc["files"])


class TestDirectories:
    def test_recursive(self, files):
        sub = files / "a" / "b"
        sub.mkdir(parents=True)
        (sub / "deep.pt").write_bytes(CLEAN)
        code, doc = json_run(str(files))
        names = {Path(p).name for p in scanned_paths(doc)}
        assert names == {"clean.pkl", "suspicious.pkl", "malicious.bin", "broken.pkl", "deep.pt"}
        assert code == 1
        verdicts = {Path(f["path"]).name: f["verdict"] for f in doc["files"]}
        assert verdicts["malicious.bin"] == "malicious"
        assert verdicts["deep.pt"] == "clean"

    def test_recursive_clean_tree_exits_0(self, tmp_path):
        d = tmp_path / "tree"
        (d / "x" / "y").mkdir(parents=True)
        for i, sub in enumerate([d, d / "x", d / "x" / "y"]):
            (sub / f"m{i}.pkl").write_bytes(CLEAN)
        p = run("scan", str(d))
        assert p.returncode == 0, p.stdout
        assert p.stdout.count("clean ") >= 3

    def test_exclude(self, files):
        code, doc = json_run("--exclude", "*.bin", "--exclude", "broken.pkl", "--exclude", "suspicious*", str(files))
        assert {Path(p).name for p in scanned_paths(doc)} == {"clean.pkl"}
        assert code == 0

    def test_exclude_directory(self, files):
        sub = files / "skipme"
        sub.mkdir()
        (sub / "evil.pkl").write_bytes(SUSPICIOUS)
        code, doc = json_run("--exclude", "skipme", str(files))
        assert not any("skipme" in p for p in scanned_paths(doc))

    def test_jobs_give_same_result_in_path_order(self, files):
        _, one = json_run("--jobs", "1", str(files))
        _, four = json_run("--jobs", "4", str(files))
        strip = lambda doc: [(f["path"], f["verdict"], [x["rule"] for x in f["findings"]]) for f in doc["files"]]  # noqa: E731
        assert strip(one) == strip(four)

    def test_symlink_to_file_outside_tree_is_reported_not_followed(self, tmp_path, canary):
        outside = tmp_path / "outside"
        outside.mkdir()
        (outside / "evil.pkl").write_bytes(canary.os_system())
        tree = tmp_path / "tree"
        tree.mkdir()
        (tree / "ok.pkl").write_bytes(CLEAN)
        os.symlink(outside / "evil.pkl", tree / "link.pkl")
        code, doc = json_run(str(tree))
        by_name = {Path(f["path"]).name: f for f in doc["files"]}
        assert set(by_name) == {"ok.pkl", "link.pkl"}
        link = by_name["link.pkl"]
        assert link["verdict"] != "clean"  # reported ...
        assert not any(x["global"] == "os.system" for x in link["findings"])  # ... but not read
        assert any("outside" in x["message"] or "symlink" in x["message"] for x in link["findings"])
        assert by_name["ok.pkl"]["verdict"] == "clean"

    def test_symlink_to_directory_outside_tree_is_not_followed(self, tmp_path, canary):
        outside = tmp_path / "outside"
        outside.mkdir()
        (outside / "evil.pkl").write_bytes(canary.os_system())
        tree = tmp_path / "tree"
        tree.mkdir()
        os.symlink(outside, tree / "linkdir")
        code, doc = json_run(str(tree))
        assert not any(p.endswith("evil.pkl") for p in scanned_paths(doc))
        assert any("linkdir" in p for p in scanned_paths(doc))  # reported
        assert all(x["global"] != "os.system" for f in doc["files"] for x in f["findings"])

    def test_symlink_inside_tree_is_scanned(self, tmp_path, canary):
        tree = tmp_path / "tree"
        tree.mkdir()
        (tree / "evil.pkl").write_bytes(canary.os_system())
        os.symlink(tree / "evil.pkl", tree / "alias.pkl")
        code, doc = json_run(str(tree))
        assert code == 1
        assert all(f["verdict"] == "malicious" for f in doc["files"]), doc

    def test_symlink_loop_does_not_hang(self, tmp_path):
        tree = tmp_path / "tree"
        tree.mkdir()
        (tree / "ok.pkl").write_bytes(CLEAN)
        os.symlink(tree, tree / "loop")
        p = run("scan", str(tree))
        assert p.returncode in (0, 1)
        assert "Traceback" not in p.stderr

    def test_fifo_named_on_the_command_line_does_not_hang(self, tmp_path):
        """A FIFO is not a regular file: reading it would block forever. The scan must
        finish and say so (an error line or an error verdict), not wait for a writer."""
        fifo = tmp_path / "model.pt"
        os.mkfifo(fifo)
        try:
            p = subprocess.run([sys.executable, "-m", "aisbom", "scan", str(fifo)],
                               capture_output=True, text=True, timeout=10)
        except subprocess.TimeoutExpired:
            pytest.fail("aisbom scan blocked reading a FIFO")
        assert p.returncode in (1, 2)
        assert "Traceback" not in p.stderr

    def test_fifo_inside_a_directory_is_skipped(self, tmp_path):
        tree = tmp_path / "tree"
        tree.mkdir()
        (tree / "ok.pkl").write_bytes(CLEAN)
        os.mkfifo(tree / "pipe")
        p = subprocess.run([sys.executable, "-m", "aisbom", "scan", str(tree)], capture_output=True, text=True, timeout=15)
        assert p.returncode == 0, p.stdout + p.stderr

    def test_unreadable_file_is_error_not_crash(self, tmp_path, monkeypatch):
        """Permission errors become error entries (root reads everything, so the
        refusal is injected where the file is opened)."""
        import errno

        import aisbom.scanning
        from aisbom.walk import scan_paths

        tree = tmp_path / "tree"
        tree.mkdir()
        (tree / "ok.pkl").write_bytes(CLEAN)
        secret = tree / "secret.pkl"
        secret.write_bytes(CLEAN)
        real_open = os.open

        def refusing_open(path, flags, *args, **kwargs):
            if os.fspath(path) == str(secret):
                raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
            return real_open(path, flags, *args, **kwargs)

        monkeypatch.setattr(aisbom.scanning.os, "open", refusing_open)
        reports = {os.path.basename(r.path): r for r in scan_paths([str(tree)], jobs=1, progress=False)}
        assert reports["ok.pkl"].verdict.value == "clean"
        assert reports["secret.pkl"].verdict.value == "error"
        assert "Permission denied" in reports["secret.pkl"].findings[0].message


# ---------------------------------------------------------------- demo


def test_demo():
    p = run("demo")
    assert p.returncode == 0, p.stdout + p.stderr
    lines = p.stdout.splitlines()
    assert any(line.startswith("clean") for line in lines), p.stdout
    assert any(line.startswith("malicious") for line in lines), p.stdout
    assert "Traceback" not in p.stderr


def test_console_entry_point_matches_module(files):
    exe = Path(sys.executable).with_name("aisbom")
    if not exe.exists():
        pytest.skip("console script not installed")
    p = subprocess.run([str(exe), "scan", str(files / "malicious.bin")], capture_output=True, text=True, timeout=60)
    assert p.returncode == 1
    assert "os.system" in p.stdout
