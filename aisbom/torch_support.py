"""The torch half of the load table: storages, dtypes and checked rebuilds.

Every rebuild function torch.load(weights_only=True) accepts is here, each
checking the metadata against the storage before a tensor is made
(CVE-2026-24747: sizes, strides and offsets that point outside the storage).
Backward hooks, which would run during backward(), are refused; attribute
state is limited to plain names.
"""
from __future__ import annotations

import collections
import warnings
from typing import Any, Dict, List, Optional, cast

import torch

from aisbom.errors import MalformedModelError, UnsafeModelError
from aisbom.restore import LoadTable, StorageType, _ints, _set_attributes, check_no_hooks, check_view

__all__ = ["add_torch", "storage_types", "validate_sparse"]

_sparse_to_validate: List[torch.Tensor] = []
_ITEMSIZE: Dict[Any, int] = {}


def itemsize(dtype: Any) -> int:
    """Bytes per element, memoised: this runs once per tensor. (torch's
    _element_size refuses the bits* dtypes; dtype.itemsize knows them.)"""
    n = _ITEMSIZE.get(dtype)
    if n is None:
        n = _ITEMSIZE[dtype] = dtype.itemsize
    return n


def storage_types() -> Dict[str, StorageType]:
    """'torch.FloatStorage' -> StorageType for every storage class torch pickles by name."""
    out = {}
    for cls in torch._storage_classes:
        if cls in (torch.storage.TypedStorage, torch.storage.UntypedStorage):
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "TypedStorage is deprecated"
            dtype = cast(Any, cls).dtype  # a class property of the legacy storage classes
        out[f"{cls.__module__}.{cls.__name__}"] = StorageType(cls.__name__, dtype, itemsize(dtype))
    out["torch.storage.UntypedStorage"] = StorageType("UntypedStorage", torch.uint8, 1)
    return out


def _typed(storage: Any) -> torch.storage.TypedStorage:
    if not isinstance(storage, torch.storage.TypedStorage):
        raise MalformedModelError(f"a tensor's storage is a {type(storage).__name__}, not a storage from the file")
    return storage


def _make(storage_u: Any, dtype: Any, numel: int, offset: Any, size: Any, stride: Any) -> torch.Tensor:
    dims, steps = check_view(numel, offset, size, stride)
    t = torch.empty((0,), dtype=dtype, device=storage_u.device)
    return t.set_(storage_u, offset, dims, steps)


def _metadata(t: torch.Tensor, metadata: Any) -> None:
    if not metadata:
        return
    if not isinstance(metadata, dict) or not all(isinstance(k, str) and type(v) is bool for k, v in metadata.items()):
        raise MalformedModelError("tensor metadata must map names to booleans")
    torch._utils.set_tensor_metadata(t, metadata)


def _requires_grad(t: torch.Tensor, flag: Any) -> None:
    if type(flag) is not bool:
        raise MalformedModelError("requires_grad must be a bool")
    if flag:
        t.requires_grad = True


