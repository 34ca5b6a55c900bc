"""A small pickle assembler for building test samples byte by byte.

Every opcode is a constant (no argument) or a function returning the bytes of
the opcode with its argument encoded exactly as CPython's C unpickler reads it.
A sample is the concatenation of those pieces::

    p = PROTO(2) + GLOBAL("os", "system") + BINUNICODE("touch x") + TUPLE1 + REDUCE + STOP

Nothing here uses pickle or pickletools to build bytes, and nothing here ever
loads (unpickles) anything: the samples exist to be *scanned*.

The second half holds payload builders (calls that would only create a canary
file if something ran them) and small helpers to read scan reports.
"""
from __future__ import annotations

import struct
from typing import List, Optional, Sequence, Union

# ---------------------------------------------------------------- opcodes without arguments

MARK = b"("
STOP = b"."
POP = b"0"
POP_MARK = b"1"
DUP = b"2"
NONE = b"N"
BINPERSID = b"Q"
REDUCE = b"R"
APPEND = b"a"
BUILD = b"b"
DICT = b"d"
EMPTY_DICT = b"}"
APPENDS = b"e"
LIST = b"l"
EMPTY_LIST = b"]"
OBJ = b"o"
SETITEM = b"s"
TUPLE = b"t"
EMPTY_TUPLE = b")"
SETITEMS = b"u"
# protocol 2
NEWOBJ = b"\x81"
TUPLE1 = b"\x85"
TUPLE2 = b"\x86"
TUPLE3 = b"\x87"
NEWTRUE = b"\x88"
NEWFALSE = b"\x89"
# protocol 4
EMPTY_SET = b"\x8f"
ADDITEMS = b"\x90"
FROZENSET = b"\x91"
NEWOBJ_EX = b"\x92"
STACK_GLOBAL = b"\x93"
MEMOIZE = b"\x94"
# protocol 5
NEXT_BUFFER = b"\x97"
READONLY_BUFFER = b"\x98"


def _u8(n: int) -> bytes:
    return struct.pack("<B", n)


def _u16(n: int) -> bytes:
    return struct.pack("<H", n)


def _u32(n: int) -> bytes:
    return struct.pack("<I", n)


def _i32(n: int) -> bytes:
    return struct.pack("<i", n)


def _u64(n: int) -> bytes:
    return struct.pack("<Q", n)


def _text(s: Union[str, bytes]) -> bytes:
    return s if isinstance(s, bytes) else s.encode("utf-8", "surrogatepass")


# ---------------------------------------------------------------- framing and protocol

def PROTO(n: int) -> bytes:
    return b"\x80" + _u8(n)


def FRAME(n: int) -> bytes:
    """FRAME announcing n bytes (the caller decides whether that is honest)."""
    return b"\x95" + _u64(n)


def framed(body: bytes) -> bytes:
    """An honest frame around body."""
    return FRAME(len(body)) + body


# ---------------------------------------------------------------- globals

def GLOBAL(module: Union[str, bytes], name: Union[str, bytes]) -> bytes:
    return b"c" + _text(module) + b"\n" + _text(name) + b"\n"


def INST(module: Union[str, bytes], name: Union[str, bytes]) -> bytes:
    """INST: pops the mark and calls module.name(*items) at once."""
    return b"i" + _text(module) + b"\n" + _text(name) + b"\n"


def EXT1(code: int) -> bytes:
    return b"\x82" + _u8(code)


def EXT2(code: int) -> bytes:
    return b"\x83" + _u16(code)


def EXT4(code: int) -> bytes:
    return b"\x84" + _i32(code)


def stack_global(module: str, name: str) -> bytes:
    """STACK_GLOBAL with both operands pushed right before it (SHORT_BINUNICODE)."""
    return SHORT_BINUNICODE(module) + SHORT_BINUNICODE(name) + STACK_GLOBAL


# ---------------------------------------------------------------- numbers

def INT(n: Union[int, bytes]) -> bytes:
    """Protocol-0 INT; bytes are written verbatim (odd spellings)."""
    return b"I" + (n if isinstance(n, bytes) else str(n).encode()) + b"\n"


def LONG(n: Union[int, bytes]) -> bytes:
    return b"L" + (n if isinstance(n, bytes) else (str(n) + "L").encode()) + b"\n"


def BININT(n: int) -> bytes:
    return b"J" + _i32(n)


def BININT1(n: int) -> bytes:
    return b"K" + _u8(n)


