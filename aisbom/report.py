"""Scan reports: typed, immutable, with a stable JSON form (docs/report-format.md)."""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

__all__ = ["Severity", "Verdict", "Finding", "FileReport", "SCHEMA_VERSION"]

SCHEMA_VERSION = 1


class Severity(enum.IntEnum):
    """How much a finding matters. Ordered: a higher value is worse."""

    INFO = 0
    SUSPICIOUS = 1
    ERROR = 2
    MALICIOUS = 3

    @property
    def label(self) -> str:
        return self.name.lower()


class Verdict(str, enum.Enum):
    """The verdict on one file.

    clean: every pickle was fully read and every global is allowlisted.
    suspicious: globals outside the allowlist, none known to be dangerous.
    error: something could not be read completely (broken, truncated, over a limit, unknown).
    malicious: a known-dangerous callable, an unresolvable call, or an evasion technique.
    """

    CLEAN = "clean"
    SUSPICIOUS = "suspicious"
    ERROR = "error"
    MALICIOUS = "malicious"

    @property
    def rank(self) -> int:
        return _RANK[self]

    @classmethod
    def from_severity(cls, severity: Severity) -> "Verdict":
        return {
            Severity.INFO: cls.CLEAN,
            Severity.SUSPICIOUS: cls.SUSPICIOUS,
            Severity.ERROR: cls.ERROR,
            Severity.MALICIOUS: cls.MALICIOUS,
        }[severity]

    def __str__(self) -> str:
        return self.value


_RANK = {Verdict.CLEAN: 0, Verdict.SUSPICIOUS: 1, Verdict.ERROR: 2, Verdict.MALICIOUS: 3}


@dataclass(frozen=True)
class Finding:
    """One thing the scan found.

    rule: a stable identifier (docs/rules.md), e.g. "blocked-global".
    member: where in the file ("archive/data.pkl"; None for the file itself).
    offset: byte offset inside the member's (decompressed) content.
    global_name: "module.qualname" the finding is about, when there is one.
    """

    rule: str
    severity: Severity
    message: str
    global_name: Optional[str] = None
    member: Optional[str] = None
    offset: Optional[int] = None
    opcode: Optional[str] = None

    def to_json(self) -> Dict[str, Any]:
        return {
            "rule": self.rule,
            "severity": self.severity.label,
            "message": self.message,
            "global": self.global_name,
            "member": self.member,
            "offset": self.offset,
        }


@dataclass(frozen=True)
class GlobalRef:
    """A distinct global a pickle stream names, with how it was used."""

    module: str
    name: str
    member: Optional[str]
    offset: int
    opcode: str
    count: int
    uses: Tuple[str, ...]
    resolved: str  # module.qualname after the protocol-2 name mapping

    @property
    def dotted(self) -> str:
        return f"{self.module}.{self.name}"


@dataclass(frozen=True)
class FileReport:
    """The result of scanning one file."""

    path: str
    format: str
    verdict: Verdict
    findings: Tuple[Finding, ...] = ()
    globals: Tuple[GlobalRef, ...] = ()
    members: Tuple[Tuple[str, str], ...] = ()  # (member path, format)
    size: Optional[int] = None
    sha256: Optional[str] = None
    dropped_findings: int = 0
    lint: Optional[Dict[str, List[str]]] = field(default=None)

    @property
    def clean(self) -> bool:
        return self.verdict is Verdict.CLEAN

    def findings_at_least(self, severity: Severity) -> List[Finding]:
        return [f for f in self.findings if f.severity >= severity]

    def to_json(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {
            "path": self.path,
            "format": self.format,
            "verdict": self.verdict.value,
            "findings": [f.to_json() for f in self.findings],
        }
        if self.size is not None:
            out["size"] = self.size
        if self.sha256 is not None:
            out["sha256"] = self.sha256
        if self.dropped_findings:
            out["dropped_findings"] = self.dropped_findings
        out["members"] = [{"name": n, "format": f} for n, f in self.members]
        out["globals"] = sorted({g.resolved for g in self.globals})
        if self.lint is not None:
            out["lint"] = self.lint
        return out
