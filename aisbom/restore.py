"""What allowlisted names resolve to when aisbom loads a file.

The unpickler (csrc/unpickler.c) never imports anything: every global a file
names is looked up in a table built here. Names that are called resolve to
small functions that check their arguments before doing the one thing the
real function would do (build a tensor from a storage, a set from a list...)
so no allowed callable can be turned into an allocation bomb or an
out-of-bounds view. Names used only as values (dtypes, classes passed as
arguments) resolve to marker objects or the real object.
"""
from __future__ import annotations

import _codecs
import collections
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, FrozenSet, Iterable, List, Optional, Set, Tuple, Type, TypeVar, cast

from aisbom.errors import MalformedModelError, UnsafeModelError

__all__ = ["LoadTable", "StorageType", "build_table", "check_view", "Placeholder"]

_CONCRETE = (list, tuple, set, frozenset, dict, str, bytes, bytearray)


def _concrete(value: Any, what: str) -> Any:
    """Refuse lazy iterables (range, generators): materialising them has no size bound."""
    if not isinstance(value, _CONCRETE):
        raise MalformedModelError(f"{what} expects a list, tuple, set, dict or string, not {type(value).__name__}")
    return value


def _ints(values: Any, what: str) -> Tuple[int, ...]:
    if not isinstance(values, (tuple, list)) or not all(type(v) is int for v in values):
        raise MalformedModelError(f"{what} must be a tuple of integers")
    return tuple(values)


@dataclass
class LoadTable:
    """The unpickler's view of the world: names, what may be called, built, created."""

    globals: Dict[str, Any] = field(default_factory=dict)
    calls: Dict[int, Tuple[Any, Callable[..., Any]]] = field(default_factory=dict)
    newobjs: Dict[int, Tuple[Any, Callable[..., Any]]] = field(default_factory=dict)
    builds: Dict[int, Tuple[type, Callable[[Any, Any], Any]]] = field(default_factory=dict)

    def value(self, name: str, obj: Any) -> None:
        """`name` resolves to `obj`, which the file may use as data but not call."""
        self.globals[name] = obj

    def callable(self, name: str, obj: Any, impl: Optional[Callable[..., Any]] = None) -> None:
        """`name` resolves to `obj`; REDUCE, OBJ and INST on it call `impl`
        (a checked stand-in for obj), or obj itself."""
        self.globals[name] = obj
        self.calls[id(obj)] = (obj, impl or obj)

    def impl_of(self, obj: Any) -> Optional[Callable[..., Any]]:
        """The implementation calls on `obj` run, or None when obj may not be called."""
        hit = self.calls.get(id(obj))
        return hit[1] if hit is not None and hit[0] is obj else None

    def newobj(self, cls: Any, impl: Callable[..., Any]) -> None:
        self.newobjs[id(cls)] = (cls, impl)

    def build(self, cls: type, impl: Callable[[Any, Any], Any]) -> None:
        self.builds[id(cls)] = (cls, impl)

    def copy(self) -> "LoadTable":
        return LoadTable(dict(self.globals), dict(self.calls), dict(self.newobjs), dict(self.builds))


class Placeholder:
    """Stands for a class or value the loader does not reproduce (e.g. torch.Tensor
    as an argument when tensors are returned as numpy arrays)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<aisbom placeholder {self.name}>"


def _set_attributes(obj: Any, state: Any, what: str) -> None:
    """pickle's default BUILD, limited to plain attribute names (no dunders)."""
    if state is None:
        return
    slots = None
    if isinstance(state, tuple) and len(state) == 2:
        state, slots = state
    for part in (state, slots):
        if part is None:
            continue
        if not isinstance(part, dict):
            raise MalformedModelError(f"the state of {what} is not a dict")
        for key, val in part.items():
            if not isinstance(key, str) or not key.isidentifier() or key.startswith("__"):
                raise UnsafeModelError(f"the state of {what} sets the attribute {key!r}, which aisbom refuses")
            setattr(obj, key, val)


# ---- builtins -------------------------------------------------------------


