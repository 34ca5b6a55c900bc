"""What aisbom.safe_load refuses, and that nothing ever runs.

Every malicious sample is built from bytes (tests/asm.py) with a payload that
would only create the test's canary file (the `canary` fixture asserts it is
absent afterwards); loads run under loader_helpers.SideEffects, an audit hook
that records process creation, exec/compile, writes, sockets and new imports.

Each technique is refused twice: by safe_load (whose scan sees it first) and
by the allowlisting VM alone, given a forged "clean" scan report, so that the
in-process loader is safe even where the scan were wrong.

Then: the picklescan corpus, user classes and the allow= hint, blocklisted
allows, caps (stack, memo, billion laughs, allocation bombs), tensors whose
metadata points outside their storage (CVE-2026-24747), TorchScript, and
truncated files.
"""
from __future__ import annotations

import ast
import builtins
import contextlib
import json
import os
import pickle
import re
import struct
import threading
import time
import tracemalloc
from pathlib import Path

import pytest

import aisbom
from aisbom import DisallowedGlobalError, LimitExceededError, MaliciousModelError, MalformedModelError, UnsafeModelError
import asm
from asm import (
    APPEND, APPENDS, BINGET, BININT, BINPERSID, BINUNICODE, BUILD, DUP, EMPTY_DICT, EMPTY_LIST, EMPTY_TUPLE,
    EXT1, EXT2, EXT4, FRAME, GLOBAL, INST, LIST, LONG1, MARK, MEMOIZE, NEWFALSE, NEWOBJ, NEWOBJ_EX, NONE, OBJ, POP,
    POP_MARK, PROTO, REDUCE, SETITEM, SETITEMS, SHORT_BINUNICODE, STACK_GLOBAL, STOP, STRING, TUPLE, TUPLE1, UNICODE,
    pickle_of, stack_global, tuple_of,
)
from loader_helpers import SideEffects, Unchanged, assert_same, member, prewarm, rewrite_zip

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS_DIR = os.path.join(REPO_ROOT, "..", "shared", "corpus", "picklescan")
LABELS = os.path.join(CORPUS_DIR, "labels.json")


@pytest.fixture(scope="module", autouse=True)
def _prewarm():
    prewarm()


@contextlib.contextmanager
def nothing_runs(*paths):
    """No side effect of running code happens inside the block."""
    with SideEffects(allowed_paths=tuple(paths)) as fx:
        yield fx
    fx.assert_none()


def refused(data: bytes, exc=UnsafeModelError, **kw):
    """safe_loads(data) raises `exc`, with nothing run; returns the exception."""
    with nothing_runs():
        with pytest.raises(exc) as info:
            aisbom.safe_loads(data, **kw)
    return info.value


def vm_refused(data: bytes, exc=UnsafeModelError):
    """The VM alone raises `exc`: the file's real scan report, with its verdict
    forged to "clean", is handed to the loader, so nothing but the allowlisting
    unpickler stands between the file and the process."""
    import dataclasses

    from aisbom.loader import load_buffer

    report = aisbom.scan_bytes(data)
    forged = dataclasses.replace(report, verdict=aisbom.Verdict.CLEAN, findings=())
    with nothing_runs():
        with pytest.raises(exc) as info:
            load_buffer(data, report=forged, sandbox="never")
    return info.value


# ------------------------------------------------------------------ the detector itself


def test_side_effect_detector_sees_code_running():
    """Positive control: the audit hook does record a payload that runs."""
    data = pickle_of(GLOBAL("builtins", "exec") + BINUNICODE("x = 1") + TUPLE1 + REDUCE)
    with SideEffects() as fx:
        pickle.loads(data)
    assert any(e == "exec" for e, _ in fx.events), fx.events


def test_side_effect_detector_is_quiet_on_clean_loads(tmp_path):
    torch = pytest.importorskip("torch")
    path = tmp_path / "ok.pt"
    torch.save({"w": torch.randn(3), "meta": {"a": [1, 2]}}, path)
    with nothing_runs(path):
        aisbom.safe_load(path, sandbox="never")
        aisbom.safe_loads(pickle.dumps({"x": (1, 2.5, "s", b"b", {1, 2})}, 4), sandbox="never")


# ------------------------------------------------------------------ techniques


def cmd(canary) -> bytes:
    return BINUNICODE(canary.shell)


