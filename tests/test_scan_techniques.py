"""Malicious pickles built from bytes, one per published evasion technique.

Each test builds a sample whose payload would only create the test's canary
file, scans it (nothing is ever unpickled), and asserts the verdict AND what
the report names (the resolved global, or the rule for techniques that hide
the global). The `canary` fixture asserts afterwards that nothing ran.
"""
from __future__ import annotations

import struct
import time

import pytest

import aisbom
from aisbom import Severity, Verdict
from asm import (
    APPEND, APPENDS, BINBYTES, BINBYTES8, BINGET, BININT, BININT1, BINUNICODE8, BINPUT, BINSTRING, BINUNICODE, BUILD,
    BYTEARRAY8, DUP, EMPTY_DICT, EMPTY_LIST, EMPTY_TUPLE, EXT1, EXT2, EXT4, FRAME, GET, GLOBAL, INST, INT,
    LIST, LONG, LONG_BINGET, LONG_BINPUT, MARK, MEMOIZE, NEWOBJ, NEWOBJ_EX, NEWTRUE, NONE, OBJ, POP,
    POP_MARK, PROTO, PUT, REDUCE, SETITEM, SHORT_BINBYTES, SHORT_BINSTRING, SHORT_BINUNICODE,
    STACK_GLOBAL, STOP, STRING, STRING_RAW, TUPLE, TUPLE1, TUPLE2, UNICODE, UNICODE_RAW, describe,
    findings, framed, named, pickle_of, stack_global, tuple_of,
)

MAL = Verdict.MALICIOUS
SUS = Verdict.SUSPICIOUS


def scan(data: bytes, **kw):
    return aisbom.scan_bytes(data, **kw)


def assert_names(report, global_name: str, rule: str = "blocked-global", verdict: Verdict = MAL):
    """The verdict, and a finding of `rule` about exactly `global_name`."""
    assert report.verdict is verdict, describe(report)
    hits = findings(report, rule=rule, global_name=global_name)
    assert hits, f"no {rule} finding for {global_name}\n{describe(report)}"
    return hits


def assert_rule(report, rule: str, verdict: Verdict = MAL):
    assert report.verdict is verdict, describe(report)
    hits = findings(report, rule=rule)
    assert hits, f"no {rule} finding\n{describe(report)}"
    return hits


def cmd_arg(canary) -> bytes:
    return BINUNICODE(canary.shell)


# ------------------------------------------------------------------ every call opcode


class TestCallOpcodes:
    def test_global_reduce(self, canary):
        r = scan(canary.os_system())
        (f,) = assert_names(r, "os.system")
        assert f.member is None
        assert f.offset == 2  # the GLOBAL opcode right after PROTO

    @pytest.mark.parametrize("name", ["os.system", "posix.system", "builtins.open", "subprocess.run", "builtins.exec"])
    def test_each_canary_payload(self, canary, name):
        data, expected = canary.payloads()[name]
        assert_names(scan(data), expected)

    def test_inst_protocol0(self, canary):
        # (S'touch ...' i os\nsystem\n .   -- INST names and calls the class at once
        data = MARK + STRING(canary.shell) + INST("os", "system") + STOP
        assert_names(scan(data), "os.system")

    def test_obj(self, canary):
        data = PROTO(1) + MARK + GLOBAL("os", "system") + STRING(canary.shell) + OBJ + STOP
        assert_names(scan(data), "os.system")

    def test_obj_result_popped_at_once(self, canary):
        """OBJ runs the call even though its result is discarded immediately."""
        data = PROTO(1) + MARK + GLOBAL("os", "system") + STRING(canary.shell) + OBJ + POP + NONE + STOP
        assert_names(scan(data), "os.system")

    def test_newobj(self, canary):
        data = pickle_of(GLOBAL("os", "system") + cmd_arg(canary) + TUPLE1 + NEWOBJ)
        assert_names(scan(data), "os.system")

    def test_newobj_ex(self, canary):
        data = pickle_of(GLOBAL("os", "system") + cmd_arg(canary) + TUPLE1 + EMPTY_DICT + NEWOBJ_EX, proto=4)
        assert_names(scan(data), "os.system")

    def test_global_named_but_never_called_is_still_reported(self, canary):
        # pickle.load resolves (imports) the global even if nothing calls it.
        assert_names(scan(pickle_of(GLOBAL("os", "system") + POP + NONE)), "os.system")

    def test_reduce_on_a_call_result_is_unresolved_call(self, canary):
        """A call whose target is itself the result of a call: the target is unknowable."""
        data = pickle_of(
            GLOBAL("collections", "OrderedDict") + EMPTY_TUPLE + REDUCE  # an OrderedDict instance
            + cmd_arg(canary) + TUPLE1 + REDUCE  # ... called
        )
        assert_rule(scan(data), "unresolved-call")

    def test_reduce_on_a_literal_is_unresolved_call(self):
        data = pickle_of(BINUNICODE("os.system") + EMPTY_TUPLE + REDUCE)
        assert_rule(scan(data), "unresolved-call")


# ------------------------------------------------------------------ STACK_GLOBAL operands


