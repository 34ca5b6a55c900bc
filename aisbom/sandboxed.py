"""Loading files that need more than the allowlist, in the sandbox.

A suspicious file (globals outside the allowlist, nothing known to be
dangerous: typically a whole nn.Module or a user class) is loaded by
``python -m aisbom._child`` inside aisbom's jail (aisbom/jail.py): no
network, no exec, read-only files, limits, a timeout. The child reduces what
it loaded to plain data and writes it into a memfd; the parent reads that
back through the allowlisting unpickler, like any untrusted file, and turns
the child's markers into ModuleState and Placeholder objects.
"""
from __future__ import annotations

import fcntl
import mmap
import os
import sys
import threading
import warnings
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from aisbom.errors import MalformedModelError, SandboxError, UnsafeModelError
from aisbom.report import FileReport, Severity

__all__ = ["available", "load", "ModuleState", "Placeholder", "SandboxedLoadWarning", "SandboxUnavailable",
           "TIMEOUT", "MEMORY"]

TIMEOUT = 600.0  # seconds a sandboxed load may take
MEMORY: Optional[str] = None  # RLIMIT_DATA for the child (default: half the machine's memory)


class SandboxedLoadWarning(UserWarning):
    """A file was loaded in the sandbox rather than in-process."""


class SandboxUnavailable(SandboxError):
    """The jail cannot be built here (no user namespaces, not Linux, ...)."""


@dataclass
class ModuleState:
    """What a whole nn.Module became: its class path and its state_dict."""

    class_path: str
    state_dict: Dict[str, Any]


@dataclass
class Placeholder:
    """An object the sandbox did not hand back: its class path and its state
    (its attributes, as plain data)."""

    class_path: str
    state: Any = None


def available() -> bool:
    """Whether this platform has the jail at all (the level is checked at spawn)."""
    if not sys.platform.startswith("linux") or not hasattr(os, "memfd_create"):
        return False
    from aisbom import jail

    try:
        return os.access(jail.helper_path(), os.X_OK)
    except (OSError, jail.JailError):
        return False


def _memory() -> Any:
    if MEMORY is not None:
        return MEMORY
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2
    except (ValueError, OSError):
        return None


def _restore_markers(obj: Any, seen: Optional[Dict[int, Any]] = None) -> Any:
    """Turn the child's marker dicts into ModuleState/Placeholder, in place where
    possible so shared containers stay shared."""
    from aisbom._child import MODULE_KEY, PLACEHOLDER_KEY

    seen = {} if seen is None else seen
    if id(obj) in seen:
        return seen[id(obj)]
    if isinstance(obj, dict):
        if len(obj) == 2 and isinstance(obj.get(PLACEHOLDER_KEY), str) and "state" in obj:
            out: Any = Placeholder(obj[PLACEHOLDER_KEY])
            seen[id(obj)] = out
            out.state = _restore_markers(obj["state"], seen)
            return out
        elif len(obj) == 2 and isinstance(obj.get(MODULE_KEY), str) and isinstance(obj.get("state_dict"), dict):
            out = ModuleState(obj[MODULE_KEY], obj["state_dict"])
            seen[id(obj)] = out
            out.state_dict = _restore_markers(obj["state_dict"], seen)
            return out
        else:
            out = obj
            seen[id(obj)] = out
            for k in list(obj):
                obj[k] = _restore_markers(obj[k], seen)
            return out
    if isinstance(obj, list):
        seen[id(obj)] = obj
        for i, x in enumerate(obj):
            obj[i] = _restore_markers(x, seen)
        return obj
    if isinstance(obj, tuple):
        out = tuple(_restore_markers(x, seen) for x in obj)
        seen[id(obj)] = out
        return out
    return obj


def _search_path() -> List[str]:
    """This interpreter's import path (existing folders), aisbom's own included."""
    out: List[str] = []
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for entry in [package_root, *sys.path]:
        entry = os.path.abspath(entry or os.getcwd())
        if os.path.isdir(entry) and entry not in out and entry != os.sep:
            out.append(entry)
    return out


def _import_in_background(tensors: str) -> threading.Thread:
    """Import torch while the child works: the two interpreter starts overlap."""

    def run() -> None:
        if tensors == "torch":
            try:
                import torch  # noqa: F401
            except ImportError:
                pass

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def _reasons(report: FileReport) -> str:
    names = sorted({f.global_name for f in report.findings if f.global_name and f.severity >= Severity.SUSPICIOUS})
    rules = sorted({f.rule for f in report.findings if f.severity >= Severity.SUSPICIOUS})
    return ", ".join(names) if names else ", ".join(rules)