def techniques(path: str):
    """name -> (pickle whose payload would create `path`, the global the error must
    name, or None where the technique names none)."""
    shell = asm.shell_touch(path)
    c = BINUNICODE(shell)
    return {
        "reduce-os.system": (asm.os_system(path), "os.system"),
        "reduce-posix.system": (asm.os_system(path, module="posix"), "posix.system"),
        "reduce-builtins.eval": (pickle_of(GLOBAL("builtins", "eval") + BINUNICODE(f"__import__('os').system({shell!r})")
                                           + TUPLE1 + REDUCE), "builtins.eval"),
        "reduce-builtins.exec": (asm.builtins_exec(path), "builtins.exec"),
        "reduce-builtins.open": (asm.builtins_open(path), "builtins.open"),
        "reduce-subprocess.run": (asm.subprocess_run(path), "subprocess.run"),
        "inst": (MARK + STRING(shell) + INST("os", "system") + STOP, "os.system"),
        "obj": (PROTO(1) + MARK + GLOBAL("os", "system") + STRING(shell) + OBJ + STOP, "os.system"),
        "newobj": (pickle_of(GLOBAL("os", "system") + c + TUPLE1 + NEWOBJ), "os.system"),
        "newobj-ex": (pickle_of(GLOBAL("os", "system") + c + TUPLE1 + EMPTY_DICT + NEWOBJ_EX, proto=4), "os.system"),
        "stack-global": (pickle_of(stack_global("os", "system") + c + TUPLE1 + REDUCE, proto=4), "os.system"),
        "memo-stack-global": (pickle_of(
            SHORT_BINUNICODE("os") + MEMOIZE + POP + SHORT_BINUNICODE("collections") + MEMOIZE + POP
            + SHORT_BINUNICODE("system") + MEMOIZE + POP
            + BINGET(0) + BINGET(2) + STACK_GLOBAL + c + TUPLE1 + REDUCE, proto=4), "os.system"),
        "dotted-shutil.os.system": (pickle_of(stack_global("shutil", "os.system") + c + TUPLE1 + REDUCE, proto=4),
                                    "shutil.os.system"),
        "dotted-global-opcode": (pickle_of(GLOBAL("pathlib", "os.system") + c + TUPLE1 + REDUCE, proto=4),
                                 "pathlib.os.system"),
        "dunder-walk": (pickle_of(stack_global("torch._utils", "_rebuild_tensor_v2.__globals__"), proto=4),
                        "torch._utils._rebuild_tensor_v2.__globals__"),
        "py2-__builtin__.eval": (pickle_of(GLOBAL("__builtin__", "eval") + BINUNICODE("1") + TUPLE1 + REDUCE), "builtins.eval"),
        "py2-commands.getoutput": (pickle_of(GLOBAL("commands", "getoutput") + c + TUPLE1 + REDUCE), "subprocess.getoutput"),
        "build-on-module": (pickle_of(stack_global("torch", "_utils") + EMPTY_DICT + SHORT_BINUNICODE("_rebuild_tensor_v2")
                                      + GLOBAL("builtins", "eval") + SETITEM + BUILD, proto=4), "torch._utils"),
        "build-on-class": (pickle_of(GLOBAL("collections", "OrderedDict") + EMPTY_DICT + SHORT_BINUNICODE("x") + NONE
                                     + SETITEM + BUILD), "collections.OrderedDict"),
        "setitem-on-class": (pickle_of(GLOBAL("collections", "OrderedDict") + BINUNICODE("k") + BINUNICODE("v") + SETITEM),
                             "collections.OrderedDict"),
        "append-on-class": (pickle_of(GLOBAL("builtins", "list") + NONE + APPEND), "builtins.list"),
        "ext1": (pickle_of(EXT1(1) + c + TUPLE1 + REDUCE), None),
        "ext2": (pickle_of(EXT2(0x1234) + c + TUPLE1 + REDUCE), None),
        "ext4": (pickle_of(EXT4(0x7FFFFFFF) + c + TUPLE1 + REDUCE), None),
        "payload-in-second-pickle": (pickle_of(EMPTY_DICT) + asm.os_system(path), "os.system"),
    }


TECHNIQUES = list(techniques("/nonexistent/canary"))


@pytest.mark.parametrize("sandbox", ["never", "auto"])
@pytest.mark.parametrize("name", TECHNIQUES)
def test_technique_refused_by_safe_load(canary, name, sandbox):
    data, global_name = techniques(str(canary.path))[name]
    err = refused(data, UnsafeModelError, sandbox=sandbox)
    assert isinstance(err.offset, int) and 0 <= err.offset < len(data), f"offset {err.offset!r}"
    if global_name is not None:
        assert err.global_name == global_name, str(err)
        assert global_name in str(err)
    if name.startswith(("reduce-", "inst", "obj", "newobj", "stack-global", "memo-", "dotted", "py2", "ext")):
        assert isinstance(err, MaliciousModelError), f"{type(err).__name__}: {err}"
    canary.assert_absent()


@pytest.mark.parametrize("name", [n for n in TECHNIQUES if n != "payload-in-second-pickle"])  # the VM runs one pickle
def test_technique_refused_by_the_vm_alone(canary, name):
    data, global_name = techniques(str(canary.path))[name]
    err = vm_refused(data, UnsafeModelError)
    assert isinstance(err.offset, int) and 0 <= err.offset < len(data)
    assert err.opcode is not None
    if global_name is not None and not name.startswith(("build-on-class", "setitem-on", "append-on")):
        assert err.global_name == global_name, str(err)
    canary.assert_absent()


def test_first_offending_opcode_offset():
    err = refused(pickle_of(GLOBAL("os", "system") + BINUNICODE("true") + TUPLE1 + REDUCE))
    assert (err.global_name, err.offset, err.opcode) == ("os.system", 2, "GLOBAL")  # right after PROTO
    head = PROTO(4) + EMPTY_LIST + (NONE + POP) * 100 + SHORT_BINUNICODE("os") + SHORT_BINUNICODE("system")
    err = refused(head + STACK_GLOBAL + POP + STOP)
    assert (err.global_name, err.offset, err.opcode) == ("os.system", len(head), "STACK_GLOBAL")


def test_error_carries_the_scan_report(canary):
    err = refused(canary.os_system())
    assert err.report is not None and err.report.verdict is aisbom.Verdict.MALICIOUS
    assert any(f.global_name == "os.system" for f in err.findings)


