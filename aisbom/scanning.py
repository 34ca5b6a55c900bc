"""Scanning files: read (mmap, never a whole copy), let the C engine walk the
containers and pickles, unwrap compression, validate safetensors, and judge
the globals with the policy."""
from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import mmap
import os
import stat
import threading
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

from aisbom import _core
from aisbom.policy import Policy, default_policy
from aisbom.report import FileReport, Finding, GlobalRef, Severity, Verdict

__all__ = ["Limits", "scan", "scan_bytes", "scan_buffer"]

PathLike = Union[str, "os.PathLike[str]"]

_USE_NAMES = [
    (_core.USE_REDUCE, "REDUCE"),
    (_core.USE_NEWOBJ, "NEWOBJ"),
    (_core.USE_NEWOBJ_EX, "NEWOBJ_EX"),
    (_core.USE_OBJ, "OBJ"),
    (_core.USE_INST, "INST"),
    (_core.USE_BUILD, "BUILD"),
    (_core.USE_METHOD, "a method call"),
]
_COMPRESSED = ("gzip", "zlib", "bz2", "xz", "lzma", "joblib-zf")
_IN_MEMORY = 64 << 20
_READ_WHOLE = 256 << 10  # smaller files are read, not mapped
_HASH_IN_THREAD = 16 << 20  # hash beside the scan, in a thread, from this size on


@dataclass(frozen=True)
class Limits:
    """Caps that turn a resource bomb into an error verdict instead of a hang."""

    max_decompressed: int = 4 << 30  # bytes a compressed wrapper may expand to
    max_inflate: int = 2 << 30  # bytes one zip member may inflate to
    max_depth: int = 4  # containers inside containers


class _Tally:
    """What the scan of one buffer (and the buffers unwrapped from it) found."""

    def __init__(self) -> None:
        self.findings: List[Finding] = []
        self.globals: List[GlobalRef] = []
        self.members: List[Tuple[str, str]] = []
        self.dropped = 0
        self.format = "unknown"


_USES_TEXT: Dict[int, Tuple[str, ...]] = {}


def _uses_text(uses: int) -> Tuple[str, ...]:
    text = _USES_TEXT.get(uses)
    if text is None:
        text = _USES_TEXT[uses] = tuple(label for bit, label in _USE_NAMES if uses & bit)
    return text


def _member_paths(members: Sequence[Tuple[Any, ...]], prefix: Optional[str]) -> List[Optional[str]]:
    paths: List[Optional[str]] = []
    for name, _fmt, _off, _size, parent in members:
        base = paths[parent] if parent >= 0 else prefix
        if parent < 0 and not name:
            paths.append(prefix)
        elif base:
            paths.append(f"{base}!{name}")
        else:
            paths.append(str(name))
    return paths


def _judge(raw: Dict[str, Any], policy: Policy, prefix: Optional[str], tally: _Tally) -> None:
    members = raw["members"]
    paths = _member_paths(members, prefix)
    for (name, fmt, _off, _size, parent), path in zip(members, paths):
        if parent >= 0 or prefix:
            tally.members.append((path or "", str(fmt)))
    resolved: List[str] = []
    for member, module, name, offset, opcode, count, uses in raw["globals"]:
        module, name = str(module), str(name)
        cls = policy.classify(module, name)
        resolved.append(cls.name)
        tally.globals.append(
            GlobalRef(module, name, paths[member], offset, opcode, count, _uses_text(uses), cls.name)
        )
        if cls.severity == Severity.INFO:
            continue
        how = _uses_text(uses)
        spelled = f"{module}.{name}"
        text = f"{opcode} {spelled}" + (f" (resolves to {cls.name})" if cls.name != spelled else "")
        text += f" at offset {offset}"
        if how:
            text += ", used by " + ", ".join(how)
        if count > 1:
            text += f" ({count} references)"
        tally.findings.append(
            Finding(cls.rule or "unknown-global", cls.severity, f"{text}: {cls.reason}", cls.name, paths[member], offset, opcode)
        )
    for rule, severity, member, glob, offset, message in raw["findings"]:
        tally.findings.append(
            Finding(
                rule,
                Severity(severity),
                str(message),
                resolved[glob] if glob >= 0 else None,
                paths[member] if member >= 0 else prefix,
                offset,
            )
        )
    tally.dropped += raw["dropped"]
    if raw["dropped"]:
        # Findings past the engine's cap still count towards the verdict.
        tally.findings.append(
            Finding("dropped-findings", Severity(raw["dropped_worst"]),
                    f"{raw['dropped']} more findings were not listed; the worst of them is "
                    f"{Severity(raw['dropped_worst']).label}", member=prefix)
        )
    if raw["incomplete"]:
        tally.findings.append(
            Finding("scan-limit", Severity.ERROR, "the engine ran out of memory; the report is incomplete", member=prefix)
        )


