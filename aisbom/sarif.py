"""SARIF 2.1.0 reports (`aisbom scan --format sarif`) for code-scanning pages.

One run; one reporting descriptor per rule that has results; one result per
finding above info, located at the scanned file (the member and byte offset
inside it are named in the message, the logical locations and the
properties). Model files are binary, so results carry no line region:
GitHub's upload action then leaves the file alone (it would otherwise read a
multi-gigabyte checkpoint to hash "lines"), and each result brings its own
``partialFingerprints``. The mapping is documented in docs/report-format.md.

The rule table here (``RULES``) describes every rule in docs/rules.md; the
CycloneDX writer uses it too.
"""
from __future__ import annotations

import hashlib
import json
import os
import pathlib
import urllib.parse
from dataclasses import dataclass
from typing import IO, Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from aisbom.report import FileReport, Finding, Severity

__all__ = ["RULES", "RuleInfo", "rule_info", "remedy", "reportable", "file_uri", "display_path", "build", "render"]

SARIF_VERSION = "2.1.0"
SARIF_SCHEMA = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
CWE_DESERIALIZATION = 502


@dataclass(frozen=True)
class RuleInfo:
    """What a rule means. severity is the one docs/rules.md gives (the usual one);
    a finding carries its own."""

    id: str
    severity: Severity
    short: str
    full: str
    cwe: Optional[int] = None

    @property
    def name(self) -> str:
        """The rule id in PascalCase: SARIF's reportingDescriptor.name."""
        return "".join(part.capitalize() for part in self.id.split("-"))


_M, _S, _E = Severity.MALICIOUS, Severity.SUSPICIOUS, Severity.ERROR
_D = CWE_DESERIALIZATION

