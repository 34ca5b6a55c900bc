"""Loading torch checkpoints as numpy arrays, with no torch installed.

Every torch name a checkpoint may use resolves to a stand-in: storage types
carry a numpy dtype, dtypes become TorchDType markers, tensors become numpy
arrays viewing the storage bytes. Dtypes numpy lacks are widened exactly:
bfloat16 and the float8 formats become float32, complex32 becomes complex64.
Quantized, sparse, nested and meta tensors need torch and are refused.
"""
from __future__ import annotations

import collections
from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np

from aisbom.errors import MalformedModelError, UnsafeModelError
from aisbom.restore import LoadTable, Placeholder, StorageType, _ints, _set_attributes, check_no_hooks, check_view

__all__ = ["add_numpy_tensors", "NumpyStorage", "TorchDType", "STORAGE_DTYPES"]


class TorchDType:
    """Stands for a torch dtype (torch.float32 ...) when torch is not loaded."""

    def __init__(self, name: str, numpy: Any, itemsize: int) -> None:
        self.name = name
        self.numpy = numpy  # numpy dtype, or a str naming the widening rule
        self.itemsize = itemsize

    def __repr__(self) -> str:
        return f"torch.{self.name}"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TorchDType) and other.name == self.name

    def __hash__(self) -> int:
        return hash(("TorchDType", self.name))


def _float8_table(exp_bits: int, man_bits: int, bias: int, fn: bool, uz: bool) -> np.ndarray:
    """float32 values of all 256 codes of an 8-bit float format."""
    out = np.empty(256, dtype=np.float32)
    for code in range(256):
        sign = -1.0 if code & 0x80 else 1.0
        e = (code >> man_bits) & ((1 << exp_bits) - 1)
        m = code & ((1 << man_bits) - 1)
        if uz and code == 0x80:
            out[code] = np.nan
            continue
        if not fn and not uz and e == (1 << exp_bits) - 1:
            out[code] = sign * np.inf if m == 0 else np.nan
            continue
        if fn and e == (1 << exp_bits) - 1 and m == (1 << man_bits) - 1:
            out[code] = np.nan
            continue
        if e == 0:
            out[code] = sign * (m / (1 << man_bits)) * 2.0 ** (1 - bias)
        else:
            out[code] = sign * (1 + m / (1 << man_bits)) * 2.0 ** (e - bias)
    return out


def _e8m0_table() -> np.ndarray:
    # code 255 is NaN; 2**128 would not fit a float32 anyway
    return np.array([2.0 ** (c - 127) for c in range(255)] + [float("nan")], dtype=np.float32)


_WIDEN: Dict[str, Callable[[np.ndarray], np.ndarray]] = {}


def _widen(name: str, raw: np.ndarray) -> np.ndarray:
    if name == "bfloat16":
        return (raw.view(np.uint16).astype(np.uint32) << 16).view(np.float32)
    if name == "complex32":
        halves = raw.view(np.float16).astype(np.float32)
        return halves.view(np.complex64)
    if name not in _WIDEN:
        tables = {
            "float8_e4m3fn": lambda: _float8_table(4, 3, 7, True, False),
            "float8_e4m3fnuz": lambda: _float8_table(4, 3, 8, False, True),
            "float8_e5m2": lambda: _float8_table(5, 2, 15, False, False),
            "float8_e5m2fnuz": lambda: _float8_table(5, 2, 16, False, True),
            "float8_e8m0fnu": _e8m0_table,
        }
        if name not in tables:
            raise MalformedModelError(f"torch.{name} tensors cannot be represented without torch")
        table = tables[name]()
        _WIDEN[name] = lambda r: table[r.view(np.uint8)]
    return _WIDEN[name](raw)