def rebuild_tensor(storage: Any, storage_offset: Any, size: Any, stride: Any) -> torch.Tensor:
    s = _typed(storage)
    u = s._untyped_storage
    dtype = s.dtype
    return _make(u, dtype, u.nbytes() // itemsize(dtype), storage_offset, size, stride)


def rebuild_tensor_v2(storage: Any, storage_offset: Any, size: Any, stride: Any, requires_grad: Any,
                      backward_hooks: Any, metadata: Any = None) -> torch.Tensor:
    # What nearly every tensor of every checkpoint goes through: kept flat.
    check_no_hooks(backward_hooks)
    u = _typed(storage)._untyped_storage
    dtype = storage.dtype
    dims, steps = check_view(u.nbytes() // itemsize(dtype), storage_offset, size, stride)
    t = torch.empty((0,), dtype=dtype, device=u.device).set_(u, storage_offset, dims, steps)
    if requires_grad is not False:
        _requires_grad(t, requires_grad)
    if metadata:
        _metadata(t, metadata)
    return t


def rebuild_tensor_v3(storage: Any, storage_offset: Any, size: Any, stride: Any, requires_grad: Any,
                      backward_hooks: Any, dtype: Any, metadata: Any = None) -> torch.Tensor:
    check_no_hooks(backward_hooks)
    s = _typed(storage)
    if not isinstance(dtype, torch.dtype):
        raise MalformedModelError("_rebuild_tensor_v3 needs a dtype")
    u = s._untyped_storage
    t = _make(u, dtype, u.nbytes() // itemsize(dtype), storage_offset, size, stride)
    _requires_grad(t, requires_grad)
    _metadata(t, metadata)
    return t


def rebuild_parameter(data: Any, requires_grad: Any, backward_hooks: Any) -> torch.nn.Parameter:
    check_no_hooks(backward_hooks)
    if not isinstance(data, torch.Tensor) or type(requires_grad) is not bool:
        raise MalformedModelError("a Parameter needs a tensor and a requires_grad flag")
    return torch.nn.Parameter(data, requires_grad)


def rebuild_parameter_with_state(data: Any, requires_grad: Any, backward_hooks: Any, state: Any) -> torch.nn.Parameter:
    p = rebuild_parameter(data, requires_grad, backward_hooks)
    _set_attributes(p, state, "a Parameter")
    return p


def rebuild_qtensor(storage: Any, storage_offset: Any, size: Any, stride: Any, quantizer_params: Any,
                    requires_grad: Any, backward_hooks: Any) -> torch.Tensor:
    check_no_hooks(backward_hooks)
    s = _typed(storage)
    check_view(s._untyped_storage.nbytes() // itemsize(s.dtype), storage_offset, size, stride, "quantized tensor")
    if not isinstance(quantizer_params, tuple) or not quantizer_params or quantizer_params[0] not in (
        torch.per_tensor_affine, torch.per_channel_affine, torch.per_channel_affine_float_qparams
    ):
        raise MalformedModelError("unsupported quantizer parameters")
    t: torch.Tensor = torch._utils._rebuild_qtensor(s, storage_offset, size, stride, quantizer_params, requires_grad,
                                                    collections.OrderedDict())
    return t


def rebuild_sparse_tensor(layout: Any, data: Any) -> torch.Tensor:
    if not isinstance(data, tuple) or not all(isinstance(x, (torch.Tensor, tuple, list, bool, type(None))) for x in data):
        raise MalformedModelError("a sparse tensor's data must be tensors and a size")
    t: torch.Tensor = torch._utils._rebuild_sparse_tensor(layout, data)
    # torch validates only when invariant checks are on; we always do, after the load.
    torch._utils._sparse_tensors_to_validate.clear()
    _sparse_to_validate.append(t)
    return t


def validate_sparse() -> None:
    """Check every sparse tensor of the load (indices inside the shape, ...)."""
    try:
        with torch.sparse.check_sparse_tensor_invariants():
            torch._utils._sparse_tensors_to_validate.extend(_sparse_to_validate)
            torch._utils._validate_loaded_sparse_tensors()
    except (RuntimeError, ValueError) as exc:
        raise MalformedModelError(f"a sparse tensor is inconsistent: {exc}") from exc
    finally:
        _sparse_to_validate.clear()
        torch._utils._sparse_tensors_to_validate.clear()


def rebuild_meta_tensor_no_storage(dtype: Any, size: Any, stride: Any, requires_grad: Any) -> torch.Tensor:
    if not isinstance(dtype, torch.dtype) or type(requires_grad) is not bool:
        raise MalformedModelError("a meta tensor needs a dtype and a requires_grad flag")
    return torch.empty_strided(_ints(size, "size"), _ints(stride, "stride"), dtype=dtype, device="meta",
                               requires_grad=requires_grad)


def rebuild_nested_tensor(buffer: Any, sizes: Any, strides: Any, storage_offsets: Any) -> torch.Tensor:
    if not all(isinstance(x, torch.Tensor) for x in (buffer, sizes, strides, storage_offsets)):
        raise MalformedModelError("a nested tensor is built from four tensors")
    numel = buffer.numel()
    for size, stride, offset in zip(sizes.tolist(), strides.tolist(), storage_offsets.tolist()):
        check_view(numel, offset, size, stride, "nested tensor component")
    t: torch.Tensor = torch._utils._rebuild_nested_tensor(buffer, sizes, strides, storage_offsets)
    return t


def _device(dev: Any) -> Any:
    if not isinstance(dev, (str, torch.device)):
        raise MalformedModelError("a device must be a string or torch.device")
    return dev


def rebuild_device_tensor_from_cpu_tensor(data: Any, dtype: Any, device: Any, requires_grad: Any) -> torch.Tensor:
    if not isinstance(data, torch.Tensor) or not isinstance(dtype, torch.dtype):
        raise MalformedModelError("_rebuild_device_tensor_from_cpu_tensor needs a tensor and a dtype")
    t: torch.Tensor = torch._utils._rebuild_device_tensor_from_cpu_tensor(data, dtype, _device(device), requires_grad)
    return t


def rebuild_device_tensor_from_numpy(data: Any, dtype: Any, device: Any, requires_grad: Any) -> torch.Tensor:
    import numpy as np

    if not isinstance(data, np.ndarray) or data.dtype.hasobject or not isinstance(dtype, torch.dtype):
        raise MalformedModelError("_rebuild_device_tensor_from_numpy needs a plain numpy array and a dtype")
    t: torch.Tensor = torch._utils._rebuild_device_tensor_from_numpy(data, dtype, _device(device), requires_grad)
    return t


def make_rebuild_wrapper_subclass(allowed_classes: Any) -> Any:
    def rebuild_wrapper_subclass(cls: Any, dtype: Any, size: Any, stride: Any, storage_offset: Any, layout: Any,
                                 device: Any, requires_grad: Any) -> torch.Tensor:
        if cls not in allowed_classes:
            raise UnsafeModelError(f"a wrapper subclass of {getattr(cls, '__name__', cls)!r} is not allowed")
        t: torch.Tensor = torch._utils._rebuild_wrapper_subclass(cls, dtype, _ints(size, "size"),
                                                                 _ints(stride, "stride"), storage_offset, layout,
                                                                 _device(device), requires_grad)
        return t

    return rebuild_wrapper_subclass


def make_rebuild_from_type_v2(table: LoadTable, tensor_classes: Any) -> Any:
    def rebuild_from_type_v2(func: Any, new_type: Any, args: Any, state: Any) -> Any:
        impl = table.impl_of(func)
        if impl is None:
            raise UnsafeModelError("_rebuild_from_type_v2 names a function the policy does not allow calling")
        if new_type not in tensor_classes:
            raise UnsafeModelError(f"_rebuild_from_type_v2 makes a {getattr(new_type, '__name__', new_type)!r}, "
                                   "which is not an allowed tensor class")
        if not isinstance(args, tuple):
            raise MalformedModelError("_rebuild_from_type_v2 arguments are not a tuple")
        ret = impl(*args)
        if type(ret) is not new_type:
            ret = ret.as_subclass(new_type)
        _set_attributes(ret, state, "a tensor")
        return ret

    return rebuild_from_type_v2


def load_from_bytes(data: Any) -> Any:
    """torch.storage._load_from_bytes: a storage pickled by pickle.dumps(tensor)
    is a whole legacy torch file in a bytes string; load it as one, safely."""
    from aisbom.loader import load_buffer

    if not isinstance(data, (bytes, bytearray)):
        raise MalformedModelError("_load_from_bytes needs bytes")
    return load_buffer(bytes(data), path="<embedded torch file>", sandbox="never", tensors="torch", config=False)


def _size(*args: Any) -> torch.Size:
    if len(args) != 1:
        raise MalformedModelError("torch.Size takes one tuple")
    return torch.Size(_ints(args[0], "torch.Size"))


def _device_ctor(*args: Any) -> torch.device:
    if not 1 <= len(args) <= 2 or not isinstance(args[0], str) or (len(args) == 2 and type(args[1]) is not int):
        raise MalformedModelError("torch.device takes a type string and an index")
    return torch.device(*args)


def _get_layout(name: Any) -> Any:
    if not isinstance(name, str):
        raise MalformedModelError("_get_layout takes a layout name")
    return torch.serialization._get_layout(name)


def _tensor_state(inst: Any, state: Any) -> None:
    """BUILD on a tensor: legacy (storage, offset, size, stride) tuples, or attributes."""
    if isinstance(state, tuple) and len(state) in (4, 5) and isinstance(state[0], torch.storage.TypedStorage):
        s = state[0]
        dims, steps = check_view(s._untyped_storage.nbytes() // itemsize(s.dtype), state[1], state[2], state[3])
        inst.set_(s._untyped_storage, state[1], dims, steps)
        return
    if isinstance(state, tuple) and len(state) == 4 and state[0] is None:
        # Tensor.__reduce_ex__ of old torch: (None, requires_grad?, ...); keep the flag only
        return
    _set_attributes(inst, state, "a tensor")


def add_torch(t: LoadTable) -> None:
    for name, st in storage_types().items():
        t.value(name, st)
    t.value("torch.storage.TypedStorage", torch.storage.TypedStorage)
    dtype_names = ["float64", "float32", "float16", "bfloat16", "complex128", "complex64", "complex32", "bool",
                   "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "qint8", "quint8",
                   "qint32", "quint4x2", "quint2x4", "bits1x8", "bits2x4", "bits4x2", "bits8", "bits16",
                   "float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2", "float8_e5m2fnuz", "float8_e8m0fnu",
                   "float4_e2m1fn_x2"] + [f"int{i}" for i in range(1, 8)] + [f"uint{i}" for i in range(1, 8)]
    for name in dtype_names:
        if hasattr(torch, name):
            t.value(f"torch.{name}", getattr(torch, name))
    for q in ("per_tensor_affine", "per_tensor_symmetric", "per_channel_affine", "per_channel_symmetric",
              "per_channel_affine_float_qparams"):
        t.value(f"torch.{q}", getattr(torch, q))
    tensor_classes = {torch.Tensor, torch.nn.Parameter}
    for cls in torch._tensor_classes:
        t.value(f"{cls.__module__}.{cls.__name__}", cls)
    t.value("torch.Tensor", torch.Tensor)
    t.value("torch.nn.parameter.Parameter", torch.nn.Parameter)
    t.callable("torch.Size", torch.Size, _size)
    t.callable("torch.device", torch.device, _device_ctor)
    t.callable("torch.serialization._get_layout", torch.serialization._get_layout, _get_layout)
    for name, fn in (
        ("_rebuild_tensor", rebuild_tensor),
        ("_rebuild_tensor_v2", rebuild_tensor_v2),
        ("_rebuild_tensor_v3", rebuild_tensor_v3),
        ("_rebuild_parameter", rebuild_parameter),
        ("_rebuild_parameter_with_state", rebuild_parameter_with_state),
        ("_rebuild_qtensor", rebuild_qtensor),
        ("_rebuild_sparse_tensor", rebuild_sparse_tensor),
        ("_rebuild_meta_tensor_no_storage", rebuild_meta_tensor_no_storage),
        ("_rebuild_nested_tensor", rebuild_nested_tensor),
        ("_rebuild_device_tensor_from_cpu_tensor", rebuild_device_tensor_from_cpu_tensor),
        ("_rebuild_device_tensor_from_numpy", rebuild_device_tensor_from_numpy),
        ("_rebuild_wrapper_subclass", make_rebuild_wrapper_subclass(tensor_classes)),
    ):
        t.callable(f"torch._utils.{name}", getattr(torch._utils, name), fn)
    t.callable("torch.storage._load_from_bytes", torch.storage._load_from_bytes, load_from_bytes)
    t.callable("torch._tensor._rebuild_from_type_v2", torch._tensor._rebuild_from_type_v2,
               make_rebuild_from_type_v2(t, tensor_classes))
    t.newobj(torch.nn.Parameter, lambda *args: rebuild_parameter(args[0], args[1] if len(args) > 1 else True, None))
    t.build(torch.Tensor, _tensor_state)
    t.build(torch.nn.Parameter, _tensor_state)