def BININT2(n: int) -> bytes:
    return b"M" + _u16(n)


def _long_bytes(n: int) -> bytes:
    if n == 0:
        return b""
    size = (n.bit_length() + 8) // 8  # room for the sign bit
    data = n.to_bytes(size, "little", signed=True)
    # trim redundant sign bytes, as pickle's encode_long does
    while len(data) > 1 and ((data[-1] == 0 and data[-2] < 0x80) or (data[-1] == 0xFF and data[-2] >= 0x80)):
        data = data[:-1]
    return data


def LONG1(n: int) -> bytes:
    data = _long_bytes(n)
    return b"\x8a" + _u8(len(data)) + data


def LONG4(n: int) -> bytes:
    data = _long_bytes(n)
    return b"\x8b" + _i32(len(data)) + data


def BINFLOAT(x: float) -> bytes:
    return b"G" + struct.pack(">d", x)


def FLOAT(x: Union[float, bytes]) -> bytes:
    return b"F" + (x if isinstance(x, bytes) else repr(x).encode()) + b"\n"


# ---------------------------------------------------------------- strings and bytes

def STRING_RAW(quoted: bytes) -> bytes:
    """STRING with the exact quoted spelling given, e.g. b"'\\x6fs'"."""
    return b"S" + quoted + b"\n"


def STRING(s: Union[str, bytes], hex_escape: bool = False) -> bytes:
    """Protocol-0 STRING: a quoted, backslash-escaped literal (Python 2 str repr).

    hex_escape=True spells every byte as \\xNN, the way an evasive writer would."""
    data = _text(s)
    if hex_escape:
        body = b"".join(b"\\x%02x" % c for c in data)
    else:
        out: List[bytes] = []
        for c in data:
            ch = bytes([c])
            if ch in (b"\\", b"'"):
                out.append(b"\\" + ch)
            elif 0x20 <= c < 0x7F:
                out.append(ch)
            else:
                out.append(b"\\x%02x" % c)
        body = b"".join(out)
    return STRING_RAW(b"'" + body + b"'")


def BINSTRING(s: Union[str, bytes]) -> bytes:
    data = _text(s)
    return b"T" + _i32(len(data)) + data


def SHORT_BINSTRING(s: Union[str, bytes]) -> bytes:
    data = _text(s)
    return b"U" + _u8(len(data)) + data


def UNICODE_RAW(escaped: bytes) -> bytes:
    """UNICODE with the exact raw-unicode-escape spelling given, e.g. b"\\\\u006fs"."""
    return b"V" + escaped + b"\n"


def UNICODE(s: str, escape_all: bool = False) -> bytes:
    """Protocol-0 UNICODE (raw-unicode-escape), as pickle writes it.

    escape_all=True spells every character as \\uXXXX."""
    if escape_all:
        return UNICODE_RAW(b"".join(b"\\u%04x" % ord(c) for c in s))
    data = (
        s.replace("\\", "\\u005c").replace("\0", "\\u0000").replace("\n", "\\u000a")
        .replace("\r", "\\u000d").replace("\x1a", "\\u001a")
    )
    return UNICODE_RAW(data.encode("raw-unicode-escape"))


def BINUNICODE(s: Union[str, bytes]) -> bytes:
    data = _text(s)
    return b"X" + _u32(len(data)) + data


def SHORT_BINUNICODE(s: Union[str, bytes]) -> bytes:
    data = _text(s)
    return b"\x8c" + _u8(len(data)) + data


def BINUNICODE8(s: Union[str, bytes]) -> bytes:
    data = _text(s)
    return b"\x8d" + _u64(len(data)) + data


def BINBYTES(b: bytes) -> bytes:
    return b"B" + _u32(len(b)) + b


def SHORT_BINBYTES(b: bytes) -> bytes:
    return b"C" + _u8(len(b)) + b


def BINBYTES8(b: bytes) -> bytes:
    return b"\x8e" + _u64(len(b)) + b


def BYTEARRAY8(b: bytes) -> bytes:
    return b"\x96" + _u64(len(b)) + b


# ---------------------------------------------------------------- the memo

def PUT(i: Union[int, bytes]) -> bytes:
    """Text PUT; bytes are written verbatim (odd spellings such as b"0_1")."""
    return b"p" + (i if isinstance(i, bytes) else str(i).encode()) + b"\n"