_DTYPES: Dict[str, Tuple[Any, int]] = {
    "float64": (np.float64, 8), "float32": (np.float32, 4), "float16": (np.float16, 2),
    "bfloat16": ("bfloat16", 2), "complex128": (np.complex128, 16), "complex64": (np.complex64, 8),
    "complex32": ("complex32", 4), "bool": (np.bool_, 1), "int8": (np.int8, 1), "int16": (np.int16, 2),
    "int32": (np.int32, 4), "int64": (np.int64, 8), "uint8": (np.uint8, 1), "uint16": (np.uint16, 2),
    "uint32": (np.uint32, 4), "uint64": (np.uint64, 8), "float8_e4m3fn": ("float8_e4m3fn", 1),
    "float8_e4m3fnuz": ("float8_e4m3fnuz", 1), "float8_e5m2": ("float8_e5m2", 1),
    "float8_e5m2fnuz": ("float8_e5m2fnuz", 1), "float8_e8m0fnu": ("float8_e8m0fnu", 1),
}

# Storage classes torch pickles by name, and the dtype each holds.
STORAGE_DTYPES: Dict[str, str] = {
    "DoubleStorage": "float64", "FloatStorage": "float32", "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16", "LongStorage": "int64", "IntStorage": "int32", "ShortStorage": "int16",
    "CharStorage": "int8", "ByteStorage": "uint8", "BoolStorage": "bool", "ComplexDoubleStorage": "complex128",
    "ComplexFloatStorage": "complex64",
}
_QUANTIZED = ("QUInt8Storage", "QInt8Storage", "QInt32Storage", "QUInt4x2Storage", "QUInt2x4Storage")


class NumpyStorage:
    """A storage's bytes (a uint8 array) and the dtype torch says they hold."""

    def __init__(self, data: np.ndarray, dtype: TorchDType) -> None:
        self.data = data
        self.dtype = dtype

    def size(self) -> int:
        return self.data.nbytes // self.dtype.itemsize


def _array(storage: Any, dtype: Any, offset: Any, size: Any, stride: Any) -> np.ndarray:
    if not isinstance(storage, NumpyStorage) or not isinstance(dtype, TorchDType):
        raise MalformedModelError("a tensor's storage is not a storage from the file")
    numel = storage.data.nbytes // dtype.itemsize
    dims, steps = check_view(numel, offset, size, stride)
    raw = storage.data[: numel * dtype.itemsize]
    if isinstance(dtype.numpy, str):
        typed = _widen(dtype.numpy, raw)
        return np.lib.stride_tricks.as_strided(typed[offset:], shape=dims, strides=[s * typed.itemsize for s in steps]).copy()
    typed = raw.view(dtype.numpy)
    out = np.lib.stride_tricks.as_strided(typed[offset:], shape=dims, strides=[s * typed.itemsize for s in steps])
    return out


def rebuild_tensor(storage: Any, storage_offset: Any, size: Any, stride: Any) -> np.ndarray:
    return _array(storage, getattr(storage, "dtype", None), storage_offset, size, stride)


def rebuild_tensor_v2(storage: Any, storage_offset: Any, size: Any, stride: Any, requires_grad: Any,
                      backward_hooks: Any, metadata: Any = None) -> np.ndarray:
    check_no_hooks(backward_hooks)
    if metadata and any(metadata.values()):
        raise MalformedModelError("conjugate or negative-bit tensors need torch to be loaded")
    return rebuild_tensor(storage, storage_offset, size, stride)


def rebuild_tensor_v3(storage: Any, storage_offset: Any, size: Any, stride: Any, requires_grad: Any,
                      backward_hooks: Any, dtype: Any, metadata: Any = None) -> np.ndarray:
    check_no_hooks(backward_hooks)
    if not isinstance(storage, NumpyStorage):
        raise MalformedModelError("a tensor's storage is not a storage from the file")
    return _array(storage, dtype, storage_offset, size, stride)


def rebuild_parameter(data: Any, requires_grad: Any, backward_hooks: Any, state: Any = None) -> np.ndarray:
    check_no_hooks(backward_hooks)
    if not isinstance(data, np.ndarray):
        raise MalformedModelError("a Parameter needs a tensor")
    return data