def _sealed_copy(buf: Any) -> int:
    fd = os.memfd_create("aisbom-sandbox-input", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        view = memoryview(buf).cast("B")
        done = 0
        while done < len(view):
            done += os.write(fd, view[done:])
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_WRITE | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SHRINK
                    | fcntl.F_SEAL_SEAL)
        os.lseek(fd, 0, os.SEEK_SET)
    except BaseException:
        os.close(fd)
        raise
    return fd


def load(buf: Any, *, path: Optional[str], report: FileReport, map_location: Any, tensors: str,
         min_level: str = "full") -> Any:
    """Load a suspicious file in the jail and return plain data (see the module doc)."""
    from aisbom import jail
    from aisbom.loader import safe_loads

    # The child reads the file through a descriptor the parent opened, never
    # by name: it runs as nobody when the caller is root, a 0600 file stays
    # readable, and it loads the very file that was scanned. Bytes in memory
    # go into a sealed memfd, so nothing is written to disk.
    if path is not None and os.path.isfile(path):
        in_fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        shown = path
    else:
        in_fd = _sealed_copy(buf)
        shown = "<bytes>"
    out_fd = os.memfd_create("aisbom-sandbox-result", 0)
    try:
        argv = [sys.executable, "-m", "aisbom._child", "--format", report.format, "--out-fd", str(out_fd),
                "--python", f"{sys.prefix}:{sys.version}", "--in-fd", str(in_fd)]
        # The user's classes must import in the child as they do here: the same
        # sys.path, visible read-only (the current folder included).
        search = _search_path()
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(search), PYTHONNOUSERSITE="1")
        # Cached bytecode kept apart (PYTHONPYCACHEPREFIX) must be readable in
        # the jail too, or the child compiles torch from source: seconds.
        visible = list(search)
        if sys.pycache_prefix and os.path.isdir(sys.pycache_prefix):
            visible.append(os.path.abspath(sys.pycache_prefix))
        background = _import_in_background(tensors)
        try:
            proc = jail.spawn(argv, ro_paths=visible, pass_fds=[in_fd, out_fd],
                              timeout=TIMEOUT, memory=_memory(), stdout=jail.DEVNULL, stderr=jail.PIPE,
                              min_level=min_level, env=env)
        except (jail.JailUnavailable, jail.JailSetupError) as exc:
            raise SandboxUnavailable(f"the sandbox is not available here: {exc}") from exc
        except jail.JailError as exc:
            raise SandboxError(f"the sandboxed load of {shown} could not start: {exc}") from exc
        result = proc.communicate()
        background.join()
        if result.timed_out:
            raise SandboxError(f"the sandboxed load of {shown} ran past {TIMEOUT:g} s and was stopped")
        if not result.ok:
            err = (result.stderr or b"").decode("utf-8", "replace")
            lines = [ln for ln in err.splitlines() if ln.strip() and "Error in cpuinfo" not in ln]
            detail = lines[-1] if lines else f"exit status {result.exit_code}"
            raise SandboxError(f"the sandboxed load of {shown} failed: {detail}")
        size = os.fstat(out_fd).st_size
        if size == 0:
            raise SandboxError(f"the sandboxed load of {shown} returned nothing")
        # Not closed explicitly: what the load returns may view it (see safe_load).
        mm = mmap.mmap(out_fd, size, access=mmap.ACCESS_READ)
        try:
            data = safe_loads(mm, sandbox="never", tensors=tensors, map_location=map_location, config=False)
        except (UnsafeModelError, MalformedModelError) as exc:
            raise SandboxError(f"the sandbox handed back data aisbom refuses (the file may have subverted "
                               f"the sandboxed loader): {exc}") from exc
    finally:
        os.close(out_fd)
        os.close(in_fd)
    warnings.warn(
        SandboxedLoadWarning(
            f"{report.path} was loaded in aisbom's sandbox, not in-process, because it needs globals outside "
            f"the allowlist ({_reasons(report)}); what came back is plain data: tensors, containers, "
            "ModuleState for modules and Placeholder for other objects"
        ),
        stacklevel=3,
    )
    return _restore_markers(data)