@pytest.mark.parametrize(
    "data",
    [
        pickle_of(EMPTY_TUPLE + BINUNICODE("k") + BINUNICODE("v") + SETITEM),
        pickle_of(BINUNICODE("abc") + BINUNICODE("k") + BINUNICODE("v") + SETITEM),
        pickle_of(GLOBAL("builtins", "set") + EMPTY_TUPLE + REDUCE + NONE + APPEND),
        pickle_of(GLOBAL("builtins", "frozenset") + EMPTY_TUPLE + REDUCE + MARK + NONE + APPENDS),
        pickle_of(EMPTY_DICT + NONE + APPEND),
        pickle_of(EMPTY_LIST + NONE + NONE + SETITEM),
        pickle_of(GLOBAL("builtins", "bytes") + EMPTY_TUPLE + REDUCE + MARK + NONE + NONE + SETITEMS),
    ],
    ids=["setitem-tuple", "setitem-str", "append-set", "appends-frozenset", "append-dict", "setitem-list", "setitems-bytes"],
)
def test_setitem_append_on_non_containers(data):
    """pickle.loads would call .append/.__setitem__ on whatever is there; the VM adds
    only to the builtin containers it made."""
    err = refused(data, UnsafeModelError, sandbox="never")
    assert err.opcode in ("SETITEM", "SETITEMS", "APPEND", "APPENDS") and isinstance(err.offset, int)


def test_build_sets_no_dunder_attributes():
    """BUILD on an allowed instance may not set __class__ & co."""
    data = pickle_of(GLOBAL("collections", "OrderedDict") + EMPTY_TUPLE + REDUCE
                     + EMPTY_DICT + SHORT_BINUNICODE("__class__") + GLOBAL("builtins", "dict") + SETITEM + BUILD)
    err = refused(data, UnsafeModelError, sandbox="never")
    assert "__class__" in str(err)


def test_build_on_plain_list_is_refused():
    refused(pickle_of(EMPTY_LIST + EMPTY_DICT + SHORT_BINUNICODE("x") + NONE + SETITEM + BUILD), UnsafeModelError,
            sandbox="never")


def test_calling_an_instance_is_refused(canary):
    data = pickle_of(GLOBAL("collections", "OrderedDict") + EMPTY_TUPLE + REDUCE + cmd(canary) + TUPLE1 + REDUCE)
    refused(data, UnsafeModelError, sandbox="never")
    vm_refused(data, UnsafeModelError)


def test_defaultdict_factory_must_be_a_builtin_container():
    """A defaultdict's factory runs on every missing key: only builtin containers are allowed."""
    data = pickle_of(GLOBAL("collections", "defaultdict") + GLOBAL("collections", "OrderedDict") + TUPLE1 + REDUCE)
    refused(data, UnsafeModelError, sandbox="never")


def test_stacked_pickles_have_separate_memos(canary):
    """Each pickle of a stream starts with an empty memo. A second pickle whose memo
    indices, read with the first pickle's memo, spell a harmless name must be judged
    by what pickle.load resolves (os.system), not by the stale memo."""
    first = pickle_of(SHORT_BINUNICODE("collections") + MEMOIZE + SHORT_BINUNICODE("OrderedDict") + MEMOIZE
                      + POP + POP + NONE, proto=4)
    second = pickle_of(SHORT_BINUNICODE("os") + MEMOIZE + SHORT_BINUNICODE("system") + MEMOIZE + POP + POP
                       + BINGET(0) + BINGET(1) + STACK_GLOBAL + cmd(canary) + TUPLE1 + REDUCE, proto=4)
    err = refused(first + second, MaliciousModelError, sandbox="never")
    assert err.global_name == "os.system"


# ------------------------------------------------------------------ frames (CPython gh-154848)


def gh154848(hidden_call: bytes) -> bytes:
    p = PROTO(5) + NONE
    p += b"V" + b"a" * (8192 * 16 - 17) + b"\n"
    p += POP + MARK
    p += FRAME(2)
    p += b"B" + b"\x07\x01\x00\x00"
    p += b"\x00" + b"\x00" + (hidden_call + MARK).ljust(256 + 5, NONE) + POP_MARK
    p += STOP
    return p


def straddle(canary) -> bytes:
    """BINUNICODE whose 4-byte length read starts inside a 3-byte frame and ends after it:
    a reader that re-reads the length from the frame's end sees other bytes (an os.system call)."""
    hidden = GLOBAL("os", "system") + cmd(canary) + TUPLE1 + REDUCE + POP
    text = b"x" * 40
    return PROTO(4) + FRAME(3) + b"X" + struct.pack("<I", len(text))[:2] + struct.pack("<I", len(text))[2:] + text + hidden + NONE + STOP


@pytest.mark.parametrize("kind", ["gh154848", "length-straddles-frame", "frame-in-frame"])
def test_frame_straddling(canary, kind):
    if kind == "gh154848":
        data = gh154848(GLOBAL("os", "system") + UNICODE(canary.shell) + TUPLE1 + REDUCE)
    elif kind == "length-straddles-frame":
        data = straddle(canary)
    else:
        inner = canary.body() + POP + NONE + STOP
        body = NONE + POP + FRAME(len(inner)) + inner
        data = PROTO(4) + FRAME(len(body)) + body
    with nothing_runs():
        with pytest.raises((UnsafeModelError, MalformedModelError)) as info:
            aisbom.safe_loads(data, sandbox="never")
    assert isinstance(info.value.offset, int)
    # and the VM on its own refuses the frame violation before anything runs
    err = vm_refused(data, (UnsafeModelError, MalformedModelError))
    assert isinstance(err.offset, int)
    canary.assert_absent()