class TestStackGlobalOperands:
    def test_plain(self, canary):
        data = pickle_of(stack_global("os", "system") + cmd_arg(canary) + TUPLE1 + REDUCE, proto=4)
        assert_names(scan(data), "os.system")

    def test_memoize_with_decoys(self, canary):
        data = pickle_of(
            SHORT_BINUNICODE("os") + MEMOIZE + POP  # memo 0
            + SHORT_BINUNICODE("collections") + POP  # decoy, never memoized
            + SHORT_BINUNICODE("OrderedDict") + MEMOIZE + POP  # memo 1: decoy
            + SHORT_BINUNICODE("system") + MEMOIZE + POP  # memo 2
            + SHORT_BINUNICODE("builtins") + SHORT_BINUNICODE("len") + POP + POP  # decoys pushed and popped
            + BINGET(0) + BINGET(2) + STACK_GLOBAL + cmd_arg(canary) + TUPLE1 + REDUCE,
            proto=4,
        )
        r = scan(data)
        assert_names(r, "os.system")
        assert "collections.OrderedDict" not in named(r)

    def test_binput_binget(self, canary):
        data = pickle_of(
            BINUNICODE("system") + BINPUT(7) + POP + BINUNICODE("os") + BINPUT(200) + POP
            + BINGET(200) + BINGET(7) + STACK_GLOBAL + cmd_arg(canary) + TUPLE1 + REDUCE,
            proto=4,
        )
        assert_names(scan(data), "os.system")

    def test_long_binput_long_binget(self, canary):
        data = pickle_of(
            BINUNICODE("os") + LONG_BINPUT(100000) + POP + BINUNICODE("system") + LONG_BINPUT(2**32 - 1) + POP
            + LONG_BINGET(100000) + LONG_BINGET(2**32 - 1) + STACK_GLOBAL + cmd_arg(canary) + TUPLE1 + REDUCE,
            proto=4,
        )
        assert_names(scan(data), "os.system")

    @pytest.mark.parametrize(
        "put_os, put_system, get_os, get_system",
        [
            (b"1", b"2", b"1", b"2"),
            (b"0_1", b"2", b"01", b"2"),  # underscores and leading zeros: int() accepts both
            (b" 3", b"+4", b"3 ", b"4"),  # surrounding whitespace and a sign
            (b"5", b"6", b"0005", b"6"),
        ],
    )
    def test_text_put_get_odd_spellings(self, canary, put_os, put_system, get_os, get_system):
        data = pickle_of(
            UNICODE("os") + PUT(put_os) + POP + UNICODE("system") + PUT(put_system) + POP
            + UNICODE("decoy") + PUT(b"9") + POP
            + GET(get_os) + GET(get_system) + STACK_GLOBAL + cmd_arg(canary) + TUPLE1 + REDUCE,
            proto=4,
        )
        assert_names(scan(data), "os.system")

    def test_memoize_index_is_the_count_of_memo_entries(self, canary):
        """MEMOIZE stores at len(memo), which BINPUTs to other indices also grow, and may
        overwrite an index a BINPUT used (CPython's _Unpickler_MemoPut)."""
        data = pickle_of(
            SHORT_BINUNICODE("collections") + BINPUT(3) + POP  # memo {3}: len 1
            + SHORT_BINUNICODE("OrderedDict") + BINPUT(4) + POP  # memo {3, 4}: len 2
            + SHORT_BINUNICODE("os") + MEMOIZE + POP  # stored at 2: len 3
            + SHORT_BINUNICODE("system") + MEMOIZE + POP  # stored at 3, overwriting 'collections'
            + BINGET(2) + BINGET(3) + STACK_GLOBAL + cmd_arg(canary) + TUPLE1 + REDUCE,
            proto=4,
        )
        assert_names(scan(data), "os.system")

    def test_memo_slot_overwritten_with_payload(self, canary):
        """The latest PUT to a memo index wins."""
        data = pickle_of(
            BINUNICODE("collections") + BINPUT(0) + POP
            + BINUNICODE("os") + BINPUT(0) + POP  # overwrites index 0
            + BINUNICODE("system") + BINPUT(1) + POP
            + BINGET(0) + BINGET(1) + STACK_GLOBAL + cmd_arg(canary) + TUPLE1 + REDUCE,
            proto=4,
        )
        assert_names(scan(data), "os.system")

    def test_memo_slot_overwritten_away_from_payload(self):
        """The converse: a name overwritten before use is not what gets resolved."""
        data = pickle_of(
            BINUNICODE("os") + BINPUT(0) + POP
            + BINUNICODE("collections") + BINPUT(0) + POP
            + BINUNICODE("OrderedDict") + BINPUT(1) + POP
            + BINGET(0) + BINGET(1) + STACK_GLOBAL + EMPTY_TUPLE + REDUCE,
            proto=4,
        )
        r = scan(data)
        assert r.verdict is Verdict.CLEAN, describe(r)
        assert named(r) == ["collections.OrderedDict"]

    @pytest.mark.parametrize("far", [200, 300, 1000, 5_000_000])
    def test_memo_keys_far_apart_and_then_dense(self, canary, far):
        """A key far past the entries so far, then enough entries that the
        store grows over it (200: moved as the store grows), then MEMOIZE at
        len(memo): every index resolves where CPython's dict-based memo has it."""
        fill = b"".join(BININT(i) + LONG_BINPUT(i) + POP for i in range(1, 150))  # memo {1..149}
        data = pickle_of(
            SHORT_BINUNICODE("os") + LONG_BINPUT(far) + POP  # memo {far}: len 1
            + fill  # len 150
            + SHORT_BINUNICODE("system") + MEMOIZE + POP  # stored at 150
            + LONG_BINGET(far) + LONG_BINGET(150) + STACK_GLOBAL + cmd_arg(canary) + TUPLE1 + REDUCE,
            proto=4,
        )
        assert_names(scan(data), "os.system")

    def test_memo_of_an_earlier_pickle_is_gone_but_its_size_does_not_leak(self, canary):
        """pickle.load starts each pickle with an empty memo: a big memo in the
        first pickle neither resolves GETs in the next nor shifts its MEMOIZE."""
        big = pickle_of(b"".join(BININT(i) + LONG_BINPUT(i) + POP for i in range(3000)) + NONE, proto=4)
        second = pickle_of(
            SHORT_BINUNICODE("os") + MEMOIZE + POP  # index 0 again
            + SHORT_BINUNICODE("system") + LONG_BINPUT(2500) + POP  # far for this pickle
            + LONG_BINGET(0) + LONG_BINGET(2500) + STACK_GLOBAL + cmd_arg(canary) + TUPLE1 + REDUCE,
            proto=4,
        )
        assert_names(scan(big + second), "os.system")
        dangling = pickle_of(LONG_BINGET(2999) + POP + NONE, proto=4)  # set by the first pickle only
        r = scan(big + dangling)
        assert r.verdict is Verdict.ERROR and any(f.rule == "parse-error" for f in r.findings), describe(r)

    def test_operands_memoized_long_before_use(self, canary):
        """Operands stored at the start, a long benign stretch, then the STACK_GLOBAL."""
        filler = (BINUNICODE("x") + POP) * 5000
        data = pickle_of(
            SHORT_BINUNICODE("posix") + MEMOIZE + SHORT_BINUNICODE("system") + MEMOIZE + POP + POP
            + filler + BINGET(0) + BINGET(1) + STACK_GLOBAL + cmd_arg(canary) + TUPLE1 + REDUCE,
            proto=4,
        )
        assert_names(scan(data), "posix.system")

    def test_unicode_raw_unicode_escaped(self, canary):
        data = pickle_of(
            UNICODE("os", escape_all=True) + UNICODE_RAW(b"sys\\u0074em") + STACK_GLOBAL
            + cmd_arg(canary) + TUPLE1 + REDUCE,
            proto=4,
        )
        assert_names(scan(data), "os.system")

    def test_unicode_long_escape(self, canary):
        data = pickle_of(
            UNICODE_RAW(b"\\U0000006fs") + UNICODE_RAW(b"system") + STACK_GLOBAL + cmd_arg(canary) + TUPLE1 + REDUCE,
            proto=4,
        )
        assert_names(scan(data), "os.system")

    def test_string_hex_escaped(self, canary):
        data = pickle_of(
            STRING("os", hex_escape=True) + STRING("system", hex_escape=True) + STACK_GLOBAL
            + cmd_arg(canary) + TUPLE1 + REDUCE,
            proto=4,
        )
        assert_names(scan(data), "os.system")

    def test_string_octal_and_double_quotes(self, canary):
        # Python 2 string escapes: \157 is 'o'; a STRING may use double quotes.
        data = pickle_of(
            STRING_RAW(b"'\\157s'") + STRING_RAW(b'"sy\\x73tem"') + STACK_GLOBAL + cmd_arg(canary) + TUPLE1 + REDUCE,
            proto=4,
        )
        assert_names(scan(data), "os.system")

    def test_binstring_operands(self, canary):
        data = pickle_of(
            SHORT_BINSTRING("os") + BINSTRING("system") + STACK_GLOBAL + cmd_arg(canary) + TUPLE1 + REDUCE, proto=4
        )
        assert_names(scan(data), "os.system")

    def test_operand_from_call_result_is_unresolved_global(self, canary):
        # builtins.str('os') is allowlisted, but its result decides the module.
        data = pickle_of(
            GLOBAL("builtins", "str") + SHORT_BINUNICODE("os") + TUPLE1 + REDUCE
            + SHORT_BINUNICODE("system") + STACK_GLOBAL + cmd_arg(canary) + TUPLE1 + REDUCE,
            proto=4,
        )
        assert_rule(scan(data), "unresolved-global")

    def test_name_operand_from_call_result(self, canary):
        data = pickle_of(
            SHORT_BINUNICODE("os")
            + GLOBAL("builtins", "str") + SHORT_BINUNICODE("system") + TUPLE1 + REDUCE
            + STACK_GLOBAL + cmd_arg(canary) + TUPLE1 + REDUCE,
            proto=4,
        )
        assert_rule(scan(data), "unresolved-global")

    def test_operand_from_memoized_call_result(self, canary):
        data = pickle_of(
            GLOBAL("builtins", "str") + SHORT_BINUNICODE("os") + TUPLE1 + REDUCE + MEMOIZE + POP
            + BINGET(0) + SHORT_BINUNICODE("system") + STACK_GLOBAL + cmd_arg(canary) + TUPLE1 + REDUCE,
            proto=4,
        )
        assert_rule(scan(data), "unresolved-global")

    def test_non_string_operand_is_not_clean(self):
        data = pickle_of(SHORT_BINBYTES(b"os") + SHORT_BINUNICODE("system") + STACK_GLOBAL, proto=4)
        assert scan(data).verdict is not Verdict.CLEAN


