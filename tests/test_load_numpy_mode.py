"""safe_load(path, tensors="numpy"): a torch checkpoint's tensors as numpy arrays.

The reference is torch itself: each array must equal torch.load(...)'s tensor
converted with .numpy() (same dtype, shape, values, NaN-aware and bit-exact);
dtypes numpy lacks are widened exactly: bfloat16 and the float8 kinds to
float32 (== tensor.float().numpy()), complex32 to complex64. Everything that
is not a tensor comes back as torch.load gives it (torch.Size as a tuple).
"""
from __future__ import annotations

import collections
import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import aisbom
from loader_helpers import Unchanged, mapping_of

torch = pytest.importorskip("torch")
np = pytest.importorskip("numpy")
nn = torch.nn

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

WIDENED_F32 = {"bfloat16", "float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz", "float8_e8m0fnu"}
NATIVE = ["float64", "float32", "float16", "complex64", "complex128", "bool", "int8", "int16", "int32", "int64",
          "uint8", "uint16", "uint32", "uint64"]
DTYPES = [n for n in NATIVE + sorted(WIDENED_F32) + ["complex32"] if hasattr(torch, n)]


def expected_array(t: "torch.Tensor") -> "np.ndarray":
    """What tensors="numpy" must give for tensor t."""
    t = t.detach()
    name = str(t.dtype).replace("torch.", "")
    if name in WIDENED_F32:
        return t.float().numpy()
    if name == "complex32":
        return t.to(torch.complex64).numpy()
    return t.numpy()


def assert_array_equals_tensor(a, t, path="obj"):
    assert type(a) is np.ndarray, f"{path}: {type(a).__name__}, not a numpy array"
    e = expected_array(t)
    assert a.dtype == e.dtype, f"{path}: dtype {a.dtype} != {e.dtype} (from {t.dtype})"
    assert a.shape == e.shape, f"{path}: shape {a.shape} != {e.shape}"
    if e.dtype.kind in "fc":
        fa, fe = (np.stack([a.real, a.imag]), np.stack([e.real, e.imag])) if e.dtype.kind == "c" else (a, e)
        na, ne = np.isnan(fa), np.isnan(fe)
        assert np.array_equal(na, ne), f"{path}: NaNs differ"
        ints = f"u{fa.dtype.itemsize}"
        assert np.array_equal(fa[~na].view(ints), fe[~ne].view(ints)), f"{path}: values differ (bitwise)"
    else:
        assert np.array_equal(a, e), f"{path}: values differ:\n{a}\n{e}"


def assert_mirrors(got, want, path="obj"):
    """`got` (numpy mode) is `want` (torch.load) with each tensor as its numpy array."""
    if isinstance(want, torch.Tensor):
        assert_array_equals_tensor(got, want, path)
        return
    if isinstance(want, torch.Size):
        assert tuple(got) == tuple(want), f"{path}: {got!r} != {want!r}"
        return
    if isinstance(want, (torch.dtype, torch.device)):
        assert str(got).replace("torch.", "") == str(want).replace("torch.", ""), f"{path}: {got!r} != {want!r}"
        return
    assert type(got) is type(want), f"{path}: {type(got).__name__} != {type(want).__name__}"
    if isinstance(want, dict):
        assert list(got) == list(want), f"{path}: keys {list(got)} != {list(want)}"
        for k in want:
            assert_mirrors(got[k], want[k], f"{path}[{k!r}]")
        if hasattr(want, "__dict__"):
            assert sorted(vars(got)) == sorted(vars(want)), f"{path}: attributes differ"
            for k in vars(want):
                assert_mirrors(getattr(got, k), getattr(want, k), f"{path}.{k}")
    elif isinstance(want, (list, tuple)):
        assert len(got) == len(want)
        for i, (x, y) in enumerate(zip(got, want)):
            assert_mirrors(x, y, f"{path}[{i}]")
    elif isinstance(want, float) and want != want:
        assert got != got
    else:
        assert got == want, f"{path}: {got!r} != {want!r}"


def save(tmp_path: Path, obj, name="ckpt.pt", **kw) -> Path:
    path = tmp_path / name
    torch.save(obj, path, **kw)
    return path


