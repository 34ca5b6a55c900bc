"""Loading files that need more than the allowlist, in the sandbox (aisbom.jail).

Until the sandboxed loader is wired in, available() is False and safe_load
refuses such files with the allow= that would load them in-process."""
from __future__ import annotations

from typing import Any, Optional

from aisbom.report import FileReport


def available() -> bool:
    return False


def load(buf: Any, *, path: Optional[str], report: FileReport, map_location: Any, tensors: str) -> Any:
    raise NotImplementedError("the sandboxed loader is not available")
