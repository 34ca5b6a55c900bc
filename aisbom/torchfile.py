"""torch checkpoints: the zip format and the legacy stacked-pickle stream.

Records are chosen the way torch's reader chooses them (the folder of the
first central-directory entry, the first entry of each name), from the same
zip table the scanner walked. Storages are read zero-copy from the mapped
file with mmap=True, copied otherwise.
"""
from __future__ import annotations

import struct
import sys
import warnings
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional, Tuple

from aisbom import _core
from aisbom.errors import MalformedModelError, UnsafeModelError
from aisbom.restore import StorageType

if TYPE_CHECKING:  # pragma: no cover
    from aisbom.loader import _Loader

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001


def _text(x: Any, what: str) -> str:
    if isinstance(x, bytes):
        try:
            return x.decode("ascii")
        except UnicodeDecodeError:
            raise MalformedModelError(f"the persistent id's {what} is not ASCII") from None
    if not isinstance(x, str):
        raise MalformedModelError(f"the persistent id's {what} is not a string")
    return x


def _storage_type(stype: Any, loader: "_Loader") -> StorageType:
    if isinstance(stype, StorageType) and stype.dtype is not None:
        return stype
    if isinstance(stype, StorageType):
        raise MalformedModelError(f"{stype.name} (quantized) tensors need torch; load with tensors='torch'")
    raise MalformedModelError("a persistent id does not name a storage type")


class _Zip:
    """The records of a torch zip, as torch's reader finds them: the folder of
    the first central-directory entry, names compared without ASCII case.
    Ambiguities torch resolves by accident (folded duplicates, "directories"
    holding data) are refused rather than guessed."""

    def __init__(self, buf: Any) -> None:
        self.buf = buf
        hidden = _core.ZIP_ORPHAN | _core.ZIP_ALTERNATE
        entries = [e for e in _core.zip_entries(buf) if not e[7] & hidden]
        if not entries:
            raise MalformedModelError("the archive has no members")
        first = entries[0][0]
        if b"/" not in first:
            raise MalformedModelError(f"the first member {first!r} is not in a folder, which torch requires")
        self.prefix = first[: first.index(b"/") + 1].lower()
        self.records: Dict[bytes, Tuple[Any, ...]] = {}
        self._storages: Optional[Dict[bytes, Tuple[Any, ...]]] = None
        for e in entries:
            key = e[0].lower()
            if key in self.records:
                raise MalformedModelError(f"two members are named {e[0]!r} (ignoring case); torch would pick one "
                                          "by the order of a heap sort")
            self.records[key] = e

    def entry(self, name: str) -> Optional[Tuple[Any, ...]]:
        return self._checked(self.records.get(self.prefix + name.encode().lower()))

    def storage(self, key: str) -> Optional[Tuple[Any, ...]]:
        """entry(f"data/{key}"), from a table made once: this runs per tensor."""
        if self._storages is None:
            folder = self.prefix + b"data/"
            self._storages = {k[len(folder):]: e for k, e in self.records.items() if k.startswith(folder)}
        return self._checked(self._storages.get(key.encode().lower()))

    def _checked(self, e: Optional[Tuple[Any, ...]]) -> Optional[Tuple[Any, ...]]:
        if e is not None and e[7] & _core.ZIP_DIRECTORY:
            raise MalformedModelError(f"member {e[0]!r} is marked as a directory; torch would read uninitialised memory")
        if e is not None and e[2] & 0x61:
            raise MalformedModelError(f"member {e[0]!r} is flagged encrypted or patched (flags 0x{e[2]:04x})")
        return e

    def read(self, entry: Tuple[Any, ...]) -> Any:
        _name, method, _flags, _crc, comp, size, off, _anom = entry
        if method == 0:
            return memoryview(self.buf)[off: off + comp]
        if method == 8:
            return _core.inflate_raw(memoryview(self.buf)[off: off + comp], size)
        raise MalformedModelError(f"member {_name!r} uses compression method {method}, which torch cannot read")


def load_torch_zip(L: "_Loader") -> Any:
    z = _Zip(L.buf)
    data_pkl = z.entry("data.pkl")
    if data_pkl is None:
        raise MalformedModelError("the archive has no data.pkl in its folder")
    byteorder = z.entry("byteorder")
    order = bytes(z.read(byteorder)) if byteorder else b"little"
    if order not in (b"little", b"big"):
        raise MalformedModelError(f"unknown byteorder {order!r}")
    swap = order.decode() != sys.byteorder
    make = _TorchStorages(L, z, swap) if L.tensors == "torch" else _NumpyStorages(L, z, swap)
    pickle_bytes = z.read(data_pkl)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch.frombuffer on a read-only map
        obj, _ = L.unpickle(pickle_bytes, persistent_load=make.persistent_load, encoding="utf-8")
    make.finish()
    return obj


