"""aisbom.safe_load on plain pickles, numpy pickles, .npy/.npz and compressed
pickles: it returns what pickle.loads / numpy.load return.

The references are the real libraries loading files the test made itself
(benign), compared with loader_helpers.assert_same: exact types, keys and
their order, NaN-aware values, -0.0, numpy dtypes/memory order/bytes, and
object identity (the pickle memo: an object held twice stays one object,
recursive containers stay recursive).
"""
from __future__ import annotations

import bz2
import collections
import gzip
import io
import lzma
import os
import pickle

import pytest

import aisbom
from asm import BINSTRING, GLOBAL, MARK, REDUCE, SHORT_BINSTRING, STRING, TUPLE, TUPLE1, pickle_of
from loader_helpers import Unchanged, assert_same, mapping_of

np = pytest.importorskip("numpy")


def loads(data, **kw):
    return aisbom.safe_loads(data, sandbox="never", **kw)


PROTOCOLS = list(range(pickle.HIGHEST_PROTOCOL + 1))
assert PROTOCOLS == [0, 1, 2, 3, 4, 5]


# ------------------------------------------------------------------ plain Python data


def _recursive_list():
    x = [1]
    x.append(x)
    return x


def _recursive_dict():
    d = {"k": 1}
    d["self"] = d
    return d


def _tuple_through_list():
    t = ([], "x")
    t[0].append(t)
    return t


def _shared():
    inner = [1, 2]
    s = "a shared string that is long enough not to be interned"
    return {"a": inner, "b": inner, "c": (inner, inner), "s1": s, "s2": s}


PLAIN = {
    "none-bools": [None, True, False],
    "small-ints": [0, 1, -1, 127, 128, 255, 256, 65535, 65536, -65536],
    "int-edges": [2**31 - 1, -(2**31), 2**31, 2**32, 2**63 - 1, -(2**63), 2**63, 2**64],
    "big-ints": [2**1000, -(2**1000) + 7, 10**400, -(10**400)],
    "floats": [0.0, -0.0, 1.5, -2.25, 1e-310, 5e-324, 1.7976931348623157e308, 0.1],
    "nan-inf": [float("nan"), float("inf"), -float("inf")],
    "unicode": ["", "ascii", "héllo wörld", "✓ \U0001F600 \u2028", "\x00\n\r\\'\"", "x" * 300, "\udc80"],
    "bytes": [b"", b"\x00\xff\x80", b"x" * 300, bytes(range(256))],
    "bytearray": [bytearray(b""), bytearray(b"\x00abc\xff")],
    "sets": [set(), {1, "a", (2, 3)}, frozenset(), frozenset({1, 2.5, "z"})],
    "complex": [1 + 2j, complex(0, -0.0), complex(float("inf"), float("nan"))],
    "containers": [(), [], {}, (1,), (1, 2), (1, 2, 3), (1, 2, 3, 4), [[[]]], {"a": {"b": {"c": [1, (2,)]}}}],
    "dict-keys": {1: "int", 2.5: "float", (1, 2): "tuple", "s": "str", b"b": "bytes", None: "none", False: "bool",
                  frozenset({1}): "frozenset"},
    "ordered-dict": collections.OrderedDict([("z", 1), ("a", [2]), ("m", collections.OrderedDict(x=None))]),
    "counter": collections.Counter("abracadabra"),
    "deque": collections.deque([1, "two", (3,)]),
    "deque-maxlen": collections.deque([1, 2, 3], maxlen=5),
    "defaultdict-list": collections.defaultdict(list, {"a": [1, 2], "b": []}),
    "defaultdict-int": collections.defaultdict(int, {"x": 3}),
    "defaultdict-none": collections.defaultdict(None, {"x": 3}),
    "range-slice": [range(0, 10, 3), range(5), slice(1, None, 2)],
    "shared": _shared(),
    "recursive-list": _recursive_list(),
    "recursive-dict": _recursive_dict(),
    "tuple-through-list": _tuple_through_list(),
    "deep": [[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]],
    "long-list": list(range(5000)),
}