def _set(*args: Any) -> Set[Any]:
    return set(_concrete(args[0], "set()")) if args else set()


def _frozenset(*args: Any) -> FrozenSet[Any]:
    return frozenset(_concrete(args[0], "frozenset()")) if args else frozenset()


def _list(*args: Any) -> List[Any]:
    return list(_concrete(args[0], "list()")) if args else []


def _tuple(*args: Any) -> Tuple[Any, ...]:
    return tuple(_concrete(args[0], "tuple()")) if args else ()


def _dict(*args: Any) -> Dict[Any, Any]:
    return dict(_concrete(args[0], "dict()")) if args else {}


_BytesT = TypeVar("_BytesT", bytes, bytearray)


def _bytes_like(kind: Type[_BytesT], args: Tuple[Any, ...]) -> _BytesT:
    """bytes/bytearray from bytes, a list of small ints, or (str, 'latin-1') — never a size."""
    if not args:
        return kind()
    if len(args) == 2 and isinstance(args[0], str) and args[1] in ("latin1", "latin-1"):
        return kind(args[0], "latin-1")
    if len(args) == 1 and isinstance(args[0], (bytes, bytearray, list, tuple)) and not isinstance(args[0], int):
        return kind(args[0])
    raise MalformedModelError(f"{kind.__name__}() with these arguments could allocate without bound; refused")


def _bytearray(*args: Any) -> bytearray:
    return _bytes_like(bytearray, args)


def _bytes(*args: Any) -> bytes:
    return _bytes_like(bytes, args)