class _TorchStorages:
    def __init__(self, L: "_Loader", z: _Zip, swap: bool) -> None:
        import torch

        self.torch = torch
        self.L = L
        self.z = z
        self.swap = swap
        self.cache: Dict[str, Any] = {}
        self.restore = torch.serialization._get_restore_location(L.map_location)
        self.overall = None
        self.typed_class: Callable[..., torch.storage.TypedStorage] = torch.storage.TypedStorage
        self.untyped_class = torch.storage.UntypedStorage
        self.untyped_type = StorageType("UntypedStorage", torch.uint8, 1)
        if L.mmap and L.path:
            self.overall = torch.UntypedStorage.from_file(L.path, False, len(L.buf))

    def _bytes(self, entry: Tuple[Any, ...], nbytes: int) -> Any:
        torch = self.torch
        _name, method, _flags, _crc, comp, size, off, _anom = entry
        if size != nbytes:
            raise MalformedModelError(
                f"storage record {_name.decode(errors='replace')} holds {size} bytes, its persistent id declares {nbytes}"
            )
        if method == 0 and self.overall is not None:
            return self.overall[off: off + nbytes]
        if nbytes == 0:
            return torch.UntypedStorage(0)
        # from_buffer copies into a storage of its own, as torch.load gives each record.
        data = memoryview(self.L.buf)[off: off + nbytes] if method == 0 else self.z.read(entry)
        return torch.UntypedStorage.from_buffer(data, byte_order="native", dtype=torch.uint8)

    def persistent_load(self, pid: Any) -> Any:
        # Runs once per tensor: names are looked up once, in __init__.
        if type(pid) is not tuple or len(pid) != 5:
            raise MalformedModelError("a persistent id is not ('storage', type, key, location, numel)")
        tag, stype, key, location, numel = pid
        if type(key) is not str:
            key = _text(key, "key")
        hit = self.cache.get(key)
        if hit is not None:
            return hit  # torch reuses the first storage of a key, whatever later ids say
        if tag != "storage" and _text(tag, "tag") != "storage":
            raise MalformedModelError("only storages may be persistent objects in a torch file")
        if stype is self.untyped_class:
            stype = self.untyped_type
        st = _storage_type(stype, self.L)
        if type(numel) is not int or numel < 0:
            raise MalformedModelError("a storage's element count is not a non-negative integer")
        entry = self.z.storage(key)
        if entry is None:
            raise MalformedModelError(f"the storage record data/{key} is missing")
        untyped = self._bytes(entry, numel * st.itemsize)
        if self.swap and st.itemsize > 1:
            untyped.byteswap(st.dtype)
        if location != "cpu" or self.L.map_location is not None:
            untyped = self.restore(untyped, _text(location, "location"))
        typed = self.typed_class(wrap_storage=untyped, dtype=st.dtype, _internal=True)
        self.cache[key] = typed
        return typed

    def finish(self) -> None:
        from aisbom.torch_support import validate_sparse

        validate_sparse()


class _NumpyStorages:
    def __init__(self, L: "_Loader", z: _Zip, swap: bool) -> None:
        import numpy as np

        self.np = np
        self.L = L
        self.z = z
        self.swap = swap
        self.cache: Dict[str, Any] = {}

    def persistent_load(self, pid: Any) -> Any:
        from aisbom.numpy_tensors import NumpyStorage

        np = self.np
        if type(pid) is not tuple or len(pid) != 5:
            raise MalformedModelError("a persistent id is not ('storage', type, key, location, numel)")
        tag, stype, key, _location, numel = pid
        if _text(tag, "tag") != "storage":
            raise MalformedModelError("only storages may be persistent objects in a torch file")
        st = _storage_type(stype, self.L)
        key = _text(key, "key")
        if type(numel) is not int or numel < 0:
            raise MalformedModelError("a storage's element count is not a non-negative integer")
        hit = self.cache.get(key)
        if hit is not None:
            return hit
        entry = self.z.storage(key)
        if entry is None:
            raise MalformedModelError(f"the storage record data/{key} is missing")
        nbytes = numel * st.itemsize
        if entry[5] != nbytes:
            raise MalformedModelError(f"storage record data/{key} holds {entry[5]} bytes, its persistent id declares {nbytes}")
        raw = np.frombuffer(self.z.read(entry), dtype=np.uint8)
        if not self.L.mmap or entry[1] != 0:
            raw = raw.copy()
        if self.swap and st.itemsize > 1:
            raw = raw.view(f"u{st.itemsize}").byteswap().view(np.uint8)
        storage = NumpyStorage(raw, st.dtype)
        self.cache[key] = storage
        return storage

    def finish(self) -> None:
        pass