# ------------------------------------------------------------------ the picklescan corpus


def _corpus(label):
    if not os.path.isfile(LABELS):
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"corpus not present at {CORPUS_DIR}"), id="no-corpus")]
    with open(LABELS, encoding="utf-8") as f:
        labels = json.load(f)
    return [pytest.param(rel, id=rel) for rel, lab in sorted(labels.items()) if lab == label]


@pytest.mark.parametrize("rel", _corpus("malicious"))
def test_corpus_malicious_is_refused(rel, tmp_path, monkeypatch):
    path = os.path.join(CORPUS_DIR, rel)
    monkeypatch.chdir(tmp_path)  # a payload writing relative files would write here
    before = set(os.listdir(tmp_path))
    with Unchanged(path), nothing_runs(path):
        with pytest.raises((UnsafeModelError, MalformedModelError)):
            aisbom.safe_load(path)  # default sandbox="auto": no sandbox yet, so refused
        with pytest.raises((UnsafeModelError, MalformedModelError)):
            aisbom.safe_load(path, sandbox="never")
        with open(path, "rb") as f, pytest.raises((UnsafeModelError, MalformedModelError)):
            aisbom.safe_load(f, sandbox="never")
    assert set(os.listdir(tmp_path)) == before


def _corpus_reference(path: str):
    """What the real libraries give for a benign corpus file."""
    if path.endswith((".npy", ".npz")):
        import numpy as np

        with np.load(path, allow_pickle=True) as z:
            return {k: z[k] for k in z.files}
    with open(path, "rb") as f:
        head = f.read(4)
    if head.startswith(b"PK") or path.endswith((".bin", ".pt")):
        torch = pytest.importorskip("torch")
        return torch.load(path, weights_only=False)
    with open(path, "rb") as f:
        return pickle.load(f)


@pytest.mark.parametrize("rel", _corpus("clean"))
def test_corpus_clean_loads_equal(rel):
    path = os.path.join(CORPUS_DIR, rel)
    if path.endswith(".npy"):
        import numpy as np

        want = np.load(path, allow_pickle=True)
    else:
        want = _corpus_reference(path)
    with Unchanged(path), nothing_runs(path):
        got = aisbom.safe_load(path, sandbox="never")
    assert_same(got, want)


@pytest.mark.parametrize("rel", _corpus("not-malicious"))
def test_corpus_not_a_model_fails_cleanly(rel):
    """Not models at all: refused with an aisbom error (never a stray exception), nothing run."""
    path = os.path.join(CORPUS_DIR, rel)
    with Unchanged(path), nothing_runs(path):
        with pytest.raises(aisbom.AisbomError):
            aisbom.safe_load(path, sandbox="never")


# ------------------------------------------------------------------ user classes and allow=


class UserThing:
    def __init__(self, a, b=2):
        self.a = a
        self.b = b


class WithState:
    def __init__(self):
        self.v = 1

    def __getstate__(self):
        return {"v": self.v, "extra": "e"}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.restored = True


class Slotted:
    __slots__ = ("x", "y")


USER_NAME = f"{UserThing.__module__}.{UserThing.__qualname__}"


def hint_of(err) -> list:
    m = re.search(r"allow=(\[[^\]]*\])\)", str(err))
    assert m, f"no allow=[...] hint in:\n{err}"
    return ast.literal_eval(m.group(1))


@pytest.mark.parametrize("proto", [2, 3, 4, 5])
def test_user_class_refused_then_allowed(proto):
    obj = UserThing([1, 2], b={"k": (3,)})
    data = pickle.dumps(obj, protocol=proto)
    err = refused(data, DisallowedGlobalError, sandbox="never")
    assert err.global_name == USER_NAME
    assert f"allow={[USER_NAME]!r}" in str(err), str(err)
    assert f"aisbom.safe_loads(data, allow={[USER_NAME]!r})" in str(err)
    want = pickle.loads(data)
    assert_same(aisbom.safe_loads(data, allow=[UserThing], sandbox="never"), want)
    assert_same(aisbom.safe_loads(data, allow=[USER_NAME], sandbox="never"), want)
    assert_same(aisbom.safe_loads(data, allow=hint_of(err), sandbox="never"), want)
    with aisbom.allowed(UserThing):
        assert_same(aisbom.safe_loads(data, sandbox="never"), want)
    # the context manager's allowance ends with the block
    refused(data, DisallowedGlobalError, sandbox="never")


def test_user_class_hint_names_the_path(tmp_path):
    path = tmp_path / "thing.pkl"
    path.write_bytes(pickle.dumps(UserThing(1), protocol=4))
    with pytest.raises(DisallowedGlobalError) as info:
        aisbom.safe_load(path, sandbox="never")
    assert f"aisbom.safe_load({str(path)!r}, allow={[USER_NAME]!r})" in str(info.value)
    with aisbom.allowed(USER_NAME):
        assert_same(aisbom.safe_load(path, sandbox="never"), pickle.loads(path.read_bytes()))


