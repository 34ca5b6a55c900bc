"""aisbom.safe_load: scan first, then load without running code.

A clean file (every global allowlisted) loads in-process through the C
unpickler, which resolves names only from the table in aisbom.restore. A
malicious file is refused with its findings. A file that needs globals
outside the allowlist is refused with the exact ``allow=`` that would load
it, or (sandbox="auto"/"always") loaded in a sandboxed child process.
"""
from __future__ import annotations

import contextlib
import contextvars
import gc
import io
import mmap as _mmap
import os
import sys
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

from aisbom import _core
from aisbom.errors import (
    DisallowedGlobalError,
    LimitExceededError,
    MaliciousModelError,
    MalformedModelError,
    UnsafeModelError,
)
from aisbom.policy import AllowSpec, Policy, default_policy, global_name_of
from aisbom.report import FileReport, Severity, Verdict
from aisbom.restore import LoadTable, StorageType, build_table
from aisbom.scanning import Limits, scan_buffer

__all__ = ["safe_load", "safe_loads", "allowed", "load_buffer"]

_extra_allowed: contextvars.ContextVar[Tuple[AllowSpec, ...]] = contextvars.ContextVar("aisbom_allowed", default=())
_COMPRESSED = ("gzip", "zlib", "bz2", "xz", "lzma", "joblib-zf")


@contextlib.contextmanager
def allowed(*names: AllowSpec) -> Iterator[None]:
    """Allow these globals (callables or exact "module.qualname" strings) for
    every safe_load inside the block, in this thread or task."""
    for n in names:
        global_name_of(n)  # fail early on a bad spec
    token = _extra_allowed.set(_extra_allowed.get() + tuple(names))
    try:
        yield
    finally:
        _extra_allowed.reset(token)


def _torch_available() -> bool:
    """Without importing it: a plain pickle should not pay for torch's import."""
    import importlib.util

    return importlib.util.find_spec("torch") is not None


# ---- the table for one load ----


def _resolve_user_object(name: str) -> Any:
    """The object a user named in allow= as a string. Only ever for names the
    caller wrote, never for names a file supplies."""
    import importlib

    parts = name.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for attr in parts[cut:]:
                obj = getattr(obj, attr)
        except AttributeError:
            continue
        return obj
    raise ValueError(f"allow={name!r}: no such importable global")


def _default_build(inst: Any, state: Any) -> None:
    """BUILD for a user-allowed class: its own __setstate__, or plain attributes."""
    from aisbom.restore import _set_attributes

    setstate = getattr(inst, "__setstate__", None)
    if callable(setstate):
        setstate(state)
    else:
        _set_attributes(inst, state, f"a {type(inst).__name__}")


def _table_for(tensors: str, allow: Sequence[AllowSpec], report: FileReport) -> LoadTable:
    modules = {g.resolved.split(".", 1)[0] for g in report.globals}
    table = _base_table(tensors, "numpy" in modules, "torch" in modules or report.format.startswith("torch"))
    if allow:
        table = table.copy()
    for spec in allow:
        name = global_name_of(spec)
        if name in table.globals:
            continue
        obj = spec if not isinstance(spec, str) else _resolve_user_object(spec)
        # A user-allowed class or function: called, created and built like
        # torch.serialization.add_safe_globals allows it.
        table.callable(name, obj)
        if isinstance(obj, type):
            table.newobj(obj, lambda *a, _c=obj, **k: _c.__new__(_c, *a, **k))
            table.build(obj, _default_build)
    return table


_TABLES: Dict[Tuple[str, bool, bool], LoadTable] = {}


def _base_table(tensors: str, with_numpy: bool, with_torch: bool) -> LoadTable:
    key = (tensors, with_numpy, with_torch)
    if key not in _TABLES:
        _TABLES[key] = build_table(tensors, with_numpy=with_numpy, with_torch=with_torch)
    return _TABLES[key]


# ---- refusing ----


