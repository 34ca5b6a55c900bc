"""Exceptions raised by aisbom.

Every refusal is an ``AisbomError``; the two families callers usually catch
are ``UnsafeModelError`` (the file would run code, or names globals the
policy does not allow) and ``MalformedModelError`` (the file is broken,
truncated or over a limit).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional, Sequence

if TYPE_CHECKING:  # pragma: no cover
    from aisbom.report import FileReport, Finding

__all__ = [
    "AisbomError",
    "UnsafeModelError",
    "MaliciousModelError",
    "DisallowedGlobalError",
    "MalformedModelError",
    "LimitExceededError",
    "SandboxError",
]


class AisbomError(Exception):
    """Base class of every aisbom error."""


class UnsafeModelError(AisbomError):
    """The file was refused because loading it could run code.

    ``report`` is the scan report, when a scan produced the refusal; the
    ``global_name``, ``opcode`` and ``offset`` attributes locate the first
    offending global (or are None).
    """

    def __init__(
        self,
        message: str,
        *,
        report: Optional["FileReport"] = None,
        findings: Sequence["Finding"] = (),
        global_name: Optional[str] = None,
        opcode: Optional[str] = None,
        offset: Optional[int] = None,
    ) -> None:
        super().__init__(message)
        self.report = report
        self.findings = tuple(findings)
        self.global_name = global_name
        self.opcode = opcode
        self.offset = offset


class MaliciousModelError(UnsafeModelError):
    """The file names a known-dangerous callable or hides what it calls."""


class DisallowedGlobalError(UnsafeModelError):
    """The file needs globals outside the allowlist (whole modules, user classes)."""


class MalformedModelError(AisbomError):
    """The file is not a well-formed model file: broken, truncated or inconsistent."""

    def __init__(
        self,
        message: str,
        *,
        report: Optional["FileReport"] = None,
        opcode: Optional[str] = None,
        offset: Optional[int] = None,
    ) -> None:
        super().__init__(message)
        self.report = report
        self.opcode = opcode
        self.offset = offset


class LimitExceededError(MalformedModelError):
    """A size, depth or memory limit was reached before the file was fully read."""


class SandboxError(AisbomError):
    """The sandbox could not be set up, or the sandboxed load failed."""