@pytest.mark.parametrize("proto", [0, 1])
def test_user_class_protocol0_hint_loads(proto):
    """Protocols 0/1 build objects through copyreg._reconstructor: the hint must list
    everything needed, and following it must load the object."""
    data = pickle.dumps(UserThing("x"), protocol=proto)
    err = refused(data, DisallowedGlobalError, sandbox="never")
    assert USER_NAME in hint_of(err)
    assert_same(aisbom.safe_loads(data, allow=hint_of(err), sandbox="never"), pickle.loads(data))


def test_allowed_does_not_leak_into_other_threads():
    data = pickle.dumps(UserThing(1), protocol=2)
    seen = []
    with aisbom.allowed(UserThing):
        aisbom.safe_loads(data, sandbox="never")
        t = threading.Thread(target=lambda: seen.append(_try(data)))
        t.start()
        t.join()
    assert seen == ["DisallowedGlobalError"]


def _try(data):
    try:
        aisbom.safe_loads(data, sandbox="never")
        return "loaded"
    except Exception as e:  # noqa: BLE001
        return type(e).__name__


def test_allowing_one_class_does_not_allow_another():
    data = pickle.dumps([UserThing(1), WithState()], protocol=4)
    err = refused(data, DisallowedGlobalError, sandbox="never", allow=[UserThing])
    assert err.global_name == f"{WithState.__module__}.WithState"


def test_user_class_with_setstate_and_slots():
    data = pickle.dumps(WithState(), protocol=2)
    got = aisbom.safe_loads(data, allow=[WithState], sandbox="never")
    assert_same(got, pickle.loads(data))
    assert got.restored is True
    s = Slotted()
    s.x, s.y = 1, [2]
    data = pickle.dumps(s, protocol=4)
    got = aisbom.safe_loads(data, allow=[Slotted], sandbox="never")
    assert (got.x, got.y) == (1, [2])


def test_allowed_user_class_state_cannot_set_dunders():
    """BUILD on an allowed class without __setstate__ still refuses dunder attributes."""
    data = pickle_of(GLOBAL(UserThing.__module__, "UserThing") + EMPTY_TUPLE + NEWOBJ
                     + EMPTY_DICT + SHORT_BINUNICODE("__class__") + GLOBAL("builtins", "dict") + SETITEM + BUILD)
    with pytest.raises(UnsafeModelError):
        aisbom.safe_loads(data, allow=[UserThing], sandbox="never")


def test_whole_module_hint_loads_the_model(tmp_path):
    torch = pytest.importorskip("torch")
    model = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.ReLU(), torch.nn.Linear(3, 1))
    path = tmp_path / "model.pt"
    torch.save(model, path)
    with pytest.raises(DisallowedGlobalError) as info:
        aisbom.safe_load(path, sandbox="never")
    names = hint_of(info.value)
    assert "torch.nn.modules.linear.Linear" in names and "torch.nn.modules.container.Sequential" in names
    got = aisbom.safe_load(path, allow=names, sandbox="never")
    want = torch.load(path, weights_only=False)
    assert type(got) is torch.nn.Sequential
    x = torch.randn(4, 2)
    assert torch.equal(got(x), want(x))
    assert_same(got.state_dict(), want.state_dict())


def test_allow_spec_errors():
    data = pickle.dumps(1)
    with pytest.raises(ValueError):
        aisbom.safe_loads(data, allow=["no_such_module_xyz.Thing"], sandbox="never")
    with pytest.raises((ValueError, TypeError)):
        with aisbom.allowed("not a dotted name"):
            pass


# ------------------------------------------------------------------ blocklisted callables in allow=


EVAL_42 = pickle_of(GLOBAL("builtins", "eval") + BINUNICODE("6*7") + TUPLE1 + REDUCE)


@pytest.mark.parametrize("spec", [eval, "builtins.eval", os.system, "os.system", "posix.system", builtins.exec])
def test_allowing_a_blocklisted_callable_needs_the_loud_option(spec):
    with nothing_runs():
        with pytest.raises(ValueError, match="i_know_this_runs_code"):
            aisbom.safe_loads(EVAL_42, allow=[spec], sandbox="never")
        with pytest.raises(ValueError, match="i_know_this_runs_code"):
            with aisbom.allowed(spec):
                aisbom.safe_loads(pickle.dumps([1]), sandbox="never")


def test_loud_option_really_allows():
    assert aisbom.safe_loads(EVAL_42, allow=[eval], i_know_this_runs_code=True, sandbox="never") == 42
    # the option alone allows nothing
    refused(EVAL_42, MaliciousModelError, i_know_this_runs_code=True, sandbox="never")


# ------------------------------------------------------------------ caps


def bounded(fn, seconds: float, megabytes: float):
    """Run fn(); assert it took < seconds and traced < megabytes of Python memory at peak."""
    tracemalloc.start()
    t = time.monotonic()
    try:
        try:
            result, exc = fn(), None
        except Exception as e:  # noqa: BLE001
            result, exc = None, e
    finally:
        elapsed = time.monotonic() - t
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert elapsed < seconds, f"took {elapsed:.2f}s"
    assert peak < megabytes * 2**20, f"peak {peak / 2**20:.1f} MiB"
    return result, exc


def test_stack_depth_cap():
    data = PROTO(2) + NONE * (2**24 + 1) + STOP
    _, exc = bounded(lambda: aisbom.safe_loads(data, sandbox="never"), 10, 12 * len(data) / 2**20)
    assert isinstance(exc, MalformedModelError), repr(exc)
    assert isinstance(exc, LimitExceededError), repr(exc)