# ------------------------------------------------------------------ names


class TestNames:
    @pytest.mark.parametrize(
        "module, name, expected",
        [
            ("shutil", "os.system", "shutil.os.system"),
            ("pathlib", "os.system", "pathlib.os.system"),
            ("torch", "serialization.os.system", "torch.serialization.os.system"),
            ("collections", "os.system", "collections.os.system"),
        ],
    )
    def test_dotted_name_walks_into_os(self, canary, module, name, expected):
        data = pickle_of(stack_global(module, name) + cmd_arg(canary) + TUPLE1 + REDUCE, proto=4)
        (f,) = assert_names(scan(data), expected)
        assert "os.system" in f.global_name

    def test_dotted_name_in_global_opcode_protocol4(self, canary):
        data = pickle_of(GLOBAL("pathlib", "os.system") + cmd_arg(canary) + TUPLE1 + REDUCE, proto=4)
        assert_names(scan(data), "pathlib.os.system")

    def test_dotted_name_in_inst_protocol4(self, canary):
        data = PROTO(4) + MARK + UNICODE(canary.shell) + INST("pathlib", "os.system") + STOP
        assert_names(scan(data), "pathlib.os.system")

    def test_allowlisted_prefix_does_not_lend_trust(self, canary):
        # torch._utils._rebuild_tensor_v2 is allowlisted; walking further from it is not.
        data = pickle_of(stack_global("torch._utils", "_rebuild_tensor_v2.__globals__"), proto=4)
        r = scan(data)
        assert r.verdict is MAL, describe(r)
        assert findings(r, global_name="torch._utils._rebuild_tensor_v2.__globals__")

    @pytest.mark.parametrize(
        "module, name",
        [
            ("builtins", "__dict__.get"),
            ("collections", "OrderedDict.__init__.__globals__"),
            ("builtins", "set.__class__.__subclasses__"),
        ],
    )
    def test_dunder_walks(self, module, name):
        data = pickle_of(stack_global(module, name) + BINUNICODE("eval") + TUPLE1 + REDUCE, proto=4)
        assert_names(scan(data), f"{module}.{name}", rule="dunder-attribute")

    @pytest.mark.parametrize(
        "module, name, expected",
        [
            ("__builtin__", "eval", "builtins.eval"),
            ("__builtin__", "getattr", "builtins.getattr"),
            ("__builtin__", "reduce", "functools.reduce"),  # NAME_MAPPING
            ("__builtin__", "intern", "sys.intern"),  # NAME_MAPPING
            ("copy_reg", "add_extension", "copyreg.add_extension"),
            ("commands", "getoutput", "subprocess.getoutput"),
            ("httplib", "HTTPSConnection", "http.client.HTTPSConnection"),
            ("cPickle", "loads", "pickle.loads"),
        ],
    )
    def test_python2_compat_names(self, canary, module, name, expected):
        data = pickle_of(GLOBAL(module, name) + cmd_arg(canary) + TUPLE1 + REDUCE, proto=2)
        (f,) = assert_names(scan(data), expected)
        assert f"{module}.{name}" in f.message  # the spelling in the file is shown too

    def test_compat_name_through_stack_global(self, canary):
        data = pickle_of(stack_global("__builtin__", "eval") + BINUNICODE("1") + TUPLE1 + REDUCE, proto=2)
        assert_names(scan(data), "builtins.eval")

    def test_posix_and_nt(self, canary):
        assert_names(scan(canary.os_system(module="posix")), "posix.system")
        assert_names(scan(canary.os_system(module="nt")), "nt.system")

    def test_submodule_of_blocked_module(self):
        data = pickle_of(stack_global("asyncio.unix_events", "_UnixSubprocessTransport._start"), proto=4)
        assert_names(scan(data), "asyncio.unix_events._UnixSubprocessTransport._start")

    def test_unknown_global_is_suspicious(self):
        data = pickle_of(GLOBAL("mylib.models", "Net") + EMPTY_TUPLE + REDUCE)
        assert_names(scan(data), "mylib.models.Net", rule="unknown-global", verdict=Verdict.SUSPICIOUS)

    @pytest.mark.parametrize(
        "module, name",
        [
            ("runpy", "_run_code"),
            ("pdb", "run"),
            ("bdb", "Bdb.run"),
            ("cProfile", "run"),
            ("profile", "run"),
            ("timeit", "timeit"),
            ("code", "InteractiveInterpreter.runsource"),
            ("pip", "main"),
            ("pydoc", "pipepager"),
            ("ctypes", "CDLL"),
            ("importlib", "import_module"),
            ("marshal", "loads"),
            ("types", "FunctionType"),
            ("types", "CodeType"),
            ("pty", "spawn"),
            ("builtins", "compile"),
            ("builtins", "__import__"),
            ("operator", "attrgetter"),
            ("operator", "methodcaller"),
            ("functools", "partial"),
            ("torch.hub", "load"),
            ("torch.jit", "load"),
            ("torch.serialization", "load"),
            ("numpy.testing._private.utils", "runstring"),
        ],
    )
    def test_gadget_callables_are_blocked(self, module, name):
        data = pickle_of(GLOBAL(module, name) + BINUNICODE("x") + TUPLE1 + REDUCE)
        assert_names(scan(data), f"{module}.{name}")


