"""aisbom.safe_load on torch checkpoints made at test time: it returns what
torch.load returns, down to the bytes.

Every test saves a checkpoint into tmp_path with the real torch.save, loads it
with safe_load and with torch.load, and compares the two with
loader_helpers.assert_same (types, keys, attributes, dtypes, shapes, strides,
storage offsets, requires_grad, storage bytes, NaN-aware values, and which
tensors share a storage). The checkpoint file must be byte-for-byte and
mtime-identical after every load.
"""
from __future__ import annotations

import collections
import io
import math
import os
import warnings
from pathlib import Path

import pytest

import aisbom
from loader_helpers import Unchanged, assert_same, mapping_of, member, rewrite_zip

torch = pytest.importorskip("torch")
np = pytest.importorskip("numpy")
nn = torch.nn

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


# ------------------------------------------------------------------ helpers


def save(tmp_path: Path, obj, name: str = "ckpt.pt", **kw) -> Path:
    path = tmp_path / name
    torch.save(obj, path, **kw)
    return path


def reference(path, **kw):
    """What torch.load gives (our own files are benign, so the full unpickler may load them)."""
    return torch.load(path, weights_only=False, **kw)


def load_checked(path, **kw):
    """safe_load, asserting the file is untouched by it."""
    with Unchanged(path):
        return aisbom.safe_load(path, sandbox="never", **kw)


def roundtrip(tmp_path: Path, obj, *, torch_kw=None, load_kw=None, **save_kw):
    """Save obj, then assert safe_load(path) is the same as torch.load(path)."""
    path = save(tmp_path, obj, **save_kw)
    got = load_checked(path, **(load_kw or {}))
    want = reference(path, **(torch_kw or {}))
    assert_same(got, want)
    return got, want, path


FORMATS = {
    "zip": {},
    "legacy": {"_use_new_zipfile_serialization": False},
    "protocol2": {"pickle_protocol": 2},
    "protocol4": {"pickle_protocol": 4},
    "protocol5": {"pickle_protocol": 5},
    "legacy-protocol4": {"_use_new_zipfile_serialization": False, "pickle_protocol": 4},
}


def data_pkl_protocol(path: Path) -> int:
    """The protocol of a zip checkpoint's data.pkl (asserts it is one)."""
    d = member(path, "/data.pkl")
    assert d[0] == 0x80
    return d[1]


# ------------------------------------------------------------------ layers


def _bn_trained():
    m = nn.BatchNorm2d(4)
    m.train()
    m(torch.randn(3, 4, 5, 5))  # running stats and num_batches_tracked move
    return m


LAYERS = {
    "conv2d": lambda: nn.Conv2d(3, 8, kernel_size=3, padding=1),
    "conv2d-nobias-groups": lambda: nn.Conv2d(4, 8, kernel_size=(3, 1), groups=2, bias=False),
    "batchnorm2d": _bn_trained,
    "layernorm": lambda: nn.LayerNorm([6, 4]),
    "linear": lambda: nn.Linear(7, 5),
    "embedding": lambda: nn.Embedding(20, 6, padding_idx=0),
    "transformer-encoder-layer": lambda: nn.TransformerEncoderLayer(d_model=16, nhead=2, dim_feedforward=32),
}


@pytest.mark.parametrize("fmt", ["zip", "legacy", "protocol4"])
@pytest.mark.parametrize("layer", list(LAYERS))
def test_layer_state_dict_equals_torch_load(tmp_path, layer, fmt):
    torch.manual_seed(0)
    module = LAYERS[layer]()
    sd = module.state_dict()
    got, want, _ = roundtrip(tmp_path, sd, **FORMATS[fmt])
    assert type(got) is collections.OrderedDict
    assert list(got) == list(sd)
    # the state_dict's version metadata survives (load_state_dict reads it)
    assert got._metadata == sd._metadata
    # and the loaded state is usable: a fresh module with it computes the same outputs
    fresh = LAYERS[layer]()
    fresh.load_state_dict(got)
    for a, b in zip(fresh.state_dict().values(), sd.values()):
        assert torch.equal(a, b)


