"""CycloneDX 1.6 BOMs (`aisbom scan --format cyclonedx`) for SBOM pipelines.

One component per scanned file (type ``machine-learning-model``, or ``file``
for what is not a model format: text, unknown, empty or unread files) with
its SHA-256, format, verdict and the globals it names; every finding above
info becomes a vulnerability affecting its component. Severities map
malicious -> critical, error -> high (an error verdict fails the scan like a
finding: bytes that could not be read may hide anything), suspicious ->
medium. The mapping is documented in docs/report-format.md.

The output is deterministic except for ``serialNumber`` and
``metadata.timestamp`` (both can be passed in; the timestamp honours
SOURCE_DATE_EPOCH).
"""
from __future__ import annotations

import datetime
import json
import os
import uuid
from typing import IO, Any, Dict, List, Optional, Sequence, Set

from aisbom.report import FileReport, Finding, Severity
from aisbom.sarif import display_path, remedy, reportable, rule_info

__all__ = ["SPEC_VERSION", "SEVERITY", "NON_MODEL_FORMATS", "build", "render"]

SPEC_VERSION = "1.6"
SCHEMA = "http://cyclonedx.org/schema/bom-1.6.schema.json"
SEVERITY = {
    Severity.MALICIOUS: "critical",
    Severity.ERROR: "high",
    Severity.SUSPICIOUS: "medium",
    Severity.INFO: "info",
}
# Formats that are not (possibly) a model: the component is a plain file.
NON_MODEL_FORMATS = frozenset({"text", "unknown", "empty", "unread"})


def _timestamp(now: Optional[datetime.datetime]) -> str:
    if now is None:
        epoch = os.environ.get("SOURCE_DATE_EPOCH", "")
        if epoch.isdigit():
            now = datetime.datetime.fromtimestamp(int(epoch), tz=datetime.timezone.utc)
        else:
            now = datetime.datetime.now(datetime.timezone.utc)
    return now.astimezone(datetime.timezone.utc).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def _prop(name: str, value: object) -> Dict[str, str]:
    return {"name": f"aisbom:{name}", "value": str(value)}


def _bom_ref(path: str, taken: Set[str]) -> str:
    """A bom-ref for a file: its path, numbered when a path is given twice."""
    base = f"file:{display_path(path)}"
    ref, n = base, 1
    while ref in taken:
        n += 1
        ref = f"{base}#{n}"
    taken.add(ref)
    return ref


# ---- components ----


def _component(r: FileReport, ref: str) -> Dict[str, Any]:
    component: Dict[str, Any] = {
        "type": "file" if r.format in NON_MODEL_FORMATS else "machine-learning-model",
        "bom-ref": ref,
        "name": os.path.basename(display_path(r.path)) or display_path(r.path),
    }
    if r.sha256 is not None:
        component["hashes"] = [{"alg": "SHA-256", "content": r.sha256}]
    props = [_prop("format", r.format), _prop("verdict", r.verdict.value), _prop("path", display_path(r.path))]
    if r.size is not None:
        props.append(_prop("size", r.size))
    props.extend(_prop("global", g) for g in sorted({g.resolved for g in r.globals}))
    component["properties"] = props
    return component


# ---- vulnerabilities ----


def _detail(f: Finding) -> str:
    info = rule_info(f.rule)
    where = []
    if f.member is not None:
        where.append(f"in member {f.member}")
    if f.offset is not None:
        where.append(f"at byte offset {f.offset}" + ("" if f.member is not None else " of the file"))
    place = f"Found {' '.join(where)}. " if where else ""
    return f"{place}{info.full}"


def _finding_props(f: Finding) -> List[Dict[str, str]]:
    props = [_prop("rule", f.rule), _prop("severity", f.severity.label)]
    if f.global_name is not None:
        props.append(_prop("global", f.global_name))
    if f.member is not None:
        props.append(_prop("member", f.member))
    if f.offset is not None:
        props.append(_prop("offset", f.offset))
    if f.opcode is not None:
        props.append(_prop("opcode", f.opcode))
    return props


def _vulnerability(f: Finding, ref: str, number: int) -> Dict[str, Any]:
    info = rule_info(f.rule)
    vuln: Dict[str, Any] = {
        "bom-ref": f"{ref}#finding-{number}",
        "id": f"AISBOM-{f.rule}",
        "source": {"name": "aisbom"},
        "ratings": [{"source": {"name": "aisbom"}, "severity": SEVERITY[f.severity], "method": "other"}],
    }
    if info.cwe is not None:
        vuln["cwes"] = [info.cwe]
    vuln.update({
        "description": f.message,
        "detail": _detail(f),
        "recommendation": remedy(f.severity),
        "affects": [{"ref": ref}],
        "properties": _finding_props(f),
    })
    return vuln


# ---- the BOM ----


def _metadata(timestamp: str) -> Dict[str, Any]:
    from aisbom import __version__

    tool = {"type": "application", "name": "aisbom", "version": __version__}
    return {"timestamp": timestamp, "tools": {"components": [tool]}}


def build(
    reports: Sequence[FileReport],
    *,
    serial_number: Optional[str] = None,
    timestamp: Optional[datetime.datetime] = None,
) -> Dict[str, Any]:
    """The CycloneDX 1.6 BOM for these reports, as a JSON-ready dict."""
    taken: Set[str] = set()
    components: List[Dict[str, Any]] = []
    vulnerabilities: List[Dict[str, Any]] = []
    for r in reports:
        ref = _bom_ref(r.path, taken)
        components.append(_component(r, ref))
        vulnerabilities.extend(_vulnerability(f, ref, i) for i, f in enumerate(reportable(r), 1))
    bom: Dict[str, Any] = {
        "$schema": SCHEMA,
        "bomFormat": "CycloneDX",
        "specVersion": SPEC_VERSION,
        "serialNumber": serial_number or uuid.uuid4().urn,
        "version": 1,
        "metadata": _metadata(_timestamp(timestamp)),
        "components": components,
    }
    if vulnerabilities:
        bom["vulnerabilities"] = vulnerabilities
    return bom


def render(reports: Sequence[FileReport], out: IO[str]) -> None:
    """Write the CycloneDX 1.6 JSON BOM for these reports to out."""
    json.dump(build(reports), out, indent=2)
    out.write("\n")