# ------------------------------------------------------------------ EXT opcodes


@pytest.mark.parametrize("ext", [EXT1(1), EXT2(0x1234), EXT4(0x7FFFFFFF)], ids=["EXT1", "EXT2", "EXT4"])
def test_ext_opcodes(canary, ext):
    data = pickle_of(ext + cmd_arg(canary) + TUPLE1 + REDUCE)
    (f,) = assert_rule(scan(data), "ext-opcode")
    assert f.offset == 2


# ------------------------------------------------------------------ nested loaders and embedded pickles


class TestNested:
    @pytest.mark.parametrize(
        "module, name",
        [("pickle", "loads"), ("_pickle", "loads"), ("pickle", "load"), ("torch", "load"), ("numpy", "load"),
         ("joblib", "load"), ("dill", "loads")],
    )
    def test_nested_loader_globals(self, canary, module, name):
        data = pickle_of(GLOBAL(module, name) + BINBYTES(canary.os_system()) + TUPLE1 + REDUCE, proto=3)
        assert_names(scan(data), f"{module}.{name}")

    @pytest.mark.parametrize(
        "literal", [BINBYTES, SHORT_BINBYTES, BINBYTES8, BYTEARRAY8, BINSTRING],
        ids=["BINBYTES", "SHORT_BINBYTES", "BINBYTES8", "BYTEARRAY8", "BINSTRING"],
    )
    def test_embedded_pickle_literal_is_scanned(self, canary, literal):
        """The embedded payload is named even when the outer loader is not a known one."""
        inner = canary.os_system()
        assert len(inner) < 256
        data = pickle_of(GLOBAL("mylib", "load_blob") + literal(inner) + TUPLE1 + REDUCE, proto=4)
        r = scan(data)
        hits = assert_names(r, "os.system")
        assert all(h.member and h.member.startswith("embedded") for h in hits), describe(r)

    def test_embedded_pickle_in_pickle_loads(self, canary):
        data = pickle_of(GLOBAL("pickle", "loads") + BINBYTES(canary.builtins_exec()) + TUPLE1 + REDUCE, proto=3)
        r = scan(data)
        assert_names(r, "pickle.loads")
        assert_names(r, "builtins.exec")


