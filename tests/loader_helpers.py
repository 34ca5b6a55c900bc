"""Helpers for the aisbom.safe_load tests (tests/test_load_*.py).

`assert_same(actual, expected)` walks two loaded objects side by side and
asserts they are the same down to the bytes: types, keys and their order,
attributes (an OrderedDict's `_metadata`), tensors' dtype/shape/stride/offset/
requires_grad/storage bytes, NaN-aware values, numpy arrays, and *sharing*:
two tensors of `actual` share one storage exactly when the corresponding two
of `expected` do, and an object that `expected` holds twice (the pickle memo)
is held twice by `actual` too.

`Unchanged(path)` asserts that a file's bytes and mtime are the same after a
block (safe_load must never write to its input, mmap=True included).

`SideEffects` records, through a CPython audit hook, every event during a
block that would mean code from a file ran: processes, exec/compile, writes,
sockets, imports of new modules... A refusal test asserts it saw nothing.
"""
from __future__ import annotations

import collections
import hashlib
import io
import math
import os
import struct
import sys
import threading
from pathlib import Path
from typing import Any, Dict, List, Tuple

try:
    import numpy as np
except ImportError:  # pragma: no cover
    np = None

try:
    import torch
except ImportError:  # pragma: no cover
    torch = None


# ------------------------------------------------------------------ structural equality


class _Walk:
    def __init__(self) -> None:
        self.tensors: List[Tuple[str, Any, Any]] = []  # (path, actual, expected)
        self.arrays: List[Tuple[str, Any, Any]] = []
        self.seen_exp: Dict[int, int] = {}  # id(expected) -> id(actual)
        self.seen_act: Dict[int, int] = {}
        self.keep: List[Any] = []  # keep walked objects alive so ids stay unique

    def identity(self, a: Any, e: Any, path: str) -> bool:
        """Record the pairing; True if this pair was already compared."""
        if isinstance(e, (int, float, str, bytes, bool, type(None), complex)) and not isinstance(e, (list, dict)):
            return False  # immutable atoms: CPython interns/caches them unpredictably
        ia, ie = id(a), id(e)
        self.keep += [a, e]
        if ie in self.seen_exp:
            assert self.seen_exp[ie] == ia, f"{path}: expected holds this object twice (shared), actual holds two copies"
            return True
        assert ia not in self.seen_act, f"{path}: actual reuses an object that expected holds as two distinct objects"
        self.seen_exp[ie] = ia
        self.seen_act[ia] = ie
        return False