def test_keep_vars_state_dict_has_parameters(tmp_path):
    m = nn.Linear(3, 2)
    m.bias.requires_grad_(False)
    got, _, _ = roundtrip(tmp_path, m.state_dict(keep_vars=True))
    assert type(got["weight"]) is nn.Parameter and got["weight"].requires_grad
    assert type(got["bias"]) is nn.Parameter and not got["bias"].requires_grad


def test_parameters_and_requires_grad(tmp_path):
    obj = {
        "p_grad": nn.Parameter(torch.randn(3, 2)),
        "p_frozen": nn.Parameter(torch.randn(4), requires_grad=False),
        "leaf_grad": torch.randn(2, 2, requires_grad=True),
        "plain": torch.randn(2),
    }
    got, _, _ = roundtrip(tmp_path, obj)
    assert type(got["p_grad"]) is nn.Parameter and got["p_grad"].requires_grad
    assert type(got["p_frozen"]) is nn.Parameter and not got["p_frozen"].requires_grad
    assert type(got["leaf_grad"]) is torch.Tensor and got["leaf_grad"].requires_grad
    assert got["leaf_grad"].is_leaf
    assert not got["plain"].requires_grad


# ------------------------------------------------------------------ every dtype


def _all_dtypes():
    names = ["float64", "float32", "float16", "bfloat16", "float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz",
             "float8_e5m2fnuz", "float8_e8m0fnu", "complex32", "complex64", "complex128", "bool", "int8", "int16",
             "int32", "int64", "uint8", "uint16", "uint32", "uint64"]
    return [n for n in names if hasattr(torch, n)]


DTYPES = _all_dtypes()


def every_bit_pattern(dtype, n: int = 512) -> "torch.Tensor":
    """A tensor of `dtype` whose bytes are arbitrary (NaN payloads, infinities,
    subnormals, -0.0, extremes); every code for 1-byte types."""
    g = torch.Generator().manual_seed(1234)
    itemsize = torch.empty(0, dtype=dtype).element_size()
    if dtype == torch.bool:
        return torch.randint(0, 2, (n,), generator=g).bool()
    raw = torch.randint(0, 256, (n * itemsize,), dtype=torch.uint8, generator=g)
    if itemsize == 1 and n >= 256:
        raw[:256] = torch.arange(256, dtype=torch.uint8)
    return raw.view(dtype)


def dtype_sample(dtype):
    """A dict exercising one dtype: a matrix, views of it, a 0-d and an empty tensor."""
    base = every_bit_pattern(dtype).reshape(16, 32)
    return {
        "base": base,
        "t": base.t(),
        "row": base[3],
        "strided": base[1::3, ::5],
        "scalar": base[2, 7],  # 0-d, with a storage offset
        "empty": base[:0],
        "own": every_bit_pattern(dtype, 7).clone(),
    }


@pytest.mark.parametrize("dtype_name", DTYPES)
def test_every_dtype_zip(tmp_path, dtype_name):
    dtype = getattr(torch, dtype_name)
    got, want, _ = roundtrip(tmp_path, dtype_sample(dtype))
    assert got["base"].dtype == dtype
    assert got["t"].untyped_storage()._cdata == got["base"].untyped_storage()._cdata


@pytest.mark.parametrize("dtype_name", DTYPES)
def test_every_dtype_legacy(tmp_path, dtype_name):
    """Legacy stacked-pickle saves. torch.load itself cannot read some dtypes
    back from this format (it asks UntypedStorage for a dtype); then the
    reference is the same object saved in the zip format."""
    dtype = getattr(torch, dtype_name)
    obj = dtype_sample(dtype)
    legacy = save(tmp_path, obj, "legacy.pt", _use_new_zipfile_serialization=False)
    got = load_checked(legacy)
    try:
        want = reference(legacy)
    except AttributeError:
        want = reference(save(tmp_path, obj, "zip.pt"))
    assert_same(got, want)


@pytest.mark.parametrize("dtype_name", ["float4_e2m1fn_x2", "bits8", "bits16", "bits1x8", "bits2x4", "bits4x2"])
def test_exotic_dtypes_torch_weights_only_loads(tmp_path, dtype_name):
    """torch.load(weights_only=True) loads these; safe_load must too."""
    if not hasattr(torch, dtype_name):
        pytest.skip(f"torch {torch.__version__} has no {dtype_name}")
    dtype = getattr(torch, dtype_name)
    t = torch.arange(64, dtype=torch.uint8).view(dtype)
    path = save(tmp_path, {"t": t, "v": t[5:9]})
    want = torch.load(path, weights_only=True)
    got = load_checked(path)
    assert_same(got, want)


