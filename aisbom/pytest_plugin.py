"""The aisbom pytest plugin (entry point ``pytest11``: ``aisbom = aisbom.pytest_plugin``).

Inert unless asked. Loading this module imports nothing of aisbom's engine:
scanning, policies and the loader are imported only when the plugin is
enabled (``pytest --aisbom`` or ``aisbom_scan = true``), when a test uses the
``aisbom_load`` fixture, or when a test carries the ``aisbom_model`` marker.

- ``pytest --aisbom`` adds one test item per model file under ``aisbom_paths``
  (default: the rootdir), recognised by content; an item fails with the
  scan's findings when the verdict reaches ``aisbom_fail_on``.
- ``aisbom_load(path, **safe_load_kwargs)`` loads a model fixture through
  ``aisbom.safe_load`` and fails the test when the file is refused.
- ``@pytest.mark.aisbom_model("path")`` scans files before the test's
  fixtures are set up and fails the test when one is not clean.

See docs/pytest.md.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, FrozenSet, Generator, Iterable, Iterator, List, Optional, Sequence, Tuple

import pytest
from _pytest.outcomes import Failed

if TYPE_CHECKING:  # pragma: no cover
    from aisbom.policy import Policy
    from aisbom.report import FileReport

__all__ = ["AisbomFailure", "ModelFile", "ModelScan", "is_model_file", "describe"]

FAIL_ON_CHOICES = ("suspicious", "malicious")

# Directories that never hold the project's own model files, on top of the
# version-control stores aisbom.walk skips.
SKIP_DIR_NAMES = frozenset({
    "node_modules", "__pycache__", ".tox", ".nox", ".venv", "venv", "env",
    ".mypy_cache", ".pytest_cache", ".ruff_cache",
})

# Formats a model loader reads (pickle, torch.load, numpy.load, joblib.load, safetensors).
LOADABLE_FORMATS = frozenset({
    "pickle", "torch-zip", "torchscript", "torch-legacy", "torch-tar",
    "npy", "npy-object", "npz", "joblib", "safetensors",
})
# Containers aisbom cannot open: their content is never checked, so never clean.
OPAQUE_FORMATS = frozenset({"7z", "rar", "zstd", "lz4"})
# Content that is no model: no loader reads it, and it cannot run code.
NOT_MODEL_FORMATS = frozenset({"text", "empty", "unknown"})

_MARKER = "aisbom_model"
_ITEM_MARKER = "aisbom"


class AisbomFailure(Failed):
    """A test failure raised by the plugin: the report shows only its message."""

    __module__ = "builtins"  # shown as "AisbomFailure: ...", as pytest shows its own Failed

    def __init__(self, message: str) -> None:
        super().__init__(message, pytrace=False)


# ---- settings ----


class Settings:
    """The plugin's settings for one pytest run (ini options over [tool.aisbom]).
    A plain class: building a dataclass would cost the import time this module avoids."""

    __slots__ = ("enabled", "patterns", "fail_on", "allow", "exclude", "config_file")

    def __init__(self, *, enabled: bool, patterns: Tuple[str, ...], fail_on: str, allow: Tuple[str, ...],
                 exclude: Tuple[str, ...], config_file: Optional[str]) -> None:
        self.enabled = enabled
        self.patterns = patterns  # aisbom_paths, relative to the rootdir
        self.fail_on = fail_on  # "suspicious" or "malicious"
        self.allow = allow  # [tool.aisbom] allow
        self.exclude = exclude  # [tool.aisbom] exclude
        self.config_file = config_file  # the pyproject.toml [tool.aisbom] came from


_enabled_key = pytest.StashKey[bool]()
_settings_key = pytest.StashKey[Settings]()
_policy_key = pytest.StashKey[Dict[Tuple[str, ...], "Policy"]]()
_scan_cache_key = pytest.StashKey[Dict[Tuple[Any, ...], "FileReport"]]()


def _is_enabled(config: pytest.Config) -> bool:
    """--aisbom / --no-aisbom, else the aisbom_scan ini option."""
    option = config.getoption("aisbom", default=None)
    if option is not None:
        return bool(option)
    return bool(config.getini("aisbom_scan"))


def enabled(config: pytest.Config) -> bool:
    """Whether model files are collected as test items in this run."""
    try:
        return config.stash[_enabled_key]
    except KeyError:
        value = config.stash[_enabled_key] = _is_enabled(config)
        return value


def _read_settings(config: pytest.Config) -> Settings:
    from aisbom.config import ConfigError, load_config

    try:
        project = load_config(start=str(config.rootpath))
    except ConfigError as exc:
        raise pytest.UsageError(f"aisbom: {exc}") from None
    fail_on = str(config.getini("aisbom_fail_on") or "").strip() or project.fail_on
    if fail_on not in FAIL_ON_CHOICES:
        raise pytest.UsageError(f"aisbom_fail_on must be one of {', '.join(FAIL_ON_CHOICES)}, not {fail_on!r}")
    return Settings(
        enabled=enabled(config),
        patterns=tuple(str(p) for p in config.getini("aisbom_paths")),
        fail_on=fail_on,
        allow=tuple(project.allow),
        exclude=tuple(project.exclude),
        config_file=project.source,
    )


def settings(config: pytest.Config) -> Settings:
    """The settings of this run, read once (the first time they are needed)."""
    try:
        return config.stash[_settings_key]
    except KeyError:
        value = config.stash[_settings_key] = _read_settings(config)
        return value


def _policy(config: pytest.Config, extra_allow: Sequence[str] = ()) -> "Policy":
    """The default policy plus [tool.aisbom] allow (and a marker's allow=)."""
    from aisbom.policy import default_policy

    allow = settings(config).allow + tuple(extra_allow)
    cache = config.stash.setdefault(_policy_key, {})
    if allow not in cache:
        try:
            cache[allow] = default_policy().allowing(allow) if allow else default_policy()
        except (TypeError, ValueError) as exc:
            raise pytest.UsageError(f"aisbom: allow: {exc}") from None
    return cache[allow]


def _check_fail_on(value: Any, where: str) -> str:
    if value not in FAIL_ON_CHOICES:
        raise ValueError(f"{where}: fail_on must be one of {', '.join(FAIL_ON_CHOICES)}, not {value!r}")
    return str(value)


# ---- scanning and judging ----


def scan_file(path: str, policy: "Policy") -> "FileReport":
    """Scan one file (no hash: nothing here reports it); unreadable files are error reports."""
    from aisbom.walk import scan_file_or_error

    return scan_file_or_error(path, policy, hash=False)


def fails(report: "FileReport", fail_on: str) -> bool:
    """The verdict reaches fail_on; an error verdict always fails (unread bytes may hide anything)."""
    from aisbom.report import Verdict

    return report.verdict is Verdict.ERROR or report.verdict.rank >= Verdict(fail_on).rank


def _starts_with_proto(path: Optional[str]) -> bool:
    """The file opens with PROTO 0-5: written as a pickle, whatever happened to it since."""
    if path is None:
        return False
    try:
        with open(path, "rb") as f:
            head = f.read(2)
    except OSError:
        return False
    return len(head) == 2 and head[0] == 0x80 and head[1] <= 5


def _importable_module(module: str) -> bool:
    return all(part.isidentifier() for part in module.split("."))


def _is_stray_pickle(report: "FileReport", member: Optional[str], path: Optional[str]) -> bool:
    """Bytes that merely start with a pickle opcode (a PNG, an .exe, text
    beginning "class Foo"): the parse broke, nothing it named could be
    imported, nothing dangerous was seen, and it does not open with PROTO.
    Unpickling such bytes cannot call anything before it fails."""
    from aisbom.report import Severity

    mine = [f for f in report.findings if f.member == member]
    if not any(f.rule == "parse-error" for f in mine):
        return False  # it parsed: a real pickle
    if any(f.severity >= Severity.MALICIOUS for f in mine):
        return False
    if any(_importable_module(g.module) for g in report.globals if g.member == member):
        return False
    return not (member is None and _starts_with_proto(path))


def is_model_file(report: "FileReport", path: Optional[str] = None) -> bool:
    """Whether a scanned file becomes a test item.

    Items are files a model loader would read, or whose content aisbom
    could not rule out: anything malicious; pickles and the formats built on
    them (torch, numpy, joblib) and safetensors, at the top or inside a
    container; containers aisbom cannot open (7z, rar, zstd, lz4) or could
    not read to the end; files that could not be read. Text, empty files and
    binaries in no format aisbom knows (images, executables, .so files) are
    not items: no pickle-based loader reads them, so they cannot run code
    through one. Neither are bytes that only happen to start with a pickle
    opcode (see _is_stray_pickle)."""
    from aisbom.report import Severity, Verdict

    path = report.path if path is None else path
    if report.verdict is Verdict.MALICIOUS or report.format in OPAQUE_FORMATS or report.format == "unread":
        return True
    if report.format in NOT_MODEL_FORMATS:
        return False
    parts: List[Tuple[Optional[str], str]] = [(None, report.format)] + [(m, f) for m, f in report.members]
    for member, fmt in parts:
        if fmt in OPAQUE_FORMATS:
            return True
        if fmt in LOADABLE_FORMATS and not (fmt == "pickle" and _is_stray_pickle(report, member, path)):
            return True
    if report.format in LOADABLE_FORMATS:
        return False  # a stray pickle
    # A container (zip, tar, compressed data) that broke before its content
    # could be listed: a truncated checkpoint looks exactly like this.
    return any(f.member is None and f.severity >= Severity.ERROR for f in report.findings)


def _finding_line(finding: Any) -> str:
    where = []
    if finding.member:
        where.append(f"member {finding.member}")
    if finding.offset is not None:
        where.append(f"offset {finding.offset}")
    place = f" ({', '.join(where)})" if where else ""
    return f"  - {finding.severity.label} {finding.rule}{place}: {finding.message}"


def describe(report: "FileReport", where: str, fail_on: Optional[str] = None,
             how_to_allow: str = "add them to [tool.aisbom] allow in pyproject.toml") -> str:
    """A readable failure report: the verdict, then one line per finding
    (severity, rule, member, offset, message), then what to do about it."""
    from aisbom.report import Severity, Verdict

    threshold = f"; aisbom_fail_on = {fail_on}" if fail_on else ""
    lines = [f"aisbom verdict {report.verdict.value} for {where} (format {report.format}{threshold})"]
    shown = [f for f in report.findings if f.severity > Severity.INFO]
    lines += [_finding_line(f) for f in shown]
    if report.dropped_findings:
        lines.append(f"  ... and {report.dropped_findings} more findings not listed")
    if report.verdict is Verdict.ERROR:
        lines.append("An error verdict always fails: aisbom could not read all of the file, and unread bytes may hide anything.")
    elif report.verdict is Verdict.SUSPICIOUS:
        names = sorted({f.global_name for f in shown if f.global_name and f.severity == Severity.SUSPICIOUS})
        if names:
            lines.append(f"If you trust these globals, {how_to_allow}: {names!r}")
    return "\n".join(lines)


def _display(path: Path, rootpath: Path) -> str:
    try:
        return path.relative_to(rootpath).as_posix()
    except ValueError:
        return str(path)


# ---- finding model files ----


def _has_magic(pattern: str) -> bool:
    return any(c in pattern for c in "*?[")


def _expand(rootdir: str, patterns: Sequence[str]) -> List[Tuple[str, bool]]:
    """aisbom_paths -> (path, named literally), globs expanded; default the rootdir."""
    import glob

    if not patterns:
        return [(rootdir, True)]
    out: List[Tuple[str, bool]] = []
    for pattern in patterns:
        full = os.path.join(rootdir, os.path.expanduser(pattern))
        if _has_magic(pattern):
            out.extend((match, False) for match in sorted(glob.glob(full, recursive=True)))
        else:
            out.append((os.path.normpath(full), True))
    return out


def _missing_paths(rootdir: str, patterns: Sequence[str]) -> List[str]:
    return [p for p in patterns if not _has_magic(p) and not os.path.lexists(os.path.join(rootdir, os.path.expanduser(p)))]


def _excluded(path: str, bases: Sequence[str], patterns: Sequence[str]) -> bool:
    """[tool.aisbom] exclude globs, matched against the path relative to the
    rootdir and to the scanned top, its basename, and the full path."""
    import fnmatch

    if not patterns:
        return False
    names = [path, os.path.basename(path)] + [os.path.relpath(path, b) for b in bases]
    return any(fnmatch.fnmatch(n, p) for n in names for p in patterns)


def _skip_dir(path: str, skip_names: FrozenSet[str], skip_paths: FrozenSet[str]) -> bool:
    return (os.path.basename(path) in skip_names or path in skip_paths
            or os.path.isfile(os.path.join(path, "pyvenv.cfg")))  # a virtualenv, whatever its name


def _walk(top: str, rootdir: str, exclude: Sequence[str], skip_paths: FrozenSet[str]) -> Iterator[str]:
    """Regular files under top in sorted order (symlinked files are followed,
    symlinked directories are not), skipping SKIP_DIR_NAMES, virtualenvs and
    what [tool.aisbom] exclude names."""
    from aisbom.walk import DEFAULT_SKIP_DIRS

    skip_names = frozenset(DEFAULT_SKIP_DIRS) | SKIP_DIR_NAMES
    bases = (rootdir, top)
    if not os.path.isdir(top):
        if os.path.isfile(top):
            yield top
        return
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames[:] = sorted(
            d for d in dirnames
            if not _skip_dir(os.path.join(dirpath, d), skip_names, skip_paths)
            and not _excluded(os.path.join(dirpath, d), bases, exclude)
        )
        for name in sorted(filenames):
            full = os.path.join(dirpath, name)
            if not _excluded(full, bases, exclude) and os.path.isfile(full):
                yield full


def candidate_files(config: pytest.Config) -> List[str]:
    """Every file under aisbom_paths the plugin scans, sorted, without duplicates."""
    s = settings(config)
    rootdir = str(config.rootpath)
    skip_paths: FrozenSet[str] = frozenset()
    basetemp = config.getoption("basetemp", default=None)
    if basetemp:
        skip_paths = frozenset({os.path.abspath(str(basetemp))})
    found: Dict[str, None] = {}
    for top, literal in _expand(rootdir, s.patterns):
        if not literal and _excluded(top, (rootdir,), s.exclude):
            continue
        for path in _walk(top, rootdir, s.exclude, skip_paths):
            found.setdefault(os.path.abspath(path), None)
    return sorted(found)


def scan_files(paths: Sequence[str], policy: "Policy") -> List["FileReport"]:
    """Scan in parallel threads (the engine releases the GIL); reports in path order."""
    if len(paths) < 2:
        return [scan_file(p, policy) for p in paths]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(16, len(paths), os.cpu_count() or 1)) as pool:
        return list(pool.map(lambda p: scan_file(p, policy), paths))