# The aggregate tests below leave out the collections whose items arrive through
# APPEND(S)/SETITEMS on a non-builtin container, so they test the rest on their own.
PLAIN_CORE = {k: v for k, v in PLAIN.items() if not k.startswith(("deque", "defaultdict"))}


@pytest.mark.parametrize("proto", PROTOCOLS)
@pytest.mark.parametrize("name", list(PLAIN))
def test_plain_data_equals_pickle(name, proto):
    data = pickle.dumps(PLAIN[name], protocol=proto)
    assert_same(loads(data), pickle.loads(data))


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_all_plain_data_in_one_pickle_python_pickler(proto):
    """The pure-Python pickler writes other opcode sequences (e.g. frames) than _pickle."""
    buf = io.BytesIO()
    pickle._Pickler(buf, protocol=proto).dump(PLAIN_CORE)
    data = buf.getvalue()
    assert_same(loads(data), pickle.loads(data))


def test_recursion_is_preserved():
    got = loads(pickle.dumps(PLAIN["recursive-list"], protocol=4))
    assert got[1] is got
    got = loads(pickle.dumps(PLAIN["tuple-through-list"], protocol=2))
    assert got[0][0] is got


def test_defaultdict_factory_is_the_real_builtin():
    """The factory is `list` itself (re-pickling the loaded object must not name aisbom internals)."""
    for factory in (list, int, dict, set, None):
        data = pickle.dumps(collections.defaultdict(factory), protocol=2)
        got = loads(data)
        assert got.default_factory is factory
        assert b"aisbom" not in pickle.dumps(got)


def test_builtin_types_as_values_are_the_real_types():
    """A checkpoint may hold classes as plain values (a config's `type`, say)."""
    obj = {"types": [list, dict, tuple, set, frozenset, int, float, str, bool, bytes, complex]}
    for proto in (2, 4):
        data = pickle.dumps(obj, protocol=proto)
        got = loads(data)
        assert got["types"] == obj["types"]


def test_deque_and_defaultdict_keep_behaviour():
    got = loads(pickle.dumps({"d": collections.deque([1, 2, 3], maxlen=3), "dd": collections.defaultdict(list)}, 2))
    got["d"].append(4)
    assert list(got["d"]) == [2, 3, 4]
    got["dd"]["new"].append(1)
    assert got["dd"] == {"new": [1]}


@pytest.mark.parametrize(
    "encoding, expected",
    [("latin1", "\xe9t\xe9"), ("bytes", b"\xe9t\xe9"), ("utf-8", None)],
)
def test_python2_str_encoding(encoding, expected):
    """A Python 2 `str` (SHORT_BINSTRING/STRING/BINSTRING) decodes with encoding= as in pickle.loads."""
    for body in (SHORT_BINSTRING(b"\xe9t\xe9"), BINSTRING(b"\xe9t\xe9"), STRING(b"\xe9t\xe9")):
        data = pickle_of(MARK + body + SHORT_BINSTRING(b"ok") + TUPLE)
        if expected is None:
            with pytest.raises(UnicodeDecodeError):
                pickle.loads(data, encoding=encoding)
            with pytest.raises(aisbom.MalformedModelError):
                loads(data, encoding=encoding)
        else:
            want = pickle.loads(data, encoding=encoding)
            assert want[0] == expected
            assert_same(loads(data, encoding=encoding), want)


def test_python2_ascii_str_default_encoding():
    data = pickle_of(SHORT_BINSTRING(b"plain ascii"))
    assert_same(loads(data), pickle.loads(data))
    assert loads(data) == "plain ascii"


def test_python2_builtin_names_map():
    """Python-2 module names (__builtin__.set) resolve as pickle.loads resolves them."""
    data = pickle_of(GLOBAL("__builtin__", "set") + MARK + SHORT_BINSTRING(b"a") + b"l" + TUPLE1 + REDUCE)
    assert_same(loads(data), pickle.loads(data))
    assert loads(data) == {"a"}


# ------------------------------------------------------------------ numpy arrays and scalars in pickles