def GET(i: Union[int, bytes]) -> bytes:
    return b"g" + (i if isinstance(i, bytes) else str(i).encode()) + b"\n"


def BINPUT(i: int) -> bytes:
    return b"q" + _u8(i)


def BINGET(i: int) -> bytes:
    return b"h" + _u8(i)


def LONG_BINPUT(i: int) -> bytes:
    return b"r" + _u32(i)


def LONG_BINGET(i: int) -> bytes:
    return b"j" + _u32(i)


# ---------------------------------------------------------------- persistent ids

def PERSID(s: Union[str, bytes]) -> bytes:
    return b"P" + _text(s) + b"\n"


# ---------------------------------------------------------------- composition helpers

def pickle_of(*parts: bytes, proto: Optional[int] = 2) -> bytes:
    """PROTO (unless proto is None) + parts + STOP."""
    head = PROTO(proto) if proto is not None else b""
    return head + b"".join(parts) + STOP


def tuple_of(items: Sequence[bytes]) -> bytes:
    """A tuple of already-encoded items, with the shortest opcode."""
    if not items:
        return EMPTY_TUPLE
    if len(items) <= 3:
        return b"".join(items) + (TUPLE1, TUPLE2, TUPLE3)[len(items) - 1]
    return MARK + b"".join(items) + TUPLE


def list_of(items: Sequence[bytes]) -> bytes:
    return MARK + b"".join(items) + LIST


# ---------------------------------------------------------------- payloads (scanned, never run)

def shell_touch(path: str) -> str:
    """The shell command every os/posix/subprocess payload runs: create the canary."""
    return f"touch '{path}'"


def call_reduce(callable_: bytes, args: Sequence[bytes]) -> bytes:
    """callable_(*args) via REDUCE."""
    return callable_ + tuple_of(args) + REDUCE


def os_system(path: str, module: str = "os", proto: int = 2) -> bytes:
    """module.system("touch <path>") via GLOBAL + REDUCE: a complete pickle."""
    return pickle_of(call_reduce(GLOBAL(module, "system"), [BINUNICODE(shell_touch(path))]), proto=proto)


def builtins_open(path: str, proto: int = 2) -> bytes:
    """builtins.open(path, "w"): creates the canary file."""
    return pickle_of(call_reduce(GLOBAL("builtins", "open"), [BINUNICODE(path), BINUNICODE("w")]), proto=proto)


def subprocess_run(path: str, proto: int = 2) -> bytes:
    """subprocess.run(["touch", path])."""
    argv = EMPTY_LIST + MARK + BINUNICODE("touch") + BINUNICODE(path) + APPENDS
    return pickle_of(call_reduce(GLOBAL("subprocess", "run"), [argv]), proto=proto)


def builtins_exec(path: str, proto: int = 2) -> bytes:
    """builtins.exec("open(path, 'w').close()")."""
    src = f"open({path!r}, 'w').close()"
    return pickle_of(call_reduce(GLOBAL("builtins", "exec"), [BINUNICODE(src)]), proto=proto)


def payload_body(path: str) -> bytes:
    """The opcodes of os.system("touch path") without PROTO/STOP, leaving the result on the stack."""
    return call_reduce(GLOBAL("os", "system"), [BINUNICODE(shell_touch(path))])


# ---------------------------------------------------------------- reading reports

def rules(report) -> List[str]:
    return [f.rule for f in report.findings]


def findings(report, rule: Optional[str] = None, global_name: Optional[str] = None, member: Optional[str] = "*"):
    """Findings matching every criterion given (member="*" means any member)."""
    out = []
    for f in report.findings:
        if rule is not None and f.rule != rule:
            continue
        if global_name is not None and f.global_name != global_name:
            continue
        if member != "*" and f.member != member:
            continue
        out.append(f)
    return out


def named(report) -> List[str]:
    """Every resolved global name the report mentions (in findings or in its globals)."""
    names = {f.global_name for f in report.findings if f.global_name}
    names |= {g.resolved for g in report.globals}
    return sorted(names)


def describe(report) -> str:
    """A compact dump for assertion messages."""
    lines = [f"verdict={report.verdict.value} format={report.format} members={list(report.members)}"]
    for f in report.findings:
        lines.append(f"  {f.severity.name:<10} {f.rule} global={f.global_name} member={f.member} off={f.offset}: {f.message}")
    if report.dropped_findings:
        lines.append(f"  ... {report.dropped_findings} dropped")
    return "\n".join(lines)
