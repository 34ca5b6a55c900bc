"""The pytest plugin (aisbom.pytest_plugin), driven through pytest's own pytester.

Every malicious sample is built here from bytes; its payload would only
create a canary file outside the inner test run's directory, and each test
that writes one checks that the canary does not exist afterwards.
"""
from __future__ import annotations

import gzip
import io
import os
import pickle
import tarfile
import zipfile
from pathlib import Path
from typing import Dict, Iterator, Union

import pytest

pytest_plugins = ["pytester"]

AUTOLOAD_OFF = bool(os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD"))


def os_system(canary: Path) -> bytes:
    """posix.system("touch CANARY") called by REDUCE."""
    cmd = f"touch {canary}".encode()
    return b"\x80\x02cposix\nsystem\nX" + len(cmd).to_bytes(4, "little") + cmd + b"\x85R."


CLEAN = pickle.dumps({"weights": [1.0, 2.0], "epoch": 3}, protocol=2)
SUSPICIOUS = b"\x80\x02cmypkg.models\nNet\n)\x81}b."  # NEWOBJ of a class outside the allowlist
CORRUPT = b"\x80\x02ccollections\nOrderedDict\n)R"  # no STOP: truncated
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01"  # starts with a pickle opcode byte
EXE = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff"  # so does this
ELF = b"\x7fELF\x02\x01\x01\x00" + bytes(8)  # no format aisbom knows
CLASS_TEXT = b"class Foo(object):\n    pass\n"  # text that starts like a GLOBAL opcode


@pytest.fixture
def canary(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "canary"
    yield path
    assert not path.exists(), "a payload ran"


@pytest.fixture
def files(pytester: pytest.Pytester):
    """files({"relative/path": bytes or str}) writes files into the inner run's directory."""

    def write(spec: Dict[str, Union[bytes, str]]) -> None:
        for rel, data in spec.items():
            p = pytester.path / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(data, str):
                p.write_text(data)
            else:
                p.write_bytes(data)

    return write


def run(pytester: pytest.Pytester, *args: str, subprocess: bool = False) -> pytest.RunResult:
    extra = ("-p", "aisbom.pytest_plugin") if AUTOLOAD_OFF else ()
    args = (*extra, "-p", "no:cacheprovider", "-p", "no:randomly", *args)
    return pytester.runpytest_subprocess(*args) if subprocess else pytester.runpytest(*args)


def collected(result: pytest.RunResult) -> list:
    """Node ids printed by --collect-only -q."""
    return [line for line in result.outlines if "::" in line and " " not in line]


def test_entry_point_is_registered() -> None:
    from importlib.metadata import distribution

    eps = distribution("aisbom").entry_points
    assert any(ep.group == "pytest11" and ep.name == "aisbom" and ep.value == "aisbom.pytest_plugin" for ep in eps)


# ---- inert unless asked ----


def test_inert_without_the_flag(pytester: pytest.Pytester, files, canary: Path) -> None:
    files({"models/evil.pkl": os_system(canary), "models/sus.pkl": SUSPICIOUS})
    pytester.makepyfile(test_plain="def test_plain():\n    pass\n")
    result = run(pytester, "--collect-only", "-q")
    assert collected(result) == ["test_plain.py::test_plain"]
    result = run(pytester, "-v")
    result.assert_outcomes(passed=1)
    assert "aisbom" not in result.stdout.str().replace("plugins: aisbom", "")


def test_loading_the_plugin_imports_nothing_heavy(pytester: pytest.Pytester, files, canary: Path) -> None:
    """In a fresh process: the plugin is loaded (entry point), but neither
    the scanning engine nor torch/numpy is imported until it is enabled."""
    files({"models/evil.pkl": os_system(canary)})
    pytester.makepyfile(test_modules="""
        import sys

        def test_modules():
            assert "aisbom.pytest_plugin" in sys.modules
            heavy = sorted(m for m in ("aisbom._core", "aisbom.scanning", "aisbom.loader", "aisbom.policy",
                                       "torch", "numpy") if m in sys.modules)
            # importing aisbom.pytest_plugin runs aisbom/__init__.py first: it must not import these eagerly
            assert heavy == [], "loading the plugin imported " + ", ".join(heavy)
    """)
    result = run(pytester, "-v", subprocess=True)
    result.assert_outcomes(passed=1)
    assert "::aisbom" not in result.stdout.str()


# ---- pytest --aisbom ----


def test_scan_items_by_verdict(pytester: pytest.Pytester, files, canary: Path) -> None:
    files({
        "models/clean.pkl": CLEAN,
        "models/sus.pkl": SUSPICIOUS,
        "models/evil.bin": os_system(canary),  # names do not matter, content does
        "models/corrupt.pkl": CORRUPT,
    })
    pytester.makepyfile(test_plain="def test_plain():\n    pass\n")
    result = run(pytester, "--aisbom", "-v")
    result.assert_outcomes(passed=2, failed=3)
    result.stdout.fnmatch_lines([
        "*aisbom: model files under the rootdir (fail on suspicious)*",
        "models/clean.pkl::aisbom PASSED*",
        "models/corrupt.pkl::aisbom FAILED*",
        "models/evil.bin::aisbom FAILED*",
        "models/sus.pkl::aisbom FAILED*",
        "test_plain.py::test_plain PASSED*",
    ])
    out = result.stdout.str()
    # the report: verdict, then severity, rule, member/offset and message of each finding
    assert "aisbom verdict malicious for models/evil.bin (format pickle; aisbom_fail_on = suspicious)" in out
    assert "  - malicious blocked-global (offset 2): GLOBAL posix.system at offset 2" in out
    assert "  - suspicious unknown-global (offset 2): GLOBAL mypkg.models.Net" in out
    assert "['mypkg.models.Net']" in out  # what to allow
    assert "  - error parse-error (offset 29)" in out
    assert "An error verdict always fails" in out
    result.stdout.fnmatch_lines(["FAILED models/evil.bin::aisbom - AisbomFailure: aisbom verdict malicious*"])


def test_findings_name_the_member(pytester: pytest.Pytester, files, canary: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("ckpt/data.pkl", os_system(canary))
        zf.writestr("ckpt/version", "3\n")
    files({"ckpt.pt": buf.getvalue(), "evil.pkl.gz": gzip.compress(os_system(canary))})
    result = run(pytester, "--aisbom")
    result.assert_outcomes(failed=2)
    out = result.stdout.str()
    assert "malicious blocked-global (member ckpt/data.pkl, offset 2)" in out
    assert "malicious blocked-global (member <gzip>, offset 2)" in out


def test_torch_checkpoints(pytester: pytest.Pytester, files) -> None:
    torch = pytest.importorskip("torch")
    buf = io.BytesIO()
    torch.save({"w": torch.ones(3)}, buf)
    data = buf.getvalue()
    files({"ckpt.pt": data, "truncated.pt": data[: len(data) // 2]})
    result = run(pytester, "--aisbom", "-v")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["ckpt.pt::aisbom PASSED*", "truncated.pt::aisbom FAILED*"])


def test_what_is_not_a_model_file(pytester: pytest.Pytester, files) -> None:
    """Text, empty files, unknown binaries and bytes that merely start with a
    pickle opcode are not items; containers are items only with a model inside."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("docs/logo.png", PNG)
    sources = io.BytesIO()
    with tarfile.open(fileobj=sources, mode="w:gz") as tf:
        for name, data in (("src/mod.py", CLASS_TEXT), ("src/lib.so", ELF), ("src/logo.png", PNG)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    files({
        "sources.tar.gz": sources.getvalue(),
        "README.md": "# hello\n",
        "mod.py": CLASS_TEXT,
        "CMakeLists.txt": "cmake_minimum_required(VERSION 3.10)\n",
        "empty.bin": b"",
        "logo.png": PNG,
        "tool.exe": EXE,
        "lib.so": ELF,
        "docs.zip": buf.getvalue(),
        "logo.png.gz": gzip.compress(PNG),
        "good.pkl": CLEAN,
        "truncated.pkl": CLEAN[:-5],  # a broken pickle that opens with PROTO is a model, and fails
    })
    result = run(pytester, "--aisbom", "--collect-only", "-q")
    assert collected(result) == ["good.pkl::aisbom", "truncated.pkl::aisbom"]
    run(pytester, "--aisbom").assert_outcomes(passed=1, failed=1)


def test_skipped_directories(pytester: pytest.Pytester, files, canary: Path) -> None:
    evil = os_system(canary)
    files({
        f"{d}/evil.pkl": evil
        for d in (".git", ".hg", "node_modules", "pkg/__pycache__", ".tox/py311", ".nox/s", ".venv", "venv", "env")
    })
    files({"myenv/pyvenv.cfg": "home = /usr/bin\n", "myenv/lib/evil.pkl": evil, "models/evil.pkl": evil})
    result = run(pytester, "--aisbom", "--collect-only", "-q")
    assert collected(result) == ["models/evil.pkl::aisbom"]


def test_model_items_run_first_and_x_stops_before_tests(pytester: pytest.Pytester, files, canary: Path) -> None:
    files({"models/evil.pkl": os_system(canary)})
    ran = pytester.path / "test-ran"
    pytester.makepyfile(test_a=f"def test_a():\n    open({str(ran)!r}, 'w').close()\n")
    result = run(pytester, "--aisbom", "--collect-only", "-q")
    assert collected(result) == ["models/evil.pkl::aisbom", "test_a.py::test_a"]
    result = run(pytester, "--aisbom", "-x")
    result.assert_outcomes(failed=1)
    assert not ran.exists()


def test_selecting_scan_items(pytester: pytest.Pytester, files) -> None:
    files({"models/good.pkl": CLEAN, "models/sus.pkl": SUSPICIOUS})
    pytester.makepyfile(test_a="def test_a():\n    pass\n")
    assert collected(run(pytester, "--aisbom", "-m", "aisbom", "--co", "-q")) == [
        "models/good.pkl::aisbom", "models/sus.pkl::aisbom"]
    assert collected(run(pytester, "--aisbom", "-m", "not aisbom", "--co", "-q")) == ["test_a.py::test_a"]
    assert collected(run(pytester, "--aisbom", "-k", "sus.pkl", "--co", "-q")) == ["models/sus.pkl::aisbom"]
    # naming model files scans those alone (rerunning one from a report)
    result = run(pytester, "--aisbom", "models/sus.pkl::aisbom")
    result.assert_outcomes(failed=1)


# ---- ini options and [tool.aisbom] ----


def test_aisbom_scan_ini(pytester: pytest.Pytester, files, canary: Path) -> None:
    files({"models/evil.pkl": os_system(canary)})
    pytester.makeini("[pytest]\naisbom_scan = true\n")
    run(pytester).assert_outcomes(failed=1)
    assert run(pytester, "--no-aisbom").ret == pytest.ExitCode.NO_TESTS_COLLECTED


def test_aisbom_scan_in_pyproject(pytester: pytest.Pytester, files, canary: Path) -> None:
    files({"models/evil.pkl": os_system(canary)})
    pytester.makepyprojecttoml("[tool.pytest.ini_options]\naisbom_scan = true\n")
    run(pytester).assert_outcomes(failed=1)


def test_aisbom_paths(pytester: pytest.Pytester, files, canary: Path) -> None:
    evil = os_system(canary)
    files({"models/a.pkl": CLEAN, "models/deep/b.pkl": CLEAN, "other/evil.pkl": evil, "fixtures/x.pt": CLEAN,
           "fixtures/y.bin": evil})
    pytester.makeini("[pytest]\naisbom_paths = models fixtures/*.pt\n")
    result = run(pytester, "--aisbom", "--co", "-q")
    assert collected(result) == ["fixtures/x.pt::aisbom", "models/a.pkl::aisbom", "models/deep/b.pkl::aisbom"]
    run(pytester, "--aisbom").stdout.fnmatch_lines(["aisbom: model files under models, fixtures/[*].pt (fail on suspicious)"])


def test_aisbom_paths_in_pyproject_and_missing_paths(pytester: pytest.Pytester, files) -> None:
    files({"models/a.pkl": CLEAN})
    pytester.makepyprojecttoml('[tool.pytest.ini_options]\naisbom_paths = ["models", "nowhere"]\n')
    result = run(pytester, "--aisbom")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*aisbom_paths: no such file or directory: nowhere*"])
    assert run(pytester).ret == pytest.ExitCode.NO_TESTS_COLLECTED  # not checked when disabled


def test_aisbom_fail_on(pytester: pytest.Pytester, files, canary: Path) -> None:
    files({"sus.pkl": SUSPICIOUS, "evil.pkl": os_system(canary), "corrupt.pkl": CORRUPT})
    pytester.makeini("[pytest]\naisbom_fail_on = malicious\n")
    result = run(pytester, "--aisbom", "-v")
    result.assert_outcomes(passed=1, failed=2)  # an error verdict always fails
    result.stdout.fnmatch_lines(["corrupt.pkl::aisbom FAILED*", "evil.pkl::aisbom FAILED*", "sus.pkl::aisbom PASSED*"])
    assert run(pytester, "--aisbom", "-o", "aisbom_fail_on=suspicious").ret == pytest.ExitCode.TESTS_FAILED
    result = run(pytester, "--aisbom", "-o", "aisbom_fail_on=error")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*aisbom_fail_on must be one of suspicious, malicious*"])


def test_tool_aisbom_settings(pytester: pytest.Pytester, files, canary: Path) -> None:
    files({"sus.pkl": SUSPICIOUS, "other.pkl": b"\x80\x02cother\nThing\n)\x81.", "cache/evil.pkl": os_system(canary)})
    pytester.makepyprojecttoml(
        '[tool.aisbom]\nallow = ["mypkg.models.Net"]\nexclude = ["cache"]\n'
    )
    result = run(pytester, "--aisbom", "-v")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["other.pkl::aisbom FAILED*", "sus.pkl::aisbom PASSED*"])


def test_ini_fail_on_wins_over_tool_aisbom(pytester: pytest.Pytester, files) -> None:
    files({"sus.pkl": SUSPICIOUS})
    pytester.makepyprojecttoml('[tool.aisbom]\nfail-on = "malicious"\n')
    run(pytester, "--aisbom").assert_outcomes(passed=1)
    pytester.makepyprojecttoml('[tool.aisbom]\nfail-on = "malicious"\n\n'
                               '[tool.pytest.ini_options]\naisbom_fail_on = "suspicious"\n')
    run(pytester, "--aisbom").assert_outcomes(failed=1)


def test_tool_aisbom_errors_only_matter_when_enabled(pytester: pytest.Pytester, files) -> None:
    files({"good.pkl": CLEAN})
    pytester.makepyprojecttoml('[tool.aisbom]\nfail-on = "never"\n')
    assert run(pytester).ret == pytest.ExitCode.NO_TESTS_COLLECTED  # not even read
    result = run(pytester, "--aisbom")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*[[]tool.aisbom[]] fail-on must be one of suspicious, malicious*"])


# ---- the aisbom_load fixture ----


def test_aisbom_load(pytester: pytest.Pytester, files, canary: Path) -> None:
    files({"tests/data/clean.pkl": CLEAN, "models/evil.pkl": os_system(canary), "models/corrupt.pkl": CORRUPT,
           "models/sus.pkl": SUSPICIOUS})
    pytester.makepyfile(**{"tests/test_load": """
        import pytest

        def test_clean_next_to_the_test(aisbom_load):
            assert aisbom_load("data/clean.pkl") == {"weights": [1.0, 2.0], "epoch": 3}

        def test_malicious_from_the_rootdir(aisbom_load):
            aisbom_load("models/evil.pkl")

        def test_malformed(aisbom_load):
            aisbom_load("models/corrupt.pkl")

        def test_disallowed(aisbom_load):
            aisbom_load("models/sus.pkl", sandbox="never")

        @pytest.fixture
        def model(aisbom_load):
            return aisbom_load("models/evil.pkl")

        def test_loaded_by_a_fixture(model):
            pass

        def test_refusal_is_not_an_exception(aisbom_load):
            try:
                aisbom_load("models/evil.pkl")
            except Exception:
                pass  # pytest.fail is not an Exception: still fails
    """})
    result = run(pytester, "-v", "-rf")
    result.assert_outcomes(passed=1, failed=5, errors=0)
    result.stdout.fnmatch_lines([
        "*test_clean_next_to_the_test PASSED*",
        "*test_malicious_from_the_rootdir FAILED*",
        "*test_malformed FAILED*",
        "*test_disallowed FAILED*",
        "*test_loaded_by_a_fixture FAILED*",
        "*test_refusal_is_not_an_exception FAILED*",
    ])
    out = result.stdout.str()
    assert "MaliciousModelError from aisbom_load('models/evil.pkl'): the file was refused" in out
    assert "  - malicious blocked-global (offset 2): GLOBAL posix.system" in out
    assert "MalformedModelError from aisbom_load('models/corrupt.pkl')" in out
    assert "DisallowedGlobalError from aisbom_load('models/sus.pkl')" in out
    assert "If you trust these globals, pass allow= to aisbom_load or add them to [tool.aisbom] allow: ['mypkg.models.Net']" in out
    assert "direct cause" not in out
    assert "Traceback" not in out


def test_aisbom_load_honours_tool_aisbom_allow(pytester: pytest.Pytester, files) -> None:
    files({"data.pkl": pickle.dumps(__import__("fractions").Fraction(1, 3), protocol=2)})
    pytester.makepyfile(test_a="""
        def test_a(aisbom_load):
            assert str(aisbom_load("data.pkl", sandbox="never")) == "1/3"
    """)
    run(pytester).assert_outcomes(failed=1)
    pytester.makepyprojecttoml('[tool.aisbom]\nallow = ["fractions.Fraction"]\n')
    run(pytester).assert_outcomes(passed=1)


# ---- the aisbom_model marker ----


def test_aisbom_model_marker(pytester: pytest.Pytester, files, canary: Path) -> None:
    files({"tests/fixtures/good.pkl": CLEAN, "models/evil.pkl": os_system(canary), "models/sus.pkl": SUSPICIOUS})
    fixture_ran = pytester.path / "fixture-ran"
    pytester.makepyfile(**{"tests/test_marked": f"""
        import pytest

        @pytest.fixture
        def loaded():
            open({str(fixture_ran)!r}, "w").close()  # stands for a fixture that loads the model

        @pytest.mark.aisbom_model("fixtures/good.pkl")
        def test_clean_next_to_the_test():
            pass

        @pytest.mark.aisbom_model("models/evil.pkl")
        def test_malicious_before_fixtures(loaded):
            pass

        @pytest.mark.aisbom_model("models/sus.pkl")
        def test_suspicious():
            pass

        @pytest.mark.aisbom_model("models/sus.pkl", fail_on="malicious")
        def test_fail_on_keyword():
            pass

        @pytest.mark.aisbom_model("models/sus.pkl", allow=["mypkg.models.Net"])
        def test_allow_keyword():
            pass

        @pytest.mark.aisbom_model("models/missing.pkl")
        def test_missing():
            pass

        @pytest.mark.skip(reason="not today")
        @pytest.mark.aisbom_model("models/evil.pkl")
        def test_skipped():
            pass

        @pytest.mark.aisbom_model("fixtures/good.pkl", "models/evil.pkl")
        class TestClass:
            def test_in_class(self):
                pass

        @pytest.mark.aisbom_model("fixtures/good.pkl", fail_on="never")
        def test_misused_marker():
            pass
    """})
    result = run(pytester, "-v", "--strict-markers")
    result.assert_outcomes(passed=3, failed=4, skipped=1, errors=1)  # a misused marker is an error
    result.stdout.fnmatch_lines([
        "*test_clean_next_to_the_test PASSED*",
        "*test_malicious_before_fixtures FAILED*",
        "*test_suspicious FAILED*",
        "*test_fail_on_keyword PASSED*",
        "*test_allow_keyword PASSED*",
        "*test_missing FAILED*",
        "*test_skipped SKIPPED*",
        "*test_in_class FAILED*",
        "*test_misused_marker ERROR*",
    ])
    out = result.stdout.str()
    assert "aisbom verdict malicious for models/evil.pkl (format pickle; aisbom_fail_on = suspicious)" in out
    assert "aisbom_model: no such file: models/missing.pkl" in out
    assert not fixture_ran.exists(), "the marker must fail the test before its fixtures are set up"


def test_marker_is_registered(pytester: pytest.Pytester) -> None:
    result = run(pytester, "--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.aisbom_model(*paths, fail_on=None, allow=()):*"])


# ---- xdist ----


def test_xdist(pytester: pytest.Pytester, files, canary: Path) -> None:
    pytest.importorskip("xdist", reason="pytest-xdist is not installed (add it to the test extra)")
    spec: Dict[str, Union[bytes, str]] = {f"models/clean{i}.pkl": CLEAN for i in range(6)}
    spec.update({"models/evil.pkl": os_system(canary), "models/sus.pkl": SUSPICIOUS, "data/good.pkl": CLEAN})
    files(spec)
    pytester.makepyfile(test_x="""
        import pytest

        def test_load(aisbom_load):
            assert aisbom_load("data/good.pkl")["epoch"] == 3

        def test_load_evil(aisbom_load):
            aisbom_load("models/evil.pkl")

        @pytest.mark.aisbom_model("models/evil.pkl")
        def test_marked():
            pass
    """)
    serial = run(pytester, "--aisbom", subprocess=True)
    serial.assert_outcomes(passed=8, failed=4)  # 7 clean files and test_load pass
    xdist = ("-p", "xdist") if AUTOLOAD_OFF else ()
    result = run(pytester, *xdist, "--aisbom", "-n", "2", "-v", subprocess=True)
    result.assert_outcomes(passed=8, failed=4)
    result.stdout.fnmatch_lines_random([
        "*created: 2/2 workers*",
        "*FAILED models/evil.pkl::aisbom*",
        "*FAILED models/sus.pkl::aisbom*",
        "*FAILED test_x.py::test_load_evil*",
        "*FAILED test_x.py::test_marked*",
    ])
    assert "malicious blocked-global (offset 2)" in result.stdout.str()