def test_open_marks_cap():
    data = PROTO(2) + MARK * (2**24 + 1) + NONE + STOP
    _, exc = bounded(lambda: aisbom.safe_loads(data, sandbox="never"), 10, 12 * len(data) / 2**20)
    assert isinstance(exc, LimitExceededError), repr(exc)


def test_vm_memo_and_stack_caps_name_opcode_and_offset():
    """The VM's caps (the defaults are 2**24 stack items and 2**26 memo entries; set
    small here) raise LimitExceededError at the opcode that crosses them."""
    from aisbom import _core

    data = PROTO(4) + (NONE + MEMOIZE + POP) * 200 + NONE + STOP
    assert _core.unpickle(data, {})[0] is None  # the harness: loads under the default caps
    with pytest.raises(LimitExceededError) as info:
        _core.unpickle(data, {}, max_memo=100)
    assert info.value.opcode == "MEMOIZE" and info.value.offset == 2 + 3 * 100 + 1
    with pytest.raises(LimitExceededError) as info:
        _core.unpickle(PROTO(2) + NONE * 50 + STOP, {}, max_stack=10)
    assert info.value.opcode == "NONE" and info.value.offset == 2 + 10


def test_billion_laughs_memo_expansion_stays_linear():
    """Each list holds 10 references to the previous one: 10**200 leaves if expanded."""
    p = PROTO(4) + EMPTY_LIST + MEMOIZE
    for i in range(200):
        p += MARK + BINGET(i) * 10 + LIST + MEMOIZE
    data = p + STOP
    got, exc = bounded(lambda: aisbom.safe_loads(data, sandbox="never"), 2, 5)
    assert exc is None, repr(exc)
    assert len(got) == 10 and all(x is got[0] for x in got)  # shared, not copied
    assert_same(got, pickle.loads(data))


def test_dup_expansion_stays_linear():
    data = PROTO(2) + EMPTY_LIST + DUP * 3_000_000 + STOP
    _, exc = bounded(lambda: aisbom.safe_loads(data, sandbox="never"), 5, 12 * len(data) / 2**20)
    assert exc is None or isinstance(exc, MalformedModelError), repr(exc)


def test_sparse_memo_indices_stay_small():
    """Huge LONG_BINPUT indices must not size a dense memo array by the index."""
    data = PROTO(4) + b"".join(NONE + b"r" + struct.pack("<I", 2**32 - 1 - i * 7919) + POP for i in range(20000)) + NONE + STOP
    _, exc = bounded(lambda: aisbom.safe_loads(data, sandbox="never"), 5, 30)
    assert exc is None, repr(exc)


@pytest.mark.parametrize(
    "data",
    [
        pickle_of(GLOBAL("builtins", "bytearray") + BININT(2**30) + TUPLE1 + REDUCE),
        pickle_of(GLOBAL("builtins", "bytes") + BININT(2**30) + TUPLE1 + REDUCE),
        pickle_of(GLOBAL("builtins", "set") + GLOBAL("builtins", "range") + BININT(2**30) + TUPLE1 + REDUCE + TUPLE1 + REDUCE),
        pickle_of(GLOBAL("builtins", "list") + GLOBAL("builtins", "range") + BININT(2**30) + TUPLE1 + REDUCE + TUPLE1 + REDUCE),
        pickle_of(GLOBAL("collections", "deque") + GLOBAL("builtins", "range") + BININT(2**30) + TUPLE1 + REDUCE + TUPLE1 + REDUCE),
        pickle_of(GLOBAL("collections", "Counter") + GLOBAL("builtins", "range") + BININT(2**30) + TUPLE1 + REDUCE + TUPLE1 + REDUCE),
        PROTO(4) + b"\x8e" + struct.pack("<Q", 2**40) + b"abc" + STOP,
        PROTO(4) + b"\x8d" + struct.pack("<Q", 2**63) + b"abc" + STOP,
        PROTO(5) + b"\x96" + struct.pack("<Q", 2**40) + STOP,
        PROTO(4) + b"\x8b" + struct.pack("<i", 2**31 - 1) + b"ab" + STOP,
        PROTO(4) + FRAME(2**62) + NONE + STOP,
    ],
    ids=["bytearray-size", "bytes-size", "set-range", "list-range", "deque-range", "counter-range", "BINBYTES8",
         "BINUNICODE8", "BYTEARRAY8", "LONG4", "FRAME"],
)
def test_allocation_bombs_are_refused_cheaply(data):
    _, exc = bounded(lambda: aisbom.safe_loads(data, sandbox="never"), 2, 16)
    assert isinstance(exc, MalformedModelError), repr(exc)


def test_many_small_tensor_headers_do_not_amplify(tmp_path):
    """A torch file whose one small storage is viewed by many tensors: memory stays
    proportional to the file (views share the storage, nothing is copied per view)."""
    torch = pytest.importorskip("torch")
    base = torch.zeros(1 << 18)  # 1 MiB
    views = [base[i:] for i in range(2000)]
    path = tmp_path / "views.pt"
    torch.save(views, path)
    got, exc = bounded(lambda: aisbom.safe_load(path, sandbox="never"), 10, 3 + os.path.getsize(path) * 3 / 2**20)
    assert exc is None, repr(exc)
    assert len({v.untyped_storage().data_ptr() for v in got}) == 1