def _numpy_samples():
    x = np.arange(24, dtype=np.float64).reshape(4, 6) / 7
    return {
        "float64": x,
        "float32-nan": np.array([np.nan, -0.0, np.inf, 1.5], dtype=np.float32),
        "float16": np.linspace(-2, 2, 9).astype(np.float16),
        "longdouble": np.array([1.5, -3.25], dtype=np.longdouble),
        "ints": np.array([-128, 0, 127], dtype=np.int8),
        "uint64": np.array([0, 2**64 - 1], dtype=np.uint64),
        "big-endian": np.arange(5, dtype=">i4"),
        "bool": np.array([[True, False], [False, True]]),
        "complex": np.array([1 + 2j, np.nan - 1j], dtype=np.complex128),
        "complex64": np.array([1 + 2j], dtype=np.complex64),
        "unicode": np.array(["ab", "ç✓", ""]),
        "bytes": np.array([b"ab", b"\x00\xff"]),
        "datetime": np.array(["2020-01-01", "NaT", "1969-12-31"], dtype="M8[D]"),
        "timedelta": np.array([1, -2, 3], dtype="m8[ms]"),
        "structured": np.array([(1.5, [1, 2], "ab"), (-1.0, [3, 4], "xyz")],
                               dtype=[("x", "<f4"), ("y", "<i8", (2,)), ("name", "U4")]),
        "nested-structured": np.zeros(2, dtype=[("p", [("a", "u1"), ("b", ">f8")]), ("q", "?")]),
        "object": np.array([1, "a", None, [1, 2], {"k": (3,)}, 2.5], dtype=object),
        "object-2d-arrays": np.array([[np.arange(3), None], [{"a": 1}, "x"]], dtype=object),
        "fortran": np.asfortranarray(x),
        "zero-d": np.array(3.25),
        "zero-d-int": np.array(7, dtype=np.int16),
        "empty": np.empty((0, 3), dtype=np.float32),
        "empty-object": np.empty((0,), dtype=object),
        "non-contiguous": x[::2, 1::3],
        "big": np.arange(100_000, dtype=np.int32),
    }


NUMPY = _numpy_samples()


@pytest.mark.parametrize("proto", PROTOCOLS)
@pytest.mark.parametrize("name", list(NUMPY))
def test_numpy_arrays_equal_pickle(name, proto):
    data = pickle.dumps(NUMPY[name], protocol=proto)
    got = loads(data)
    want = pickle.loads(data)
    assert_same(got, want)
    assert got.flags.writeable == want.flags.writeable


NUMPY_SCALARS = {
    "float64": np.float64(1.25),
    "float64-nan": np.float64("nan"),
    "float32": np.float32(-0.0),
    "float16": np.float16(65504),
    "longdouble": np.longdouble(2.5),
    "int8": np.int8(-5),
    "int64": np.int64(-(2**63)),
    "uint64": np.uint64(2**64 - 1),
    "bool": np.bool_(True),
    "complex128": np.complex128(1 - 2j),
    "datetime": np.datetime64("2021-03-04T05:06:07", "s"),
    "timedelta": np.timedelta64(-3, "h"),
    "str": np.str_("héllo"),
    "bytes": np.bytes_(b"\x00x"),
    "void": np.zeros(1, dtype=[("x", "<f4"), ("y", "i2")])[0],
}


@pytest.mark.parametrize("proto", PROTOCOLS)
@pytest.mark.parametrize("name", list(NUMPY_SCALARS))
def test_numpy_scalars_equal_pickle(name, proto):
    data = pickle.dumps(NUMPY_SCALARS[name], protocol=proto)
    assert_same(loads(data), pickle.loads(data))


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_numpy_dtypes_and_mixed_container(proto):
    obj = {
        "dtypes": [np.dtype("f4"), np.dtype(">i8"), np.dtype([("a", "<i2"), ("b", "U3")]), np.dtype("M8[ns]"),
                   np.dtype(object)],
        "arrays": [NUMPY["float64"], NUMPY["float64"]],  # one array held twice
        "scalars": {"n": np.int32(3), "f": np.float32(0.5)},
    }
    data = pickle.dumps(obj, protocol=proto)
    got = loads(data)
    assert_same(got, pickle.loads(data))
    assert got["arrays"][0] is got["arrays"][1]