def _encode(obj: Any, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    # Protocol-2 pickles spell bytes as _codecs.encode(text, 'latin1'); other
    # codecs would mean looking a codec up by a name from the file.
    if not isinstance(obj, str) or encoding not in ("latin1", "latin-1") or errors != "strict":
        raise MalformedModelError("_codecs.encode is only accepted as the latin-1 spelling of bytes")
    return _codecs.encode(obj, "latin-1")


def _complex(*args: Any) -> complex:
    if len(args) > 2 or not all(isinstance(a, (int, float)) for a in args):
        raise MalformedModelError("complex() takes at most two numbers here")
    return complex(*args)


def _slice(*args: Any) -> slice:
    if not 1 <= len(args) <= 3 or not all(a is None or type(a) is int for a in args):
        raise MalformedModelError("slice() takes up to three integers or None here")
    return slice(*args)


def _range(*args: Any) -> range:
    if not 1 <= len(args) <= 3 or not all(type(a) is int for a in args):
        raise MalformedModelError("range() takes up to three integers here")
    return range(*args)


def _scalar_of(kind: type) -> Callable[..., Any]:
    def make(*args: Any) -> Any:
        if len(args) > 1 or (args and not isinstance(args[0], (int, float, str, bool, bytes))):
            raise MalformedModelError(f"{kind.__name__}() takes one number or string here")
        if kind is str and args and isinstance(args[0], bytes):
            raise MalformedModelError("str() of bytes is refused")
        return kind(*args)

    make.__name__ = kind.__name__
    return make


def _ordered_dict(*args: Any) -> collections.OrderedDict[Any, Any]:
    if len(args) > 1:
        raise MalformedModelError("OrderedDict() takes one argument here")
    return collections.OrderedDict(_concrete(args[0], "OrderedDict()")) if args else collections.OrderedDict()


def _counter(*args: Any) -> collections.Counter[Any]:
    if len(args) > 1:
        raise MalformedModelError("Counter() takes one argument here")
    return collections.Counter(_concrete(args[0], "Counter()")) if args else collections.Counter()


def _deque(*args: Any) -> collections.deque[Any]:
    if len(args) > 2 or (len(args) == 2 and args[1] is not None and type(args[1]) is not int):
        raise MalformedModelError("deque() takes an iterable and a maxlen here")
    items = _concrete(args[0], "deque()") if args else ()
    return collections.deque(items, *(args[1:]))


def _build_ordered_dict(inst: Any, state: Any) -> None:
    _set_attributes(inst, state, "an OrderedDict")


def _add_builtins(t: LoadTable) -> None:
    # Each name resolves to the real object, so values read back as what they
    # are (a defaultdict's factory is `list`); calls go to the checked stand-in.
    for name, obj, impl in (
        ("builtins.set", set, _set),
        ("builtins.frozenset", frozenset, _frozenset),
        ("builtins.bytearray", bytearray, _bytearray),
        ("builtins.bytes", bytes, _bytes),
        ("builtins.complex", complex, _complex),
        ("builtins.slice", slice, _slice),
        ("builtins.range", range, _range),
        ("builtins.list", list, _list),
        ("builtins.tuple", tuple, _tuple),
        ("builtins.dict", dict, _dict),
        ("builtins.int", int, _scalar_of(int)),
        ("builtins.float", float, _scalar_of(float)),
        ("builtins.str", str, _scalar_of(str)),
        ("builtins.bool", bool, _scalar_of(bool)),
        ("_codecs.encode", _codecs.encode, _encode),
        ("collections.OrderedDict", collections.OrderedDict, _ordered_dict),
        ("collections.Counter", collections.Counter, _counter),
        ("collections.deque", collections.deque, _deque),
    ):
        t.callable(name, obj, impl)

    factories = (list, dict, set, int, float, str, tuple, bytes, bytearray, frozenset, complex, bool)

    def _defaultdict(*args: Any) -> collections.defaultdict[Any, Any]:
        factory = args[0] if args else None
        if factory is not None and not any(factory is f for f in factories):
            raise UnsafeModelError("a defaultdict's factory must be a builtin container type or None")
        items = _concrete(args[1], "defaultdict()") if len(args) > 1 else ()
        if len(args) > 2:
            raise MalformedModelError("defaultdict() takes a factory and one mapping here")
        return collections.defaultdict(factory, items)

    t.callable("collections.defaultdict", collections.defaultdict, _defaultdict)
    t.build(collections.OrderedDict, _build_ordered_dict)


# ---- numpy ----------------------------------------------------------------


def _add_numpy(t: LoadTable) -> None:
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - numpy is optional at run time
        return

    def _reconstruct(cls: Any, shape: Any, dtype_code: Any) -> Any:
        if cls is not np.ndarray or not isinstance(dtype_code, bytes):
            raise UnsafeModelError("numpy _reconstruct is accepted only for numpy.ndarray")
        _ints(shape, "the array's initial shape")
        # The real shape and data arrive in BUILD, checked by numpy itself.
        return np.ndarray.__new__(np.ndarray, (0,), np.dtype(cast(Any, dtype_code)))

    def _dtype(obj: Any, align: Any = False, copy: Any = False) -> Any:
        if not isinstance(obj, str) or type(align) is not bool or type(copy) is not bool:
            raise MalformedModelError("numpy.dtype() takes a type string and two flags here")
        return np.dtype(obj, align, copy)

    def _scalar(dtype: Any, obj: Any = None) -> Any:
        if not isinstance(dtype, np.dtype):
            raise MalformedModelError("numpy scalar() needs a dtype")
        if dtype.hasobject:
            return obj  # what numpy's scalar() returns for the object dtype
        if not isinstance(obj, bytes) or len(obj) != dtype.itemsize:
            raise MalformedModelError("a numpy scalar's bytes do not match its dtype")
        return np.frombuffer(obj, dtype=dtype, count=1)[0]

    def _frombuffer(buf: Any, dtype: Any, shape: Any, order: Any) -> Any:
        if not isinstance(buf, (bytes, bytearray, memoryview)) or not isinstance(dtype, np.dtype) or dtype.hasobject:
            raise MalformedModelError("numpy _frombuffer needs bytes and a plain dtype")
        dims = _ints(shape, "the array shape")
        if order not in ("C", "F"):
            raise MalformedModelError("numpy _frombuffer order must be 'C' or 'F'")
        count = math.prod(dims)
        if count * dtype.itemsize != len(buf):
            raise MalformedModelError("numpy _frombuffer: the data does not match the shape")
        return np.frombuffer(buf, dtype=dtype).reshape(dims, order=order).copy(order=order)

    def _array_state(inst: Any, state: Any) -> None:
        """ndarray.__setstate__, only with a state numpy's own pickling makes.

        numpy trusts this state: an object array given a list shorter than its
        shape crashes it (found by fuzzing), so shape, dtype and data are
        checked against each other first."""
        if type(inst) is not np.ndarray or not isinstance(state, tuple) or len(state) not in (4, 5):
            raise MalformedModelError("an array's state is not (version, shape, dtype, fortran, data)")
        shape, dtype, fortran, data = state[-4:]
        if len(state) == 5 and state[0] != 1:
            raise MalformedModelError("unsupported numpy array state version")
        dims = _ints(shape, "the array's shape")
        if any(d < 0 for d in dims) or not isinstance(dtype, np.dtype) or type(fortran) is not bool:
            raise MalformedModelError("an array's shape, dtype or order flag is malformed")
        count = math.prod(dims)
        if dtype.hasobject:
            if dtype != np.dtype(object) or type(data) is not list or len(data) != count:
                raise MalformedModelError("an object array's items do not match its shape")
        elif not isinstance(data, (bytes, bytearray)) or len(data) != count * dtype.itemsize:
            raise MalformedModelError("an array's data does not match its shape and dtype")
        inst.__setstate__(state)

    def _dtype_state(inst: Any, state: Any) -> None:
        """dtype.__setstate__, only when the state is exactly what numpy writes
        for the dtype it describes (rebuilt here from its parts)."""
        if not isinstance(state, tuple) or len(state) not in (8, 9) or state[1] not in ("<", ">", "|", "="):
            raise MalformedModelError("a dtype's state is malformed")
        subarray, names, fields = state[2], state[3], state[4]
        try:
            if subarray is not None:
                if not (isinstance(subarray, tuple) and len(subarray) == 2 and isinstance(subarray[0], np.dtype)):
                    raise MalformedModelError("a dtype's subarray is malformed")
                expected = np.dtype((subarray[0], _ints(subarray[1], "a subarray shape")))
            elif names is not None:
                if (not isinstance(names, tuple) or not isinstance(fields, dict)
                        or not all(isinstance(n, str) and n in fields for n in names)):
                    raise MalformedModelError("a structured dtype's names and fields disagree")
                spec: Dict[str, List[Any]] = {"names": [], "formats": [], "offsets": [], "titles": []}
                for n in names:
                    f = fields[n]
                    if not (isinstance(f, tuple) and len(f) in (2, 3) and isinstance(f[0], np.dtype)
                            and type(f[1]) is int):
                        raise MalformedModelError("a structured dtype's field is malformed")
                    spec["names"].append(n)
                    spec["formats"].append(f[0])
                    spec["offsets"].append(f[1])
                    spec["titles"].append(f[2] if len(f) == 3 else None)
                if type(state[5]) is not int:
                    raise MalformedModelError("a structured dtype's size is malformed")
                expected = np.dtype(cast(Any, {**spec, "itemsize": state[5]}), align=bool(inst.isalignedstruct))
            else:
                expected = inst if state[1] in ("|", "=") else inst.newbyteorder(state[1])
                if len(state) == 9:
                    # datetime64/timedelta64: (None, (unit, count, 1, 1)) names the unit
                    meta = state[8]
                    if not (isinstance(meta, tuple) and len(meta) == 2 and isinstance(meta[1], tuple)
                            and len(meta[1]) == 4 and isinstance(meta[1][0], bytes) and type(meta[1][1]) is int):
                        raise MalformedModelError("a datetime dtype's unit is malformed")
                    unit = meta[1][0].decode("ascii")
                    count = "" if meta[1][1] == 1 else str(meta[1][1])
                    order = state[1] if state[1] in ("<", ">") else ""
                    expected = np.dtype(f"{order}{inst.kind}8[{count}{unit}]")
        except (TypeError, ValueError, UnicodeDecodeError) as exc:
            raise MalformedModelError(f"a dtype's state does not describe a dtype: {exc}") from None
        if expected.__reduce__()[2] != state:
            raise MalformedModelError("a dtype's state is not the one numpy writes for it")
        inst.__setstate__(state)

    # The real functions, found through numpy's own pickling (never by a
    # name from a file); the numpy 1.x and 2.x spellings name the same ones.
    real_reconstruct = np.ndarray.__reduce__(np.zeros(0))[0]
    real_scalar = np.float64(0).__reduce__()[0]
    real_frombuffer = np.zeros(1).__reduce_ex__(5)[0]
    for mod in ("numpy.core", "numpy._core"):
        t.callable(f"{mod}.multiarray._reconstruct", real_reconstruct, _reconstruct)
        t.callable(f"{mod}.multiarray.scalar", real_scalar, _scalar)
        t.callable(f"{mod}.numeric._frombuffer", real_frombuffer, _frombuffer)
    t.value("numpy.ndarray", np.ndarray)
    t.callable("numpy.dtype", np.dtype, _dtype)
    t.build(np.ndarray, _array_state)
    for dtype_class in {type(np.dtype(c)) for c in "?bhilqBHILQefdgFDGSUVOMm"} | {np.dtype}:
        t.build(dtype_class, _dtype_state)


# ---- torch storages and tensors ---------------------------------------------


class StorageType:
    """What torch.FloatStorage & co. resolve to: a dtype and an element size.

    The real classes are never handed to the file; persistent ids only name
    them to say which dtype a storage holds."""

    def __init__(self, name: str, dtype: Any, itemsize: int) -> None:
        self.name = name
        self.dtype = dtype
        self.itemsize = itemsize

    def __repr__(self) -> str:
        return f"<storage type {self.name}>"


def check_no_hooks(hooks: Any) -> None:
    """A tensor's backward_hooks must be empty: a hook is a callable that runs during backward()."""
    if hooks is not None and (not isinstance(hooks, dict) or len(hooks)):
        raise UnsafeModelError("the checkpoint carries tensor backward hooks, which would run code during backward()")


def check_view(numel: int, offset: Any, size: Any, stride: Any, what: str = "tensor") -> Tuple[Tuple[int, ...], Tuple[int, ...]]:
    """Sizes, strides and offset must stay inside the storage (CVE-2026-24747)."""
    if type(size) not in (tuple, list) or type(stride) not in (tuple, list) or len(size) != len(stride):
        raise MalformedModelError(f"the {what}'s size and stride must be tuples of equal length")
    if type(offset) is not int or offset < 0:
        raise MalformedModelError(f"the {what}'s storage offset is not a non-negative integer")
    last = offset
    empty = False
    for d, s in zip(size, stride):
        if type(d) is not int or type(s) is not int or d < 0 or s < 0:
            raise MalformedModelError(f"the {what}'s size and stride must be non-negative integers")
        if d == 0:
            empty = True
        else:
            last += (d - 1) * s
    if empty:
        if offset > numel:
            raise MalformedModelError(f"the {what}'s offset {offset} lies past its storage of {numel} elements")
    elif last >= numel:
        raise MalformedModelError(
            f"the {what} reaches element {last} of a storage that holds {numel} "
            "(its size, stride or offset point outside the storage)"
        )
    return tuple(size), tuple(stride)


def build_table(tensors: str = "torch", *, with_numpy: bool = True, with_torch: bool = True) -> LoadTable:
    """The default table: builtins, plus numpy and torch (real tensors or numpy
    arrays) when the file names them; importing torch for a plain pickle would
    cost more than loading it."""
    t = LoadTable()
    _add_builtins(t)
    if with_numpy or (with_torch and tensors == "numpy"):
        _add_numpy(t)
    if with_torch and tensors == "torch":
        from aisbom.torch_support import add_torch

        add_torch(t)
    elif with_torch:
        from aisbom.numpy_tensors import add_numpy_tensors

        add_numpy_tensors(t)
    return t