def test_complex32_values_survive(tmp_path):
    c = torch.tensor([1 + 2j, -0.5 - 0j, float("nan") + 1j], dtype=torch.complex64).to(torch.complex32)
    got, _, _ = roundtrip(tmp_path, {"c": c})
    assert torch.equal(torch.view_as_real(got["c"].to(torch.complex64))[:2], torch.view_as_real(c.to(torch.complex64))[:2])


def test_float_specials(tmp_path):
    t = torch.tensor([float("nan"), float("inf"), -float("inf"), -0.0, 0.0, 5e-324, 1.7976931348623157e308],
                     dtype=torch.float64)
    got, _, _ = roundtrip(tmp_path, {"f64": t, "f32": t.float(), "f16": t.half(), "bf16": t.bfloat16()})
    assert math.copysign(1.0, got["f64"][3].item()) == -1.0
    assert torch.isnan(got["bf16"][0])


def test_conj_and_neg_views(tmp_path):
    c = torch.randn(5, dtype=torch.complex64)
    obj = {"conj": c.conj(), "neg": torch.randn(4, dtype=torch.complex128).conj().imag}
    assert obj["conj"].is_conj() and obj["neg"].is_neg()
    got, _, _ = roundtrip(tmp_path, obj)
    assert torch.equal(got["conj"].resolve_conj(), c.conj().resolve_conj())


# ------------------------------------------------------------------ views, sharing, strides


def test_views_and_transposes_share_one_storage(tmp_path):
    t = torch.arange(48, dtype=torch.float32).reshape(6, 8)
    obj = {
        "a": t[1:],
        "b": t.T,
        "col": t[:, 3],
        "flat": t.view(-1),
        "narrow": t.narrow(1, 2, 4),
        "every_other": t[::2, 1::3],
        "overlap": t.view(-1).as_strided((5, 4), (2, 1), 3),
        "other": torch.arange(5.0),
        "other_view": None,
    }
    obj["other_view"] = obj["other"][2:]
    got, want, _ = roundtrip(tmp_path, obj)
    ptrs = {k: v.untyped_storage().data_ptr() for k, v in got.items()}
    assert len({ptrs[k] for k in ("a", "b", "col", "flat", "narrow", "every_other", "overlap")}) == 1
    assert ptrs["other"] == ptrs["other_view"] != ptrs["a"]
    assert got["a"].storage_offset() == 8 and got["b"].stride() == (1, 8)
    # sharing is real: a write through one view shows through the others, as with torch.load
    got["flat"][8] = -1.0
    assert got["a"][0, 0] == -1.0 and got["b"][0, 1] == -1.0


def test_same_tensor_twice_is_one_object(tmp_path):
    t = torch.randn(3)
    got, _, _ = roundtrip(tmp_path, {"x": t, "y": t, "both": [t, t]})
    assert got["x"] is got["y"] is got["both"][0] is got["both"][1]


def test_view_saved_without_its_base(tmp_path):
    base = torch.arange(100, dtype=torch.int32)
    got, _, _ = roundtrip(tmp_path, {"tail": base[90:], "mid": base[40:50].view(2, 5)})
    assert got["tail"].untyped_storage().nbytes() == 400  # torch saves the whole storage
    assert got["tail"].tolist() == list(range(90, 100))


def test_non_contiguous_strides(tmp_path):
    x = torch.randn(2, 3, 4, 5)
    obj = {
        "permuted": x.permute(3, 1, 0, 2),
        "channels_last": x.contiguous(memory_format=torch.channels_last),
        "expanded": torch.randn(3, 1).expand(3, 4),  # stride 0
        "diag": torch.randn(4, 4).diagonal(),
        "step": x[:, ::2, 1:, 1::2],
    }
    got, _, _ = roundtrip(tmp_path, obj)
    assert got["expanded"].stride() == (1, 0)
    assert got["channels_last"].is_contiguous(memory_format=torch.channels_last)