def _refuse(report: FileReport, allow_hint: bool = True, note: str = "") -> None:
    """Raise the error a non-clean verdict calls for."""
    if report.format == "torchscript" and report.verdict is not Verdict.MALICIOUS:
        raise UnsafeModelError(
            f"refusing to load {report.path}: it is a TorchScript archive, whose code/ runs when "
            "torch.jit.load opens it; aisbom never hands files to torch.jit, and no allowlist entry changes that.",
            report=report, findings=report.findings,
        )
    worst = [f for f in report.findings if f.severity == max(x.severity for x in report.findings)]
    first = worst[0]
    lines = "\n".join(f"  - {f.rule}{' [' + f.member + ']' if f.member else ''}: {f.message}" for f in report.findings
                      if f.severity >= Severity.SUSPICIOUS)
    if report.verdict is Verdict.MALICIOUS:
        raise MaliciousModelError(
            f"refusing to load {report.path}: it would run code or hides what it calls\n{lines}",
            report=report, findings=report.findings, global_name=first.global_name, opcode=first.opcode,
            offset=first.offset,
        )
    if report.verdict is Verdict.ERROR:
        cls = LimitExceededError if any(f.rule == "scan-limit" or f.rule == "decompression" and "cap" in f.message
                                         for f in worst) else MalformedModelError
        raise cls(f"refusing to load {report.path}: it could not be read completely\n{lines}", report=report,
                  offset=first.offset)
    names = sorted({f.global_name for f in report.findings if f.global_name and f.severity == Severity.SUSPICIOUS})
    hint = ""
    if allow_hint and names:
        call = "aisbom.safe_loads(data" if report.path == "<bytes>" else f"aisbom.safe_load({report.path!r}"
        hint = f"\nIf you trust these globals, load it with:\n    {call}, allow={names!r})"
    if note:
        hint += f"\nIt was not loaded in the sandbox either: {note}"
    raise DisallowedGlobalError(
        f"refusing to load {report.path} in-process: it needs globals outside the allowlist "
        f"(typically a whole nn.Module or a user class)\n{lines}{hint}",
        report=report, findings=report.findings, global_name=first.global_name, opcode=first.opcode,
        offset=first.offset,
    )


# ---- the formats ----


class _Loader:
    """Loads one clean file's bytes; `buf` stays alive for the whole load."""

    def __init__(self, buf: Any, path: Optional[str], table: LoadTable, tensors: str, map_location: Any,
                 mmap: bool, encoding: Optional[str], limits: Limits) -> None:
        self.buf = buf
        self.path = path
        self.table = table
        self.tensors = tensors
        self.map_location = map_location
        self.mmap = mmap
        self.encoding = encoding
        self.limits = limits

    def unpickle(self, data: Any, start: int = 0, persistent_load: Optional[Callable[[Any], Any]] = None,
                 encoding: str = "ASCII") -> Tuple[Any, int]:
        t = self.table
        # Building thousands of tensors would trigger full garbage collections
        # that only rediscover live objects; the load creates no cycles to free.
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            return _core.unpickle(data, t.globals, start=start, calls=t.calls, newobjs=t.newobjs, builds=t.builds,
                                  persistent_load=persistent_load, encoding=self.encoding or encoding)
        finally:
            if was_enabled:
                gc.enable()

    def load(self, fmt: str) -> Any:
        if fmt == "torch-zip":
            from aisbom.torchfile import load_torch_zip

            return load_torch_zip(self)
        if fmt == "torch-legacy":
            from aisbom.torchfile import load_torch_legacy

            return load_torch_legacy(self)
        if fmt == "pickle":
            obj, end = self.unpickle(self.buf)
            from aisbom.torchfile import MAGIC_NUMBER, load_torch_legacy

            if type(obj) is int and obj == MAGIC_NUMBER and end < len(self.buf):
                return load_torch_legacy(self)  # torch.load tells its legacy format by this number
            return obj
        if fmt in ("npy", "npy-object"):
            from aisbom.arrays import load_npy

            return load_npy(self, self.buf)
        if fmt == "npz":
            from aisbom.arrays import load_npz

            return load_npz(self)
        if fmt == "safetensors":
            from aisbom.arrays import load_safetensors

            return load_safetensors(self)
        if fmt in _COMPRESSED:
            from aisbom.scanning import _decompress

            sink = io.BytesIO()
            problem = _decompress(self.buf, fmt, self.limits.max_decompressed, sink)
            if problem:
                raise MalformedModelError(f"{fmt}: {problem}")
            inner = sink.getbuffer()
            sub = _Loader(inner, self.path, self.table, self.tensors, self.map_location, False, self.encoding, self.limits)
            return sub.load(_core.sniff(inner))
        if fmt == "torchscript":
            raise UnsafeModelError("TorchScript archives run their code/ when loaded; aisbom refuses them "
                                   "(never handed to torch.jit)")
        raise MalformedModelError(f"aisbom cannot load {fmt} files in-process")


def _config_allow(config: Union[None, bool, str]) -> Tuple[str, ...]:
    """allow= entries from [tool.aisbom]: the nearest pyproject.toml (None), a
    given file (a path), or none at all (False)."""
    if config is False:
        return ()
    from aisbom.config import load_config

    return load_config(config if isinstance(config, str) else None).allow