def load_np(path, **kw):
    with Unchanged(path):
        return aisbom.safe_load(path, tensors="numpy", sandbox="never", **kw)


def every_bit_pattern(dtype, n=512):
    g = torch.Generator().manual_seed(99)
    size = torch.empty(0, dtype=dtype).element_size()
    if dtype == torch.bool:
        return torch.randint(0, 2, (n,), generator=g).bool()
    raw = torch.randint(0, 256, (n * size,), dtype=torch.uint8, generator=g)
    if size == 1 and n >= 256:
        raw[:256] = torch.arange(256, dtype=torch.uint8)
    return raw.view(dtype)


def sample(dtype):
    base = every_bit_pattern(dtype).reshape(16, 32)
    return {"base": base, "t": base.t(), "strided": base[1::3, ::5], "row": base[4], "scalar": base[2, 3],
            "empty": base[:0], "own": every_bit_pattern(dtype, 9).clone()}


# ------------------------------------------------------------------ every dtype


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
@pytest.mark.parametrize("dtype_name", DTYPES)
def test_every_dtype(tmp_path, dtype_name, fmt):
    dtype = getattr(torch, dtype_name)
    obj = sample(dtype)
    path = save(tmp_path, obj, _use_new_zipfile_serialization=(fmt == "zip"))
    got = load_np(path)
    # the reference: torch.load of the zip save (torch cannot read every dtype back from a legacy save)
    want = torch.load(save(tmp_path, obj, "ref.pt"), weights_only=True)
    assert_mirrors(got, want)
    assert got["scalar"].shape == () and got["empty"].shape == (0, 32)


@pytest.mark.parametrize("dtype_name", [n for n in NATIVE if n != "bool"])
def test_views_of_native_dtypes_share_memory(tmp_path, dtype_name):
    """Like torch.load's tensors, arrays viewing one storage share it (no copy per view)."""
    got = load_np(save(tmp_path, sample(getattr(torch, dtype_name))))
    for k in ("t", "strided", "row", "scalar"):
        assert np.shares_memory(got["base"], got[k]), k
    assert not np.shares_memory(got["base"], got["own"])
    assert got["t"].strides == tuple(s * got["base"].itemsize for s in (1, 32))


def test_complex32_widened_to_complex64(tmp_path):
    c = torch.tensor([1 + 2j, -0.5 + 0.25j, float("inf") - 1j], dtype=torch.complex64).to(torch.complex32)
    got = load_np(save(tmp_path, {"c": c}))["c"]
    assert got.dtype == np.complex64
    assert got.tolist() == [1 + 2j, -0.5 + 0.25j, complex(float("inf"), -1)]


def test_bfloat16_widened_exactly(tmp_path):
    t = torch.tensor([1.0, -0.0, 3.140625, float("nan"), float("-inf"), 1e-40, 3.3895313892515355e38], dtype=torch.bfloat16)
    got = load_np(save(tmp_path, {"t": t}))["t"]
    assert got.dtype == np.float32
    assert_array_equals_tensor(got, t)
    assert np.signbit(got[1])


# ------------------------------------------------------------------ real checkpoints


@pytest.mark.parametrize("fmt", ["zip", "legacy", "protocol4"])
def test_state_dicts_and_training_checkpoint(tmp_path, fmt):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 4 * 4, 5),
                          nn.LayerNorm(5))
    emb = nn.Embedding(10, 3)
    opt = torch.optim.Adam(model.parameters())
    model(torch.randn(2, 3, 6, 6)).sum().backward()
    opt.step()
    ckpt = {
        "model": model.state_dict(),
        "emb": emb.state_dict(),
        "optimizer": opt.state_dict(),
        "rng": torch.get_rng_state(),
        "params": {"p": nn.Parameter(torch.randn(3)), "frozen": nn.Parameter(torch.randn(2), requires_grad=False)},
        "size": torch.Size([3, 4]),
        "meta": {"epoch": 3, "lr": 1e-3, "name": "run ✓", "tags": ["a", "b"], "none": None, "flag": True},
    }
    kw = {"zip": {}, "legacy": {"_use_new_zipfile_serialization": False}, "protocol4": {"pickle_protocol": 4}}[fmt]
    path = save(tmp_path, ckpt, **kw)
    got = load_np(path)
    want = torch.load(path, weights_only=False)
    assert_mirrors(got, want)
    assert type(got["model"]) is collections.OrderedDict
    assert got["model"]._metadata == want["model"]._metadata
    assert type(got["params"]["p"]) is np.ndarray