def test_empty_and_zero_dim(tmp_path):
    obj = {
        "empty": torch.empty(0),
        "empty2d": torch.empty(0, 5),
        "empty_mid": torch.zeros(3, 0, 2),
        "empty_int": torch.tensor([], dtype=torch.int64),
        "zero_d": torch.tensor(1.5),
        "zero_d_bool": torch.tensor(True),
        "zero_d_int": torch.tensor(-7, dtype=torch.int16),
        "zero_d_view": torch.arange(10.0)[4],
    }
    got, _, _ = roundtrip(tmp_path, obj)
    assert got["zero_d"].dim() == 0 and got["zero_d"].item() == 1.5
    assert got["empty_mid"].shape == (3, 0, 2)
    assert got["zero_d_view"].storage_offset() == 4


# ------------------------------------------------------------------ non-tensor values torch writes


def test_size_dtype_device_layout_values(tmp_path):
    obj = {
        "size": torch.Size([2, 3, 4]),
        "empty_size": torch.Size([]),
        "dtypes": [torch.float32, torch.bfloat16, torch.int64, torch.bool, torch.complex64, torch.float8_e5m2],
        "device": torch.device("cpu"),
        "cuda1": torch.device("cuda", 1),
        "meta": torch.device("meta"),
        "layout": torch.strided,
        "qscheme": torch.per_channel_affine,
    }
    got, _, _ = roundtrip(tmp_path, obj)
    assert type(got["size"]) is torch.Size and got["size"] == (2, 3, 4)
    assert got["dtypes"][1] is torch.bfloat16
    assert got["cuda1"] == torch.device("cuda:1")


def test_training_checkpoint_adam_rng_metadata(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 4 * 4, 3))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.99), weight_decay=0.01)
    for _ in range(2):
        opt.zero_grad()
        model(torch.randn(4, 1, 6, 6)).sum().backward()
        opt.step()
    ckpt = {
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "rng": torch.get_rng_state(),
        "numpy_rng": np.random.RandomState(5).get_state(),
        "epoch": 7,
        "step": 2**70 + 1,  # a Python big int
        "loss": 0.125,
        "best": float("inf"),
        "missing": float("nan"),
        "name": "résumé ✓ \U0001F600",
        "blob": b"\x00\xff bytes",
        "flags": {"amp": False, "ddp": True, "notes": None},
        "history": [(1, 0.5), (2, 0.25)],
        "tags": {"a", "b"},
        "frozen": frozenset({1, 2}),
        "nested": {"lists": [[1, [2, [3, {"deep": (None,)}]]]], "neg": -12345678901234567890},
        "complex": 1 + 2j,
    }
    for fmt in ("zip", "legacy", "protocol5"):
        got, _, _ = roundtrip(tmp_path, ckpt, name=f"{fmt}.pt", **FORMATS[fmt])
        # resuming from the loaded checkpoint behaves like resuming from torch.load's
        m2 = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.Flatten(), nn.Linear(32, 3))
        m2.load_state_dict(got["model"])
        o2 = torch.optim.Adam(m2.parameters())
        o2.load_state_dict(got["optimizer"])
        assert o2.param_groups[0]["betas"] == (0.9, 0.99)
        torch.set_rng_state(got["rng"])
        a = torch.rand(3)
        torch.set_rng_state(ckpt["rng"])
        assert torch.equal(a, torch.rand(3))


# ------------------------------------------------------------------ formats and protocols


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_formats_and_protocols(tmp_path, fmt):
    t = torch.randn(4, 6)
    obj = collections.OrderedDict(w=t, wt=t.t(), b=torch.arange(3), meta={"k": (1, 2.5, "x")}, size=t.shape)
    got, _, path = roundtrip(tmp_path, obj, **FORMATS[fmt])
    proto = FORMATS[fmt].get("pickle_protocol", 2)
    if "_use_new_zipfile_serialization" not in FORMATS[fmt]:
        assert data_pkl_protocol(path) == proto  # the save really used that protocol
    else:
        assert path.read_bytes()[:2] == bytes([0x80, proto])


