"""aisbom convert IN OUT.safetensors: load through safe_load (the sandbox when
needed), then write the tensors as safetensors, atomically."""
from __future__ import annotations

import json
import os
import tempfile
from typing import Any, Dict, Iterable, List, Optional, Tuple

from aisbom.policy import AllowSpec

__all__ = ["convert", "flatten", "write_safetensors"]

_TORCH_DTYPES = {
    "float64": "F64", "float32": "F32", "float16": "F16", "bfloat16": "BF16", "int64": "I64", "int32": "I32",
    "int16": "I16", "int8": "I8", "uint8": "U8", "uint16": "U16", "uint32": "U32", "uint64": "U64", "bool": "BOOL",
    "float8_e4m3fn": "F8_E4M3", "float8_e5m2": "F8_E5M2", "float8_e8m0fnu": "F8_E8M0", "complex64": "C64",
}
_NUMPY_KINDS = {
    ("f", 8): "F64", ("f", 4): "F32", ("f", 2): "F16", ("i", 8): "I64", ("i", 4): "I32", ("i", 2): "I16",
    ("i", 1): "I8", ("u", 1): "U8", ("u", 2): "U16", ("u", 4): "U32", ("u", 8): "U64", ("b", 1): "BOOL",
    ("c", 8): "C64",
}


def _is_tensor(x: Any) -> bool:
    mod = type(x).__module__
    return (mod.startswith("torch") and hasattr(x, "untyped_storage")) or (mod == "numpy" and hasattr(x, "dtype")
                                                                            and hasattr(x, "shape"))


def flatten(obj: Any, prefix: str = "") -> Tuple[Dict[str, Any], List[str]]:
    """name -> tensor for every tensor in nested dicts/lists (names joined with
    '.'), and the names of the leaves that are not tensors."""
    from aisbom.sandboxed import ModuleState

    tensors: Dict[str, Any] = {}
    other: List[str] = []
    stack: List[Tuple[str, Any]] = [(prefix, obj)]
    while stack:
        name, value = stack.pop()
        if isinstance(value, ModuleState):
            value = value.state_dict
        if _is_tensor(value):
            tensors[name] = value
        elif isinstance(value, dict):
            stack.extend((f"{name}.{k}" if name else str(k), v) for k, v in value.items())
        elif isinstance(value, (list, tuple)):
            stack.extend((f"{name}.{i}" if name else str(i), v) for i, v in enumerate(value))
        else:
            other.append(name or "<root>")
    return tensors, sorted(other)


def _encode(t: Any) -> Tuple[str, List[int], bytes]:
    """(safetensors dtype, shape, little-endian contiguous bytes)."""
    if type(t).__module__.startswith("torch"):
        import torch

        name = str(t.dtype).replace("torch.", "")
        if name not in _TORCH_DTYPES:
            raise ValueError(f"safetensors has no dtype for torch.{name}")
        flat = t.detach().to("cpu").contiguous()
        raw = flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b""
        return _TORCH_DTYPES[name], list(flat.shape), raw
    import numpy as np

    key = (t.dtype.kind, t.dtype.itemsize)
    if key not in _NUMPY_KINDS:
        raise ValueError(f"safetensors has no dtype for numpy {t.dtype}")
    arr = np.ascontiguousarray(t, dtype=t.dtype.newbyteorder("<") if t.dtype.itemsize > 1 else t.dtype)
    return _NUMPY_KINDS[key], list(arr.shape), arr.tobytes()


def write_safetensors(tensors: Dict[str, Any], path: str, metadata: Optional[Dict[str, str]] = None) -> None:
    """Write `tensors` to `path` as safetensors; `path` is replaced only once the
    whole file is written and synced (never a half-written output)."""
    entries = []
    offset = 0
    for name in sorted(tensors):
        dtype, shape, raw = _encode(tensors[name])
        entries.append((name, dtype, shape, raw, offset))
        offset += len(raw)
    header: Dict[str, Any] = {"__metadata__": dict(metadata or {"format": "pt"})}
    for name, dtype, shape, raw, start in entries:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [start, start + len(raw)]}
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the data starts 8-aligned
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".aisbom-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(len(text).to_bytes(8, "little"))
            f.write(text)
            for _name, _dtype, _shape, raw, _start in entries:
                f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def convert(src: str, dst: str, *, allow: Iterable[AllowSpec] = (), sandbox: str = "auto",
            drop_non_tensors: bool = False) -> Dict[str, Any]:
    """Load `src` safely and write its tensors to `dst` (safetensors). Returns a
    summary: tensor count, bytes, and the non-tensor leaves that were dropped."""
    from aisbom.loader import safe_load

    obj = safe_load(src, allow=tuple(allow), sandbox=sandbox)
    tensors, other = flatten(obj)
    if other and not drop_non_tensors:
        shown = ", ".join(other[:8]) + (f" and {len(other) - 8} more" if len(other) > 8 else "")
        raise ValueError(f"{src} holds values that are not tensors ({shown}); safetensors stores only tensors "
                         "(pass --drop-non-tensors to leave them out)")
    if not tensors:
        raise ValueError(f"{src} holds no tensors to write")
    write_safetensors(tensors, dst)
    return {"tensors": len(tensors), "dropped": other, "bytes": os.path.getsize(dst)}