# ------------------------------------------------------------------ tensors outside their storage (CVE-2026-24747)


def _int(n) -> bytes:
    if isinstance(n, float):
        return asm.BINFLOAT(n)
    return BININT(n) if -(2**31) <= n < 2**31 else LONG1(n)


def tensor_pkl(size, stride, offset, numel=6, key="0", storage="FloatStorage", hooks: bytes = b"") -> bytes:
    """data.pkl of {"w": _rebuild_tensor_v2(storage, offset, size, stride, False, hooks)}, as torch writes it."""
    pid = MARK + BINUNICODE("storage") + GLOBAL("torch", storage) + BINUNICODE(key) + BINUNICODE("cpu") + _int(numel) + TUPLE
    hooks = hooks or (GLOBAL("collections", "OrderedDict") + EMPTY_TUPLE + REDUCE)
    args = (pid + BINPERSID + _int(offset) + tuple_of([_int(s) for s in size]) + tuple_of([_int(s) for s in stride])
            + NEWFALSE + hooks)
    call = GLOBAL("torch._utils", "_rebuild_tensor_v2") + MARK + args + TUPLE + REDUCE
    return pickle_of(EMPTY_DICT + BINUNICODE("w") + call + SETITEM)


@pytest.fixture
def with_pkl(tmp_path):
    """with_pkl(data_pkl) -> a torch zip holding the 6 floats 0..5 as data/0, with that data.pkl."""
    torch = pytest.importorskip("torch")
    src = tmp_path / "src.pt"
    torch.save({"w": torch.arange(6, dtype=torch.float32)}, src)
    n = [0]

    def make(pkl: bytes) -> Path:
        n[0] += 1
        dst = tmp_path / f"edited{n[0]}.pt"
        rewrite_zip(src, dst, lambda name, data: pkl if name.endswith("/data.pkl") else data)
        return dst

    return make


def test_hand_built_data_pkl_control(with_pkl):
    """The harness itself: an honest view loads, equal to torch.load."""
    torch = pytest.importorskip("torch")
    path = with_pkl(tensor_pkl((2, 3), (3, 1), 0))
    got = aisbom.safe_load(path, sandbox="never")
    assert_same(got, torch.load(path, weights_only=True))
    assert got["w"].tolist() == [[0, 1, 2], [3, 4, 5]]
    path = with_pkl(tensor_pkl((0,), (1,), 6))  # an empty view at the very end is legal
    assert aisbom.safe_load(path, sandbox="never")["w"].numel() == 0


OUT_OF_BOUNDS = {
    "size-too-big": ((7,), (1,), 0),
    "2d-past-end": ((2, 3), (3, 2), 0),
    "offset-past-end": ((1,), (1,), 6),
    "offset-plus-size": ((2,), (1,), 5),
    "huge-stride": ((2, 2), (1, 2**40), 0),
    "huge-size": ((2**31,), (1,), 0),
    "zero-d-past-end": ((), (), 6),
    "empty-offset-far": ((0,), (1,), 10**9),
    "negative-offset": ((1,), (1,), -1),
}

# Metadata no tensor can have (torch.load fails on it too): refused as malformed.
MALFORMED_VIEWS = {
    "negative-stride": ((2,), (-1,), 1),
    "negative-size": ((-1,), (1,), 0),
    "rank-mismatch": ((2, 3), (1,), 0),
    "float-size": ((2.0,), (1,), 0),
}


@pytest.mark.parametrize("source", ["path", "bytes"])
@pytest.mark.parametrize("case", list(OUT_OF_BOUNDS))
def test_tensor_outside_its_storage(with_pkl, case, source):
    size, stride, offset = OUT_OF_BOUNDS[case]
    path = with_pkl(tensor_pkl(size, stride, offset))
    with Unchanged(path), nothing_runs(path):
        with pytest.raises(MalformedModelError) as info:
            if source == "path":
                aisbom.safe_load(path, sandbox="never")
            else:
                aisbom.safe_loads(path.read_bytes(), sandbox="never")
    assert "storage" in str(info.value), str(info.value)


@pytest.mark.parametrize("case", list(MALFORMED_VIEWS))
def test_malformed_tensor_metadata(with_pkl, case):
    size, stride, offset = MALFORMED_VIEWS[case]
    path = with_pkl(tensor_pkl(size, stride, offset))
    with nothing_runs(path):
        with pytest.raises(MalformedModelError):
            aisbom.safe_load(path, sandbox="never")
        with pytest.raises(MalformedModelError):
            aisbom.safe_loads(path.read_bytes(), sandbox="never", tensors="numpy")


@pytest.mark.parametrize("case", ["size-too-big", "offset-past-end", "huge-stride"])
def test_tensor_outside_its_storage_numpy_mode(with_pkl, case):
    size, stride, offset = OUT_OF_BOUNDS[case]
    path = with_pkl(tensor_pkl(size, stride, offset))
    with pytest.raises(MalformedModelError) as info:
        aisbom.safe_loads(path.read_bytes(), sandbox="never", tensors="numpy")
    assert "storage" in str(info.value)