def test_legacy_file_is_really_legacy(tmp_path):
    path = save(tmp_path, {"w": torch.ones(2)}, _use_new_zipfile_serialization=False)
    assert not path.read_bytes().startswith(b"PK")
    assert aisbom.scan(path).format == "torch-legacy"
    got = load_checked(path)
    assert_same(got, reference(path))


def test_big_endian_checkpoint(tmp_path):
    """A checkpoint written on a big-endian machine: byteorder says "big" and the
    storages hold byteswapped values. torch.load swaps them back; so must safe_load."""
    t64 = torch.arange(6, dtype=torch.float64) * 1.5
    t16 = torch.arange(5, dtype=torch.int16) - 2
    src = save(tmp_path, {"a": t64, "b": t16}, "le.pt")
    itemsize = {"0": 8, "1": 2}  # data/0 holds "a", data/1 holds "b" (torch numbers storages in pickling order)
    swapped = []

    def edit(name, data):
        if name.endswith("/byteorder"):
            return b"big"
        folder, key = name.rsplit("/", 1)
        if folder.endswith("/data") and key in itemsize:
            swapped.append(key)
            return np.frombuffer(data, dtype=f"<u{itemsize[key]}").byteswap().tobytes()
        return data

    dst = tmp_path / "be.pt"
    rewrite_zip(src, dst, edit)
    assert sorted(swapped) == ["0", "1"]
    want = torch.load(dst, weights_only=True)
    assert torch.equal(want["a"], t64) and torch.equal(want["b"], t16)
    got = load_checked(dst)
    assert_same(got, want)


# ------------------------------------------------------------------ mmap


def test_mmap_equals_torch_mmap_and_is_backed_by_the_file(tmp_path):
    big = torch.randn(64, 256)
    obj = {"big": big, "view": big[3:], "small": torch.arange(10, dtype=torch.int16), "empty": torch.empty(0)}
    path = save(tmp_path, obj)
    want = torch.load(path, mmap=True, weights_only=True)
    for _ in range(2):  # loading twice neither changes the file nor the result
        got = load_checked(path, mmap=True)
        assert_same(got, want)
        where = mapping_of(got["big"].untyped_storage().data_ptr())
        assert os.path.realpath(where) == os.path.realpath(path), f"the tensor's memory is mapped from {where!r}"
        assert got["view"].untyped_storage().data_ptr() == got["big"].untyped_storage().data_ptr()


def test_mmap_writes_do_not_reach_the_file(tmp_path):
    path = save(tmp_path, {"w": torch.zeros(1000)})
    with Unchanged(path):
        got = aisbom.safe_load(path, mmap=True, sandbox="never")
        got["w"].add_(1)  # copy-on-write: the process sees it, the file does not
        assert got["w"].sum() == 1000
        del got
    again = load_checked(path, mmap=True)
    assert again["w"].sum() == 0


def test_mmap_without_mmap_copies(tmp_path):
    path = save(tmp_path, {"w": torch.randn(256, 64)})
    got = load_checked(path, mmap=False)
    assert os.path.realpath(mapping_of(got["w"].untyped_storage().data_ptr()) or "-") != os.path.realpath(path)
    assert_same(got, reference(path))


def test_mmap_needs_a_path(tmp_path):
    path = save(tmp_path, {"w": torch.ones(2)})
    with open(path, "rb") as f, pytest.raises(ValueError, match="path"):
        aisbom.safe_load(f, mmap=True, sandbox="never")


# ------------------------------------------------------------------ map_location


def _tagged_cuda(tmp_path: Path) -> Path:
    """A checkpoint whose storages say they were saved from cuda:0 (edited data.pkl:
    the 'cpu' location string becomes 'cuda:0')."""
    t = torch.arange(12.0).reshape(3, 4)
    src = save(tmp_path, {"w": t, "v": t[1:], "p": nn.Parameter(torch.ones(2))}, "cpu.pt")

    def edit(name, data):
        if name.endswith("/data.pkl"):
            old = b"X\x03\x00\x00\x00cpu"
            assert old in data
            return data.replace(old, b"X\x06\x00\x00\x00cuda:0")
        return data

    dst = tmp_path / "cuda.pt"
    rewrite_zip(src, dst, edit)
    return dst