_TABLE: Tuple[RuleInfo, ...] = (
    # Globals (aisbom/policy.py)
    RuleInfo("blocked-global", _M, "Known-dangerous global",
             "The pickle names a global on aisbom's blocklist (a callable that runs commands, evaluates code, "
             "opens files or imports modules), or a dotted name that walks through one. Unpickling calls it.", _D),
    RuleInfo("dunder-attribute", _M, "Global reaches object internals",
             "A dotted global name reaches an object's internals (__globals__, __dict__, __class__, ...): "
             "a way from a harmless name to anything.", _D),
    RuleInfo("unknown-global", _S, "Global not on the allowlist",
             "The pickle names a global that is not on aisbom's exact allowlist and not known to be dangerous, "
             "typically a whole nn.Module or a user class. Loading the file imports that code and calls it.", _D),
    # Pickle streams (csrc/scanner.c)
    RuleInfo("unresolved-global", _M, "STACK_GLOBAL operand cannot be read",
             "A STACK_GLOBAL operand is not a string the scanner can read (a call result, a number, an EXT "
             "result), so the global it fetches cannot be judged.", _D),
    RuleInfo("unresolved-call", _M, "Call of something that is not a named global",
             "REDUCE, OBJ, INST, NEWOBJ or NEWOBJ_EX calls something that is not a named global (the result "
             "of another call, a persistent object), which hides what runs.", _D),
    RuleInfo("ext-opcode", _M, "Global from the extension registry",
             "EXT1, EXT2 or EXT4 fetch a global from copyreg's extension registry, which is process state: "
             "what it resolves to cannot be judged from the file.", _D),
    RuleInfo("build-on-global", _M, "BUILD on a module, class or function",
             "BUILD sets attributes on a module, class or function, so later lookups of it can resolve to "
             "something else.", _D),
    RuleInfo("mutate-global", _M, "Container opcode modifies a global",
             "APPEND(S), SETITEM(S) or ADDITEMS modify a global object itself.", _D),
    RuleInfo("frame-violation", _M, "Opcode crosses a FRAME boundary",
             "An opcode runs past the end of its FRAME or a FRAME starts inside another, so unpicklers disagree "
             "about what runs (CPython gh-154848); the swallowed bytes are also scanned as a hidden@offset "
             "member. A frame layout every unpickler reads alike but no pickler writes is suspicious.", _D),
    RuleInfo("build-on-non-instance", _S, "BUILD on a literal or container",
             "BUILD targets a literal or container rather than an object a class made.", _D),
    RuleInfo("method-call", _S, "Method call on an unknown object",
             "A container opcode calls a method of a persistent or unknown object.", _D),
    RuleInfo("persistent-id", _E, "Persistent id without persistent_load",
             "PERSID or BINPERSID in a stream whose loader has no persistent_load: plain pickle.load stops there."),
    RuleInfo("out-of-band-buffer", _E, "Out-of-band buffer",
             "NEXT_BUFFER refers to data outside the file, which was not checked."),
    RuleInfo("parse-error", _E, "Malformed or truncated pickle",
             "The pickle stream is malformed or truncated where CPython's unpickler would fail; findings before "
             "the break are kept, the rest was not checked."),
    RuleInfo("trailing-data", _E, "Unread bytes after the data",
             "Bytes follow the last complete pickle (or container) that nothing reads."),
    RuleInfo("scan-limit", _E, "Scan limit reached",
             "The scan ran out of memory, or containers are nested deeper than the limit: the report is "
             "incomplete."),
    # Containers (csrc/container.c and friends, aisbom/scanning.py)
    RuleInfo("polyglot", _M, "File reads as two formats",
             "The bytes of another format also read as a pickle naming globals (e.g. a pickle followed by a zip), "
             "so a loader may take either reading; the pickle reading is scanned as the as-pickle member.", _D),
    RuleInfo("zip-anomaly", _S, "Tampered zip archive",
             "Tampering torch tolerates and strict readers reject: a local name that differs from the central "
             "directory, a CRC mismatch, odd flag bits, an encrypted flag, duplicate names, bytes before the "
             "archive, unlisted local entries, a second central directory. Malicious when a member marked as a "
             "directory holds data: torch's reader skips it and reads uninitialised memory."),
    RuleInfo("torchscript", _S, "TorchScript archive",
             "A TorchScript archive (constants.pkl, code/): torch.jit.load runs its code; aisbom's loader "
             "refuses it.", 94),
    RuleInfo("pickle-in-storage", _S, "Pickle inside a tensor storage",
             "A tensor storage record holds a complete pickle, which a later pickle.loads could run.", _D),
    RuleInfo("unreadable-member", _E, "Unreadable zip member",
             "A zip member uses an unsupported compression method, is truncated, corrupt, or inflates past the "
             "cap; its content was not checked."),
    RuleInfo("legacy-layout", _E, "Unaccounted legacy torch layout",
             "torch's legacy stream or tar layout cannot be accounted for byte by byte."),
    RuleInfo("npy-header", _E, "Invalid .npy header",
             "A .npy header numpy would reject, or array data shorter than the header declares."),
    RuleInfo("joblib-layout", _E, "Unaccounted joblib array data",
             "joblib's in-stream array data cannot be stepped over exactly."),
    RuleInfo("external-data", _E, "Array data in a separate file",
             "An old joblib wrapper loads its array from a separate file, which was not scanned."),
    RuleInfo("tar-link", _S, "Link inside a tar archive",
             "A tar member is a link: extracting it makes a reader open a file outside the archive. Malicious "
             "in a torch tar checkpoint.", 59),
    RuleInfo("unsupported-container", _E, "Unsupported container",
             "A 7z, rar, zstd or lz4 container: aisbom cannot look inside."),
    RuleInfo("unknown-format", _E, "Unknown format",
             "Not a format aisbom knows (text files are recognised and clean), so nothing in it was checked."),
    RuleInfo("decompression", _E, "Broken compressed wrapper",
             "A compressed wrapper is corrupt, truncated, followed by stray bytes, or expands past the cap "
             "(a decompression bomb?).", 409),
    RuleInfo("safetensors", _E, "Malformed safetensors header",
             "A safetensors header breaks one of the format's rules (one finding per rule)."),
    RuleInfo("unreadable", _E, "File could not be read",
             "The file could not be read, or it is a symlink leading out of the scanned tree and was not "
             "followed."),
    RuleInfo("dropped-findings", _E, "More findings than listed",
             "More than 1000 findings in one file: the rest count towards the verdict but are not listed; the "
             "message names the worst of them."),
)

RULES: Mapping[str, RuleInfo] = {r.id: r for r in _TABLE}

