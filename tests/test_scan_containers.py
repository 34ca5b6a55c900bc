"""Containers: torch zips (and their tampering), TorchScript, torch's legacy stream
and tar formats, numpy .npy/.npz, joblib, compression wrappers, polyglots,
unsupported wrappers, extension confusion and safetensors.

Payloads only ever create the test's canary file; nothing is unpickled: torch,
numpy and joblib are used to *write* benign files only.
"""
from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import struct
import tarfile
import zipfile
import zlib
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import pytest
import torch

import aisbom
from aisbom import Limits, Severity, Verdict
from asm import (
    BININT1, BINPERSID, BINUNICODE, EMPTY_DICT, EMPTY_LIST, GLOBAL, MARK, NEWTRUE, POP, PROTO, REDUCE,
    SETITEM, SHORT_BINUNICODE, STOP, STRING, TUPLE, describe, findings, named, pickle_of, tuple_of,
)

MAL = Verdict.MALICIOUS



def scan(data: bytes, **kw):
    return aisbom.scan_bytes(data, **kw)


def assert_payload(report, member: Optional[str] = "*", global_name: str = "os.system"):
    assert report.verdict is MAL, describe(report)
    hits = findings(report, rule="blocked-global", global_name=global_name, member=member)
    assert hits, f"no blocked-global {global_name} in member {member!r}\n{describe(report)}"
    return hits


# ====================================================================== zip writing by hand


def make_zip(entries: Sequence[Dict], comment: bytes = b"") -> bytes:
    """A zip built byte by byte, so every field can be tampered with.

    Each entry: name, data; optional method (0 stored, 8 deflated), flags,
    local_flags, crc (the stored CRC-32), local_name, raw (compressed bytes),
    size (the declared uncompressed size). Offsets are relative to the start
    of the returned bytes."""
    out = bytearray()
    central = bytearray()
    for e in entries:
        name = e["name"].encode() if isinstance(e["name"], str) else e["name"]
        lname = e.get("local_name", name)
        lname = lname.encode() if isinstance(lname, str) else lname
        data = e["data"]
        method = e.get("method", 0)
        comp = e.get("raw")
        if comp is None:
            comp = data if method == 0 else raw_deflate(data)
        crc = e.get("crc", zlib.crc32(data) & 0xFFFFFFFF)
        size = e.get("size", len(data))
        flags = e.get("flags", 0)
        lflags = e.get("local_flags", flags)
        offset = len(out)
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, lflags, method, 0, 0x21, crc, len(comp), size, len(lname), 0)
        out += lname + comp
        central += struct.pack(
            "<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, flags, method, 0, 0x21, crc, len(comp), size,
            len(name), 0, 0, 0, 0, 0, offset,
        ) + name
    cd_offset = len(out)
    out += central
    out += struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(entries), len(entries), len(central), cd_offset, len(comment))
    return bytes(out + comment)


def shift_offsets(zip_bytes: bytes, n: int) -> bytes:
    """Rewrite a make_zip() archive's offsets as if n bytes will be put before it."""
    z = bytearray(zip_bytes)
    eocd = z.rfind(b"PK\x05\x06")
    cd_size, cd_off = struct.unpack("<II", z[eocd + 12:eocd + 20])
    struct.pack_into("<I", z, eocd + 16, cd_off + n)
    p = cd_off
    while z[p:p + 4] == b"PK\x01\x02":
        nlen, xlen, clen = struct.unpack("<HHH", z[p + 28:p + 34])
        (off,) = struct.unpack("<I", z[p + 42:p + 46])
        struct.pack_into("<I", z, p + 42, off + n)
        p += 46 + nlen + xlen + clen
    return bytes(z)