# ---- compressed wrappers ----


def _decompressor(fmt: str) -> Tuple[Callable[[], Any], int]:
    """A factory for streaming decompressors and the header bytes to skip."""
    import bz2
    import lzma
    if fmt == "gzip":
        return (lambda: zlib.decompressobj(31)), 0
    if fmt == "zlib":
        return (lambda: zlib.decompressobj(15)), 0
    if fmt == "joblib-zf":
        return (lambda: zlib.decompressobj(15)), 21
    if fmt == "bz2":
        return bz2.BZ2Decompressor, 0
    if fmt == "xz":
        return (lambda: lzma.LZMADecompressor(lzma.FORMAT_XZ)), 0
    return (lambda: lzma.LZMADecompressor(lzma.FORMAT_ALONE)), 0


def _decompress(buf: Any, fmt: str, cap: int, sink: Any) -> Optional[str]:
    """Stream-decompress buf into sink (a writable file). Returns a problem or None.

    Concatenated streams (gzip members, bz2/xz streams) are followed like the
    standard library's readers follow them; anything else after the data is
    reported, since no reader uses it but it was not checked either."""
    import bz2
    import lzma

    make, pos = _decompressor(fmt)
    view = memoryview(buf)
    if fmt == "joblib-zf" and len(view) > pos and view[pos] == 0x20:
        pos += 1  # joblib <= 0.8.4 wrote one more space
    chunk = 1 << 20
    total = 0
    try:
        while True:
            d = make()
            streaming = isinstance(d, (bz2.BZ2Decompressor, lzma.LZMADecompressor))
            pending = b""
            while True:
                if streaming:
                    data = b""
                    if d.needs_input:
                        if pos >= len(view):
                            return f"its {fmt} data is truncated"
                        data = bytes(view[pos:pos + chunk])
                        pos += len(data)
                    out = d.decompress(data, max_length=chunk)
                else:
                    if not pending:
                        if pos >= len(view):
                            return f"its {fmt} data is truncated"
                        pending = bytes(view[pos:pos + chunk])
                        pos += len(pending)
                    out = d.decompress(pending, chunk)
                    pending = d.unconsumed_tail
                total += len(out)
                if total > cap:
                    return f"it decompresses to more than the {cap}-byte cap (a decompression bomb?)"
                sink.write(out)
                if d.eof:
                    pos -= len(d.unused_data) + len(pending)
                    break
            rest = view[pos:]
            if fmt in ("gzip", "bz2", "xz") and len(rest) and _core.sniff(rest) == fmt:
                continue
            if bytes(rest).count(0) != len(rest):
                return f"{len(rest)} bytes follow the {fmt} data"
            return None
    except (zlib.error, OSError, EOFError, lzma.LZMAError) as exc:
        return f"its {fmt} data is corrupt: {exc}"


@contextmanager
def _spill(expected: int) -> Iterator[Any]:
    if expected <= _IN_MEMORY:
        import io

        yield io.BytesIO()
    else:
        import tempfile

        with tempfile.TemporaryFile(prefix="aisbom-") as f:
            yield f


# ---- safetensors ----

_ST_BITS = {
    "BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8, "I16": 16, "U16": 16,
    "F16": 16, "BF16": 16, "I32": 32, "U32": 32, "F32": 32, "F64": 64, "I64": 64, "U64": 64,
    "C64": 64, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6,
}
_ST_MAX_HEADER = 100_000_000


