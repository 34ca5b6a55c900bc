"""Benign files written at test time by the real libraries are all clean.

torch.save (zip and legacy formats, pickle protocols 2/4/5), numpy arrays and
scalars and plain Python data pickled with every protocol: a scanner that
flags any of these is useless in practice. Nothing here is ever loaded.
"""
from __future__ import annotations

import collections
import io
import math
import pickle

import numpy as np
import pytest
import torch

import aisbom
from aisbom import Verdict
from asm import describe


nn = torch.nn


def assert_clean(data: bytes, what: str = ""):
    r = aisbom.scan_bytes(data)
    assert r.verdict is Verdict.CLEAN, f"{what}\n{describe(r)}"
    return r


def torch_bytes(obj, **kw) -> bytes:
    b = io.BytesIO()
    torch.save(obj, b, **kw)
    return b.getvalue()


SAVE_VARIANTS = {
    "zip": {},
    "legacy": {"_use_new_zipfile_serialization": False},
    "protocol2": {"pickle_protocol": 2},
    "protocol4": {"pickle_protocol": 4},
    "protocol5": {"pickle_protocol": 5},
}

DTYPES = {
    "float64": torch.float64,
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "int8": torch.int8,
    "int16": torch.int16,
    "int32": torch.int32,
    "int64": torch.int64,
    "uint8": torch.uint8,
    "bool": torch.bool,
    "complex64": torch.complex64,
}


def _layers():
    torch.manual_seed(0)
    return {
        "linear": nn.Linear(4, 3),
        "conv2d": nn.Conv2d(2, 3, 3),
        "batchnorm": nn.BatchNorm2d(3),
        "layernorm": nn.LayerNorm(5),
        "embedding": nn.Embedding(10, 4),
        "lstm": nn.LSTM(4, 6, num_layers=2),
        "attention": nn.MultiheadAttention(8, 2),
        "transformer": nn.TransformerEncoderLayer(8, 2, dim_feedforward=16),
    }


@pytest.fixture(scope="module")
def layers():
    return _layers()


def expected_format(variant: str) -> str:
    return "torch-legacy" if variant == "legacy" else "torch-zip"


@pytest.mark.parametrize("variant", list(SAVE_VARIANTS))
@pytest.mark.parametrize("dtype", list(DTYPES))
def test_state_dicts_every_dtype(layers, dtype, variant):
    for name, layer in layers.items():
        sd = collections.OrderedDict((k, v.detach().to(DTYPES[dtype])) for k, v in layer.state_dict().items())
        data = torch_bytes(sd, **SAVE_VARIANTS[variant])
        r = assert_clean(data, f"{name} in {dtype} saved as {variant}")
        assert r.format == expected_format(variant)


@pytest.mark.parametrize("variant", list(SAVE_VARIANTS))
def test_real_state_dict_objects(layers, variant):
    """state_dict() as returned (with _metadata and buffers such as num_batches_tracked)."""
    model = nn.Sequential(*[layers[k] for k in ("conv2d", "batchnorm")], nn.Flatten(), nn.LazyLinear(2))
    model(torch.zeros(1, 2, 5, 5))  # materialise the lazy layer
    assert_clean(torch_bytes(model.state_dict(), **SAVE_VARIANTS[variant]))


@pytest.mark.parametrize("variant", list(SAVE_VARIANTS))
def test_checkpoint_with_adam_and_metadata(variant):
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.99), weight_decay=0.01, amsgrad=True)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.5)
    for _ in range(2):
        opt.zero_grad()
        model(torch.randn(5, 4)).pow(2).mean().backward()
        opt.step()
        sched.step()
    ckpt = {
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "epoch": 7,
        "best_metric": float("nan"),
        "rng_state": torch.get_rng_state(),
        "config": {
            "name": "modèle ✓ – 模型",
            "layers": [4, 8, 2],
            "dropout": None,
            "flags": {"amp": False, "compile": True},
            "shape": torch.Size([2, 3]),
            "device": torch.device("cpu"),
            "dtype": torch.float16,
            "tags": ("a", "b"),
            "seen": {1, 2, 3},
            "big": 2**100,
            "ratio": complex(1, -2),
        },
        "history": [{"loss": 0.5, "acc": 0.75}, {"loss": 0.25, "acc": 0.875}],
        "numpy_stats": np.arange(4.0),
    }
    data = torch_bytes(ckpt, **SAVE_VARIANTS[variant])
    assert_clean(data, variant)


@pytest.mark.parametrize("variant", list(SAVE_VARIANTS))
def test_parameters_and_tensor_shapes(variant):
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    obj = {
        "param": nn.Parameter(torch.ones(3)),
        "frozen": nn.Parameter(torch.zeros(2, 2), requires_grad=False),
        "view": base[1:3, ::2],  # a view sharing storage with base
        "base": base,
        "transposed": base.t(),
        "scalar": torch.tensor(3.5),
        "empty": torch.empty(0, 5),
        "big": torch.zeros(1 << 18),
        "params_list": [nn.Parameter(torch.randn(2)) for _ in range(3)],
    }
    assert_clean(torch_bytes(obj, **SAVE_VARIANTS[variant]), variant)


def test_saved_to_disk_and_scanned_by_path(tmp_path, layers):
    for variant, kw in SAVE_VARIANTS.items():
        path = tmp_path / f"model-{variant}.pt"
        torch.save(layers["linear"].state_dict(), path, **kw)
        r = aisbom.scan(path)
        assert r.verdict is Verdict.CLEAN, describe(r)
        assert r.sha256 and len(r.sha256) == 64


