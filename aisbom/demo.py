"""`aisbom demo`: write two small files and scan them, no torch needed.

benign.pt is a torch checkpoint (zip layout, one float tensor) assembled
byte by byte; payload.pkl is a pickle that would run `echo` through
os.system if anything unpickled it. Nothing here loads either file.
"""
from __future__ import annotations

import io
import shutil
import struct
import tempfile
import zipfile
from typing import IO

from aisbom.cli import render_text
from aisbom.scanning import scan


def _binunicode(s: str) -> bytes:
    data = s.encode()
    return b"X" + struct.pack("<I", len(data)) + data


def _benign_checkpoint() -> bytes:
    """{'weight': tensor([1., 2., 3., 4.])} as torch.save writes it (protocol 2)."""
    p = b"\x80\x02"
    p += b"ccollections\nOrderedDict\nq\x00)Rq\x01"  # OrderedDict()
    p += _binunicode("weight")
    p += b"ctorch._utils\n_rebuild_tensor_v2\nq\x02("  # _rebuild_tensor_v2(
    p += b"(" + _binunicode("storage") + b"ctorch\nFloatStorage\nq\x03" + _binunicode("0") + _binunicode("cpu")
    p += b"K\x04tq\x04Q"  # persistent id ('storage', FloatStorage, '0', 'cpu', 4)
    p += b"K\x00K\x04\x85K\x01\x85\x89"  # offset 0, size (4,), stride (1,), requires_grad False
    p += b"ccollections\nOrderedDict\n)R"  # backward hooks
    p += b"tq\x05Rq\x06"  # ) -> tensor
    p += b"s."  # d['weight'] = tensor
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", p)
        z.writestr("archive/byteorder", "little")
        z.writestr("archive/data/0", struct.pack("<4f", 1.0, 2.0, 3.0, 4.0))
        z.writestr("archive/version", "3\n")
    return buf.getvalue()


def _inert_payload() -> bytes:
    """os.system("echo ...") via REDUCE: harmless if run, unmistakable to a scanner."""
    return b"\x80\x02cposix\nsystem\n" + _binunicode("echo 'aisbom demo: this would run on load'") + b"\x85R."


def run_demo(out: IO[str], *, color: bool = False, keep: bool = False) -> int:
    folder = tempfile.mkdtemp(prefix="aisbom-demo-")
    try:
        paths = []
        for name, data in (("benign.pt", _benign_checkpoint()), ("payload.pkl", _inert_payload())):
            path = f"{folder}/{name}"
            with open(path, "wb") as f:
                f.write(data)
            paths.append(path)
        out.write(f"aisbom demo: scanning two files written to {folder}\n\n")
        reports = [scan(p) for p in paths]
        render_text(reports, out, color=color)
        out.write(
            "\nbenign.pt names only allowlisted globals, so safe_load can load it in-process;\n"
            "payload.pkl calls os.system on load and is refused. Neither file was loaded.\n"
        )
        if keep:
            out.write(f"files kept in {folder}\n")
        ok = reports[0].verdict.value == "clean" and reports[1].verdict.value == "malicious"
        return 0 if ok else 1
    finally:
        if not keep:
            shutil.rmtree(folder, ignore_errors=True)