@pytest.mark.parametrize(
    "map_location",
    [{"cuda:0": "cpu"}, "cpu", torch.device("cpu"), lambda storage, loc: storage],
    ids=["dict", "str", "device", "callable"],
)
def test_map_location_from_cuda(tmp_path, map_location):
    path = _tagged_cuda(tmp_path)
    want = torch.load(path, map_location=map_location, weights_only=True)
    got = load_checked(path, map_location=map_location)
    assert_same(got, want)
    assert got["w"].device.type == "cpu"


@pytest.mark.parametrize("map_location", ["cpu", {"cpu": "cpu"}, torch.device("cpu")], ids=["str", "dict", "device"])
def test_map_location_on_cpu_checkpoint(tmp_path, map_location):
    t = torch.randn(3, 3)
    roundtrip(tmp_path, {"t": t, "tt": t.t()}, load_kw={"map_location": map_location},
              torch_kw={"map_location": map_location})


def test_map_location_meta(tmp_path):
    path = save(tmp_path, {"w": torch.randn(3, 4)})
    want = torch.load(path, map_location="meta", weights_only=True)
    got = load_checked(path, map_location="meta")
    assert got["w"].device.type == "meta" and want["w"].device.type == "meta"
    assert got["w"].shape == want["w"].shape and got["w"].dtype == want["w"].dtype


# ------------------------------------------------------------------ inputs


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
@pytest.mark.parametrize("kind", ["str", "pathlib", "open-file", "bytesio", "bytes", "bytearray", "memoryview"])
def test_input_kinds(tmp_path, kind, fmt):
    t = torch.randn(5, 3)
    path = save(tmp_path, {"t": t, "v": t[2:]}, **FORMATS[fmt])
    want = reference(path)
    data = path.read_bytes()
    with Unchanged(path):
        if kind == "str":
            got = aisbom.safe_load(str(path), sandbox="never")
        elif kind == "pathlib":
            got = aisbom.safe_load(path, sandbox="never")
        elif kind == "open-file":
            with open(path, "rb") as f:
                got = aisbom.safe_load(f, sandbox="never")
        elif kind == "bytesio":
            got = aisbom.safe_load(io.BytesIO(data), sandbox="never")
        else:
            buf = {"bytes": data, "bytearray": bytearray(data), "memoryview": memoryview(data)}[kind]
            got = aisbom.safe_loads(buf, sandbox="never")
    assert_same(got, want)


def test_bytesio_is_not_left_locked(tmp_path):
    """safe_load(BytesIO) must release the buffer it borrowed: the BytesIO stays writable."""
    b = io.BytesIO()
    torch.save({"t": torch.randn(3)}, b)
    got = aisbom.safe_load(b, sandbox="never")
    b.write(b"more")  # BufferError if an export of getbuffer() is still alive
    assert got["t"].shape == (3,)


# ------------------------------------------------------------------ quantized and sparse


def _qsamples():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        x = torch.randn(4, 6)
        return {
            "per_tensor_quint8": torch.quantize_per_tensor(x, 0.05, 3, torch.quint8),
            "per_tensor_qint8": torch.quantize_per_tensor(x, 0.1, 0, torch.qint8),
            "per_tensor_qint32": torch.quantize_per_tensor(x, 0.01, -2, torch.qint32),
            "per_channel": torch.quantize_per_channel(x, torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64),
                                                      torch.tensor([0, 1, 2, 3]), 0, torch.qint8),
            "per_channel_axis1": torch.quantize_per_channel(x, torch.rand(6, dtype=torch.float64) + 0.01,
                                                            torch.zeros(6, dtype=torch.int64), 1, torch.quint8),
        }


@pytest.mark.parametrize("kind", list(_qsamples()))
def test_quantized(tmp_path, kind):
    q = _qsamples()[kind]
    path = save(tmp_path, {"q": q})
    want = torch.load(path, weights_only=True)
    got = load_checked(path)
    assert_same(got, want)
    assert got["q"].is_quantized and torch.equal(got["q"].dequantize(), q.dequantize())


