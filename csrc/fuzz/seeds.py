"""Write a seed corpus for the fuzz targets: small real files of every format.

Usage: python csrc/fuzz/seeds.py OUTDIR   (needs numpy; torch and joblib when installed)
"""
import bz2
import gzip
import io
import os
import pickle
import sys
import zipfile

out = sys.argv[1] if len(sys.argv) > 1 else "csrc/fuzz/corpus"
os.makedirs(out, exist_ok=True)
n = 0


def seed(data: bytes) -> None:
    global n
    with open(os.path.join(out, f"seed{n:04d}"), "wb") as f:
        f.write(data)
    n += 1


values = [None, True, 1, -2**70, 1.5, "é", b"xy", bytearray(b"z"), (1, 2), [1, [2]], {"a": {1, 2}}, frozenset({3}), 1j]
for proto in range(6):
    for v in values:
        seed(pickle.dumps(v, protocol=proto))
seed(b"cos\nsystem\n(S'echo hi'\ntR.")
seed(b"\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00\x8c\x02os\x94\x8c\x06system\x94\x93.")
seed(gzip.compress(pickle.dumps(values)))
seed(bz2.compress(pickle.dumps(values)))
try:
    import numpy as np

    for arr in (np.arange(6).reshape(2, 3), np.array([1, "x", None], dtype=object)):
        b = io.BytesIO(); np.save(b, arr); seed(b.getvalue())
        seed(pickle.dumps(arr, protocol=2)); seed(pickle.dumps(arr, protocol=5))
    b = io.BytesIO(); np.savez_compressed(b, a=np.arange(3)); seed(b.getvalue())
except ImportError:
    pass
try:
    import torch

    sd = {"w": torch.arange(4.0), "b": torch.ones(2, dtype=torch.int64)}
    b = io.BytesIO(); torch.save(sd, b); seed(b.getvalue())
    b = io.BytesIO(); torch.save(sd, b, _use_new_zipfile_serialization=False); seed(b.getvalue())
    b = io.BytesIO(); torch.save(sd, b, pickle_protocol=4); seed(b.getvalue())
except ImportError:
    pass
z = io.BytesIO()
with zipfile.ZipFile(z, "w", zipfile.ZIP_DEFLATED) as zf:
    zf.writestr("archive/data.pkl", pickle.dumps(values, protocol=2))
    zf.writestr("archive/version", "3\n")
seed(z.getvalue())
print(f"{n} seeds in {out}")
