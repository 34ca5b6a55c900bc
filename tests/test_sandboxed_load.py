"""safe_load's sandbox path: suspicious files load in the jail and come back
as plain data; attacks run there fail; aisbom convert writes safetensors
atomically. (The jail itself is tested through the CLI in test_jail_*.py.)"""
from __future__ import annotations

import os
import pickle
import socket
import sys
import threading
import time
import warnings

import pytest

import aisbom
from aisbom import sandboxed
from aisbom.sandboxed import ModuleState, Placeholder, SandboxedLoadWarning

from asm import BINUNICODE, GLOBAL, REDUCE, TUPLE1, pickle_of

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.skipif(not sandboxed.available(), reason="the jail needs Linux")

_USER_CLASS = '''
class Config:
    def __init__(self, lr, layers):
        self.lr = lr
        self.layers = layers
'''


def _quiet_load(*args, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = aisbom.safe_load(*args, **kwargs)
    return result, [w for w in caught if issubclass(w.category, SandboxedLoadWarning)]


def test_whole_module_loads_as_its_state_dict(tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1))
    for legacy in (False, True):
        path = tmp_path / f"model-{legacy}.pt"
        torch.save(model, path, _use_new_zipfile_serialization=not legacy)
        got, warned = _quiet_load(path)
        reference = torch.load(path, weights_only=False).state_dict()
        assert isinstance(got, ModuleState)
        assert got.class_path == "torch.nn.modules.container.Sequential"
        assert list(got.state_dict) == list(reference)
        for key, value in reference.items():
            assert torch.equal(got.state_dict[key], value) and got.state_dict[key].dtype == value.dtype
        assert len(warned) == 1 and "Sequential" in str(warned[0].message)


def test_user_class_comes_back_with_its_state(tmp_path, monkeypatch):
    pkg = tmp_path / "proj"
    pkg.mkdir()
    (pkg / "mycfg.py").write_text(_USER_CLASS)
    monkeypatch.syspath_prepend(str(pkg))
    import mycfg  # noqa: E402

    cfg = mycfg.Config(0.1, [1, 2, {"k": b"v"}])
    path = tmp_path / "run.pkl"
    path.write_bytes(pickle.dumps({"cfg": cfg, "weights": torch.arange(3.0)}, protocol=4))
    got, warned = _quiet_load(path)
    assert isinstance(got["cfg"], Placeholder)
    assert got["cfg"].class_path == "mycfg.Config"
    assert got["cfg"].state == vars(cfg)  # what an unsandboxed load gives
    assert torch.equal(got["weights"], torch.arange(3.0))
    assert warned
    sys.modules.pop("mycfg", None)


def test_bytes_and_private_files_load_in_the_sandbox(tmp_path):
    # The child reads what the parent opened: bytes never touch the disk, and a
    # 0600 file loads even when the caller is root and the payload runs as nobody.
    model = torch.nn.Linear(2, 3)
    path = tmp_path / "private.pt"
    torch.save(model, path)
    path.chmod(0o600)
    reference = model.state_dict()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SandboxedLoadWarning)
        from_bytes = aisbom.safe_loads(path.read_bytes())
        from_path = aisbom.safe_load(path)
    for got in (from_bytes, from_path):
        assert isinstance(got, ModuleState)
        assert list(got.state_dict) == list(reference)
        assert all(torch.equal(got.state_dict[k], v) for k, v in reference.items())
    assert sorted(os.listdir(tmp_path)) == ["private.pt"]


def test_sharing_survives_the_sandbox(tmp_path):
    base = torch.arange(12.0).reshape(3, 4)
    model = torch.nn.Linear(2, 2)
    path = tmp_path / "shared.pt"
    torch.save({"m": model, "a": base, "b": base[1:], "t": base.T}, path)
    got, _ = _quiet_load(path)
    ref = torch.load(path, weights_only=False)
    for k in ("a", "b", "t"):
        assert torch.equal(got[k], ref[k]) and got[k].stride() == ref[k].stride()
    assert got["a"].untyped_storage().data_ptr() == got["b"].untyped_storage().data_ptr()
    assert got["a"].untyped_storage().data_ptr() == got["t"].untyped_storage().data_ptr()


def test_never_means_refused(tmp_path):
    path = tmp_path / "model.pt"
    torch.save(torch.nn.Linear(2, 2), path)
    with pytest.raises(aisbom.DisallowedGlobalError, match="allow="):
        aisbom.safe_load(path, sandbox="never")


def test_malicious_is_refused_in_auto(tmp_path):
    canary = tmp_path / "canary"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle_of(GLOBAL("posix", "system") + BINUNICODE(f"touch {canary}") + TUPLE1 + REDUCE))
    with pytest.raises(aisbom.MaliciousModelError):
        aisbom.safe_load(path)
    assert not canary.exists()