def raw_deflate(data: bytes, level: int = 6) -> bytes:
    c = zlib.compressobj(level, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()


def torch_bytes(obj, **kw) -> bytes:
    b = io.BytesIO()
    torch.save(obj, b, **kw)
    return b.getvalue()


@pytest.fixture(scope="module")
def checkpoint_members() -> List[Tuple[str, bytes]]:
    """The members of a real torch.save() checkpoint, in order."""
    data = torch_bytes({"weight": torch.arange(6, dtype=torch.float32).reshape(2, 3), "step": 3})
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return [(i.filename, z.read(i)) for i in z.infolist()]


def data_pkl_name(members) -> str:
    (name,) = [n for n, _ in members if n.endswith("/data.pkl")]
    return name


def rebuild(members, replace: Optional[Dict[str, bytes]] = None, tamper: Optional[Dict[str, Dict]] = None,
            extra: Sequence[Dict] = (), first: Sequence[Dict] = ()) -> bytes:
    replace = replace or {}
    tamper = tamper or {}
    entries = list(first)
    for name, data in members:
        e = {"name": name, "data": replace.get(name, data)}
        e.update(tamper.get(name, {}))
        entries.append(e)
    entries.extend(extra)
    return make_zip(entries)


# ====================================================================== torch zip


class TestTorchZip:
    def test_rebuilt_checkpoint_is_clean_and_loadable_by_zipfile(self, checkpoint_members):
        data = rebuild(checkpoint_members)
        assert zipfile.ZipFile(io.BytesIO(data)).testzip() is None
        r = scan(data)
        assert r.verdict is Verdict.CLEAN, describe(r)
        assert r.format == "torch-zip"

    def test_payload_in_data_pkl(self, canary, checkpoint_members):
        name = data_pkl_name(checkpoint_members)
        r = scan(rebuild(checkpoint_members, replace={name: canary.os_system()}))
        assert_payload(r, member=name)
        assert r.format == "torch-zip"

    @pytest.mark.parametrize(
        "tamper",
        [
            {"local_name": "archive/innocent.txt"},
            {"flags": 0x1},
            {"flags": 0x20},
            {"flags": 0x40},
            {"crc": 0x12345678},
        ],
        ids=["local-name-differs", "flag-0x1", "flag-0x20", "flag-0x40", "wrong-crc"],
    )
    def test_tampered_member_with_payload(self, canary, checkpoint_members, tamper):
        name = data_pkl_name(checkpoint_members)
        r = scan(rebuild(checkpoint_members, replace={name: canary.os_system()}, tamper={name: tamper}))
        assert_payload(r, member=name)
        assert findings(r, rule="zip-anomaly"), describe(r)

    @pytest.mark.parametrize(
        "tamper",
        [{"local_name": "archive/innocent.txt"}, {"flags": 0x1}, {"flags": 0x20}, {"flags": 0x40}, {"crc": 0x12345678}],
        ids=["local-name-differs", "flag-0x1", "flag-0x20", "flag-0x40", "wrong-crc"],
    )
    def test_tampered_benign_checkpoint_is_flagged_not_malicious(self, checkpoint_members, tamper):
        name = data_pkl_name(checkpoint_members)
        r = scan(rebuild(checkpoint_members, tamper={name: tamper}))
        assert r.verdict is Verdict.SUSPICIOUS, describe(r)
        assert findings(r, rule="zip-anomaly", member=name), describe(r)

    @pytest.mark.parametrize("method", [0, 8], ids=["stored", "deflated"])
    def test_payload_stored_or_deflated(self, canary, checkpoint_members, method):
        name = data_pkl_name(checkpoint_members)
        r = scan(rebuild(checkpoint_members, replace={name: canary.os_system()}, tamper={name: {"method": method}}))
        assert_payload(r, member=name)

    def test_all_members_deflated_benign_is_clean(self, checkpoint_members):
        data = make_zip([{"name": n, "data": d, "method": 8} for n, d in checkpoint_members])
        r = scan(data)
        assert r.verdict is Verdict.CLEAN, describe(r)

    @pytest.mark.parametrize("payload_first", [True, False], ids=["payload-in-first-copy", "payload-in-second-copy"])
    def test_duplicate_member_names(self, canary, checkpoint_members, payload_first):
        name = data_pkl_name(checkpoint_members)
        dup = [{"name": name, "data": canary.os_system()}]
        if payload_first:
            data = rebuild(checkpoint_members, first=dup)
        else:
            data = rebuild(checkpoint_members, extra=dup)
        r = scan(data)
        assert_payload(r, member=name)
        assert findings(r, rule="zip-anomaly"), describe(r)

    def test_duplicate_with_deflated_payload(self, canary, checkpoint_members):
        name = data_pkl_name(checkpoint_members)
        data = rebuild(checkpoint_members, extra=[{"name": name, "data": canary.os_system(), "method": 8}])
        assert_payload(scan(data), member=name)

    def test_bytes_before_archive_torch_accepts(self, canary, checkpoint_members):
        """Junk starting with a local-header signature, with absolute offsets: torch loads this."""
        name = data_pkl_name(checkpoint_members)
        prefix = b"PK\x03\x04" + b"junk" * 15
        data = prefix + shift_offsets(rebuild(checkpoint_members, replace={name: canary.os_system()}), len(prefix))
        assert_payload(scan(data), member=name)

    def test_bytes_before_benign_archive_are_reported(self, checkpoint_members):
        """Unaccounted bytes before the first member are tampering torch tolerates: not clean."""
        prefix = b"PK\x03\x04" + b"junk" * 15
        data = prefix + shift_offsets(rebuild(checkpoint_members), len(prefix))
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            assert z.testzip() is None
        r = scan(data)
        assert r.verdict is not Verdict.CLEAN, describe(r)
        assert findings(r, rule="zip-anomaly"), describe(r)

    def test_hidden_local_entry_before_archive(self, canary, checkpoint_members):
        """A whole local entry (a pickle) that the central directory does not list."""
        hidden = make_zip([{"name": "archive/data.pkl", "data": canary.os_system()}])
        hidden_local = hidden[: hidden.find(b"PK\x01\x02")]
        data = hidden_local + shift_offsets(rebuild(checkpoint_members), len(hidden_local))
        r = scan(data)
        assert_payload(r)

    def test_bytes_before_archive_relative_offsets_never_clean(self, canary, checkpoint_members):
        name = data_pkl_name(checkpoint_members)
        for prefix in (b"\x00junk" * 20, b"PK\x03\x04" + b"junk" * 15):
            r = scan(prefix + rebuild(checkpoint_members, replace={name: canary.os_system()}))
            assert r.verdict is not Verdict.CLEAN, describe(r)

    def test_trailing_bytes_after_archive(self, checkpoint_members):
        r = scan(rebuild(checkpoint_members) + b"\x00extra bytes")
        assert r.verdict is not Verdict.CLEAN, describe(r)

    @pytest.mark.parametrize("member", ["archive/config.p", "archive/notes.txt", "archive/extra.pkl", "config.p", "archive/sub/dir/x"])
    def test_pickle_in_member_with_another_name(self, canary, checkpoint_members, member):
        data = rebuild(checkpoint_members, extra=[{"name": member, "data": canary.os_system()}])
        assert_payload(scan(data), member=member)

    def test_protocol0_pickle_without_proto_byte(self, canary, checkpoint_members):
        payload = GLOBAL("os", "system") + MARK + STRING(canary.shell) + TUPLE + REDUCE + STOP
        assert payload[:1] == b"c"
        data = rebuild(checkpoint_members, extra=[{"name": "archive/notes.txt", "data": payload}])
        assert_payload(scan(data), member="archive/notes.txt")

    def test_protocol1_pickle_without_proto_byte(self, canary, checkpoint_members):
        payload = MARK + GLOBAL("os", "system") + STRING(canary.shell) + b"o" + STOP  # OBJ
        data = rebuild(checkpoint_members, extra=[{"name": "archive/readme", "data": payload}])
        assert_payload(scan(data), member="archive/readme")

    def test_constants_pkl_makes_torchscript_and_is_scanned(self, canary, checkpoint_members):
        data = rebuild(checkpoint_members, extra=[{"name": "archive/constants.pkl", "data": canary.os_system()}])
        r = scan(data)
        assert_payload(r, member="archive/constants.pkl")
        assert findings(r, rule="torchscript")

    def test_pickle_in_storage_record(self, canary, checkpoint_members):
        storage = [n for n, _ in checkpoint_members if "/data/" in n][0]
        r = scan(rebuild(checkpoint_members, replace={storage: canary.os_system()}))
        assert_payload(r, member=storage)

    def test_second_pickle_in_data_pkl(self, canary, checkpoint_members):
        name = data_pkl_name(checkpoint_members)
        benign = dict(checkpoint_members)[name]
        r = scan(rebuild(checkpoint_members, replace={name: benign + canary.os_system()}))
        assert_payload(r, member=name)

    def test_data_pkl_payload_under_another_prefix(self, canary):
        data = make_zip([{"name": "model_v2/data.pkl", "data": canary.os_system()}, {"name": "model_v2/version", "data": b"3\n"}])
        assert_payload(scan(data), member="model_v2/data.pkl")

    def test_zip_inflate_bomb_member(self):
        """A deflated member that inflates past the cap: error, never clean."""
        body = PROTO(4) + b"\x8e" + struct.pack("<Q", 64 << 20) + b"\0" * (64 << 20) + STOP
        data = make_zip([{"name": "archive/data.pkl", "data": body, "method": 8}])
        r = scan(data, limits=Limits(max_inflate=8 << 20))
        assert r.verdict is Verdict.ERROR, describe(r)
        assert findings(r, rule="unreadable-member"), describe(r)

    def test_member_inflating_past_declared_size(self, canary):
        body = canary.os_system() + b"\0" * 100000
        data = make_zip([{"name": "archive/data.pkl", "data": body, "method": 8, "size": 10}])
        r = scan(data)
        assert r.verdict in (Verdict.ERROR, MAL), describe(r)

    def test_corrupt_deflate_member_is_error(self, checkpoint_members):
        name = data_pkl_name(checkpoint_members)
        good = dict(checkpoint_members)[name]
        raw = bytearray(raw_deflate(good))
        raw[len(raw) // 2] ^= 0xFF
        r = scan(rebuild(checkpoint_members, tamper={name: {"method": 8, "raw": bytes(raw)}}))
        assert r.verdict is not Verdict.CLEAN, describe(r)

    def test_zip64_member_with_payload(self, canary):
        b = io.BytesIO()
        with zipfile.ZipFile(b, "w") as z:
            with z.open("archive/data.pkl", "w", force_zip64=True) as f:
                f.write(canary.os_system())
            z.writestr("archive/version", "3\n")
        assert_payload(scan(b.getvalue()), member="archive/data.pkl")

    def test_zip_inside_zip(self, canary, checkpoint_members):
        name = data_pkl_name(checkpoint_members)
        inner = rebuild(checkpoint_members, replace={name: canary.os_system()})
        outer = make_zip([{"name": "release/model.pt", "data": inner, "method": 8}])
        r = scan(outer)
        hits = assert_payload(r)
        assert all(h.member.startswith("release/model.pt") and h.member.endswith("data.pkl") for h in hits), describe(r)

    def test_plain_zip_of_text_is_clean(self):
        data = make_zip([{"name": "README.md", "data": b"# hello\n"}, {"name": "config.json", "data": b"{}"}])
        r = scan(data)
        assert r.verdict is Verdict.CLEAN, describe(r)


# ====================================================================== TorchScript


class _Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(2, 2)

    def forward(self, x):
        return self.lin(x) * 2


def test_torchscript_archive_is_flagged(write):
    b = io.BytesIO()
    torch.jit.save(torch.jit.script(_Tiny()), b)
    r = aisbom.scan(write("scripted.pt", b.getvalue()))
    assert r.format == "torchscript", describe(r)
    assert findings(r, rule="torchscript"), describe(r)
    assert r.verdict is not Verdict.CLEAN


# ====================================================================== torch legacy stream


def split_pickles(data: bytes, count: int) -> Tuple[List[bytes], bytes]:
    """The first `count` pickles of a stream and the bytes after them (reading opcodes only)."""
    import pickletools

    parts = []
    pos = 0
    for _ in range(count):
        end = None
        for op, _arg, at in pickletools.genops(data[pos:]):
            if op.name == "STOP":
                end = pos + at + 1
                break
        assert end is not None
        parts.append(data[pos:end])
        pos = end
    return parts, data[pos:]


def inject(pickle_bytes: bytes, body: bytes) -> bytes:
    """Insert body (leaving one value) + POP right after the PROTO opcode."""
    assert pickle_bytes[:1] == b"\x80"
    return pickle_bytes[:2] + body + POP + pickle_bytes[2:]


@pytest.fixture(scope="module")
def legacy_stream() -> bytes:
    return torch_bytes(
        {"w": torch.ones(3), "i": torch.arange(4), "h": torch.zeros(2, dtype=torch.float16), "meta": {"n": 1}},
        _use_new_zipfile_serialization=False,
    )


class TestLegacyStream:
    def test_clean(self, legacy_stream):
        r = scan(legacy_stream)
        assert r.format == "torch-legacy"
        assert r.verdict is Verdict.CLEAN, describe(r)

    @pytest.mark.parametrize("index", [0, 1, 2, 3, 4], ids=["magic", "protocol", "sys_info", "object", "storage-keys"])
    def test_payload_in_each_pickle(self, canary, legacy_stream, index):
        parts, storages = split_pickles(legacy_stream, 5)
        parts[index] = inject(parts[index], canary.body())
        r = scan(b"".join(parts) + storages)
        assert_payload(r)

    def test_magic_number_built_by_a_call(self, canary, legacy_stream):
        """The magic number produced by builtins.int('0x1950...', 16); the payload follows in the object."""
        parts, storages = split_pickles(legacy_stream, 5)
        parts[0] = pickle_of(GLOBAL("builtins", "int") + BINUNICODE("1950a86a20f9469cfc6c") + BININT1(16) + b"\x86" + REDUCE)
        parts[3] = inject(parts[3], canary.body())
        r = scan(b"".join(parts) + storages)
        assert_payload(r)

    def test_trailing_bytes_after_storages(self, legacy_stream):
        r = scan(legacy_stream + b"\x00" * 7)
        assert r.verdict is Verdict.ERROR, describe(r)
        assert findings(r, rule="trailing-data"), describe(r)

    def test_payload_after_storages(self, canary, legacy_stream):
        r = scan(legacy_stream + canary.os_system())
        assert r.verdict is not Verdict.CLEAN, describe(r)

    def test_truncated_storages(self, legacy_stream):
        r = scan(legacy_stream[:-5])
        assert r.verdict is Verdict.ERROR, describe(r)


# ====================================================================== torch legacy tar


def tar_of(members: Sequence[Tuple[str, bytes]], links: Sequence[Tuple[str, str]] = ()) -> bytes:
    b = io.BytesIO()
    with tarfile.open(fileobj=b, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, data in members:
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            t.addfile(ti, io.BytesIO(data))
        for name, target in links:
            ti = tarfile.TarInfo(name)
            ti.type = tarfile.SYMTYPE
            ti.linkname = target
            t.addfile(ti)
    return b.getvalue()


def legacy_tar_parts(values=(1.0, 2.0, 3.0)) -> Dict[str, bytes]:
    """The members of torch's pre-0.4 tar format, as torch.serialization.legacy_load reads them:

    storages: pickle(count), then per storage pickle((key, location, StorageType)) followed by
              an int64 element count and the raw data; then pickle(views)
    tensors:  pickle(count), then per tensor pickle((key, storage_key, TensorType)) followed by
              int32 ndim, 4 pad bytes, int64 sizes, int64 strides, int64 storage offset
    pickle:   the object, with persistent ids naming tensor keys
    """
    n = len(values)
    sys_info = pickle_of(
        EMPTY_DICT + BINUNICODE("protocol_version") + b"M\xe9\x03" + SETITEM
        + BINUNICODE("little_endian") + NEWTRUE + SETITEM
    )
    storages = (
        pickle_of(BININT1(1))
        + pickle_of(tuple_of([BININT1(0), BINUNICODE("cpu"), GLOBAL("torch", "FloatStorage")]))
        + struct.pack("<q", n) + struct.pack(f"<{n}f", *values)
        + pickle_of(EMPTY_LIST)
    )
    tensors = (
        pickle_of(BININT1(1))
        + pickle_of(tuple_of([BININT1(1), BININT1(0), GLOBAL("torch", "FloatTensor")]))
        + struct.pack("<i", 1) + b"\0" * 4 + struct.pack("<q", n) + struct.pack("<q", 1) + struct.pack("<q", 0)
    )
    obj = pickle_of(EMPTY_DICT + BINUNICODE("w") + BINUNICODE("1") + BINPERSID + SETITEM)
    return {"sys_info": sys_info, "storages": storages, "tensors": tensors, "pickle": obj}


def legacy_tar(parts: Dict[str, bytes], links=()) -> bytes:
    return tar_of([(k, parts[k]) for k in ("sys_info", "storages", "tensors", "pickle")], links)


class TestLegacyTar:
    def test_clean(self):
        r = scan(legacy_tar(legacy_tar_parts()))
        assert r.format == "torch-tar", describe(r)
        assert r.verdict is Verdict.CLEAN, describe(r)

    @pytest.mark.parametrize("member", ["sys_info", "pickle"])
    def test_payload_in_member_pickle(self, canary, member):
        parts = legacy_tar_parts()
        parts[member] = inject(parts[member], canary.body())
        assert_payload(scan(legacy_tar(parts)), member=member)

    def test_payload_in_storage_description(self, canary):
        parts = legacy_tar_parts()
        count = pickle_of(BININT1(1))
        assert parts["storages"].startswith(count)
        rest = parts["storages"][len(count):]
        parts["storages"] = count + inject(rest[: rest.index(STOP) + 1], canary.body()) + rest[rest.index(STOP) + 1:]
        assert_payload(scan(legacy_tar(parts)), member="storages")

    def test_payload_in_storage_views(self, canary):
        parts = legacy_tar_parts()
        views = pickle_of(EMPTY_LIST)
        assert parts["storages"].endswith(views)
        parts["storages"] = parts["storages"][: -len(views)] + inject(views, canary.body())
        assert_payload(scan(legacy_tar(parts)), member="storages")

    def test_payload_in_tensor_description(self, canary):
        parts = legacy_tar_parts()
        count = pickle_of(BININT1(1))
        rest = parts["tensors"][len(count):]
        end = rest.index(STOP) + 1
        parts["tensors"] = count + inject(rest[:end], canary.body()) + rest[end:]
        assert_payload(scan(legacy_tar(parts)), member="tensors")

    def test_payload_as_count(self, canary):
        parts = legacy_tar_parts()
        parts["tensors"] = inject(parts["tensors"][:4], canary.body()) + parts["tensors"][4:]
        assert parts["tensors"].startswith(PROTO(2))
        assert_payload(scan(legacy_tar(parts)), member="tensors")

    def test_extra_member_with_payload(self, canary):
        parts = legacy_tar_parts()
        data = tar_of([(k, parts[k]) for k in parts] + [("notes", canary.os_system())])
        assert_payload(scan(data), member="notes")

    def test_trailing_bytes_in_storages(self):
        parts = legacy_tar_parts()
        parts["storages"] += b"\x01\x02"
        r = scan(legacy_tar(parts))
        assert r.verdict is Verdict.ERROR, describe(r)

    def test_generic_tar_with_pickle_member(self, canary):
        r = scan(tar_of([("README", b"hello\n"), ("models/evil.pkl", canary.os_system())]))
        assert_payload(r, member="models/evil.pkl")

    @pytest.mark.parametrize("torch_layout", [False, True], ids=["plain-tar", "torch-tar"])
    def test_tar_whose_first_header_is_a_pickle(self, short_canary, torch_layout):
        """A valid tar whose first header's name field holds a whole pickle: tarfile reads
        a tar, pickle.load reads the pickle (and runs it) from the first byte."""
        payload = short_canary.os_system()
        assert len(payload) < 100
        members = list(legacy_tar_parts().items()) if torch_layout else [("README.txt", b"just text\n")]
        data = bytearray(tar_of(members))
        data[0:100] = payload.ljust(100, b"\0")
        data[148:156] = b" " * 8
        data[148:156] = ("%06o\0 " % sum(data[0:512])).encode()
        with tarfile.open(fileobj=io.BytesIO(bytes(data))) as t:
            assert len(t.getnames()) == len(members)  # still a valid tar
        r = scan(bytes(data))
        assert r.verdict is MAL, describe(r)
        assert "os.system" in named(r), describe(r)

    def test_symlink_member_is_not_clean(self):
        r = scan(legacy_tar(legacy_tar_parts(), links=[("extra", "/etc/passwd")]))
        assert r.verdict is not Verdict.CLEAN, describe(r)
        assert findings(r, rule="tar-link"), describe(r)


# ====================================================================== numpy


def npy_bytes(a, allow_pickle=True) -> bytes:
    b = io.BytesIO()
    np.save(b, a, allow_pickle=allow_pickle)
    return b.getvalue()


def npy_object_header(shape=(2,)) -> bytes:
    """A version-1.0 .npy header for an object array of `shape` (as numpy writes it)."""
    d = "{'descr': '|O', 'fortran_order': False, 'shape': %r, }" % (shape,)
    total = 10 + len(d) + 1
    d += " " * ((64 - total % 64) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(d)) + d.encode("latin1")


class TestNumpy:
    @pytest.mark.parametrize("dtype", ["f8", "f4", "f2", "i8", "i1", "u1", "?", "c8", "U5", "S3", "M8[ns]"])
    def test_numeric_npy_is_clean(self, dtype):
        a = np.zeros((3, 4), dtype=dtype)
        r = scan(npy_bytes(a, allow_pickle=False))
        assert r.format == "npy"
        assert r.verdict is Verdict.CLEAN, describe(r)

    def test_structured_and_fortran_npy_is_clean(self):
        a = np.zeros(3, dtype=[("x", "<f4"), ("y", "<i2", (2,))])
        assert scan(npy_bytes(a)).verdict is Verdict.CLEAN
        f = np.asfortranarray(np.arange(12.0).reshape(3, 4))
        assert scan(npy_bytes(f)).verdict is Verdict.CLEAN

    def test_object_npy_written_by_numpy_is_clean(self):
        a = np.array([1, "a", None, 2.5, (1, 2)], dtype=object)
        r = scan(npy_bytes(a))
        assert r.format == "npy-object", describe(r)
        assert r.verdict is Verdict.CLEAN, describe(r)

    def test_object_npy_with_payload(self, canary):
        r = scan(npy_object_header() + canary.os_system())
        assert r.format == "npy-object"
        assert_payload(r)

    def test_object_npy_with_payload_file_named_npy(self, canary, write):
        r = aisbom.scan(write("array.npy", npy_object_header() + canary.subprocess_run()))
        assert_payload(r, global_name="subprocess.run")

    def test_structured_dtype_with_object_field_and_payload(self, canary):
        d = "{'descr': [('a', '<f8'), ('b', '|O')], 'fortran_order': False, 'shape': (1,), }"
        d += " " * ((64 - (10 + len(d) + 1) % 64) % 64) + "\n"
        header = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(d)) + d.encode()
        assert_payload(scan(header + canary.os_system()))

    def test_object_dtype_spelled_object_is_not_clean(self, canary):
        # numpy.dtype('object') is the object dtype too: numpy.load unpickles the body
        d = "{'descr': 'object', 'fortran_order': False, 'shape': (1,), }"
        d += " " * ((64 - (10 + len(d) + 1) % 64) % 64) + "\n"
        header = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(d)) + d.encode()
        r = scan(header + canary.os_system())
        assert r.verdict is not Verdict.CLEAN, describe(r)

    def test_object_npy_with_second_pickle_is_not_clean(self, canary):
        r = scan(npy_object_header() + pickle_of(EMPTY_LIST) + canary.os_system())
        assert r.verdict is not Verdict.CLEAN, describe(r)

    def test_truncated_numeric_npy_is_error(self):
        r = scan(npy_bytes(np.arange(100.0))[:-8])
        assert r.verdict is Verdict.ERROR, describe(r)

    def test_trailing_data_after_npy_is_error(self):
        r = scan(npy_bytes(np.arange(10.0)) + b"\x00" * 3)
        assert r.verdict is Verdict.ERROR, describe(r)

    def test_payload_after_numeric_npy(self, canary):
        r = scan(npy_bytes(np.arange(10.0)) + canary.os_system())
        assert r.verdict is not Verdict.CLEAN, describe(r)

    def test_broken_npy_header_is_error(self):
        bad = b"\x93NUMPY\x01\x00" + struct.pack("<H", 20) + b"{'descr': __import__"
        r = scan(bad)
        assert r.verdict is Verdict.ERROR, describe(r)

    @pytest.mark.parametrize("compressed", [False, True], ids=["stored", "compressed"])
    def test_npz_clean(self, compressed):
        b = io.BytesIO()
        (np.savez_compressed if compressed else np.savez)(b, a=np.arange(5.0), b=np.ones((2, 2), dtype="i4"))
        r = scan(b.getvalue())
        assert r.format == "npz", describe(r)
        assert r.verdict is Verdict.CLEAN, describe(r)

    @pytest.mark.parametrize("method", [0, 8], ids=["stored", "deflated"])
    def test_npz_with_malicious_object_member(self, canary, method):
        good = npy_bytes(np.arange(3.0))
        data = make_zip([
            {"name": "a.npy", "data": good, "method": method},
            {"name": "evil.npy", "data": npy_object_header() + canary.os_system(), "method": method},
        ])
        r = scan(data)
        assert_payload(r, member="evil.npy")


# ====================================================================== joblib


try:
    import joblib
except ImportError:  # joblib is optional: only TestJoblib needs it
    joblib = None


def joblib_bytes(obj, **kw) -> bytes:
    if joblib is None:
        pytest.skip("joblib is not installed (pip install joblib)")
    b = io.BytesIO()
    joblib.dump(obj, b, **kw)
    return b.getvalue()


JOBLIB_WRAPPER = "joblib.numpy_pickle.NumpyArrayWrapper"


def assert_joblib_benign(r):
    """What a benign joblib file may contain: joblib's own array wrapper (outside the
    allowlist) and nothing else; the raw array data must have been stepped over exactly."""
    assert r.verdict in (Verdict.CLEAN, Verdict.SUSPICIOUS), describe(r)
    bad = [f for f in r.findings if f.severity > Severity.INFO and f.global_name != JOBLIB_WRAPPER]
    assert not bad, describe(r)


class TestJoblib:
    OBJ = {
        "floats": np.linspace(0, 1, 33),
        "ints": np.arange(17, dtype="i2"),
        "matrix": np.ones((5, 7), dtype="f4"),
        "objects": np.array([1, "two", None, 3.5], dtype=object),
        "plain": [1, 2, {"a": (3, 4)}],
    }

    def test_uncompressed(self):
        r = scan(joblib_bytes(self.OBJ))
        assert r.format == "joblib", describe(r)
        assert_joblib_benign(r)

    @pytest.mark.parametrize("compress", ["zlib", "gzip", "bz2", "xz", "lzma"])
    def test_compressed(self, compress):
        r = scan(joblib_bytes(self.OBJ, compress=(compress, 3)))
        assert r.format == compress, describe(r)
        assert_joblib_benign(r)
        assert ("<%s>" % compress, "joblib") in r.members, describe(r)

    @pytest.mark.parametrize("protocol", [2, 3, 4, 5])
    def test_protocols(self, protocol):
        assert_joblib_benign(scan(joblib_bytes(self.OBJ, protocol=protocol)))

    def test_payload_after_an_array(self, canary):
        marker = "ZZZZ-MARKER-ZZZZ"
        data = joblib_bytes([np.arange(4.0), marker], protocol=2)
        spelled = BINUNICODE(marker)
        assert data.count(spelled) == 1
        r = scan(data.replace(spelled, canary.body()))
        assert_payload(r)

    def test_payload_in_object_array(self, canary):
        """Object arrays are a nested pickle read by joblib right after the wrapper."""
        data = joblib_bytes([np.array([1, "MARKER-OBJ"], dtype=object)])
        spelled = SHORT_BINUNICODE("MARKER-OBJ")
        at = data.index(spelled)
        body = canary.body()
        data = data[:at] + body + data[at + len(spelled):]
        # keep the nested pickle's frame honest: it grows by the difference
        proto = max(data.rfind(b"\x80\x04\x95", 0, at), data.rfind(b"\x80\x05\x95", 0, at))
        if proto >= 0:
            (flen,) = struct.unpack("<Q", data[proto + 3:proto + 11])
            if proto + 11 + flen > at:
                data = data[:proto + 3] + struct.pack("<Q", flen + len(body) - len(spelled)) + data[proto + 11:]
        r = scan(data)
        assert_payload(r)
        assert not findings(r, rule="frame-violation"), describe(r)

    def test_payload_in_alignment_padding(self, canary):
        """joblib skips the padding after the alignment byte; pickle.load runs it as opcodes."""
        data = joblib_bytes([np.arange(4.0)], protocol=2)
        k = data.index(b"numpy_array_alignment_bytes")
        k = data.index(b"ub", k) + 2
        old_pad = data[k]
        hidden = b"\x02" + canary.os_system()[2:]
        assert len(hidden) <= 0x80
        data = data[:k] + b"\x80" + hidden.ljust(0x80, b"\0") + data[k + 1 + old_pad:]
        r = scan(data)
        assert_payload(r)

    def test_payload_compressed_joblib(self, canary):
        marker = "ZZZZ-MARKER-ZZZZ"
        raw = joblib_bytes([np.arange(4.0), marker], protocol=2).replace(BINUNICODE(marker), canary.body())
        r = scan(zlib.compress(raw))
        assert_payload(r, member="<zlib>")


# ====================================================================== compression wrappers


def lzma_alone(data: bytes) -> bytes:
    return lzma.compress(data, format=lzma.FORMAT_ALONE)


def joblib_zf(data: bytes) -> bytes:
    """joblib's legacy 'ZF' format (numpy_pickle_compat.write_zfile): magic, hex length padded to 19, zlib data."""
    return b"ZF" + ("{:#x}".format(len(data))).encode().ljust(len("{:#x}".format(2**64))) + zlib.compress(data)


WRAPPERS = {
    "gzip": gzip.compress,
    "zlib": zlib.compress,
    "bz2": bz2.compress,
    "xz": lzma.compress,
    "lzma": lzma_alone,
    "joblib-zf": joblib_zf,
}


class TestCompression:
    @pytest.mark.parametrize("fmt", list(WRAPPERS))
    def test_wrapped_payload(self, canary, fmt):
        r = scan(WRAPPERS[fmt](canary.os_system()))
        assert r.format == fmt, describe(r)
        assert_payload(r, member=f"<{fmt}>")

    @pytest.mark.parametrize("fmt", list(WRAPPERS))
    def test_wrapped_benign_is_clean(self, fmt):
        r = scan(WRAPPERS[fmt](pickle_of(EMPTY_DICT + BINUNICODE("k") + BINUNICODE("v") + SETITEM)))
        assert r.verdict is Verdict.CLEAN, describe(r)

    def test_double_wrapped(self, canary):
        r = scan(gzip.compress(bz2.compress(canary.os_system())))
        assert_payload(r)

    def test_wrapped_torch_checkpoint_with_payload(self, canary, checkpoint_members):
        name = data_pkl_name(checkpoint_members)
        r = scan(gzip.compress(rebuild(checkpoint_members, replace={name: canary.os_system()})))
        assert_payload(r)

    def test_concatenated_gzip_members(self, canary):
        r = scan(gzip.compress(pickle_of(EMPTY_DICT)) + gzip.compress(canary.os_system()))
        assert_payload(r)

    @pytest.mark.parametrize("fmt", ["gzip", "zlib", "bz2", "xz"])
    def test_truncated_is_error(self, fmt):
        data = WRAPPERS[fmt](pickle_of(BINUNICODE("x" * 5000)))
        r = scan(data[: len(data) // 2])
        assert r.verdict is Verdict.ERROR, describe(r)
        assert findings(r, rule="decompression"), describe(r)

    def test_corrupt_is_error(self):
        data = bytearray(gzip.compress(pickle_of(BINUNICODE("x" * 5000))))
        data[len(data) // 2] ^= 0x55
        r = scan(bytes(data))
        assert r.verdict is not Verdict.CLEAN, describe(r)

    def test_garbage_after_compressed_data(self, canary):
        r = scan(gzip.compress(pickle_of(EMPTY_DICT)) + b"garbage!")
        assert r.verdict is not Verdict.CLEAN, describe(r)
        r = scan(zlib.compress(pickle_of(EMPTY_DICT)) + canary.os_system())
        assert r.verdict is not Verdict.CLEAN, describe(r)

    def test_gzip_bomb_is_error_never_clean(self, tmp_path):
        """A valid gzip file of ~10 MB declaring a 10 GB pickle (one huge BINBYTES8 of zeros).
        Fully read it would be clean; over the cap it must be an error. Written by streaming
        repeated deflate blocks, never held in memory."""
        total_zeros = 10 << 30
        header = PROTO(4) + b"\x8e" + struct.pack("<Q", total_zeros)
        path = tmp_path / "bomb.pkl.gz"
        write_gzip_zero_bomb(path, header, total_zeros, STOP)
        assert path.stat().st_size < 16 << 20
        r = aisbom.scan(path, limits=Limits(max_decompressed=32 << 20))
        assert r.verdict is Verdict.ERROR, describe(r)
        assert findings(r, rule="decompression"), describe(r)

    def test_small_gzip_under_cap_is_read_fully(self, tmp_path):
        """The same construction, small enough to read: clean (checks the bomb file is valid)."""
        zeros = 3 << 20
        path = tmp_path / "ok.pkl.gz"
        write_gzip_zero_bomb(path, PROTO(4) + b"\x8e" + struct.pack("<Q", zeros), zeros, STOP)
        with gzip.open(path, "rb") as f:
            assert len(f.read()) == 11 + zeros + 1
        r = aisbom.scan(path, limits=Limits(max_decompressed=32 << 20))
        assert r.verdict is Verdict.CLEAN, describe(r)


def _gf2_times(mat, vec):
    s = 0
    i = 0
    while vec:
        if vec & 1:
            s ^= mat[i]
        vec >>= 1
        i += 1
    return s


def _gf2_square(mat):
    return [_gf2_times(mat, mat[n]) for n in range(32)]


def crc32_combine(crc1: int, crc2: int, len2: int) -> int:
    """zlib's crc32_combine: the CRC of A+B from crc(A), crc(B) and len(B)."""
    if len2 <= 0:
        return crc1
    odd = [0xEDB88320] + [1 << n for n in range(31)]
    even = _gf2_square(odd)
    odd = _gf2_square(even)
    while True:
        even = _gf2_square(odd)
        if len2 & 1:
            crc1 = _gf2_times(even, crc1)
        len2 >>= 1
        if not len2:
            break
        odd = _gf2_square(even)
        if len2 & 1:
            crc1 = _gf2_times(odd, crc1)
        len2 >>= 1
        if not len2:
            break
    return crc1 ^ crc2


def test_crc32_combine_helper_matches_zlib():
    a, b = b"hello " * 100, b"\0" * 12345
    assert crc32_combine(zlib.crc32(a), zlib.crc32(b), len(b)) == zlib.crc32(a + b)


def write_gzip_zero_bomb(path, head: bytes, zeros: int, tail: bytes) -> None:
    """gzip(head + zeros * b'\\0' + tail), zeros a multiple of 1 MiB, streamed."""
    mib = 1 << 20
    assert zeros % mib == 0
    block = b"\0" * mib
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    with open(path, "wb") as f:
        f.write(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff")
        f.write(c.compress(head) + c.compress(block) + c.flush(zlib.Z_FULL_FLUSH))
        rep = c.compress(block) + c.flush(zlib.Z_FULL_FLUSH)
        again = c.compress(block) + c.flush(zlib.Z_FULL_FLUSH)
        assert rep == again  # after a full flush the same input compresses the same way
        for _ in range(zeros // mib - 3):
            f.write(rep)
        f.write(rep + again)  # the two blocks compressed above
        f.write(c.compress(tail) + c.flush())
        crc = crc32_combine(zlib.crc32(head), crc32_of_zeros(zeros), zeros)
        crc = crc32_combine(crc, zlib.crc32(tail), len(tail))
        total = len(head) + zeros + len(tail)
        f.write(struct.pack("<II", crc, total & 0xFFFFFFFF))


def crc32_of_zeros(n: int) -> int:
    """CRC-32 of n zero bytes, by doubling (n a multiple of 1 MiB)."""
    mib = 1 << 20
    result_crc, result_len = 0, 0
    chunk_crc, chunk_len = zlib.crc32(b"\0" * mib), mib
    count = n // mib
    while count:
        if count & 1:
            result_crc = crc32_combine(result_crc, chunk_crc, chunk_len) if result_len else chunk_crc
            result_len += chunk_len
        chunk_crc = crc32_combine(chunk_crc, chunk_crc, chunk_len)
        chunk_len *= 2
        count >>= 1
    return result_crc


# ====================================================================== polyglots, wrappers, unknown bytes


class TestPolyglotAndUnknown:
    def test_malicious_pickle_followed_by_zip(self, canary, checkpoint_members):
        data = canary.os_system() + rebuild(checkpoint_members)
        r = scan(data)
        assert_payload(r)
        assert findings(r, rule="polyglot") or any("zip" in f.message.lower() for f in r.findings), (
            "the report does not say a zip follows the pickle\n" + describe(r)
        )

    def test_benign_pickle_followed_by_malicious_zip(self, canary, checkpoint_members):
        """zipfile opens this file (it finds the archive from the end); its data.pkl is a payload."""
        name = data_pkl_name(checkpoint_members)
        data = pickle_of(EMPTY_DICT) + shift_offsets(rebuild(checkpoint_members, replace={name: canary.os_system()}), 4)
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            assert z.read(name) == canary.os_system()
        r = scan(data)
        assert r.verdict is not Verdict.CLEAN, describe(r)
        assert "os.system" in named(r), "the zip after the pickle was not scanned\n" + describe(r)

    def test_malicious_pickle_followed_by_npy(self, canary):
        r = scan(canary.os_system() + npy_bytes(np.arange(3.0)))
        assert_payload(r)

    @pytest.mark.parametrize(
        "magic",
        [b"7z\xbc\xaf\x27\x1c", b"Rar!\x1a\x07\x00", b"Rar!\x1a\x07\x01\x00", b"\x28\xb5\x2f\xfd", b"\x04\x22\x4d\x18"],
        ids=["7z", "rar4", "rar5", "zstd", "lz4"],
    )
    def test_unsupported_wrappers_never_clean(self, canary, magic):
        r = scan(magic + b"\x00" * 32 + canary.os_system())
        assert r.verdict is not Verdict.CLEAN, describe(r)
        assert r.verdict in (Verdict.ERROR, MAL)

    def test_unsupported_wrapper_inside_zip(self, canary):
        data = make_zip([{"name": "archive/data.pkl", "data": pickle_of(EMPTY_DICT)},
                         {"name": "archive/blob.7z", "data": b"7z\xbc\xaf\x27\x1c" + b"\0" * 40}])
        assert scan(data).verdict is not Verdict.CLEAN

    @pytest.mark.parametrize(
        "blob",
        [bytes(range(0xF0, 0x100)) * 10, b"\x00" * 100, b"\x7fELF\x02\x01\x01" + b"\0" * 60, b"\x89PNG\r\n\x1a\n" + b"\0" * 40],
        ids=["high-bytes", "zeros", "elf", "png"],
    )
    def test_unknown_binary_never_clean(self, blob):
        r = scan(blob)
        assert r.verdict is not Verdict.CLEAN, describe(r)

    def test_empty_file_is_not_clean(self, write):
        assert aisbom.scan(write("empty.pt", b"")).verdict is not Verdict.CLEAN

    def test_plain_text_is_not_malicious(self):
        r = scan(b"hello, this is a text file\n")
        assert r.verdict is not MAL


class TestExtensionConfusion:
    @pytest.mark.parametrize("name", ["model.bin", "model.pt", "model.safetensors", "model.npy", "model.zip", "model.json", "model"])
    def test_raw_pickle_under_any_name(self, canary, write, name):
        r = aisbom.scan(write(name, canary.os_system()))
        assert r.format == "pickle", describe(r)
        assert_payload(r)

    def test_torch_zip_named_pkl(self, canary, write, checkpoint_members):
        name = data_pkl_name(checkpoint_members)
        r = aisbom.scan(write("weights.pkl", rebuild(checkpoint_members, replace={name: canary.os_system()})))
        assert r.format == "torch-zip"
        assert_payload(r)

    def test_gzip_named_safetensors(self, canary, write):
        r = aisbom.scan(write("model.safetensors", gzip.compress(canary.os_system())))
        assert_payload(r)

    def test_object_npy_named_pt(self, canary, write):
        r = aisbom.scan(write("model.pt", npy_object_header() + canary.os_system()))
        assert_payload(r)


# ====================================================================== safetensors


def safetensors_bytes(tensors: Dict[str, Tuple[str, list, bytes]], metadata: Optional[Dict[str, str]] = None,
                      header: Optional[bytes] = None, data: Optional[bytes] = None) -> bytes:
    """A safetensors file written by hand: u64 header length, JSON header (space padded), data."""
    h: Dict = {}
    body = b""
    if metadata is not None:
        h["__metadata__"] = metadata
    for name, (dtype, shape, raw) in tensors.items():
        h[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(body), len(body) + len(raw)]}
        body += raw
    hdr = header if header is not None else json.dumps(h).encode()
    hdr += b" " * ((-len(hdr)) % 8)
    return struct.pack("<Q", len(hdr)) + hdr + (body if data is None else data)


GOOD_TENSORS = {
    "w": ("F32", [2, 3], struct.pack("<6f", *range(6))),
    "b": ("F16", [3], b"\0" * 6),
    "i": ("I64", [1], struct.pack("<q", 7)),
    "m": ("BOOL", [2], b"\x01\x00"),
}


class TestSafetensors:
    def test_valid_is_clean(self):
        r = scan(safetensors_bytes(GOOD_TENSORS, metadata={"format": "pt"}))
        assert r.format == "safetensors", describe(r)
        assert r.verdict is Verdict.CLEAN, describe(r)

    def test_valid_with_library_if_installed(self):
        st = pytest.importorskip("safetensors.torch")
        r = scan(st.save({"w": torch.ones(2, 2), "b": torch.zeros(3, dtype=torch.bfloat16)}))
        assert r.verdict is Verdict.CLEAN, describe(r)

    def test_empty_tensor_set_is_clean(self):
        r = scan(safetensors_bytes({}, metadata={"a": "b"}))
        assert r.verdict is Verdict.CLEAN, describe(r)

    def test_header_length_past_end(self):
        good = safetensors_bytes(GOOD_TENSORS)
        bad = struct.pack("<Q", len(good) * 4) + good[8:]
        assert scan(bad).verdict is Verdict.ERROR

    def test_header_length_too_short_cuts_json(self):
        good = safetensors_bytes(GOOD_TENSORS)
        (n,) = struct.unpack("<Q", good[:8])
        bad = struct.pack("<Q", n - 16) + good[8:]
        r = scan(bad)
        assert r.verdict is Verdict.ERROR, describe(r)

    def test_bad_json(self):
        r = scan(safetensors_bytes({}, header=b'{"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]'))
        assert r.verdict is Verdict.ERROR, describe(r)
        assert findings(r, rule="safetensors"), describe(r)

    def test_duplicate_key(self):
        hdr = (b'{"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, '
               b'"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}')
        r = scan(safetensors_bytes({}, header=hdr, data=b"\0" * 4))
        assert r.verdict is Verdict.ERROR, describe(r)
        assert findings(r, rule="safetensors"), describe(r)

    def test_unknown_dtype(self):
        r = scan(safetensors_bytes({"w": ("F33", [1], b"\0" * 4)}))
        assert r.verdict is Verdict.ERROR, describe(r)
        assert findings(r, rule="safetensors"), describe(r)

    def test_non_contiguous_offsets(self):
        hdr = json.dumps({
            "a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
            "b": {"dtype": "F32", "shape": [1], "data_offsets": [8, 12]},
        }).encode()
        r = scan(safetensors_bytes({}, header=hdr, data=b"\0" * 12))
        assert r.verdict is Verdict.ERROR, describe(r)
        assert findings(r, rule="safetensors"), describe(r)

    def test_overlapping_offsets(self):
        hdr = json.dumps({
            "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
            "b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]},
        }).encode()
        r = scan(safetensors_bytes({}, header=hdr, data=b"\0" * 8))
        assert r.verdict is Verdict.ERROR, describe(r)

    def test_offsets_not_covering_data(self):
        r = scan(safetensors_bytes({"w": ("F32", [1], b"\0" * 4)}, data=b"\0" * 4 + b"extra bytes"))
        assert r.verdict is Verdict.ERROR, describe(r)
        assert findings(r, rule="safetensors"), describe(r)

    def test_offsets_past_data(self):
        r = scan(safetensors_bytes({"w": ("F32", [4], b"\0" * 16)}, data=b"\0" * 8))
        assert r.verdict is Verdict.ERROR, describe(r)

    def test_size_dtype_mismatch(self):
        hdr = json.dumps({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}).encode()
        r = scan(safetensors_bytes({}, header=hdr, data=b"\0" * 8))
        assert r.verdict is Verdict.ERROR, describe(r)
        assert findings(r, rule="safetensors"), describe(r)

    def test_bad_metadata(self):
        r = scan(safetensors_bytes({"w": ("F32", [1], b"\0" * 4)}, metadata={"n": 1}))  # values must be strings
        assert r.verdict is Verdict.ERROR, describe(r)

    def test_header_not_an_object(self):
        r = scan(safetensors_bytes({}, header=b'{"a": 1} [1]'))
        assert r.verdict is Verdict.ERROR, describe(r)

    def test_negative_shape(self):
        hdr = json.dumps({"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}).encode()
        r = scan(safetensors_bytes({}, header=hdr, data=b"\0" * 4))
        assert r.verdict is Verdict.ERROR, describe(r)

    def test_pickle_payload_named_safetensors_not_read_as_safetensors(self, canary, write):
        r = aisbom.scan(write("evil.safetensors", canary.os_system()))
        assert_payload(r)