def load_buffer(buf: Any, *, path: Optional[str] = None, allow: Sequence[AllowSpec] = (), map_location: Any = None,
                mmap: bool = False, tensors: Optional[str] = None, sandbox: str = "auto",
                encoding: Optional[str] = None, i_know_this_runs_code: bool = False,
                limits: Optional[Limits] = None, report: Optional[FileReport] = None,
                config: Union[None, bool, str] = None) -> Any:
    """Scan then load the bytes of one file (see safe_load)."""
    if sandbox not in ("auto", "never", "always"):
        raise ValueError("sandbox must be 'auto', 'never' or 'always'")
    if tensors is None:
        tensors = "torch" if _torch_available() else "numpy"
    if tensors not in ("torch", "numpy"):
        raise ValueError("tensors must be 'torch' or 'numpy'")
    if tensors == "torch" and not _torch_available():
        raise ImportError("tensors='torch' needs torch; use tensors='numpy' to get numpy arrays instead")
    limits = limits or Limits()
    specs = tuple(allow) + _extra_allowed.get() + _config_allow(config)
    policy: Policy = default_policy()
    if specs:
        policy = policy.allowing(specs, allow_blocked=i_know_this_runs_code)
    if report is None:
        report = scan_buffer(buf, path=path or "<bytes>", policy=policy, limits=limits)
    if report.verdict is not Verdict.CLEAN:
        if report.format == "torchscript":
            _refuse(report)  # never handed to torch.jit, sandbox or not
        wanted = (sandbox == "auto" and report.verdict is Verdict.SUSPICIOUS) or sandbox == "always"
        if wanted:
            from aisbom import sandboxed

            try:
                return sandboxed.load(buf, path=path, report=report, map_location=map_location, tensors=tensors)
            except sandboxed.SandboxUnavailable as exc:
                if sandbox == "always":
                    raise
                _refuse(report, note=str(exc))
        _refuse(report)
    table = _table_for(tensors, specs, report)
    loader = _Loader(buf, path, table, tensors, map_location, mmap, encoding, limits)
    return loader.load(report.format)


def safe_load(
    f: Union[str, "os.PathLike[str]", io.IOBase, Any],
    *,
    allow: Iterable[AllowSpec] = (),
    map_location: Any = None,
    mmap: bool = False,
    tensors: Optional[str] = None,
    sandbox: str = "auto",
    encoding: Optional[str] = None,
    i_know_this_runs_code: bool = False,
    limits: Optional[Limits] = None,
    config: Union[None, bool, str] = None,
) -> Any:
    """Load a model file without letting it run code.

    f: a path, or a binary file object. The file is scanned first; a clean
    file loads in-process, returning what torch.load / pickle.load /
    numpy.load would. allow= adds exact globals (callables or
    "module.qualname" strings); a blocklisted one also needs
    i_know_this_runs_code=True. map_location and mmap work as in
    torch.load. tensors="numpy" returns numpy arrays for a torch
    checkpoint's tensors (the default when torch is not installed).
    sandbox="never" refuses anything not clean; "auto" loads a suspicious file
    in a sandboxed child process when the sandbox is available; "always"
    sandboxes whatever is not clean. config: allow= entries also come from
    [tool.aisbom] in the nearest pyproject.toml (None), a given file, or
    nowhere (False).

    Raises MaliciousModelError, DisallowedGlobalError (both UnsafeModelError),
    MalformedModelError or LimitExceededError; the input is never modified.
    """
    data: Any
    if isinstance(f, (str, bytes, os.PathLike)):
        path = os.fspath(f)
        path = path.decode() if isinstance(path, bytes) else path
        from aisbom.scanning import _open_regular

        with _open_regular(path) as fh:
            if os.fstat(fh.fileno()).st_size == 0:
                data, mmap = b"", False  # nothing to map
            else:
                # Not closed here: arrays loaded with mmap=True view this map, and a
                # failed load's traceback may still hold views of it. It is unmapped
                # when the last reference goes.
                data = _mmap.mmap(fh.fileno(), 0, access=_mmap.ACCESS_READ)
    elif mmap:
        raise ValueError("mmap=True needs a file path, as in torch.load")
    elif hasattr(f, "getbuffer"):
        data, path = f.getbuffer(), getattr(f, "name", None) or "<file>"
    elif hasattr(f, "read"):
        data, path = f.read(), getattr(f, "name", None) or "<file>"
    else:
        raise TypeError("safe_load takes a path or a binary file object; use safe_loads for bytes")
    return load_buffer(data, path=path, allow=tuple(allow), map_location=map_location, mmap=mmap, tensors=tensors,
                       sandbox=sandbox, encoding=encoding, i_know_this_runs_code=i_know_this_runs_code,
                       limits=limits, config=config)


def safe_loads(data: Union[bytes, bytearray, memoryview, _mmap.mmap], **kwargs: Any) -> Any:
    """safe_load for bytes in memory (the keyword arguments are safe_load's, mmap aside)."""
    if kwargs.pop("mmap", False):
        raise ValueError("mmap=True needs a file path")
    return load_buffer(data, path="<bytes>", **kwargs)
