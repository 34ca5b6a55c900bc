"""aisbom: open untrusted pickle-based model files safely.

    import aisbom
    report = aisbom.scan("model.pt")          # static scan, nothing runs
    state = aisbom.safe_load("model.pt")      # scan, then load without running code

The scanner and the loader are one C engine (``aisbom._core``): what the scan
judged is byte for byte what the loader loads.

The names below are imported on first use (PEP 562), so that importing a
submodule such as aisbom.pytest_plugin or aisbom.config does not load the
engine.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Dict, List

__version__ = "0.1.0"

_EXPORTS: Dict[str, str] = {
    "safe_load": "aisbom.loader",
    "safe_loads": "aisbom.loader",
    "allowed": "aisbom.loader",
    "scan": "aisbom.scanning",
    "scan_bytes": "aisbom.scanning",
    "scan_buffer": "aisbom.scanning",
    "Limits": "aisbom.scanning",
    "scan_many": "aisbom.walk",
    "guard": "aisbom.guarded",
    "Policy": "aisbom.policy",
    "default_policy": "aisbom.policy",
    "FileReport": "aisbom.report",
    "Finding": "aisbom.report",
    "Severity": "aisbom.report",
    "Verdict": "aisbom.report",
    "AisbomError": "aisbom.errors",
    "UnsafeModelError": "aisbom.errors",
    "MaliciousModelError": "aisbom.errors",
    "DisallowedGlobalError": "aisbom.errors",
    "MalformedModelError": "aisbom.errors",
    "LimitExceededError": "aisbom.errors",
    "SandboxError": "aisbom.errors",
}

__all__ = [
    "safe_load",
    "safe_loads",
    "allowed",
    "scan",
    "scan_bytes",
    "scan_many",
    "scan_buffer",
    "guard",
    "Limits",
    "Policy",
    "default_policy",
    "FileReport",
    "Finding",
    "Severity",
    "Verdict",
    "AisbomError",
    "UnsafeModelError",
    "MaliciousModelError",
    "DisallowedGlobalError",
    "MalformedModelError",
    "LimitExceededError",
    "SandboxError",
    "__version__",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'aisbom' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> List[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs
    from aisbom.errors import (
        AisbomError,
        DisallowedGlobalError,
        LimitExceededError,
        MaliciousModelError,
        MalformedModelError,
        SandboxError,
        UnsafeModelError,
    )
    from aisbom.loader import allowed, safe_load, safe_loads
    from aisbom.policy import Policy, default_policy
    from aisbom.report import FileReport, Finding, Severity, Verdict
    from aisbom.scanning import Limits, scan, scan_buffer, scan_bytes
    from aisbom.guarded import guard
    from aisbom.walk import scan_many