# ---- the legacy stream ----


def load_torch_legacy(L: "_Loader") -> Any:
    buf = L.buf
    magic, pos = L.unpickle(buf, 0)
    if magic != MAGIC_NUMBER:
        raise MalformedModelError("invalid magic number; not a torch legacy file")
    version, pos = L.unpickle(buf, pos)
    if version != PROTOCOL_VERSION:
        raise MalformedModelError(f"invalid torch legacy protocol version {version!r}")
    _sys_info, pos = L.unpickle(buf, pos)
    roots: Dict[str, Tuple[Any, StorageType, int, Any]] = {}  # storage, type, size in bytes, holder
    views: Dict[str, Any] = {}
    torch_mode = L.tensors == "torch"
    if torch_mode:
        import torch

        restore = torch.serialization._get_restore_location(L.map_location)
    import numpy as np

    def persistent_load(pid: Any) -> Any:
        if type(pid) is not tuple or len(pid) != 6 or _text(pid[0], "tag") != "storage":
            raise MalformedModelError("a persistent id is not ('storage', type, key, location, numel, view)")
        _tag, stype, key, location, numel, view = pid
        st = _storage_type(stype, L)
        key = _text(key, "key")
        if type(numel) is not int or numel < 0:
            raise MalformedModelError("a storage's element count is not a non-negative integer")
        if key not in roots:
            nbytes = numel * st.itemsize
            if torch_mode:
                holder: Any = torch.empty(nbytes, dtype=torch.uint8)  # a tensor here, an array without torch
                untyped = holder.untyped_storage()
                moved = restore(untyped, _text(location, "location"))
                if moved.device != untyped.device:
                    raise MalformedModelError("map_location to another device is not supported for legacy files")
                typed: Any = torch.storage.TypedStorage(wrap_storage=untyped, dtype=st.dtype, _internal=True)
            else:
                from aisbom.numpy_tensors import NumpyStorage

                holder = np.empty(nbytes, dtype=np.uint8)
                typed = NumpyStorage(holder, st.dtype)
            roots[key] = (typed, st, nbytes, holder)
        root, rst, rbytes, _holder = roots[key]
        if view is None:
            return root
        if not isinstance(view, tuple) or len(view) != 3:
            raise MalformedModelError("a storage view is not (key, offset, size)")
        vkey, voff, vsize = _text(view[0], "view key"), view[1], view[2]
        if type(voff) is not int or type(vsize) is not int or voff < 0 or vsize < 0 or (voff + vsize) * rst.itemsize > rbytes:
            raise MalformedModelError("a storage view lies outside its storage")
        if vkey not in views:
            a, b = voff * rst.itemsize, (voff + vsize) * rst.itemsize
            if torch_mode:
                views[vkey] = torch.storage.TypedStorage(wrap_storage=root._untyped_storage[a:b], dtype=rst.dtype,
                                                         _internal=True)
            else:
                from aisbom.numpy_tensors import NumpyStorage

                views[vkey] = NumpyStorage(root.data[a:b], rst.dtype)
        return views[vkey]

    obj_start = pos
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        obj, pos = L.unpickle(buf, pos, persistent_load=persistent_load, encoding="utf-8")
    keys, pos = L.unpickle(buf, pos)
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise MalformedModelError("the storage key list is not a list of strings")
    data = memoryview(buf)
    for key in keys:
        if key not in roots:
            raise MalformedModelError(f"storage key {key!r} has no storage")
        _typed, st, nbytes, holder = roots[key]
        if len(data) - pos < 8:
            raise MalformedModelError("a storage record is truncated")
        (count,) = struct.unpack_from("<q", data, pos)
        if count < 0 or count * st.itemsize != nbytes or len(data) - pos - 8 < nbytes:
            raise MalformedModelError(f"storage {key!r} has the wrong byte size")
        target = holder.numpy() if torch_mode else holder
        target[:] = np.frombuffer(data, dtype=np.uint8, count=nbytes, offset=pos + 8)
        pos += 8 + nbytes
    if pos != len(data):
        raise MalformedModelError("bytes follow the last storage of the legacy file")
    if not torch_mode:
        # Widened dtypes (bfloat16, float8) were copied before the storage
        # data arrived; read the object again now that it is there.
        obj, _ = L.unpickle(buf, obj_start, persistent_load=persistent_load, encoding="utf-8")
    if torch_mode:
        from aisbom.torch_support import validate_sparse

        validate_sparse()
    return obj
