"""pickle.dumps(tensor) embeds a whole torch file in the pickle, loaded by
torch.storage._load_from_bytes: it is allowed exactly when that file is clean."""
from __future__ import annotations

import io
import pickle

import pytest

import aisbom
from asm import BINBYTES, BINUNICODE, GLOBAL, MARK, REDUCE, TUPLE, TUPLE1, pickle_of

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("proto", [2, 4, 5])
def test_pickled_tensors_are_clean_and_load_equal(proto):
    objs = {"t": torch.arange(6.0).reshape(2, 3), "p": torch.nn.Parameter(torch.ones(2)), "b": torch.tensor([True])}
    data = pickle.dumps(objs, protocol=proto)
    report = aisbom.scan_bytes(data)
    assert report.verdict.value == "clean", report.findings
    assert any(m.startswith("load_from_bytes@") for m, _ in report.members)
    got = aisbom.safe_loads(data)
    for k, v in objs.items():
        assert type(got[k]) is type(v) and torch.equal(got[k], v)
    arrays = aisbom.safe_loads(data, tensors="numpy")
    assert arrays["t"].tolist() == objs["t"].tolist()


def test_payload_inside_the_embedded_file_is_found(tmp_path):
    canary = tmp_path / "canary"
    inner = pickle_of(GLOBAL("posix", "system") + BINUNICODE(f"touch {canary}") + TUPLE1 + REDUCE)
    outer = pickle_of(GLOBAL("torch.storage", "_load_from_bytes") + BINBYTES(inner) + TUPLE1 + REDUCE, proto=4)
    report = aisbom.scan_bytes(outer)
    assert report.verdict.value == "malicious"
    bad = [f for f in report.findings if f.global_name == "posix.system"]
    assert any(f.member.startswith("load_from_bytes@") for f in bad), bad
    with pytest.raises(aisbom.MaliciousModelError):
        aisbom.safe_loads(outer)
    assert not canary.exists()


def test_load_from_bytes_of_something_not_bytes_is_malicious():
    outer = pickle_of(GLOBAL("torch.storage", "_load_from_bytes") + GLOBAL("builtins", "bytes") + MARK + TUPLE
                      + REDUCE + TUPLE1 + REDUCE, proto=4)
    report = aisbom.scan_bytes(outer)
    assert report.verdict.value == "malicious"
    assert any(f.rule == "unresolved-call" and "_load_from_bytes" in f.message for f in report.findings)