# ---- collection nodes ----


class ModelFile(pytest.File):
    """A model file found by the plugin; it holds the scan made at collection."""

    def __init__(self, *, report: "FileReport", fail_on: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.report = report
        self.fail_on = fail_on

    def collect(self) -> Iterable[pytest.Item]:
        yield ModelScan.from_parent(self, name="aisbom", report=self.report, fail_on=self.fail_on)


class ModelScan(pytest.Item):
    """One model file's scan: fails when its verdict reaches aisbom_fail_on."""

    def __init__(self, *, report: "FileReport", fail_on: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.report = report
        self.fail_on = fail_on
        self.add_marker(_ITEM_MARKER)

    def runtest(self) -> None:
        if fails(self.report, self.fail_on):
            raise AisbomFailure(describe(self.report, _display(self.path, self.config.rootpath), self.fail_on))

    def reportinfo(self) -> Tuple[Any, Optional[int], str]:
        return self.path, None, f"aisbom scan of {_display(self.path, self.config.rootpath)}"


def _model_file_node(parent: Any, path: Path, report: "FileReport", fail_on: str) -> ModelFile:
    kwargs: Dict[str, Any] = {}
    try:
        path.relative_to(parent.config.rootpath)
    except ValueError:
        kwargs["nodeid"] = path.as_posix()  # outside the rootdir: the absolute path
    return ModelFile.from_parent(parent, path=path, report=report, fail_on=fail_on, **kwargs)


# ---- hooks ----


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("aisbom", "aisbom: scan pickle-based model files")
    group.addoption("--aisbom", action="store_true", dest="aisbom", default=None,
                    help="scan the model files under aisbom_paths (default: the rootdir) as test items")
    group.addoption("--no-aisbom", action="store_false", dest="aisbom", default=None,
                    help="do not collect model files, even with aisbom_scan = true")
    parser.addini("aisbom_scan", "collect model files as test items, as --aisbom does", type="bool", default=False)
    parser.addini("aisbom_paths", "files, directories or globs (relative to the rootdir) to look for model files "
                  "in; default: the rootdir", type="args", default=[])
    parser.addini("aisbom_fail_on", "lowest verdict that fails a model file: suspicious (default, or fail-on from "
                  "[tool.aisbom]) or malicious; an error verdict always fails", default="")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{_MARKER}(*paths, fail_on=None, allow=()): scan these model files before the test's fixtures are set up "
        "and fail the test when one is not clean (aisbom)",
    )
    config.addinivalue_line("markers", f"{_ITEM_MARKER}: the scan of a model file collected by pytest --aisbom")
    if enabled(config):
        s = settings(config)  # a malformed setting is a usage error now, not in every worker later
        missing = _missing_paths(str(config.rootpath), s.patterns)
        if missing:
            raise pytest.UsageError(f"aisbom_paths: no such file or directory: {', '.join(missing)} "
                                    f"(relative to the rootdir {config.rootpath})")
        _policy(config)


def pytest_report_header(config: pytest.Config) -> Optional[str]:
    if not enabled(config):
        return None
    s = settings(config)
    where = ", ".join(s.patterns) if s.patterns else "the rootdir"
    source = f"; settings from {s.config_file}" if s.config_file else ""
    return f"aisbom: model files under {where} (fail on {s.fail_on}{source})"


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> Optional[ModelFile]:
    """A model file named on the command line (e.g. to rerun `path::aisbom`)."""
    config = parent.config
    if not enabled(config) or not parent.session.isinitpath(file_path):
        return None
    report = scan_file(str(file_path), _policy(config))
    if not is_model_file(report, str(file_path)):
        return None
    return _model_file_node(parent, file_path, report, settings(config).fail_on)


@pytest.hookimpl(tryfirst=True)  # before -k, -m, --deselect and --lf see the items
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: List[pytest.Item]) -> None:
    """Add the model files under aisbom_paths, first, so `-x` stops before
    tests load them. Model files named on the command line (`pytest --aisbom
    models/x.pt`, or a `models/x.pt::aisbom` from a report) are scanned
    alone instead."""
    if not enabled(config) or any(isinstance(item, ModelScan) for item in items):
        return
    s = settings(config)
    paths = candidate_files(config)
    added: List[pytest.Item] = []
    for path, report in zip(paths, scan_files(paths, _policy(config))):
        if is_model_file(report, path):
            added.extend(session.genitems(_model_file_node(session, Path(path), report, s.fail_on)))
    items[:0] = added