# GitHub reads security-severity as a CVSS-like score: >= 9.0 critical, 7.0-8.9 high,
# 4.0-6.9 medium, below 4.0 low.
_LEVEL = {Severity.MALICIOUS: "error", Severity.ERROR: "error", Severity.SUSPICIOUS: "warning", Severity.INFO: "note"}
_SECURITY_SEVERITY = {Severity.MALICIOUS: "9.8", Severity.ERROR: "5.0", Severity.SUSPICIOUS: "4.0",
                      Severity.INFO: "0.0"}
_REMEDY = {
    Severity.MALICIOUS: "Do not load this file with pickle, torch.load, joblib or numpy.load(allow_pickle=True): "
                        "it can run code. aisbom.safe_load refuses it. Treat its source as compromised.",
    Severity.ERROR: "Part of the file could not be read, so part of it was not checked; unread bytes may hide "
                    "anything. Get an intact copy, or treat the file as untrusted.",
    Severity.SUSPICIOUS: "Review the globals named. Allow exact names you trust (aisbom scan --allow "
                         "MODULE.QUALNAME, safe_load(allow=[...]) or allow in [tool.aisbom]); otherwise re-export "
                         "the weights as a state_dict or as safetensors.",
    Severity.INFO: "Nothing to do.",
}


def rule_info(rule: str) -> RuleInfo:
    """The table entry for a rule; a generic one for a rule the table does not know."""
    known = RULES.get(rule)
    if known is not None:
        return known
    return RuleInfo(rule, Severity.ERROR, f"aisbom rule {rule}", f"A finding of aisbom's {rule} rule (see docs/rules.md).")


def remedy(severity: Severity) -> str:
    """What to do about a finding of this severity."""
    return _REMEDY[severity]


def reportable(report: FileReport) -> List[Finding]:
    """The findings that become results or vulnerabilities: everything above info."""
    return [f for f in report.findings if f.severity > Severity.INFO]


# ---- paths ----


def display_path(path: str) -> str:
    """The path as text that is valid Unicode (undecodable bytes shown as \\xNN)."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def file_uri(path: str) -> str:
    """The file as a URI: relative to the current directory (forward slashes,
    percent-encoded) when it lies below it, else an absolute file:// URI."""
    absolute = os.path.abspath(path)
    try:
        rel: Optional[str] = os.path.relpath(absolute)
    except ValueError:  # another drive on Windows
        rel = None
    if rel is None or rel in (os.curdir, os.pardir) or rel.startswith(os.pardir + os.sep):
        return pathlib.Path(absolute).as_uri()
    return urllib.parse.quote(os.fsencode(pathlib.PurePath(rel).as_posix()), safe="/")


# ---- results ----


def _where(f: Finding) -> str:
    if f.member is not None and f.offset is not None:
        return f"member {f.member}, byte offset {f.offset}"
    if f.member is not None:
        return f"member {f.member}"
    if f.offset is not None:
        return f"byte offset {f.offset} of the file"
    return ""


def _message(f: Finding) -> str:
    where = _where(f)
    return f"{f.message} [{where}]" if where else f.message


def _logical_locations(f: Finding) -> List[Dict[str, Any]]:
    locations: List[Dict[str, Any]] = []
    if f.member is not None:
        locations.append({"name": f.member.rsplit("!", 1)[-1], "fullyQualifiedName": f.member, "kind": "resource"})
    if f.global_name is not None:
        name = f.global_name.rpartition(".")[2] or f.global_name
        locations.append({"name": name, "fullyQualifiedName": f.global_name})
    return locations


def _properties(f: Finding) -> Dict[str, Any]:
    props: Dict[str, Any] = {"severity": f.severity.label}
    if f.global_name is not None:
        props["global"] = f.global_name
    if f.member is not None:
        props["member"] = f.member
    if f.offset is not None:
        props["offset"] = f.offset
    if f.opcode is not None:
        props["opcode"] = f.opcode
    return props


def _fingerprint(f: Finding, seen: Dict[str, int]) -> str:
    """Stable across runs for the same problem: the rule, the member and the
    global (the offset only when there is no global: it moves when the file
    is re-saved). Repeats in one file are numbered, as GitHub's own are."""
    anchor = f.global_name if f.global_name is not None else str(f.offset)
    digest = hashlib.sha256("\0".join((f.rule, f.member or "", anchor)).encode("utf-8", "surrogatepass")).hexdigest()[:32]
    seen[digest] = seen.get(digest, 0) + 1
    return f"{digest}:{seen[digest]}"