def _float_same(a: float, b: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return struct.pack("<d", a) == struct.pack("<d", b)  # -0.0 vs 0.0 too


def assert_same(actual: Any, expected: Any, path: str = "obj") -> None:
    """Assert `actual` is `expected` in every observable way (see module doc)."""
    w = _Walk()
    _same(actual, expected, path, w)
    _assert_sharing(w.tensors)
    _assert_array_sharing(w.arrays)


def _same(a: Any, e: Any, path: str, w: _Walk) -> None:
    assert type(a) is type(e), f"{path}: type {type(a).__name__} != expected {type(e).__name__}"
    if w.identity(a, e, path):
        return
    if torch is not None and isinstance(e, torch.Tensor):
        _same_tensor(a, e, path, w)
        return
    if np is not None and isinstance(e, np.ndarray):
        _same_array(a, e, path, w)
        return
    if np is not None and isinstance(e, np.generic):
        assert a.dtype == e.dtype, f"{path}: numpy scalar dtype {a.dtype} != {e.dtype}"
        if e.dtype.hasobject:
            _same(a.item(), e.item(), path + ".item()", w)
        else:
            assert a.tobytes() == e.tobytes(), f"{path}: numpy scalar {a!r} != {e!r}"
        return
    if isinstance(e, float):
        assert _float_same(a, e), f"{path}: {a!r} != {e!r}"
        return
    if isinstance(e, complex):
        assert _float_same(a.real, e.real) and _float_same(a.imag, e.imag), f"{path}: {a!r} != {e!r}"
        return
    if isinstance(e, (str, bytes, bytearray, int, type(None))):
        assert a == e, f"{path}: {a!r:.200} != {e!r:.200}"
        return
    if torch is not None and isinstance(e, (torch.dtype, torch.device, torch.layout, torch.qscheme)):
        assert a == e, f"{path}: {a!r} != {e!r}"
        return
    if isinstance(e, (set, frozenset)):
        assert a == e, f"{path}: {a!r:.200} != {e!r:.200}"
        return
    if isinstance(e, collections.deque):
        assert a.maxlen == e.maxlen, f"{path}: deque maxlen {a.maxlen} != {e.maxlen}"
        assert len(a) == len(e), f"{path}: length {len(a)} != {len(e)}"
        for i, (x, y) in enumerate(zip(a, e)):
            _same(x, y, f"{path}[{i}]", w)
        return
    if isinstance(e, (list, tuple)):  # torch.Size and namedtuples too (type checked above)
        assert len(a) == len(e), f"{path}: length {len(a)} != {len(e)}"
        for i, (x, y) in enumerate(zip(a, e)):
            _same(x, y, f"{path}[{i}]", w)
        _same_attrs(a, e, path, w)
        return
    if isinstance(e, dict):
        assert list(a.keys()) == list(e.keys()), f"{path}: keys {list(a.keys())[:20]} != {list(e.keys())[:20]}"
        if isinstance(e, collections.defaultdict):
            assert a.default_factory is e.default_factory, f"{path}: default_factory {a.default_factory} != {e.default_factory}"
        for k in e:
            _same(a[k], e[k], f"{path}[{k!r}]", w)
        _same_attrs(a, e, path, w)
        return
    if isinstance(e, type) or callable(e) and not hasattr(e, "__dict__"):
        assert a is e, f"{path}: {a!r} is not {e!r}"
        return
    # any other object: its attributes
    _same_attrs(a, e, path, w)
    if not hasattr(e, "__dict__") and not hasattr(type(e), "__slots__"):
        assert a == e, f"{path}: {a!r:.200} != {e!r:.200}"


def _same_attrs(a: Any, e: Any, path: str, w: _Walk) -> None:
    da = getattr(a, "__dict__", None)
    de = getattr(e, "__dict__", None)
    if de is None and da is None:
        return
    da = dict(da or {})
    de = dict(de or {})
    assert sorted(da) == sorted(de), f"{path}: attributes {sorted(da)} != expected {sorted(de)}"
    for k in de:
        _same(da[k], de[k], f"{path}.{k}", w)


def _storage_bytes(t: Any) -> Any:
    u = t.untyped_storage()
    return torch.empty(0, dtype=torch.uint8).set_(u)


def _values_equal(a: Any, e: Any) -> bool:
    """NaN-aware, exact comparison of two dense tensors of one dtype."""
    if a.dtype.is_complex:
        if a.dtype == torch.complex32:
            a, e = a.to(torch.complex64), e.to(torch.complex64)
        return _values_equal(torch.view_as_real(a.resolve_conj()), torch.view_as_real(e.resolve_conj()))
    if a.dtype.is_floating_point:
        try:
            af, ef = a.to(torch.float64), e.to(torch.float64)  # exact for every float type torch has
        except (RuntimeError, NotImplementedError):
            # packed formats without arithmetic (float4_e2m1fn_x2): the storage bytes,
            # compared by the caller together with size/stride/offset, are the values
            return True
        na, ne = torch.isnan(af), torch.isnan(ef)
        if not torch.equal(na, ne):
            return False
        return torch.equal(af[~na], ef[~ne]) and torch.equal(torch.signbit(af[~na]), torch.signbit(ef[~ne]))
    try:
        return torch.equal(a, e)
    except (RuntimeError, NotImplementedError):  # bits8 & co.: see above
        return True


def _same_tensor(a: Any, e: Any, path: str, w: _Walk) -> None:
    assert a.dtype == e.dtype, f"{path}: dtype {a.dtype} != {e.dtype}"
    assert a.layout == e.layout, f"{path}: layout {a.layout} != {e.layout}"
    assert a.device == e.device, f"{path}: device {a.device} != {e.device}"
    assert tuple(a.shape) == tuple(e.shape), f"{path}: shape {tuple(a.shape)} != {tuple(e.shape)}"
    assert a.requires_grad == e.requires_grad, f"{path}: requires_grad {a.requires_grad} != {e.requires_grad}"
    assert a.is_quantized == e.is_quantized, f"{path}: is_quantized {a.is_quantized} != {e.is_quantized}"
    _same_attrs(a, e, path, w)
    if e.layout == torch.sparse_coo:
        assert a.is_coalesced() == e.is_coalesced(), f"{path}: is_coalesced differs"
        _same(a._indices(), e._indices(), path + "._indices()", _Walk())
        _same(a._values(), e._values(), path + "._values()", _Walk())
        return
    if e.layout in (torch.sparse_csr, torch.sparse_csc, torch.sparse_bsr, torch.sparse_bsc):
        if e.layout in (torch.sparse_csr, torch.sparse_bsr):
            pairs = [(a.crow_indices(), e.crow_indices(), "crow"), (a.col_indices(), e.col_indices(), "col")]
        else:
            pairs = [(a.ccol_indices(), e.ccol_indices(), "ccol"), (a.row_indices(), e.row_indices(), "row")]
        for x, y, n in pairs + [(a.values(), e.values(), "values")]:
            _same(x, y, f"{path}.{n}", _Walk())
        return
    assert a.stride() == e.stride(), f"{path}: stride {a.stride()} != {e.stride()}"
    assert a.storage_offset() == e.storage_offset(), f"{path}: storage offset {a.storage_offset()} != {e.storage_offset()}"
    assert a.is_conj() == e.is_conj() and a.is_neg() == e.is_neg(), f"{path}: conj/neg bits differ"
    if e.is_quantized:
        assert a.qscheme() == e.qscheme(), f"{path}: qscheme {a.qscheme()} != {e.qscheme()}"
        if e.qscheme() in (torch.per_tensor_affine, torch.per_tensor_symmetric):
            assert a.q_scale() == e.q_scale() and a.q_zero_point() == e.q_zero_point(), f"{path}: q params differ"
        else:
            assert a.q_per_channel_axis() == e.q_per_channel_axis(), f"{path}: q axis differs"
            assert torch.equal(a.q_per_channel_scales(), e.q_per_channel_scales()), f"{path}: q scales differ"
            assert torch.equal(a.q_per_channel_zero_points(), e.q_per_channel_zero_points()), f"{path}: q zero points differ"
        assert torch.equal(a.int_repr(), e.int_repr()), f"{path}: quantized values differ"
        return
    if e.device.type == "meta":
        return
    ua, ue = a.untyped_storage(), e.untyped_storage()
    assert ua.nbytes() == ue.nbytes(), f"{path}: storage holds {ua.nbytes()} bytes, expected {ue.nbytes()}"
    assert torch.equal(_storage_bytes(a), _storage_bytes(e)), f"{path}: the storage bytes differ"
    assert _values_equal(a, e), f"{path}: values differ:\n{a}\n!=\n{e}"
    w.tensors.append((path, a, e))


def _assert_sharing(pairs: List[Tuple[str, Any, Any]]) -> None:
    """Tensors share a storage (same StorageImpl; same data pointer when non-empty) in
    `actual` exactly when the corresponding ones do in `expected`."""

    def classes(side: int) -> List[Tuple[int, ...]]:
        by_impl: Dict[int, List[int]] = {}
        by_ptr: Dict[int, List[int]] = {}
        for i, pair in enumerate(pairs):
            u = pair[side].untyped_storage()
            by_impl.setdefault(u._cdata, []).append(i)
            if u.nbytes():
                by_ptr.setdefault(u.data_ptr(), []).append(i)
        return sorted(tuple(v) for v in by_impl.values()), sorted(tuple(v) for v in by_ptr.values())

    got, want = classes(1), classes(2)
    names = [p[0] for p in pairs]
    for g, x, what in ((got[0], want[0], "storage"), (got[1], want[1], "data pointer")):
        if g != x:
            show = lambda cs: [[names[i] for i in c] for c in cs if len(c) > 1]  # noqa: E731
            raise AssertionError(f"tensors sharing one {what}: actual {show(g)} != expected {show(x)}")


def _same_array(a: Any, e: Any, path: str, w: _Walk) -> None:
    assert a.dtype == e.dtype, f"{path}: dtype {a.dtype} != {e.dtype}"
    assert a.shape == e.shape, f"{path}: shape {a.shape} != {e.shape}"
    assert a.flags.f_contiguous == e.flags.f_contiguous and a.flags.c_contiguous == e.flags.c_contiguous, (
        f"{path}: memory order differs (C {a.flags.c_contiguous}/{e.flags.c_contiguous}, "
        f"F {a.flags.f_contiguous}/{e.flags.f_contiguous})"
    )
    if e.dtype.hasobject:
        for idx in np.ndindex(e.shape):
            _same(a[idx], e[idx], f"{path}[{idx}]", w)
        return
    if e.dtype.names is None and e.dtype.kind in "fc":
        assert np.array_equal(a, e, equal_nan=True), f"{path}: values differ:\n{a}\n!=\n{e}"
    assert a.tobytes() == e.tobytes(), f"{path}: the array bytes differ"
    w.arrays.append((path, a, e))


def _assert_array_sharing(pairs: List[Tuple[str, Any, Any]]) -> None:
    for i in range(len(pairs)):
        for j in range(i + 1, len(pairs)):
            sa = np.shares_memory(pairs[i][1], pairs[j][1])
            se = np.shares_memory(pairs[i][2], pairs[j][2])
            assert sa == se, f"{pairs[i][0]} and {pairs[j][0]} share memory: {sa}, expected {se}"


# ------------------------------------------------------------------ the input stays untouched


class Unchanged:
    """with Unchanged(path): ... -- the file's bytes and mtime are the same afterwards."""

    def __init__(self, path: Any) -> None:
        self.path = Path(path)

    def _state(self) -> Tuple[int, int, str]:
        st = os.stat(self.path)
        return st.st_mtime_ns, st.st_size, hashlib.sha256(self.path.read_bytes()).hexdigest()

    def __enter__(self) -> "Unchanged":
        self.before = self._state()
        return self

    def __exit__(self, *exc: Any) -> None:
        after = self._state()
        assert after == self.before, f"{self.path} changed during the load: {self.before} -> {after}"


# ------------------------------------------------------------------ side effects of running code


_DANGEROUS_PREFIXES = (
    "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty", "os.kill", "os.killpg",
    "os.remove", "os.unlink", "os.rmdir", "os.rename", "os.mkdir", "os.symlink", "os.link", "os.truncate",
    "os.chmod", "os.chown", "os.chdir", "os.putenv", "os.unsetenv", "os.startfile", "os.add_dll_directory",
    "subprocess.", "exec", "code.__new__", "function.__new__", "builtins.input", "ctypes.",
    "socket.", "urllib.", "http.", "webbrowser.", "shutil.", "sys.setprofile", "sys.settrace", "sys._getframe",
    "object.__setattr__", "object.__delattr__", "marshal.loads", "pickle.find_class", "cpython.run_",
    "import", "glob.", "smtplib.", "ftplib.", "imaplib.", "poplib.", "nntplib.", "telnetlib.", "sqlite3.",
    "winreg.", "tempfile.mkstemp", "tempfile.mkdtemp", "os.listdir", "os.scandir", "os.walk",
)


class SideEffects:
    """Record audit events during a block that would mean code from the file ran.

    (`compile` alone is not one: ast.literal_eval of a .npy header compiles
    without running anything; running compiled code raises `exec`.)

    `open` counts only when it writes or creates, or names a path other than
    the file being loaded (or a pyproject.toml read for aisbom's settings). Imports count only for modules that are new to
    sys.modules (the loader's own modules are imported before the block by
    `prewarm()`)."""

    _installed = False
    _active: "SideEffects | None" = None
    _lock = threading.Lock()

    def __init__(self, allowed_paths: Tuple[str, ...] = ()) -> None:
        self.events: List[Tuple[str, Tuple[Any, ...]]] = []
        self.allowed_paths = {os.path.realpath(str(p)) for p in allowed_paths}
        self.thread = threading.get_ident()

    @classmethod
    def _hook(cls, event: str, args: Tuple[Any, ...]) -> None:
        me = cls._active
        if me is None or threading.get_ident() != me.thread:
            return
        if event == "open":
            path, mode = args[0], args[1] if len(args) > 1 else "r"
            writes = isinstance(mode, str) and any(c in mode for c in "wax+")
            writes = writes or (isinstance(mode, int) and mode & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC))
            named = isinstance(path, (str, bytes, os.PathLike))
            # aisbom reads its own settings ([tool.aisbom] in pyproject.toml): not the file's doing
            settings = named and os.path.basename(os.fsdecode(path)) == "pyproject.toml"
            if writes or (named and not settings and os.path.realpath(os.fsdecode(path)) not in me.allowed_paths):
                me.events.append((event, tuple(map(repr, args))))
            return
        if event.startswith(_DANGEROUS_PREFIXES):
            me.events.append((event, tuple(repr(x)[:200] for x in args)))

    def __enter__(self) -> "SideEffects":
        with SideEffects._lock:
            if not SideEffects._installed:
                sys.addaudithook(SideEffects._hook)
                SideEffects._installed = True
        SideEffects._active = self
        return self

    def __exit__(self, *exc: Any) -> None:
        SideEffects._active = None

    def assert_none(self) -> None:
        assert not self.events, f"loading ran code with side effects: {self.events[:10]}"