# ---- the marker ----


def _resolve(path: Any, test_dir: Path, rootpath: Path) -> Tuple[Optional[Path], List[Path]]:
    """A relative path against the test file's directory, then the rootdir.
    Returns the file (or None) and where it was looked for."""
    p = Path(os.fspath(path)).expanduser()
    looked = [p] if p.is_absolute() else [test_dir / p, rootpath / p]
    for candidate in looked:
        if candidate.exists():
            return candidate, looked
    return None, looked


def _scan_cached(config: pytest.Config, path: Path, allow: Tuple[str, ...]) -> "FileReport":
    """Scan once per file content and allow list in this process (a module's
    pytestmark applies to all its tests)."""
    try:
        st = path.stat()
        key: Tuple[Any, ...] = (str(path.resolve()), st.st_mtime_ns, st.st_size, allow)
    except OSError:
        return scan_file(str(path), _policy(config, allow))
    cache = config.stash.setdefault(_scan_cache_key, {})
    if key not in cache:
        cache[key] = scan_file(str(path), _policy(config, allow))
    return cache[key]


def _marker_problems(item: pytest.Item, mark: pytest.Mark) -> List[str]:
    unknown = set(mark.kwargs) - {"fail_on", "allow"}
    if unknown:
        raise TypeError(f"{_MARKER}() got unexpected keyword arguments: {', '.join(sorted(unknown))}")
    if not mark.args:
        raise TypeError(f"{_MARKER}() needs at least one path")
    s = settings(item.config)
    fail_on = _check_fail_on(mark.kwargs.get("fail_on") or s.fail_on, _MARKER)
    allow = mark.kwargs.get("allow", ())
    allow = (allow,) if isinstance(allow, str) else tuple(allow)
    rootpath = item.config.rootpath
    problems = []
    for arg in mark.args:
        path, looked = _resolve(arg, Path(item.path).parent, rootpath)
        if path is None:
            problems.append(f"aisbom: {_MARKER}: no such file: {os.fspath(arg)} (looked for "
                            f"{' and '.join(str(p) for p in looked)})")
            continue
        report = _scan_cached(item.config, path, allow)
        if fails(report, fail_on):
            problems.append(describe(report, _display(path, rootpath), fail_on,
                                     f"pass allow= to {_MARKER} or add them to [tool.aisbom] allow"))
    return problems