def _safetensors_problems(buf: Any) -> List[str]:
    """The safetensors rules, one message per broken rule."""
    n = len(buf)
    if n < 8:
        return ["the file is shorter than the 8-byte header length"]
    hlen = int.from_bytes(bytes(buf[:8]), "little")
    if hlen > _ST_MAX_HEADER:
        return [f"the header length {hlen} exceeds safetensors' limit of {_ST_MAX_HEADER}"]
    if 8 + hlen > n:
        return [f"the header length {hlen} runs past the end of the file"]
    raw = bytes(buf[8:8 + hlen])
    if not raw.startswith(b"{"):
        return ["the header does not start with '{'"]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return ["the header is not UTF-8"]
    dupes: List[str] = []

    def pairs(items: List[Tuple[str, Any]]) -> Dict[str, Any]:
        seen: Dict[str, Any] = {}
        for k, v in items:
            if k in seen:
                dupes.append(k)
            seen[k] = v
        return seen

    try:
        header = json.loads(text.rstrip(" "), object_pairs_hook=pairs)
    except ValueError as exc:
        return [f"the header is not valid JSON: {exc}"]
    problems = [f"the key {k!r} appears twice in the header" for k in dupes]
    if not isinstance(header, dict):
        return problems + ["the header is not a JSON object"]
    spans: List[Tuple[int, int, str]] = []
    data_len = n - 8 - hlen
    for name, info in header.items():
        if name == "__metadata__":
            if not isinstance(info, dict) or not all(isinstance(v, str) for v in info.values()):
                problems.append("__metadata__ must map strings to strings")
            continue
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            problems.append(f"tensor {name!r} must have exactly dtype, shape and data_offsets")
            continue
        dtype, shape, offs = info["dtype"], info["shape"], info["data_offsets"]
        if dtype not in _ST_BITS:
            problems.append(f"tensor {name!r} has unknown dtype {dtype!r}")
            continue
        if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
            problems.append(f"tensor {name!r} has a shape that is not a list of sizes")
            continue
        if (
            not isinstance(offs, list)
            or len(offs) != 2
            or not all(isinstance(o, int) and not isinstance(o, bool) and o >= 0 for o in offs)
            or offs[0] > offs[1]
        ):
            problems.append(f"tensor {name!r} has invalid data_offsets")
            continue
        numel = 1
        for d in shape:
            numel *= d
        bits = numel * _ST_BITS[dtype]
        if bits % 8 or offs[1] - offs[0] != bits // 8:
            problems.append(f"tensor {name!r}: data_offsets span {offs[1] - offs[0]} bytes, its dtype and shape need {bits / 8:g}")
            continue
        spans.append((offs[0], offs[1], name))
    spans.sort()
    at = 0
    for begin, end, name in spans:
        if begin != at:
            problems.append(f"tensor {name!r} starts at {begin}, not where the previous one ends ({at}): offsets must be contiguous")
            break
        at = end
    else:
        if at != data_len:
            problems.append(f"the tensors cover {at} bytes of data, but the file holds {data_len}")
    return problems


# ---- the scan itself ----


def _scan_into(buf: Any, policy: Policy, limits: Limits, depth: int, prefix: Optional[str], tally: _Tally) -> None:
    raw = _core.scan(buf, max_inflate=limits.max_inflate, max_depth=limits.max_depth)
    fmt = str(raw["members"][0][1]) if raw["members"] else "unknown"
    if depth == 0:
        tally.format = fmt
    _judge(raw, policy, prefix, tally)
    if fmt in _COMPRESSED:
        inner = f"{prefix}!<{fmt}>" if prefix else f"<{fmt}>"
        if depth >= limits.max_depth:
            tally.findings.append(Finding("scan-limit", Severity.ERROR, "compressed data nests too deep", member=prefix))
            return
        with _spill(len(buf) * 8) as sink:
            problem = _decompress(buf, fmt, limits.max_decompressed, sink)
            if problem:
                tally.findings.append(
                    Finding("decompression", Severity.ERROR, f"{fmt}: {problem}; the content was not fully checked", member=prefix)
                )
            tally.members.append((inner, "decompressed"))
            size = sink.seek(0, os.SEEK_END)
            if size == 0:
                tally.findings.append(Finding("decompression", Severity.ERROR, f"{fmt} data decompresses to nothing", member=prefix))
                return
            if hasattr(sink, "getbuffer"):
                content: Any = sink.getbuffer()
                _scan_into(content, policy, limits, depth + 1, inner, tally)
                content.release()
            else:
                sink.flush()
                with mmap.mmap(sink.fileno(), 0, access=mmap.ACCESS_READ) as mm:
                    _scan_into(mm, policy, limits, depth + 1, inner, tally)
    elif fmt == "safetensors":
        for problem in _safetensors_problems(buf):
            tally.findings.append(Finding("safetensors", Severity.ERROR, f"malformed safetensors: {problem}", member=prefix))


def _verdict(findings: Sequence[Finding]) -> Verdict:
    worst = max((f.severity for f in findings), default=Severity.INFO)
    return Verdict.from_severity(worst)