def test_transformer_layer_state_dict(tmp_path):
    sd = nn.TransformerEncoderLayer(d_model=8, nhead=2, dim_feedforward=16).state_dict()
    path = save(tmp_path, sd)
    assert_mirrors(load_np(path), torch.load(path, weights_only=True))


def test_from_file_object_and_bytes(tmp_path):
    path = save(tmp_path, {"w": torch.randn(3, 4).t(), "h": torch.randn(5).half()})
    want = torch.load(path, weights_only=True)
    with open(path, "rb") as f:
        assert_mirrors(aisbom.safe_load(f, tensors="numpy", sandbox="never"), want)
    assert_mirrors(aisbom.safe_load(io.BytesIO(path.read_bytes()), tensors="numpy", sandbox="never"), want)
    assert_mirrors(aisbom.safe_loads(path.read_bytes(), tensors="numpy", sandbox="never"), want)


def test_quantized_and_sparse_need_torch(tmp_path):
    """Tensors numpy cannot represent are refused with an error that says so."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q = torch.quantize_per_tensor(torch.randn(4), 0.1, 2, torch.quint8)
    for obj in ({"q": q}, {"s": torch.eye(3).to_sparse()}):
        path = save(tmp_path, obj)
        with pytest.raises(aisbom.MalformedModelError, match="torch"):
            aisbom.safe_load(path, tensors="numpy", sandbox="never")


# ------------------------------------------------------------------ mmap


def test_mmap_arrays_are_backed_by_the_file(tmp_path):
    big = torch.randn(128, 64)
    path = save(tmp_path, {"big": big, "view": big[7:], "small": torch.arange(4)})
    for _ in range(2):
        got = load_np(path, mmap=True)
        assert_mirrors(got, torch.load(path, weights_only=True))
        where = mapping_of(got["big"].__array_interface__["data"][0])
        assert os.path.realpath(where) == os.path.realpath(path), f"mapped from {where!r}"
        assert np.shares_memory(got["big"], got["view"])
        del got


def test_mmap_false_copies(tmp_path):
    path = save(tmp_path, {"big": torch.randn(128, 64)})
    got = load_np(path, mmap=False)
    where = mapping_of(got["big"].__array_interface__["data"][0])
    assert os.path.realpath(where or "-") != os.path.realpath(path)
    got["big"][0, 0] = 123.0  # a private copy: writable, and the file is untouched (Unchanged in load_np)


# ------------------------------------------------------------------ without torch installed


def test_default_is_numpy_when_torch_is_missing(tmp_path):
    """In a process where `import torch` fails, safe_load returns numpy arrays by default."""
    t = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    path = save(tmp_path, {"w": t, "wt": t.t(), "b": torch.tensor([1, 2], dtype=torch.bfloat16), "n": 7})
    script = textwrap.dedent(f"""
        import sys, json
        sys.modules["torch"] = None  # import torch -> ImportError
        import numpy as np
        import aisbom
        out = aisbom.safe_load({str(path)!r}, sandbox="never")
        print(json.dumps({{k: [type(v).__name__, str(getattr(v, "dtype", "")), np.asarray(v).tolist()]
                          for k, v in out.items()}}))
        try:
            aisbom.safe_load({str(path)!r}, tensors="torch", sandbox="never")
            print("torch mode loaded")
        except ImportError:
            print("ImportError")
    """)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=env)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.strip().splitlines()
    out = json.loads(lines[0])
    assert out["w"] == ["ndarray", "float32", t.tolist()]
    assert out["wt"] == ["ndarray", "float32", t.t().tolist()]
    assert out["b"] == ["ndarray", "float32", [1.0, 2.0]]
    assert out["n"] == ["int", "", 7]
    assert lines[1] == "ImportError"