# ------------------------------------------------------------------ BUILD and mutation of globals


class TestBuildAndMutate:
    def test_build_on_module_sys_module_override(self, canary):
        """STACK_GLOBAL torch._utils, then BUILD a dict onto the module (rebinding its attributes)."""
        state = EMPTY_DICT + SHORT_BINUNICODE("_rebuild_tensor_v2") + GLOBAL("builtins", "eval") + SETITEM
        data = pickle_of(stack_global("torch", "_utils") + state + BUILD, proto=4)
        r = scan(data)
        (f,) = assert_names(r, "torch._utils", rule="build-on-global")
        assert f.severity is Severity.MALICIOUS

    def test_build_on_allowlisted_class(self):
        data = pickle_of(GLOBAL("collections", "OrderedDict") + EMPTY_DICT + SHORT_BINUNICODE("x") + NONE + SETITEM + BUILD)
        assert_names(scan(data), "collections.OrderedDict", rule="build-on-global")

    def test_build_on_function_numpy_size_shape(self):
        # catalog #8: numpy.size given a `shape` attribute
        state = EMPTY_DICT + SHORT_BINUNICODE("shape") + GLOBAL("builtins", "dict") + SETITEM
        data = pickle_of(GLOBAL("numpy", "size") + state + BUILD)
        assert_names(scan(data), "numpy.size", rule="build-on-global")

    def test_build_on_memoized_global(self):
        data = pickle_of(
            GLOBAL("collections", "OrderedDict") + BINPUT(0) + POP + NONE + POP
            + BINGET(0) + EMPTY_DICT + BUILD
        )
        assert_names(scan(data), "collections.OrderedDict", rule="build-on-global")

    def test_build_on_instance_of_allowlisted_class_is_clean(self):
        data = pickle_of(GLOBAL("collections", "OrderedDict") + EMPTY_TUPLE + REDUCE + EMPTY_DICT + BUILD)
        r = scan(data)
        assert r.verdict is Verdict.CLEAN, describe(r)

    def test_setitem_on_global(self):
        data = pickle_of(GLOBAL("collections", "OrderedDict") + BINUNICODE("k") + BINUNICODE("v") + SETITEM)
        assert_names(scan(data), "collections.OrderedDict", rule="mutate-global")

    def test_appends_on_global(self):
        data = pickle_of(GLOBAL("builtins", "list") + MARK + NONE + NONE + APPENDS)
        assert_names(scan(data), "builtins.list", rule="mutate-global")

    def test_append_on_global(self):
        data = pickle_of(GLOBAL("builtins", "set") + NONE + APPEND)
        assert_names(scan(data), "builtins.set", rule="mutate-global")


# ------------------------------------------------------------------ frames (CPython gh-154848)


def gh154848(hidden_call: bytes) -> bytes:
    """The example from CPython gh-154848, with `hidden_call` as the hidden code.

    pickletools sees one BINBYTES; CPython's C unpickler reading the file
    re-reads the length after the 2-byte frame and runs the bytes inside it."""
    p = PROTO(5) + NONE
    p += b"V" + b"a" * (8192 * 16 - 17) + b"\n"  # UNICODE: pads the FRAME to the prefetch boundary
    p += POP + MARK
    p += FRAME(2)
    p += b"B" + b"\x07\x01\x00\x00"  # BINBYTES of 263 bytes, straddling the 2-byte frame
    p += b"\x00" + b"\x00" + (hidden_call + MARK).ljust(256 + 5, NONE) + POP_MARK
    p += STOP
    return p


