"""aisbom: open untrusted pickle-based model files safely.

    import aisbom
    report = aisbom.scan("model.pt")          # static scan, nothing runs
    state = aisbom.safe_load("model.pt")      # scan, then load without running code

The scanner and the loader are one C engine (``aisbom._core``): what the scan
judged is byte for byte what the loader loads.
"""
from __future__ import annotations

from aisbom.errors import (
    AisbomError,
    DisallowedGlobalError,
    LimitExceededError,
    MaliciousModelError,
    MalformedModelError,
    SandboxError,
    UnsafeModelError,
)
from aisbom.policy import Policy, default_policy
from aisbom.report import FileReport, Finding, Severity, Verdict
from aisbom.scanning import Limits, scan, scan_buffer, scan_bytes
from aisbom.loader import allowed, safe_load, safe_loads
from aisbom.walk import scan_many

__version__ = "0.1.0"

__all__ = [
    "safe_load",
    "safe_loads",
    "allowed",
    "scan",
    "scan_bytes",
    "scan_many",
    "scan_buffer",
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
