"""numpy .npy/.npz and safetensors, loaded without pickle unless the array
holds objects (then through the allowlisting unpickler)."""
from __future__ import annotations

import ast
import json
import math
from typing import TYPE_CHECKING, Any, Dict

from aisbom import _core
from aisbom.errors import MalformedModelError

if TYPE_CHECKING:  # pragma: no cover
    from aisbom.loader import _Loader

_NPY_MAX_HEADER = 10000


def _npy_header(buf: Any) -> Any:
    view = memoryview(buf)
    if len(view) < 10 or bytes(view[:6]) != b"\x93NUMPY":
        raise MalformedModelError("not a .npy file")
    major = view[6]
    if major == 1:
        hlen, start = int.from_bytes(view[8:10], "little"), 10
    elif major in (2, 3):
        hlen, start = int.from_bytes(view[8:12], "little"), 12
    else:
        raise MalformedModelError(f"unknown .npy version {major}")
    if hlen > _NPY_MAX_HEADER or start + hlen > len(view):
        raise MalformedModelError(".npy header too long or truncated")
    text = bytes(view[start:start + hlen]).decode("latin-1" if major < 3 else "utf-8")
    try:
        header = ast.literal_eval(text)
    except (ValueError, SyntaxError) as exc:
        raise MalformedModelError(f".npy header is not a Python literal: {exc}") from None
    if not isinstance(header, dict) or set(header) != {"descr", "fortran_order", "shape"}:
        raise MalformedModelError(".npy header must have exactly descr, fortran_order and shape")
    return header, start + hlen


def load_npy(L: "_Loader", buf: Any) -> Any:
    import numpy as np
    from numpy.lib.format import descr_to_dtype

    header, body = _npy_header(buf)
    shape = header["shape"]
    if not isinstance(shape, tuple) or not all(type(d) is int and d >= 0 for d in shape):
        raise MalformedModelError(".npy shape is not a tuple of sizes")
    if type(header["fortran_order"]) is not bool:
        raise MalformedModelError(".npy fortran_order is not a bool")
    dtype = descr_to_dtype(header["descr"])
    if dtype.hasobject:
        obj, _ = L.unpickle(buf, body)
        if not isinstance(obj, np.ndarray):
            raise MalformedModelError("an object .npy did not hold an array")
        return obj
    count = math.prod(shape)
    nbytes = count * dtype.itemsize
    if len(buf) - body < nbytes:
        raise MalformedModelError(".npy data is shorter than its header declares")
    flat = np.frombuffer(buf, dtype=dtype, count=count, offset=body)
    order = "F" if header["fortran_order"] else "C"
    arr = flat.reshape(shape[::-1]).transpose() if order == "F" else flat.reshape(shape)
    return arr if L.mmap else arr.copy(order="K")


def load_npz(L: "_Loader") -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for name, method, _flags, _crc, comp, size, off, anomalies in _core.zip_entries(L.buf):
        if anomalies & _core.ZIP_ORPHAN:
            continue
        key = name.decode("utf-8", "replace")
        if key in out or key[:-4] in out:
            continue
        data = memoryview(L.buf)[off:off + comp] if method == 0 else _core.inflate_raw(memoryview(L.buf)[off:off + comp], size)
        if _core.sniff(data) != "npy":
            out[key] = bytes(data)
            continue
        out[key[:-4] if key.endswith(".npy") else key] = load_npy(L, data)
    return out


_ST_NUMPY = {
    "BOOL": "?", "U8": "u1", "I8": "i1", "I16": "<i2", "U16": "<u2", "F16": "<f2", "I32": "<i4", "U32": "<u4",
    "F32": "<f4", "F64": "<f8", "I64": "<i8", "U64": "<u8", "C64": "<c8",
}
_ST_TORCH = {
    "BOOL": "bool", "U8": "uint8", "I8": "int8", "I16": "int16", "U16": "uint16", "F16": "float16", "BF16": "bfloat16",
    "I32": "int32", "U32": "uint32", "F32": "float32", "F64": "float64", "I64": "int64", "U64": "uint64",
    "C64": "complex64", "F8_E5M2": "float8_e5m2", "F8_E4M3": "float8_e4m3fn", "F8_E8M0": "float8_e8m0fnu",
}


def load_safetensors(L: "_Loader") -> Dict[str, Any]:
    import numpy as np

    view = memoryview(L.buf)
    hlen = int.from_bytes(view[:8], "little")
    header = json.loads(bytes(view[8:8 + hlen]).decode("utf-8"))
    base = 8 + hlen
    out: Dict[str, Any] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        raw = np.frombuffer(L.buf, dtype=np.uint8, count=end - begin, offset=base + begin)
        dtype, shape = info["dtype"], tuple(info["shape"])
        if L.tensors == "torch":
            import torch

            tdtype = getattr(torch, _ST_TORCH.get(dtype, ""), None)
            if tdtype is None:
                raise MalformedModelError(f"safetensors dtype {dtype} has no torch equivalent here")
            data = raw if L.mmap else raw.copy()
            out[name] = torch.frombuffer(data, dtype=tdtype).reshape(shape) if data.size else torch.empty(shape, dtype=tdtype)
        else:
            if dtype in _ST_NUMPY:
                arr = raw.view(_ST_NUMPY[dtype]).reshape(shape)
            else:
                from aisbom.numpy_tensors import _widen

                arr = _widen({"BF16": "bfloat16", "F8_E5M2": "float8_e5m2", "F8_E4M3": "float8_e4m3fn",
                              "F8_E8M0": "float8_e8m0fnu"}.get(dtype, dtype), raw).reshape(shape)
            out[name] = arr if L.mmap else arr.copy()
    return out