def _lint(tally: _Tally, policy: Policy) -> Dict[str, List[str]]:
    """Which globals stop torch.load(weights_only=True) and aisbom's in-process loader."""
    torch_blockers = sorted({g.resolved for g in tally.globals if not policy.torch_accepts(g.resolved)})
    if any("STACK_GLOBAL" == g.opcode for g in tally.globals):
        torch_blockers.append("<STACK_GLOBAL opcode: torch's weights-only unpickler reads only GLOBAL>")
    aisbom_blockers = sorted({f.global_name for f in tally.findings if f.global_name and f.severity > Severity.INFO})
    return {"torch_weights_only": torch_blockers, "aisbom": aisbom_blockers}


def scan_buffer(
    buf: Any,
    *,
    path: str = "<bytes>",
    policy: Optional[Policy] = None,
    limits: Optional[Limits] = None,
    lint: bool = False,
    sha256: Optional[str] = None,
) -> FileReport:
    """Scan any buffer (bytes, bytearray, memoryview, mmap) as one file."""
    policy = policy or default_policy()
    limits = limits or Limits()
    tally = _Tally()
    _scan_into(buf, policy, limits, 0, None, tally)
    return FileReport(
        path=path,
        format=tally.format,
        verdict=_verdict(tally.findings),
        findings=tuple(tally.findings),
        globals=tuple(tally.globals),
        members=tuple(tally.members),
        size=len(buf),
        sha256=sha256,
        dropped_findings=tally.dropped,
        lint=_lint(tally, policy) if lint else None,
    )


def scan_bytes(data: Union[bytes, bytearray, memoryview], *, name: str = "<bytes>", policy: Optional[Policy] = None, limits: Optional[Limits] = None, lint: bool = False) -> FileReport:
    """Scan the bytes of one file held in memory."""
    return scan_buffer(data, path=name, policy=policy, limits=limits, lint=lint)


def _open_fd(name: str) -> Tuple[int, int]:
    """Open a regular file for reading: (fd, size). FIFOs, devices and sockets
    are refused without blocking on them (a FIFO would wait for a writer forever)."""
    fd = os.open(name, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file", name)
        return fd, st.st_size
    except BaseException:
        os.close(fd)
        raise


def _open_regular(name: str) -> Any:
    """_open_fd as an unbuffered binary file object."""
    fd, _size = _open_fd(name)
    return os.fdopen(fd, "rb", buffering=0)


def _read_all(fd: int, size: int) -> bytes:
    """Everything up to end of file, as f.read() would (a file may grow meanwhile)."""
    parts = [os.read(fd, size + 1)]
    while parts[-1]:
        parts.append(os.read(fd, 1 << 20))
    return b"".join(parts)


def scan(path: PathLike, *, policy: Optional[Policy] = None, limits: Optional[Limits] = None, lint: bool = False, hash: bool = True) -> FileReport:
    """Scan one file. Small files are read, larger ones mapped read-only; the
    file is never modified.

    Raises OSError when the file cannot be opened or read."""
    name = os.fspath(path)
    fd, size = _open_fd(name)
    try:
        if size < _READ_WHOLE:
            # Mapping costs more than reading for small files, the bulk of a model directory.
            data = _read_all(fd, size)
            return scan_buffer(data, path=name, policy=policy, limits=limits, lint=lint,
                               sha256=hashlib.sha256(data).hexdigest() if hash else None)
        with mmap.mmap(fd, 0, access=mmap.ACCESS_READ) as mm:
            if not hash:
                return scan_buffer(mm, path=name, policy=policy, limits=limits, lint=lint)
            if hasattr(mm, "madvise") and hasattr(mmap, "MADV_SEQUENTIAL"):
                mm.madvise(mmap.MADV_SEQUENTIAL)
            if size < _HASH_IN_THREAD:
                digest = hashlib.sha256(mm).hexdigest()
                return scan_buffer(mm, path=name, policy=policy, limits=limits, lint=lint, sha256=digest)
            # The scan skips tensor data, the hash reads every byte: for big files
            # run both at once (each releases the GIL) over the same mapping.
            hasher = hashlib.sha256()
            worker = threading.Thread(target=hasher.update, args=(mm,))
            worker.start()
            try:
                report = scan_buffer(mm, path=name, policy=policy, limits=limits, lint=lint)
            finally:
                worker.join()
            return dataclasses.replace(report, sha256=hasher.hexdigest())
    finally:
        os.close(fd)