def _result(f: Finding, rule_index: int, uri: str, artifact_index: int, seen: Dict[str, int]) -> Dict[str, Any]:
    result: Dict[str, Any] = {
        "ruleId": f.rule,
        "ruleIndex": rule_index,
        "level": _LEVEL[f.severity],
        "message": {"text": _message(f)},
        "locations": [{"physicalLocation": {"artifactLocation": {"uri": uri, "index": artifact_index}}}],
        "partialFingerprints": {"primaryLocationLineHash": _fingerprint(f, seen)},
        "properties": _properties(f),
    }
    logical = _logical_locations(f)
    if logical:
        result["locations"][0]["logicalLocations"] = logical
    return result


# ---- rules and artifacts ----


def _rule_severities(reports: Iterable[FileReport]) -> Dict[str, Severity]:
    """Each rule that has results, with the worst severity its results have in this run."""
    worst: Dict[str, Severity] = {}
    for r in reports:
        for f in reportable(r):
            worst[f.rule] = max(worst.get(f.rule, f.severity), f.severity)
    return dict(sorted(worst.items()))


def _help(info: RuleInfo, severity: Severity) -> Dict[str, str]:
    todo = remedy(severity)
    text = f"{info.full}\n\n{todo}\n\nSee docs/rules.md, rule {info.id}."
    markdown = f"**{info.short}** (`{info.id}`, usually {info.severity.label})\n\n{info.full}\n\n{todo}\n\nSee docs/rules.md."
    return {"text": text, "markdown": markdown}


def _descriptor(rule: str, severity: Severity) -> Dict[str, Any]:
    info = rule_info(rule)
    properties: Dict[str, Any] = {"tags": ["security"], "security-severity": _SECURITY_SEVERITY[severity]}
    if info.cwe is not None:
        properties["tags"].append(f"external/cwe/cwe-{info.cwe}")
    return {
        "id": info.id,
        "name": info.name,
        "shortDescription": {"text": info.short},
        "fullDescription": {"text": info.full},
        "help": _help(info, severity),
        "defaultConfiguration": {"level": _LEVEL[severity]},
        "properties": properties,
    }


def _artifact(r: FileReport, uri: str) -> Dict[str, Any]:
    artifact: Dict[str, Any] = {"location": {"uri": uri}, "roles": ["analysisTarget"]}
    if r.size is not None:
        artifact["length"] = r.size
    if r.sha256 is not None:
        artifact["hashes"] = {"sha-256": r.sha256}
    artifact["properties"] = {"format": r.format, "verdict": r.verdict.value}
    return artifact


# ---- the log ----


def build(reports: Sequence[FileReport]) -> Dict[str, Any]:
    """The SARIF log for these reports, as a JSON-ready dict."""
    from aisbom import __version__

    severities = _rule_severities(reports)
    rule_index = {rule: i for i, rule in enumerate(severities)}
    artifacts: List[Dict[str, Any]] = []
    artifact_index: Dict[str, int] = {}
    results: List[Dict[str, Any]] = []
    for r in reports:
        uri = file_uri(r.path)
        if uri not in artifact_index:  # a path given twice is one artifact
            artifact_index[uri] = len(artifacts)
            artifacts.append(_artifact(r, uri))
        seen: Dict[str, int] = {}
        for f in reportable(r):
            results.append(_result(f, rule_index[f.rule], uri, artifact_index[uri], seen))
    driver = {
        "name": "aisbom",
        "version": __version__,
        "semanticVersion": __version__,
        "rules": [_descriptor(rule, sev) for rule, sev in severities.items()],
    }
    run = {"tool": {"driver": driver}, "artifacts": artifacts, "results": results}
    return {"$schema": SARIF_SCHEMA, "version": SARIF_VERSION, "runs": [run]}


def render(reports: Sequence[FileReport], out: IO[str]) -> None:
    """Write the SARIF 2.1.0 log for these reports to out."""
    json.dump(build(reports), out, indent=2)
    out.write("\n")