def pytest_runtest_setup(item: pytest.Item) -> None:
    """The aisbom_model marker. A plain hook: it runs after skip/xfail marks
    are evaluated and before any fixture is set up, so a fixture that loads
    the file never sees one that failed the scan."""
    marks = list(item.iter_markers(name=_MARKER))
    if not marks:
        return
    problems = [p for mark in marks for p in _marker_problems(item, mark)]
    if problems:
        raise AisbomFailure("\n\n".join(problems))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    """Mark refusals raised during setup (the marker, aisbom_load in a fixture)."""
    outcome = yield
    if call.when == "setup" and call.excinfo is not None and isinstance(call.excinfo.value, AisbomFailure):
        setattr(outcome.get_result(), "aisbom_failure", True)  # survives xdist's report serialisation


def pytest_report_teststatus(report: pytest.TestReport, config: pytest.Config) -> Optional[Tuple[str, str, str]]:
    """An unsafe model is a test failure wherever it is found, not a setup error."""
    if report.when == "setup" and report.failed and getattr(report, "aisbom_failure", False):
        return "failed", "F", "FAILED"
    return None


# ---- the fixture ----


def _refusal_message(shown: str, exc: Exception) -> str:
    """The refusal's class, then the scan's findings (or the error's own text when no scan produced it)."""
    report = getattr(exc, "report", None)
    head = f"{type(exc).__name__} from aisbom_load({shown!r}): the file was refused"
    if report is None:
        return f"{head}\n{exc}"
    return f"{head}\n{describe(report, shown, how_to_allow='pass allow= to aisbom_load or add them to [tool.aisbom] allow')}"