# ------------------------------------------------------------------ .npy and .npz files


NPY_NUMERIC = ["float64", "float32-nan", "float16", "ints", "uint64", "big-endian", "bool", "complex", "unicode",
               "bytes", "datetime", "timedelta", "structured", "nested-structured", "fortran", "zero-d", "empty",
               "non-contiguous", "big"]


@pytest.mark.parametrize("name", NPY_NUMERIC)
def test_npy_numeric_equals_numpy_load(tmp_path, name):
    path = tmp_path / "a.npy"
    np.save(path, NUMPY[name], allow_pickle=False)
    with Unchanged(path):
        got = aisbom.safe_load(path, sandbox="never")
    assert_same(got, np.load(path, allow_pickle=False))
    assert aisbom.scan(path).format == "npy"


@pytest.mark.parametrize("name", ["object", "object-2d-arrays", "empty-object"])
def test_npy_object_equals_numpy_load(tmp_path, name):
    path = tmp_path / "o.npy"
    np.save(path, NUMPY[name], allow_pickle=True)
    with Unchanged(path):
        got = aisbom.safe_load(path, sandbox="never")
    assert_same(got, np.load(path, allow_pickle=True))


def test_npy_mmap_is_backed_by_the_file(tmp_path):
    path = tmp_path / "big.npy"
    arr = np.arange(200_000, dtype=np.float64)
    np.save(path, arr)
    with Unchanged(path):
        got = aisbom.safe_load(path, mmap=True, sandbox="never")
    assert_same(got, np.load(path))
    where = mapping_of(got.__array_interface__["data"][0])
    assert os.path.realpath(where) == os.path.realpath(path)
    assert not got.flags.writeable or got.base is not None


def test_npy_from_file_object_and_bytes(tmp_path):
    path = tmp_path / "a.npy"
    np.save(path, NUMPY["structured"])
    want = np.load(path)
    with open(path, "rb") as f:
        assert_same(aisbom.safe_load(f, sandbox="never"), want)
    assert_same(loads(path.read_bytes()), want)
    assert_same(aisbom.safe_load(io.BytesIO(path.read_bytes()), sandbox="never"), want)


@pytest.mark.parametrize("saver", ["savez", "savez_compressed"])
def test_npz_equals_numpy_load(tmp_path, saver):
    path = tmp_path / "a.npz"
    arrays = {k: NUMPY[k] for k in ("float64", "structured", "fortran", "zero-d", "empty", "unicode", "bool", "big")}
    getattr(np, saver)(path, *[NUMPY["ints"], NUMPY["complex"]], **arrays)
    with Unchanged(path):
        got = aisbom.safe_load(path, sandbox="never")
    with np.load(path, allow_pickle=False) as z:
        want = {k: z[k] for k in z.files}
    assert sorted(want) == sorted(["arr_0", "arr_1", *arrays])
    assert_same(got, want)


@pytest.mark.parametrize("saver", ["savez", "savez_compressed"])
def test_npz_with_object_arrays_equals_numpy_load(tmp_path, saver):
    path = tmp_path / "o.npz"
    getattr(np, saver)(path, obj=NUMPY["object"], num=NUMPY["float64"], obj2=NUMPY["object-2d-arrays"])
    got = aisbom.safe_load(path, sandbox="never")
    with np.load(path, allow_pickle=True) as z:
        want = {k: z[k] for k in z.files}
    assert_same(got, want)


def test_npz_object_array_with_disallowed_global_is_refused(tmp_path, canary):
    class_name = f"{__name__}.Thing"
    path = tmp_path / "bad.npz"
    np.savez(path, ok=np.arange(3), bad=np.array([Thing()], dtype=object))
    with pytest.raises(aisbom.UnsafeModelError) as info:
        aisbom.safe_load(path, sandbox="never")
    assert info.value.global_name == class_name or class_name in str(info.value)