def _needs_torch(name: str) -> Callable[..., Any]:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise MalformedModelError(f"{name} tensors need torch; install torch or load with tensors='torch'")

    return refuse


def add_numpy_tensors(t: LoadTable) -> None:
    dtypes = {name: TorchDType(name, np_dtype, size) for name, (np_dtype, size) in _DTYPES.items()}
    for name, d in dtypes.items():
        t.value(f"torch.{name}", d)
    for cls_name, dt in STORAGE_DTYPES.items():
        st = StorageType(cls_name, dtypes[dt], dtypes[dt].itemsize)
        t.value(f"torch.{cls_name}", st)
        t.value(f"torch.cuda.{cls_name}", st)
    t.value("torch.storage.UntypedStorage", StorageType("UntypedStorage", dtypes["uint8"], 1))
    for cls_name in _QUANTIZED:
        t.value(f"torch.{cls_name}", StorageType(cls_name, None, 0))
    for name in ("torch.Tensor", "torch.nn.parameter.Parameter", "torch.storage.TypedStorage"):
        t.value(name, Placeholder(name))
    def stand_in(name: str, impl: Callable[..., Any]) -> None:
        t.callable(name, Placeholder(name), impl)

    stand_in("torch.Size", lambda *a: tuple(_ints(a[0], "torch.Size")) if len(a) == 1 else _ints(a, "torch.Size"))
    stand_in("torch.device", lambda *a: ":".join(str(x) for x in a))
    stand_in("torch._utils._rebuild_tensor", rebuild_tensor)
    stand_in("torch._utils._rebuild_tensor_v2", rebuild_tensor_v2)
    stand_in("torch._utils._rebuild_tensor_v3", rebuild_tensor_v3)
    stand_in("torch._utils._rebuild_parameter", rebuild_parameter)
    stand_in("torch._utils._rebuild_parameter_with_state", rebuild_parameter)
    for name, kind in (("_rebuild_qtensor", "quantized"), ("_rebuild_sparse_tensor", "sparse"),
                       ("_rebuild_meta_tensor_no_storage", "meta"), ("_rebuild_nested_tensor", "nested"),
                       ("_rebuild_wrapper_subclass", "tensor subclass"),
                       ("_rebuild_device_tensor_from_cpu_tensor", "device"),
                       ("_rebuild_device_tensor_from_numpy", "device")):
        stand_in(f"torch._utils.{name}", _needs_torch(kind))

    def rebuild_from_type_v2(func: Any, new_type: Any, args: Any, state: Any) -> Any:
        impl = t.impl_of(func)
        if impl is None or not isinstance(args, tuple):
            raise UnsafeModelError("_rebuild_from_type_v2 names a function the policy does not allow calling")
        return impl(*args)  # attributes and subclasses need torch; the data does not

    stand_in("torch._tensor._rebuild_from_type_v2", rebuild_from_type_v2)
    stand_in("torch.serialization._get_layout", lambda name: Placeholder(f"torch.{name}"))

    def load_from_bytes(data: Any) -> Any:
        from aisbom.loader import load_buffer

        if not isinstance(data, (bytes, bytearray)):
            raise MalformedModelError("_load_from_bytes needs bytes")
        return load_buffer(bytes(data), path="<embedded torch file>", sandbox="never", tensors="numpy", config=False)

    stand_in("torch.storage._load_from_bytes", load_from_bytes)
    # Every other torch name on the allowlist (tensor classes, qschemes, ...)
    # stands for itself: usable as data, never callable.
    from aisbom.policy import default_policy

    for name in default_policy().allowed:
        if name.startswith("torch.") and name not in t.globals:
            t.value(name, Placeholder(name))
    t.newobj(t.globals["torch.nn.parameter.Parameter"], lambda *a: rebuild_parameter(a[0], None, None))