def test_policy_refusals_name_opcode_and_offset(with_pkl):
    """Refusals raised by the table's checked implementations (not by the VM's own
    opcode checks) also carry the opcode and byte offset of the call that failed."""
    cases = [
        pickle_of(GLOBAL("builtins", "bytearray") + BININT(2**30) + TUPLE1 + REDUCE),
        pickle_of(GLOBAL("builtins", "set") + GLOBAL("builtins", "range") + BININT(9) + TUPLE1 + REDUCE + TUPLE1 + REDUCE),
        pickle_of(GLOBAL("collections", "OrderedDict") + EMPTY_TUPLE + REDUCE
                  + EMPTY_DICT + SHORT_BINUNICODE("__class__") + GLOBAL("builtins", "dict") + SETITEM + BUILD),
        with_pkl(tensor_pkl((7,), (1,), 0)).read_bytes(),
    ]
    for data in cases:
        with pytest.raises((MalformedModelError, UnsafeModelError)) as info:
            aisbom.safe_loads(data, sandbox="never")
        err = info.value
        assert err.opcode in ("REDUCE", "BUILD"), f"{err!r}: opcode {err.opcode!r}"
        assert isinstance(err.offset, int), f"{err!r}: offset {err.offset!r}"


def test_storage_record_size_must_match_the_persistent_id(with_pkl):
    path = with_pkl(tensor_pkl((6,), (1,), 0, numel=1000))
    with pytest.raises(MalformedModelError):
        aisbom.safe_loads(path.read_bytes(), sandbox="never")


@pytest.mark.parametrize("key", ["../data.pkl", "/etc/passwd", "1"])
def test_storage_key_naming_another_record(with_pkl, key):
    path = with_pkl(tensor_pkl((1,), (1,), 0, numel=1, key=key))
    with pytest.raises(MalformedModelError):
        aisbom.safe_loads(path.read_bytes(), sandbox="never")


def test_backward_hooks_are_refused(with_pkl):
    """A non-empty backward-hooks dict would run its callables during backward()."""
    hooks = (GLOBAL("collections", "OrderedDict") + EMPTY_TUPLE + REDUCE
             + BININT(0) + GLOBAL("collections", "OrderedDict") + SETITEM)
    path = with_pkl(tensor_pkl((6,), (1,), 0, hooks=hooks))
    with pytest.raises(UnsafeModelError) as info:
        aisbom.safe_loads(path.read_bytes(), sandbox="never")
    assert "hook" in str(info.value)


# ------------------------------------------------------------------ TorchScript


def test_torchscript_is_refused_clearly(tmp_path):
    torch = pytest.importorskip("torch")
    path = tmp_path / "scripted.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), path)
    with Unchanged(path), nothing_runs(path):
        with pytest.raises(UnsafeModelError) as info:
            aisbom.safe_load(path, sandbox="never")
    msg = str(info.value)
    assert "TorchScript" in msg
    # no allow= line can load a TorchScript archive: the message must not offer one
    assert "allow=" not in msg, msg


# ------------------------------------------------------------------ truncated files


def _prefixes(n: int, step: int = 1):
    return sorted(set(range(0, n, step)) | {n - 1, n - 2, n // 2})


@pytest.mark.parametrize("proto", [0, 2, 4, 5])
def test_every_prefix_of_a_pickle_is_malformed(proto):
    data = pickle.dumps({"a": [1, 2, (3, "x" * 20)], "b": {1.5, None}, "c": b"\x00" * 10}, protocol=proto)
    for n in _prefixes(len(data)):
        with pytest.raises(MalformedModelError):
            aisbom.safe_loads(data[:n], sandbox="never")


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_truncated_torch_checkpoints(tmp_path, fmt):
    torch = pytest.importorskip("torch")
    path = tmp_path / "full.pt"
    torch.save({"w": torch.randn(16, 16), "b": torch.arange(5)}, path,
               _use_new_zipfile_serialization=(fmt == "zip"))
    data = path.read_bytes()
    step = max(1, len(data) // 150)
    for n in _prefixes(len(data), step):
        cut = tmp_path / "cut.pt"
        cut.write_bytes(data[:n])
        with pytest.raises(MalformedModelError):
            aisbom.safe_load(cut, sandbox="never")


def test_truncated_storage_record(tmp_path):
    torch = pytest.importorskip("torch")
    src = tmp_path / "full.pt"
    torch.save({"w": torch.randn(10)}, src)
    dst = tmp_path / "short.pt"
    rewrite_zip(src, dst, lambda name, data: data[:-4] if name.endswith("/data/0") else data)
    assert len(member(dst, "/data/0")) == 36
    with pytest.raises(MalformedModelError):
        aisbom.safe_load(dst, sandbox="never")


def test_truncated_npy_npz_and_gzip(tmp_path):
    import gzip

    np = pytest.importorskip("numpy")
    np.save(tmp_path / "a.npy", np.arange(1000.0))
    np.savez(tmp_path / "a.npz", a=np.arange(1000.0), b=np.ones(3))
    (tmp_path / "a.pkl.gz").write_bytes(gzip.compress(pickle.dumps(list(range(1000)), 4)))
    for name in ("a.npy", "a.npz", "a.pkl.gz"):
        data = (tmp_path / name).read_bytes()
        for n in (len(data) - 1, len(data) - 8, len(data) // 2, 20):
            with pytest.raises(MalformedModelError):
                aisbom.safe_loads(data[:n], sandbox="never")


def test_empty_input():
    with pytest.raises(MalformedModelError):
        aisbom.safe_loads(b"", sandbox="never")