class TestFrames:
    def test_gh154848_original_example(self):
        hidden = GLOBAL("builtins", "print") + UNICODE("Hello, world!") + TUPLE1 + REDUCE
        r = scan(gh154848(hidden))
        assert r.verdict is MAL, describe(r)
        assert findings(r, rule="frame-violation"), describe(r)
        assert "builtins.print" in named(r), "the call hidden inside the straddling BINBYTES was not found\n" + describe(r)

    def test_gh154848_hidden_os_system(self, canary):
        hidden = GLOBAL("os", "system") + UNICODE(canary.shell) + TUPLE1 + REDUCE
        assert len(hidden) < 256
        r = scan(gh154848(hidden))
        assert findings(r, rule="frame-violation"), describe(r)
        assert_names(r, "os.system")

    def test_straddle_after_complete_length_is_flagged(self, canary):
        """The frame ends right after BINBYTES' length: not a frame any pickler writes.

        Every reader agrees here (the payload is read straight through from the frame's
        end: Python's _Unframer, the C unpickler with or without a file, pickletools), so
        the bytes are data everywhere: flagged as odd framing, but no hidden reading exists
        and naming the payload's os.system would name code that never runs."""
        hidden = GLOBAL("os", "system") + cmd_arg(canary) + TUPLE1 + REDUCE + POP
        data = PROTO(4) + FRAME(5) + b"B" + struct.pack("<I", len(hidden)) + hidden + POP + NONE + STOP
        r = scan(data)
        assert findings(r, rule="frame-violation"), describe(r)
        assert r.verdict is SUS
        assert not any(f.global_name == "os.system" for f in r.findings), describe(r)

    def test_global_line_straddling_frame_end(self, canary):
        """GLOBAL whose module line runs past a 2-byte frame at the prefetch boundary.

        pickletools reads module 'xos'; CPython's C unpickler reading the file drops the
        partial line held in the frame and re-reads it from the frame end: module 'os'."""
        p = PROTO(5) + NONE + b"V" + b"a" * (8192 * 16 - 17) + b"\n" + POP + MARK + FRAME(2)
        assert len(p) == 8192 * 16 - 1
        p += b"cx" + b"os\nsystem\n" + UNICODE(canary.shell) + TUPLE1 + REDUCE + POP + POP_MARK + NONE + STOP
        r = scan(p)
        assert findings(r, rule="frame-violation"), describe(r)
        assert_names(r, "os.system")

    def test_frame_starting_inside_another_frame(self, canary):
        inner = NONE + POP + NONE + STOP
        body = NONE + POP + FRAME(len(inner)) + inner
        data = PROTO(4) + FRAME(len(body) + 10) + body + b"\x00" * 10
        r = scan(data)
        assert findings(r, rule="frame-violation"), describe(r)
        assert r.verdict is MAL

    def test_honest_frames_with_payload(self, canary):
        body = canary.os_system(proto=4)[2:]
        data = PROTO(4) + framed(body)
        r = scan(data)
        assert_names(r, "os.system")
        assert not findings(r, rule="frame-violation")

    def test_honest_frames_benign_is_clean(self):
        body = EMPTY_DICT + SHORT_BINUNICODE("a") + BINUNICODE("b" * 100) + SETITEM + STOP
        r = scan(PROTO(4) + framed(body))
        assert r.verdict is Verdict.CLEAN, describe(r)

    def test_frame_longer_than_data_is_error(self):
        r = scan(PROTO(4) + FRAME(1000) + NONE + STOP)
        assert r.verdict is Verdict.ERROR, describe(r)


# ------------------------------------------------------------------ broken and stacked streams


class TestBrokenTails:
    @pytest.mark.parametrize(
        "tail",
        [b"\xff\xff", b"", BINUNICODE("abc")[:-2], b"\x95\x00", POP * 5 + STOP, MARK + LIST + b"q"],
        ids=["bad-opcode", "truncated", "truncated-argument", "truncated-frame", "stack-underflow", "truncated-put"],
    )
    def test_payload_then_breakage(self, canary, tail):
        data = canary.os_system()[:-1] + tail  # the REDUCE has run before the break
        r = scan(data)
        assert_names(r, "os.system")
        assert any(f.severity is Severity.ERROR for f in r.findings), describe(r)

    def test_suspicious_then_breakage_is_not_clean(self):
        data = PROTO(2) + GLOBAL("mylib", "Thing") + EMPTY_TUPLE + REDUCE + b"\xfe"
        r = scan(data)
        assert r.verdict in (Verdict.ERROR, MAL), describe(r)
        assert "mylib.Thing" in named(r)

    def test_benign_then_breakage_is_error(self):
        r = scan(PROTO(2) + EMPTY_DICT + b"\xfe")
        assert r.verdict is Verdict.ERROR, describe(r)


class TestConcatenated:
    def test_payload_in_second_pickle(self, canary):
        data = pickle_of(EMPTY_DICT) + canary.os_system()
        (f,) = assert_names(scan(data), "os.system")
        assert f.offset > len(pickle_of(EMPTY_DICT))

    def test_payload_in_third_pickle(self, canary):
        data = pickle_of(EMPTY_DICT) + pickle_of(EMPTY_LIST, proto=4) + canary.subprocess_run()
        assert_names(scan(data), "subprocess.run")

    def test_protocol0_payload_after_binary_pickle(self, canary):
        data = pickle_of(EMPTY_DICT) + MARK + STRING(canary.shell) + INST("os", "system") + STOP
        assert_names(scan(data), "os.system")

    def test_payload_after_stop_then_garbage(self, canary):
        data = pickle_of(EMPTY_DICT) + canary.os_system() + b"garbage\xff"
        r = scan(data)
        assert_names(r, "os.system")

    def test_many_benign_pickles_are_clean(self):
        data = b"".join(pickle_of(tuple_of([BININT(i)])) for i in range(1000))
        r = scan(data)
        assert r.verdict is Verdict.CLEAN, describe(r)


# ------------------------------------------------------------------ padding and dilution