class Thing:
    pass


# ------------------------------------------------------------------ compressed pickles


@pytest.mark.parametrize("codec", ["gzip", "bz2", "xz"])
@pytest.mark.parametrize("proto", [0, 2, 5])
def test_compressed_plain_pickles(tmp_path, codec, proto):
    obj = {"plain": PLAIN["containers"], "big": PLAIN["big-ints"], "arr": NUMPY["structured"], "nan": float("nan")}
    raw = pickle.dumps(obj, protocol=proto)
    packed = {"gzip": gzip.compress, "bz2": bz2.compress, "xz": lzma.compress}[codec](raw)
    assert packed[:2] != raw[:2]
    path = tmp_path / f"obj.pkl.{codec}"
    path.write_bytes(packed)
    with Unchanged(path):
        got = aisbom.safe_load(path, sandbox="never")
    assert_same(got, pickle.loads(raw))
    assert_same(loads(packed), pickle.loads(raw))


def test_compressed_torch_checkpoint(tmp_path):
    torch = pytest.importorskip("torch")
    b = io.BytesIO()
    t = torch.randn(3, 4)
    torch.save({"t": t, "tt": t.t()}, b, _use_new_zipfile_serialization=False)
    path = tmp_path / "legacy.pt.gz"
    path.write_bytes(gzip.compress(b.getvalue()))
    got = aisbom.safe_load(path, sandbox="never")
    assert_same(got, torch.load(io.BytesIO(b.getvalue()), weights_only=False))


# ------------------------------------------------------------------ inputs


def test_path_file_object_and_bytes_agree(tmp_path):
    data = pickle.dumps(PLAIN_CORE, protocol=4)
    path = tmp_path / "p.pkl"
    path.write_bytes(data)
    want = pickle.loads(data)
    assert_same(aisbom.safe_load(path, sandbox="never"), want)
    assert_same(aisbom.safe_load(str(path), sandbox="never"), want)
    with open(path, "rb") as f:
        assert_same(aisbom.safe_load(f, sandbox="never"), want)
    assert_same(aisbom.safe_load(io.BytesIO(data), sandbox="never"), want)
    assert_same(loads(bytearray(data)), want)
    assert_same(loads(memoryview(data)), want)


def test_only_the_first_pickle_is_returned_like_pickle_load(tmp_path):
    """pickle.load reads one pickle; safe_load returns that one (trailing benign pickles are data)."""
    data = pickle.dumps({"first": 1}, 2) + pickle.dumps(["second"], 2)
    assert_same(loads(data), pickle.loads(data))


# ---------------------------------------------------------------- leaks


def _growth(action, rounds: int = 1000) -> int:
    """Bytes still allocated after `rounds` more runs of action, warmed up first."""
    import gc
    import tracemalloc

    for _ in range(30):
        action()
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(rounds):
            action()
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


def _refused(data: bytes) -> None:
    try:
        aisbom.safe_loads(data, sandbox="never")
    except aisbom.AisbomError:
        return
    raise AssertionError("loaded")


def test_loads_and_refusals_release_what_they_build():
    """The C unpickler owns references on every path: a leaked reference per
    load (or per refusal, where half-built objects are dropped) grows without
    bound; 1,000 rounds of a leak of one small int (28 bytes) show up here."""
    rich = pickle.dumps({"a": [1, 2.5, "x" * 50, b"y" * 50, (3, None)], "b": collections.OrderedDict(c={1, 2})},
                        protocol=4)
    broken = rich[:-7]  # refused as malformed, mid-build
    disallowed = pickle_of(MARK + STRING("keep") + GLOBAL("collections", "UserDict") + TUPLE + REDUCE)
    for name, action in (("clean", lambda: aisbom.safe_loads(rich)), ("malformed", lambda: _refused(broken)),
                         ("disallowed", lambda: _refused(disallowed))):
        grown = _growth(action)
        assert grown < 16 * 1024, f"{name}: {grown} bytes kept after 1,000 loads"