def _exec_pickle(code: str) -> bytes:
    return pickle_of(GLOBAL("builtins", "exec") + BINUNICODE(code) + TUPLE1 + REDUCE)


def test_payload_in_the_sandbox_cannot_reach_the_network(tmp_path):
    """sandbox='always' runs even a malicious file, in the jail: nothing gets out."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(0.2)
    port = server.getsockname()[1]
    received = []
    stop = threading.Event()

    def accept() -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not stop.is_set():
            try:
                conn, _ = server.accept()
            except socket.timeout:
                continue
            received.append(conn.recv(100))
            conn.close()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    path = tmp_path / "net.pkl"
    path.write_bytes(_exec_pickle(
        f"import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=2)\ns.sendall(b'leak')"
    ))
    with pytest.raises(aisbom.SandboxError) as info:
        aisbom.safe_load(path, sandbox="always")
    assert "loading failed" in str(info.value)
    time.sleep(0.5)
    stop.set()
    thread.join(timeout=25)
    server.close()
    assert received == []


def test_payload_in_the_sandbox_cannot_read_or_write_outside(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("the secret")
    outside = tmp_path / "written"
    for code in (f"open({str(secret)!r}).read()", f"open({str(outside)!r}, 'w').write('x')",
                 "open('/etc/shadow').read()", "import subprocess; subprocess.run(['/bin/sh', '-c', 'true'])"):
        path = tmp_path / "attempt.pkl"
        path.write_bytes(_exec_pickle(code))
        with pytest.raises(aisbom.SandboxError) as info:
            aisbom.safe_load(path, sandbox="always")
        assert "the secret" not in str(info.value)
    assert not outside.exists()


def test_a_spinning_payload_is_stopped_and_leaves_nothing_behind(tmp_path, monkeypatch):
    monkeypatch.setattr(sandboxed, "TIMEOUT", 3.0)
    path = tmp_path / "spin.pkl"
    path.write_bytes(_exec_pickle("while True: pass"))
    start = time.monotonic()
    with pytest.raises(aisbom.SandboxError, match="ran past"):
        aisbom.safe_load(path, sandbox="always")
    assert time.monotonic() - start < 20
    children = [p for p in os.listdir("/proc") if p.isdigit() and _parent_of(int(p)) == os.getpid()]
    assert children == []


def _parent_of(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return -1


def test_the_child_refuses_another_python():
    from aisbom import _child

    rc = _child.main(["--format", "pickle", "--out-fd", "99", "--python", "/elsewhere:3.0", "--in-fd", "98"])
    assert rc == _child.EXIT_WRONG_PYTHON


# ---- aisbom convert ----


def test_convert_writes_safetensors_equal_to_the_state_dict(tmp_path):
    from safetensors.torch import load_file

    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    src = tmp_path / "legacy.pt"
    torch.save(model, src, _use_new_zipfile_serialization=False)
    out = tmp_path / "out.safetensors"
    import subprocess

    p = subprocess.run([sys.executable, "-m", "aisbom", "convert", str(src), str(out)], capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stderr
    got = load_file(str(out))
    ref = model.state_dict()
    assert set(got) == set(ref)
    assert all(torch.equal(got[k], ref[k]) for k in ref)


def test_convert_refuses_malicious_input_without_writing(tmp_path):
    import subprocess

    src = tmp_path / "evil.pkl"
    canary = tmp_path / "canary"
    src.write_bytes(pickle_of(GLOBAL("posix", "system") + BINUNICODE(f"touch {canary}") + TUPLE1 + REDUCE))
    out = tmp_path / "out.safetensors"
    p = subprocess.run([sys.executable, "-m", "aisbom", "convert", str(src), str(out)], capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 1 and "refused" in p.stderr
    assert not out.exists() and not canary.exists()


def test_convert_never_leaves_a_half_written_file(tmp_path, monkeypatch):
    from aisbom import convert as conv

    out = tmp_path / "out.safetensors"
    out.write_bytes(b"previous contents")
    tensors = {"a": torch.ones(3), "b": torch.zeros(2)}
    real = conv._encode
    calls = []

    def failing(t):
        calls.append(t)
        if len(calls) == 2:
            raise RuntimeError("disk on fire")
        return real(t)

    monkeypatch.setattr(conv, "_encode", failing)
    with pytest.raises(RuntimeError):
        conv.write_safetensors(tensors, str(out))
    assert out.read_bytes() == b"previous contents"
    assert [p.name for p in tmp_path.iterdir()] == ["out.safetensors"]