def test_many_tensors_checkpoint():
    sd = {f"layer{i}.weight": torch.full((2,), float(i)) for i in range(2000)}
    r = assert_clean(torch_bytes(sd))
    # Plain tensor records are counted in one summary member, not listed one by one.
    assert [m for m, fmt in r.members if fmt == "storage"] == ["<2000 storage records>"]


# ---------------------------------------------------------------- numpy with pickle

NUMPY_OBJECTS = {
    "float64": lambda: np.linspace(0, 1, 7),
    "float32-2d": lambda: np.ones((3, 4), dtype=np.float32),
    "float16": lambda: np.zeros(5, dtype=np.float16),
    "int8": lambda: np.arange(-3, 3, dtype=np.int8),
    "uint64": lambda: np.arange(4, dtype=np.uint64),
    "bool": lambda: np.array([True, False]),
    "complex128": lambda: np.array([1 + 2j, -3j]),
    "unicode": lambda: np.array(["ä", "bc", "模型"]),
    "bytes": lambda: np.array([b"ab", b"\x00\xff"]),
    "structured": lambda: np.zeros(2, dtype=[("x", "<f4"), ("y", "<i8")]),
    "fortran": lambda: np.asfortranarray(np.arange(6.0).reshape(2, 3)),
    "non-contiguous": lambda: np.arange(10)[::3],
    "datetime": lambda: np.array(["2024-01-01"], dtype="datetime64[D]"),
    "object": lambda: np.array([1, "two", None, (3, 4)], dtype=object),
    "scalar-float64": lambda: np.float64(2.5),
    "scalar-int32": lambda: np.int32(-7),
    "scalar-bool": lambda: np.bool_(True),
    "scalar-complex": lambda: np.complex64(1 - 1j),
    "scalar-str": lambda: np.str_("hello"),
    "dtype": lambda: np.dtype("<f4"),
    "zero-d": lambda: np.array(5.0),
}


@pytest.mark.parametrize("protocol", range(6))
@pytest.mark.parametrize("kind", list(NUMPY_OBJECTS))
def test_numpy_pickled_every_protocol(kind, protocol):
    data = pickle.dumps(NUMPY_OBJECTS[kind](), protocol=protocol)
    assert_clean(data, f"{kind} protocol {protocol}")


def test_numpy_inside_containers_protocol5():
    obj = {"arrays": [np.arange(3), np.ones(2)], "scalar": np.float32(1.0), "nested": {"m": np.eye(3)}}
    assert_clean(pickle.dumps(obj, protocol=5))


# ---------------------------------------------------------------- plain Python data


def _plain_data():
    shared = [1, 2, 3]
    recursive: list = ["self"]
    recursive.append(recursive)
    return {
        "none": None,
        "bools": [True, False],
        "ints": [0, 1, -1, 255, 256, 65535, 65536, 2**31 - 1, -(2**31), 2**63, -(2**64), 2**1000, -(3**200)],
        "floats": [0.0, -0.0, 1.5, 1e308, 5e-324, math.inf, -math.inf, math.nan],
        "complex": [complex(1, 2), complex(-0.0, math.inf)],
        "strings": ["", "ascii", "ünïcödé", "模型 ✓ 😀", "line\nbreak", "back\\slash", "nul\x00byte", "cr\r\x1a", "\udc80"],
        "bytes": [b"", b"\x00\xff" * 10, bytes(range(256)), b"x" * 300],
        "bytearray": bytearray(b"\x01\x02\x03"),
        "tuples": [(), (1,), (1, 2), (1, 2, 3), (1, 2, 3, 4), ((),)],
        "lists": [[], [[]], list(range(50))],
        "sets": [set(), {1, 2, 3}, {"a", (1, 2)}],
        "frozensets": [frozenset(), frozenset({1, 2}), frozenset({frozenset({3})})],
        "dicts": [{}, {1: 2, "k": [3]}, {(1, 2): {"nested": {"deep": None}}}],
        "shared": [shared, shared, {"again": shared}],
        "recursive": recursive,
        "slices": [slice(1, 10, 2), range(3, 9)],
        "collections": [
            collections.OrderedDict([("a", 1), ("b", 2)]),
            collections.Counter("hello"),
            collections.deque([1, 2, 3], maxlen=5),
            collections.defaultdict(list, {"x": [1]}),
        ],
        "long_string": "s" * 70000,
        "long_bytes": b"b" * 70000,
    }


@pytest.mark.parametrize("protocol", range(6))
def test_plain_data_every_protocol(protocol):
    data = pickle.dumps(_plain_data(), protocol=protocol)
    r = assert_clean(data, f"protocol {protocol}")
    assert r.format == "pickle"


@pytest.mark.parametrize("protocol", range(6))
@pytest.mark.parametrize("key", sorted(_plain_data()))
def test_each_plain_value_every_protocol(key, protocol):
    assert_clean(pickle.dumps(_plain_data()[key], protocol=protocol), f"{key} protocol {protocol}")


@pytest.mark.parametrize("protocol", range(6))
def test_pure_python_pickler_output(protocol):
    """pickle._Pickler (the pure-Python pickler) spells some things differently."""
    b = io.BytesIO()
    pickle._Pickler(b, protocol=protocol).dump(_plain_data())
    assert_clean(b.getvalue(), f"pure-python protocol {protocol}")


@pytest.mark.parametrize("protocol", range(6))
def test_several_pickles_in_one_file(protocol, tmp_path):
    path = tmp_path / "stream.pkl"
    with open(path, "wb") as f:
        for i in range(5):
            pickle.dump({"i": i, "v": [i] * i}, f, protocol=protocol)
    r = aisbom.scan(path)
    assert r.verdict is Verdict.CLEAN, describe(r)