def _load_or_fail(request: pytest.FixtureRequest, path: Any, kwargs: Dict[str, Any]) -> Any:
    from aisbom.errors import MalformedModelError, UnsafeModelError
    from aisbom.loader import safe_load

    target = path
    if isinstance(path, (str, os.PathLike)):
        found, _ = _resolve(path, Path(request.node.path).parent, request.config.rootpath)
        target = found if found is not None else path  # not found: safe_load says so, as open() would
    kwargs.setdefault("config", settings(request.config).config_file or False)
    try:
        return safe_load(target, **kwargs)
    except (UnsafeModelError, MalformedModelError) as exc:
        shown = os.fspath(path) if isinstance(path, (str, os.PathLike)) else repr(path)
        raise AisbomFailure(_refusal_message(str(shown), exc)) from None  # the findings say it all


@pytest.fixture
def aisbom_load(request: pytest.FixtureRequest) -> Callable[..., Any]:
    """aisbom_load(path, **safe_load_kwargs): load a model file through
    aisbom.safe_load, failing the test (with the findings) when the file is
    unsafe or malformed. Relative paths are looked up next to the test file,
    then in the rootdir. allow= entries from [tool.aisbom] apply."""

    def load(path: Any, **kwargs: Any) -> Any:
        return _load_or_fail(request, path, kwargs)

    return load