def prewarm() -> None:
    """Import everything safe_load imports lazily (by loading one file of each
    kind), so that a later `import` audit event during a load can only come
    from the file."""
    import gzip
    import pickle

    import aisbom
    from aisbom import arrays, numpy_tensors, restore, torchfile  # noqa: F401  (imported for their side effect)

    samples = [pickle.dumps({"a": [1, (2.5, "x")], "s": {1}, "b": b"x"}, p) for p in range(6)]
    samples.append(gzip.compress(samples[-1]))
    if np is not None:
        samples += [pickle.dumps(np.arange(3), p) for p in range(6)]
    if torch is not None:
        import aisbom.torch_support  # noqa: F401

        for kw in ({}, {"_use_new_zipfile_serialization": False}):
            b = io.BytesIO()
            torch.save({"w": torch.ones(2, dtype=torch.bfloat16), "n": np.ones(2) if np is not None else 0}, b, **kw)
            samples.append(b.getvalue())
    for data in samples:
        for tensors in ("torch", "numpy") if torch is not None else ("numpy",):
            try:
                aisbom.safe_loads(data, sandbox="never", tensors=tensors)
            except aisbom.AisbomError:
                pass


# ------------------------------------------------------------------ editing torch zips


def rewrite_zip(src: Any, dst: Any, edit: Any) -> None:
    """Copy the zip `src` to `dst` member by member (order and names kept,
    stored uncompressed), replacing each member's bytes by edit(name, data)."""
    import zipfile

    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            data = edit(info.filename, zin.read(info.filename))
            zout.writestr(zipfile.ZipInfo(info.filename, date_time=info.date_time), data)


def member(path: Any, suffix: str) -> bytes:
    """The bytes of the first member of the zip at `path` whose name ends with `suffix`."""
    import zipfile

    with zipfile.ZipFile(path) as z:
        for name in z.namelist():
            if name.endswith(suffix):
                return z.read(name)
    raise KeyError(suffix)


# ------------------------------------------------------------------ where memory comes from


def mapping_of(address: int) -> str:
    """The path of the file mapped at `address` in this process ("" for anonymous memory)."""
    with open("/proc/self/maps") as f:
        for line in f:
            parts = line.split(None, 5)
            lo, hi = (int(x, 16) for x in parts[0].split("-"))
            if lo <= address < hi:
                return parts[5].strip() if len(parts) > 5 else ""
    return ""