def _sparse_samples():
    d = torch.tensor([[0.0, 1.5, 0.0], [2.0, 0.0, 0.0], [0.0, 0.0, -3.0], [0.0, 4.0, 0.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {
            "coo": d.to_sparse(),
            "coo_uncoalesced": torch.sparse_coo_tensor(torch.tensor([[0, 0, 1], [1, 1, 2]]), torch.tensor([1.0, 2.0, 3.0]),
                                                       (2, 3)),
            "csr": d.to_sparse_csr(),
            "csc": d.to_sparse_csc(),
            "bsr": d.to_sparse_bsr((2, 1)),
        }


@pytest.mark.parametrize("kind", list(_sparse_samples()))
def test_sparse(tmp_path, kind):
    s = _sparse_samples()[kind]
    path = save(tmp_path, {"s": s})
    want = torch.load(path, weights_only=True)
    got = load_checked(path)
    assert_same(got, want)
    assert torch.equal(got["s"].to_dense(), s.to_dense())


def test_sparse_with_indices_out_of_shape_is_refused(tmp_path):
    """torch validates loaded sparse tensors only with invariant checks on; safe_load
    always checks: an index outside the shape would read out of bounds on use."""
    s = torch.sparse_coo_tensor(torch.tensor([[0, 1]]), torch.tensor([1.0, 2.0]), (2,))
    path = save(tmp_path, {"s": s})

    def edit(name, data):
        if "/data/" in name and len(data) == 16 and np.frombuffer(data, "<i8").tolist() == [0, 1]:
            return np.array([0, 1000], dtype="<i8").tobytes()
        return data

    bad = tmp_path / "bad.pt"
    rewrite_zip(path, bad, edit)
    assert member(bad, "data/0") != member(path, "data/0") or member(bad, "data/1") != member(path, "data/1")
    with pytest.raises(aisbom.MalformedModelError, match="sparse"):
        aisbom.safe_load(bad, sandbox="never")


# ------------------------------------------------------------------ a checkpoint torch.load(weights_only=True) also loads


def test_weights_only_reference_agrees(tmp_path):
    """The same comparison against torch's own weights-only loader."""
    sd = nn.TransformerEncoderLayer(d_model=8, nhead=2, dim_feedforward=16).state_dict()
    path = save(tmp_path, sd)
    assert_same(load_checked(path), torch.load(path, weights_only=True))


# ------------------------------------------------------------------ the comparison helper can fail


def _differs(a, b):
    with pytest.raises(AssertionError):
        assert_same(a, b)


def test_comparison_helper_detects_differences():
    t = torch.arange(12.0).reshape(3, 4)
    assert_same({"a": t, "b": t.t()}, {"a": t, "b": t.t()})
    _differs(t.clone(), t.clone().contiguous().t().contiguous().t())  # same values, other strides
    _differs({"a": t, "b": t[1:]}, {"a": t, "b": t[1:].clone()})  # sharing
    _differs(t[1:], t[1:].clone())  # same values, storage offset 4 vs 0
    _differs(torch.tensor([float("nan")]), torch.tensor([0.0]))
    _differs(torch.tensor([-0.0]), torch.tensor([0.0]))
    _differs(torch.ones(2, dtype=torch.float32), torch.ones(2, dtype=torch.float64))
    _differs(nn.Parameter(torch.ones(2)), torch.ones(2))
    _differs(torch.ones(2, requires_grad=True), torch.ones(2))
    _differs(torch.ones(3)[:2], torch.ones(2))  # storage size
    _differs(collections.OrderedDict(a=1), {"a": 1})
    _differs({"a": 1, "b": 2}, {"b": 2, "a": 1})  # key order
    od1, od2 = collections.OrderedDict(a=1), collections.OrderedDict(a=1)
    od2._metadata = {"": {"version": 1}}
    _differs(od1, od2)
    x = [1]
    _differs([x, x], [[1], [1]])  # identity
    _differs([[1], [1]], [x, x])
    _differs(float("nan"), 1.0)
    _differs(torch.Size([2]), (2,))
    _differs(np.arange(3), np.arange(3, dtype=np.int32))
    _differs(np.asfortranarray(np.ones((2, 3))), np.ones((2, 3)))
    assert_same([float("nan"), {1, 2}, np.float32("nan")], [float("nan"), {1, 2}, np.float32("nan")])