class TestPaddingAndDilution:
    PAD = 24 << 20  # tens of MB: scanners that read a prefix miss what follows

    def test_payload_after_huge_bytes_literal(self, canary):
        data = PROTO(4) + BINBYTES8(b"\0" * self.PAD) + POP + canary.body() + STOP
        assert len(data) > 20 << 20
        (f,) = assert_names(scan(data), "os.system")
        assert f.offset > self.PAD

    def test_payload_in_pickle_after_huge_pickle(self, canary):
        data = pickle_of(BINBYTES8(b"\0" * self.PAD), proto=4) + canary.os_system()
        assert_names(scan(data), "os.system")

    def test_payload_after_dense_opcodes(self, canary):
        data = PROTO(2) + (NONE + POP) * (self.PAD // 2) + canary.body() + STOP
        t = time.monotonic()
        r = scan(data)
        assert time.monotonic() - t < 10
        assert_names(r, "os.system")

    def test_operands_memoized_before_megabytes_of_structure(self, canary):
        """The callable's name is memoized first, then hundreds of thousands of
        memoized tuples in a list grow the scanner's arrays (records, items,
        memo) past the size where they move to mappings of their own, several
        times over; the names fetched back at the end must still resolve."""
        n = 300_000
        items = b"".join(BININT(i) + BININT1(7) + TUPLE2 + LONG_BINPUT(i + 2) for i in range(n))
        data = (PROTO(4) + SHORT_BINUNICODE("os") + LONG_BINPUT(0) + POP
                + SHORT_BINUNICODE("system") + LONG_BINPUT(1) + POP
                + EMPTY_LIST + MARK + items + APPENDS + POP
                + LONG_BINGET(0) + LONG_BINGET(1) + STACK_GLOBAL + cmd_arg(canary) + TUPLE1 + REDUCE
                + LONG_BINGET(n // 2 + 2) + POP + STOP)
        assert len(data) > 3 << 20
        r = scan(data)
        (f,) = assert_names(r, "os.system")
        assert f.offset > len(data) - 200
        assert not canary.path.exists()

    def test_payload_in_file_after_padding(self, canary, write):
        path = write("padded.pkl", PROTO(4) + BINUNICODE8("x" * self.PAD) + POP + canary.body() + STOP)
        r = aisbom.scan(path)
        assert_names(r, "os.system")

    def test_dilution_allowlisted_calls(self, canary):
        harmless = (GLOBAL("collections", "OrderedDict") + EMPTY_TUPLE + REDUCE + POP) * 500
        data = PROTO(2) + harmless + canary.body() + STOP
        r = scan(data)
        (f,) = assert_names(r, "os.system")
        assert len(r.findings_at_least(Severity.SUSPICIOUS)) == 1

    def test_dilution_many_distinct_unknown_globals(self, canary):
        harmless = b"".join(GLOBAL(f"mylib{i}", "Thing") + POP for i in range(600))
        data = PROTO(2) + harmless + canary.body() + STOP
        assert_names(scan(data), "os.system")

    def test_dilution_payload_in_the_middle(self, canary):
        harmless = (GLOBAL("torch._utils", "_rebuild_tensor_v2") + POP) * 300
        data = PROTO(2) + harmless + canary.body() + POP + harmless + NONE + STOP
        assert_names(scan(data), "os.system")

    def test_dilution_of_findings_cannot_hide_a_malicious_one(self, canary):
        """1200 harmless-but-odd BUILDs (CPython accepts BUILD with state None on a list)
        fill the report, then the payload: its finding must still decide the verdict."""
        noise = (EMPTY_LIST + NONE + BUILD + POP) * 1200
        payload = (
            GLOBAL("builtins", "str") + SHORT_BINUNICODE("os") + TUPLE1 + REDUCE
            + SHORT_BINUNICODE("system") + STACK_GLOBAL + cmd_arg(canary) + TUPLE1 + REDUCE
        )
        r = scan(PROTO(4) + noise + payload + STOP)
        assert r.verdict is MAL, describe(r)[:2000]


# ------------------------------------------------------------------ resource bombs


def timed_scan(data: bytes, budget: float = 5.0):
    t = time.monotonic()
    r = scan(data)
    elapsed = time.monotonic() - t
    assert elapsed < budget, f"scan took {elapsed:.1f}s"
    return r


class TestResourceBombs:
    def test_memo_expansion_billion_laughs(self):
        p = PROTO(4) + EMPTY_LIST + MEMOIZE
        for i in range(200):
            p += MARK + BINGET(i) * 10 + LIST + MEMOIZE
        r = timed_scan(p + STOP)
        assert r.verdict is Verdict.CLEAN, describe(r)  # shared references: nothing expands for the loader either

    def test_dup_expansion(self):
        r = timed_scan(PROTO(2) + EMPTY_LIST + DUP * 3_000_000 + STOP)
        assert r.verdict is Verdict.CLEAN, describe(r)

    @pytest.mark.parametrize(
        "data",
        [
            PROTO(4) + b"\x8e" + struct.pack("<Q", 2**63) + b"abc" + STOP,  # BINBYTES8
            PROTO(4) + b"\x8d" + struct.pack("<Q", 2**64 - 1) + b"abc" + STOP,  # BINUNICODE8
            PROTO(4) + b"X" + struct.pack("<I", 2**32 - 1) + b"abc" + STOP,  # BINUNICODE
            PROTO(4) + b"T" + struct.pack("<i", -1) + b"abc" + STOP,  # BINSTRING, negative
            PROTO(4) + b"\x8b" + struct.pack("<i", 2**31 - 1) + b"ab" + STOP,  # LONG4
            PROTO(4) + FRAME(2**62) + NONE + STOP,
            PROTO(5) + b"\x96" + struct.pack("<Q", 2**40) + STOP,  # BYTEARRAY8
        ],
        ids=["BINBYTES8", "BINUNICODE8", "BINUNICODE", "BINSTRING-negative", "LONG4", "FRAME", "BYTEARRAY8"],
    )
    def test_huge_declared_lengths(self, data):
        r = timed_scan(data, budget=1.0)
        assert r.verdict is Verdict.ERROR, describe(r)

    def test_frame_straddles_cannot_make_the_scan_quadratic(self):
        """Each straddle starts a reading of what an older unpickler sees,
        which runs on to the end: 40 of them before 300 KB of opcodes would
        re-read 12 MB. Nested readings are capped at four times the file (plus
        64 KiB); past that the scan says what it did not check."""
        straddle = FRAME(2) + b"J" + struct.pack("<i", 1) + POP  # BININT runs past its 2-byte frame
        data = PROTO(4) + straddle * 40 + (NONE + POP) * 150_000 + NONE + STOP
        r = timed_scan(data, budget=5.0)
        assert r.verdict is Verdict.MALICIOUS, describe(r)
        limits = [f for f in r.findings if f.rule == "scan-limit"]
        assert len(limits) == 1 and limits[0].severity is Severity.ERROR, describe(r)
        few = timed_scan(PROTO(4) + straddle * 5 + (NONE + POP) * 1000 + NONE + STOP)
        assert not any(f.rule == "scan-limit" for f in few.findings), describe(few)

    def test_deep_marks(self):
        r = timed_scan(PROTO(2) + MARK * 1_000_000 + NONE + STOP)
        assert r.verdict is Verdict.CLEAN, describe(r)  # marks left open at STOP are legal

    def test_deep_marks_underflow(self):
        r = timed_scan(PROTO(2) + MARK * 1_000_000 + STOP)
        assert r.verdict is Verdict.ERROR, describe(r)

    def test_deeply_nested_lists(self):
        r = timed_scan(PROTO(2) + MARK * 1_000_000 + LIST * 1_000_000 + STOP)
        assert r.verdict is Verdict.CLEAN, describe(r)

    def test_deeply_nested_tuples(self):
        r = timed_scan(PROTO(2) + NONE + TUPLE1 * 1_000_000 + STOP)
        assert r.verdict is Verdict.CLEAN, describe(r)

    def test_deep_nesting_then_payload(self, canary):
        r = timed_scan(PROTO(2) + MARK * 1_000_000 + canary.body() + LIST * 1_000_000 + STOP)
        assert_names(r, "os.system")

    def test_many_memo_entries(self):
        r = timed_scan(PROTO(4) + (NONE + MEMOIZE + POP) * 1_000_000 + NONE + STOP)
        assert r.verdict is Verdict.CLEAN, describe(r)

    def test_huge_binary_integer_is_fine(self):
        r = timed_scan(PROTO(2) + b"\x8b" + struct.pack("<i", 4_000_000) + b"\x7f" * 4_000_000 + STOP)
        assert r.verdict is Verdict.CLEAN, describe(r)

    @pytest.mark.parametrize("op", [INT, LONG], ids=["INT", "LONG"])
    def test_huge_text_integer(self, op):
        """5 million decimal digits: CPython's unpickler refuses it (int_max_str_digits
        = 4300), so the stream breaks there for the loader; the scan must finish fast
        and must not call the file clean."""
        digits = b"9" * 5_000_000
        data = op(digits if op is INT else digits + b"L") + STOP
        r = timed_scan(data, budget=2.0)
        assert r.verdict is not Verdict.CLEAN, describe(r)

    def test_huge_hex_text_integer_is_readable(self):
        # power-of-two bases have no digit limit in CPython: this one loads
        r = timed_scan(INT(b"0x" + b"f" * 1_000_000) + STOP, budget=2.0)
        assert r.verdict is Verdict.CLEAN, describe(r)

    @pytest.mark.parametrize(
        "prefix",
        [PROTO(4), b"", b"PK\x03\x04", b"\x93NUMPY\x01\x00", b"\x1f\x8b\x08\x00", b"\x10\x00\x00\x00\x00\x00\x00\x00{"],
        ids=["pickle", "raw", "zip", "npy", "gzip", "safetensors"],
    )
    def test_random_garbage_never_crashes(self, prefix):
        """A few hundred random inputs behind each format's magic: every scan returns a report,
        and garbage is never called clean unless it is text or a complete pickle."""
        import random

        rnd = random.Random(1234)
        for _ in range(150):
            blob = prefix + bytes(rnd.getrandbits(8) for _ in range(rnd.randrange(1, 300)))
            r = scan(blob)
            assert isinstance(r, aisbom.FileReport)
            if r.verdict is Verdict.CLEAN:
                assert r.format in ("pickle", "text"), describe(r)


# ------------------------------------------------------------------ sanity: benign look-alikes stay clean


@pytest.mark.parametrize(
    "data",
    [
        pickle_of(BINUNICODE("os") + BINUNICODE("system") + MARK + POP_MARK),  # names as plain strings
        pickle_of(EMPTY_DICT + BINUNICODE("cmd") + BINUNICODE("os.system('rm -rf /')") + SETITEM),
        pickle_of(GLOBAL("collections", "OrderedDict") + EMPTY_TUPLE + REDUCE, proto=2),
        pickle_of(MARK + NEWTRUE + NONE + TUPLE, proto=2),
    ],
    ids=["names-as-data", "command-as-data", "allowlisted-call", "tuple"],
)
def test_benign_lookalikes_are_clean(data):
    r = scan(data)
    assert r.verdict is Verdict.CLEAN, describe(r)
