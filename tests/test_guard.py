"""aisbom.guard(): other libraries' loaders, routed through safe_load.

For every target (torch.load, pickle.load/loads/Unpickler, numpy.load with
allow_pickle=True, joblib.load) a malicious file built from bytes, whose
payload only creates a canary file in tmp_path, is refused inside the guard
(the `canary` fixture asserts the canary never exists), and a subprocess
proves that the real, unguarded function would have run the same payload.
Clean files load equal to the unguarded result; library-style callers are
covered; the originals come back after the block, after an exception, and
after many threads entered and left guards at once; nested guards and
per-thread keyword arguments behave as documented in docs/guard.md.
"""
from __future__ import annotations

import io
import json
import os
import pickle
import random
import struct
import subprocess
import sys
import textwrap
import threading
import types
import zipfile
from pathlib import Path
from typing import Any, Dict, List, Tuple

import joblib
import numpy as np
import pytest
import torch

import aisbom
import asm
from aisbom import DisallowedGlobalError, MaliciousModelError
from aisbom import guard
from loader_helpers import assert_same, rewrite_zip

_ORIGINALS: Dict[str, Tuple[Any, str, Any]] = {
    f"{m.__name__}.{a}": (m, a, getattr(m, a))
    for m, a in [
        (pickle, "load"), (pickle, "loads"), (pickle, "Unpickler"), (pickle, "_load"), (pickle, "_loads"),
        (pickle, "_Unpickler"), (sys.modules["_pickle"], "load"), (sys.modules["_pickle"], "loads"),
        (sys.modules["_pickle"], "Unpickler"), (torch, "load"), (torch.serialization, "load"), (np, "load"),
        (sys.modules["numpy.lib._npyio_impl"], "load"), (joblib, "load"), (joblib.numpy_pickle, "load"),
    ]
}


def assert_originals() -> None:
    """Every guarded attribute holds its original again, and nothing is left behind."""
    changed = [name for name, (mod, attr, orig) in _ORIGINALS.items() if getattr(mod, attr) is not orig]
    assert not changed, f"not restored: {changed}"
    from aisbom import guarded as guard_module

    assert guard_module._state.depth == 0
    assert not guard_module._state.patches
    assert guard_module._hook not in sys.meta_path


def assert_patched() -> None:
    unpatched = [name for name, (mod, attr, orig) in _ORIGINALS.items() if getattr(mod, attr) is orig]
    assert not unpatched, f"not guarded: {unpatched}"


@pytest.fixture(autouse=True)
def _restored_afterwards():
    assert_originals()
    yield
    assert_originals()


class UserThing:
    """A harmless class outside the allowlist: a suspicious file, never a malicious one."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __eq__(self, other: object) -> bool:
        return type(other) is UserThing and other.n == self.n


USER_PICKLE = pickle.dumps(UserThing(3), protocol=2)


# ---------------------------------------------------------------- malicious files, built from bytes


def npy_object(pickle_bytes: bytes) -> bytes:
    """An object-dtype .npy (format 1.0) whose array is `pickle_bytes`."""
    header = b"{'descr': '|O', 'fortran_order': False, 'shape': (1,), }"
    header += b" " * (-(10 + len(header) + 1) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + pickle_bytes


def build_malicious(kind: str, folder: Path, canary: Path) -> Path:
    """The file for `kind` whose only effect, if unpickled, is creating `canary`."""
    payload = asm.os_system(str(canary))
    path = folder / f"{kind}.bin"
    if kind in ("pickle.load", "pickle.loads", "pickle.Unpickler", "numpy.load", "joblib.load"):
        path.write_bytes(payload)
    elif kind == "numpy.load-npy":
        path.write_bytes(npy_object(payload))
    elif kind == "numpy.load-npz":
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("ok.npy", _npy_bytes(np.arange(3)))
            z.writestr("x.npy", npy_object(payload))
    elif kind == "torch.load":
        rewrite_zip(_clean_checkpoint(folder), path, lambda name, data: payload if name.endswith("/data.pkl") else data)
    else:  # pragma: no cover
        raise ValueError(kind)
    return path


def _npy_bytes(array: Any) -> bytes:
    b = io.BytesIO()
    np.save(b, array)
    return b.getvalue()


REAL_CALLS = {  # the unguarded calls, run only in the proof subprocess
    "pickle.load": "pickle.load(open(path, 'rb'))",
    "pickle.loads": "pickle.loads(open(path, 'rb').read())",
    "pickle.Unpickler": "pickle.Unpickler(open(path, 'rb')).load()",
    "torch.load": "torch.load(path, weights_only=False)",
    "numpy.load": "numpy.load(path, allow_pickle=True)",
    "numpy.load-npy": "numpy.load(path, allow_pickle=True)",
    "numpy.load-npz": "numpy.load(path, allow_pickle=True)['x']",
    "joblib.load": "joblib.load(path)",
}
KINDS = sorted(REAL_CALLS)


def guarded_call(kind: str, path: Path) -> Any:
    """The same call as REAL_CALLS[kind], made in this process (inside a guard)."""
    if kind == "pickle.load":
        with open(path, "rb") as f:
            return pickle.load(f)
    if kind == "pickle.loads":
        return pickle.loads(path.read_bytes())
    if kind == "pickle.Unpickler":
        with open(path, "rb") as f:
            return pickle.Unpickler(f).load()
    if kind == "torch.load":
        return torch.load(path, weights_only=False)
    if kind in ("numpy.load", "numpy.load-npy"):
        return np.load(path, allow_pickle=True)
    if kind == "numpy.load-npz":
        return np.load(path, allow_pickle=True)["x"]
    if kind == "joblib.load":
        return joblib.load(path)
    raise ValueError(kind)  # pragma: no cover


def test_the_payloads_are_real_for_the_real_functions(tmp_path):
    """Outside any guard, in a subprocess, each real function runs its file's
    payload: the canaries appear. (Only in tmp_path, only `touch`.)"""
    jobs = []
    for kind in KINDS:
        canary = tmp_path / f"{kind}.canary"
        jobs.append((kind, str(build_malicious(kind, tmp_path, canary)), str(canary), REAL_CALLS[kind]))
    script = textwrap.dedent("""
        import json, pickle, sys
        import joblib, numpy, torch
        for kind, path, canary, call in json.loads(sys.argv[1]):
            try:
                eval(call)
            except Exception as exc:  # the payload ran before whatever failed afterwards
                print(kind, type(exc).__name__, exc, file=sys.stderr)
    """)
    proc = subprocess.run([sys.executable, "-c", script, json.dumps(jobs)], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    missing = [kind for kind, _, canary, _ in jobs if not os.path.exists(canary)]
    assert not missing, f"the payload did not run under the real function for {missing}: {proc.stderr}"


@pytest.mark.parametrize("kind", KINDS)
def test_malicious_file_is_refused_inside_the_guard(kind, tmp_path, canary):
    path = build_malicious(kind, tmp_path, canary.path)
    with guard():
        with pytest.raises(MaliciousModelError) as info:
            guarded_call(kind, path)
    assert info.value.global_name == "os.system"
    canary.assert_absent()


@pytest.mark.parametrize("kind", KINDS)
def test_refusal_propagates_out_of_the_block(kind, tmp_path, canary):
    """Allowing unrelated globals admits nothing dangerous; the error leaves the block."""
    path = build_malicious(kind, tmp_path, canary.path)
    with pytest.raises(MaliciousModelError):
        with guard(sandbox="never", allow=[UserThing]):
            guarded_call(kind, path)
    canary.assert_absent()


# ---------------------------------------------------------------- library-style callers


def library_torch_load(path: Any) -> Any:
    """What a library does: look torch.load up on the module at call time."""
    return torch.load(path, map_location="cpu")


def library_pickle_loads(data: bytes) -> Any:
    return pickle.loads(data)


def library_pickle_unpickler(stream: Any) -> Any:
    class LibraryUnpickler(pickle.Unpickler):  # defined at call time, like torch's own UnpicklerWrapper
        def find_class(self, module: str, name: str) -> Any:
            return super().find_class(module, name)  # permissive: would allow os.system

    return LibraryUnpickler(stream).load()


def test_library_style_callers_are_covered(tmp_path, canary):
    mal_pt = build_malicious("torch.load", tmp_path, canary.path)
    mal = asm.os_system(str(canary.path))
    clean_pt = tmp_path / "ok.pt"
    torch.save({"w": torch.arange(4.0)}, clean_pt)
    with guard():
        with pytest.raises(MaliciousModelError):
            library_torch_load(mal_pt)
        with pytest.raises(MaliciousModelError):
            library_pickle_loads(mal)
        with pytest.raises(MaliciousModelError):
            library_pickle_unpickler(io.BytesIO(mal))
        assert_same(library_torch_load(clean_pt), torch.load(clean_pt, weights_only=True))
        assert library_pickle_loads(pickle.dumps({"a": (1, 2)})) == {"a": (1, 2)}


def test_references_taken_before_the_block_need_modules(canary):
    """`from pickle import loads` in a library module is not a pickle attribute:
    guard() alone leaves it alone; guard(modules=[lib]) patches it, and the
    exit restores it."""
    lib = types.ModuleType("fake_library")
    exec("from pickle import loads\nfrom torch import load as tload\ndef read(b):\n    return loads(b)\n",
         lib.__dict__)
    original_loads = lib.loads
    with guard():
        assert lib.loads is original_loads  # the documented limitation, shown without running anything
    with guard(modules=[lib]):
        assert lib.loads is not original_loads and lib.tload is torch.load
        with pytest.raises(MaliciousModelError):
            lib.read(asm.os_system(str(canary.path)))
        assert lib.read(pickle.dumps([1, "x"])) == [1, "x"]
    assert lib.loads is original_loads and lib.tload is _ORIGINALS["torch.load"][2]
    sys.modules["fake_library"] = lib
    try:
        with guard(modules=["fake_library"]):
            assert lib.loads is pickle.loads
    finally:
        del sys.modules["fake_library"]
    assert lib.loads is original_loads
    with pytest.raises(TypeError):
        with guard(modules=[42]):
            pass


# ---------------------------------------------------------------- clean files load as the real function loads them


PLAIN = {"a": [1, 2.5, "x", b"y", None, True], "t": (1, (2, 3)), "s": {3}, "fs": frozenset({4}), "big": 2 ** 100,
         "f": float("-inf"), "ba": bytearray(b"z"), "nested": [[{"k": "v"}] * 2]}


@pytest.mark.parametrize("proto", range(0, 6))
def test_pickle_clean_loads_equal(proto):
    data = pickle.dumps(PLAIN, protocol=proto)
    expected = pickle.loads(data)
    with guard():
        assert_patched()
        assert pickle.loads(data) == expected
        assert pickle.load(io.BytesIO(data)) == expected
        assert pickle.Unpickler(io.BytesIO(data)).load() == expected
        assert pickle._loads(data) == expected
        latin = pickle.loads(b"\x80\x02U\x03\xe9t\xe9q\x00.", encoding="latin1")
    assert latin == pickle.loads(b"\x80\x02U\x03\xe9t\xe9q\x00.", encoding="latin1")


class _Pipe(io.RawIOBase):
    """A non-seekable stream (like a socket or a pipe)."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        chunk = self._data.read(min(len(b), 7))  # short reads, as a pipe gives
        b[:len(chunk)] = chunk
        return len(chunk)

    def readline(self, size: int = -1) -> bytes:
        return self._data.readline(size)


@pytest.mark.parametrize("seekable", [True, False])
def test_pickle_load_leaves_the_stream_where_pickle_does(seekable):
    """Several pickles in one stream (one larger than the read-ahead, one in
    protocol 0), read one by one, then EOFError: the idiom that ends loops."""
    objs = [PLAIN, list(range(40000)), "middle", {"p0": [1, "two"]}]
    data = b"".join(pickle.dumps(o, protocol=p) for o, p in zip(objs, (5, 4, 2, 0)))
    stream = io.BytesIO(data) if seekable else _Pipe(data)
    with guard():
        got = []
        while True:
            try:
                got.append(pickle.load(stream))
            except EOFError:
                break
        with pytest.raises(EOFError):
            pickle.loads(b"")
    assert got == objs
    if seekable:
        assert stream.tell() == len(data)


def test_stream_errors_are_the_streams_and_broken_pickles_are_refused():
    with guard():
        with pytest.raises(TypeError, match="bytes-like"):
            pickle.load(io.StringIO("text"))
        with pytest.raises(aisbom.MalformedModelError):
            pickle.load(io.BytesIO(pickle.dumps({"k": "v"})[:-3]))  # truncated
        with pytest.raises(aisbom.MalformedModelError):
            pickle.loads(pickle.dumps([1]) + b"trailing garbage")  # scanned, unlike pickle.loads


def test_pickle_load_reads_only_its_own_pickle(canary):
    """Bytes after the first pickle are not pickle.load's business: a
    malicious pickle there is left unread (and refused by the next load)."""
    stream = io.BytesIO(pickle.dumps([1]) + asm.os_system(str(canary.path)))
    with guard():
        assert pickle.load(stream) == [1]
        with pytest.raises(MaliciousModelError):
            pickle.load(stream)


def test_torch_clean_checkpoint_loads_equal(tmp_path):
    base = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    state = {"w": base, "view": base[1], "b": torch.ones(2, dtype=torch.bfloat16), "step": 7, "name": "x"}
    path = tmp_path / "model.pt"
    torch.save(state, path)
    expected = torch.load(path, weights_only=True)
    with guard():
        assert_same(torch.load(path), expected)
        assert_same(torch.load(str(path), map_location="cpu", weights_only=False, pickle_module=pickle), expected)
        assert_same(torch.serialization.load(io.BytesIO(path.read_bytes())), expected)
        mapped = torch.load(path, mmap=True)
        assert_same(mapped, expected)
        with pytest.raises(TypeError):
            torch.load(path, no_such_unpickler_argument=1)


def test_torch_weights_only_false_does_not_loosen_anything(tmp_path):
    path = tmp_path / "user.pt"
    torch.save({"thing": UserThing(1)}, path)
    with guard(sandbox="never"):
        with pytest.raises(DisallowedGlobalError):
            torch.load(path, weights_only=False)
    with guard(sandbox="never", allow=[UserThing]):
        assert torch.load(path, weights_only=False) == {"thing": UserThing(1)}


def test_numpy_without_pickles_is_numpys_own(tmp_path):
    arr = np.arange(6, dtype=np.float64).reshape(2, 3)
    npy = tmp_path / "a.npy"
    np.save(npy, arr)
    obj = tmp_path / "o.npy"
    np.save(obj, np.array([{"k": 1}, None], dtype=object))
    with guard():
        assert np.array_equal(np.load(npy), arr)
        mm = np.load(npy, mmap_mode="r")
        assert isinstance(mm, np.memmap) and np.array_equal(mm, arr)
        with pytest.raises(ValueError, match="allow_pickle"):
            np.load(obj)  # allow_pickle=False: numpy refuses, as without the guard
        with pytest.raises(ValueError, match="encoding"):
            np.load(obj, allow_pickle=True, encoding="utf-8")
        assert np.array_equal(np.load(npy, allow_pickle=True), arr)
        del mm


def test_numpy_pickles_load_equal(tmp_path):
    objects = np.array([{"k": 1}, None, "s", [1, 2]], dtype=object)
    npy = tmp_path / "o.npy"
    np.save(npy, objects)
    npz = tmp_path / "o.npz"
    np.savez(npz, plain=np.arange(3), obj=objects)
    pkl = tmp_path / "o.pkl"
    pkl.write_bytes(pickle.dumps({"arr": np.arange(4), "x": 1}, protocol=4))
    stream = io.BytesIO()
    np.save(stream, objects)
    np.save(stream, np.arange(5))
    np.save(stream, objects[:2])
    with guard():
        assert_same(np.load(npy, allow_pickle=True), np.load(npy, allow_pickle=True))
        assert list(np.load(npy, allow_pickle=True)) == list(objects)
        loaded = np.load(pkl, allow_pickle=True)
        with open(npy, "rb") as f:
            assert list(np.load(f, allow_pickle=True)) == list(objects)
        stream.seek(0)
        first, second, third = (np.load(stream, allow_pickle=True) for _ in range(3))
        archive = np.load(npz, allow_pickle=True)
    assert loaded["x"] == 1 and np.array_equal(loaded["arr"], np.arange(4))
    assert list(first) == list(objects) and np.array_equal(second, np.arange(5)) and list(third) == list(objects[:2])
    with archive:  # read lazily, after the guard: still through aisbom
        assert isinstance(archive, np.lib.npyio.NpzFile) and sorted(archive.files) == ["obj", "plain"]
        assert np.array_equal(archive["plain"], np.arange(3))
        assert list(archive["obj"]) == list(objects)


def test_npz_opened_in_the_guard_stays_guarded(tmp_path, canary):
    path = build_malicious("numpy.load-npz", tmp_path, canary.path)
    with guard():
        archive = np.load(path, allow_pickle=True)
    assert np.array_equal(archive["ok"], np.arange(3))
    with pytest.raises(MaliciousModelError):
        archive["x"]  # after the block: the archive was opened under the guard
    archive.close()


def test_joblib_clean_and_arrays(tmp_path):
    plain = tmp_path / "plain.joblib"
    joblib.dump({"x": [1, 2], "s": "y"}, plain)
    packed = tmp_path / "z.joblib"
    joblib.dump({"x": [3]}, packed, compress=3)
    arrays = tmp_path / "arrays.joblib"
    joblib.dump({"a": np.arange(3)}, arrays)
    with guard(sandbox="never"):
        assert joblib.load(plain) == {"x": [1, 2], "s": "y"}
        assert joblib.load(packed) == {"x": [3]}
        with open(plain, "rb") as f:
            assert joblib.load(f) == {"x": [1, 2], "s": "y"}
        with pytest.raises(DisallowedGlobalError, match="NumpyArrayWrapper"):
            joblib.load(arrays)  # joblib's array wrapper is not allowlisted: refused, never trusted


# ---------------------------------------------------------------- keyword arguments, nesting, exits


def test_keyword_arguments_reach_safe_load():
    with guard(sandbox="never"):
        with pytest.raises(DisallowedGlobalError):
            pickle.loads(USER_PICKLE)
    with guard(sandbox="never", allow=[UserThing], mmap=True):
        assert pickle.loads(USER_PICKLE) == UserThing(3)  # mmap= is for paths: no error for bytes
    with pytest.raises(TypeError):
        guard(no_such_option=1).__enter__()
    with pytest.raises(ValueError):
        guard(sandbox="sometimes").__enter__()


def test_nested_guards_innermost_decides():
    with guard(sandbox="never"):
        with guard(sandbox="never", allow=[UserThing]):
            assert pickle.loads(USER_PICKLE) == UserThing(3)
            with guard(sandbox="never"):
                with pytest.raises(DisallowedGlobalError):
                    pickle.loads(USER_PICKLE)
            assert pickle.loads(USER_PICKLE) == UserThing(3)
        assert_patched()
        with pytest.raises(DisallowedGlobalError):
            pickle.loads(USER_PICKLE)
    assert pickle.loads(USER_PICKLE) == UserThing(3)  # the real pickle.loads again


def test_decorator():
    @guard(sandbox="never")
    def read(data: bytes) -> Any:
        return pickle.loads(data)

    with pytest.raises(DisallowedGlobalError):
        read(USER_PICKLE)
    assert_originals()
    with pytest.raises(DisallowedGlobalError):
        read(USER_PICKLE)  # reusable


def test_restored_after_an_exception(canary):
    with pytest.raises(RuntimeError, match="boom"):
        with guard():
            assert_patched()
            raise RuntimeError("boom")
    assert_originals()
    with pytest.raises(MaliciousModelError):
        with guard():
            pickle.loads(asm.os_system(str(canary.path)))  # the refusal itself propagates
    assert_originals()


def test_references_taken_inside_the_block_follow_the_guard():
    """A wrapper captured in the block acts as the original once no guard is
    active (it was restored everywhere it was installed)."""
    with guard(sandbox="never"):
        captured = pickle.loads
        unpickler = pickle.Unpickler(io.BytesIO(USER_PICKLE))
    assert captured is not pickle.loads
    assert captured(USER_PICKLE) == UserThing(3)
    with pytest.raises(DisallowedGlobalError):
        unpickler.load()  # made inside the block: guarded for good
    assert pickle.Unpickler(io.BytesIO(USER_PICKLE)).load() == UserThing(3)


def test_someone_elses_replacement_is_left_in_place():
    def theirs(*args: Any, **kwargs: Any) -> Any:
        return "theirs"

    try:
        with guard():
            pickle.loads = theirs
        assert pickle.loads is theirs
    finally:
        pickle.loads = _ORIGINALS["pickle.loads"][2]


# ---------------------------------------------------------------- threads


def test_other_threads_are_guarded_with_safe_load_defaults(canary):
    """The patch is global: a thread with no guard of its own is guarded too."""
    results: List[Any] = []

    def worker() -> None:
        try:
            pickle.loads(asm.os_system(str(canary.path)))
            results.append("loaded")
        except MaliciousModelError as exc:
            results.append(exc)

    with guard(allow=[UserThing]):
        t = threading.Thread(target=worker)
        t.start()
        t.join()
    assert isinstance(results[0], MaliciousModelError)


def test_keyword_arguments_are_per_thread():
    barrier = threading.Barrier(2, timeout=30)
    results: Dict[str, Any] = {}

    def run(name: str, **kwargs: Any) -> None:
        with guard(sandbox="never", **kwargs):
            barrier.wait()  # both guards active at once
            try:
                results[name] = pickle.loads(USER_PICKLE)
            except DisallowedGlobalError as exc:
                results[name] = exc
            barrier.wait()

    threads = [threading.Thread(target=run, args=("allowed",), kwargs={"allow": [UserThing]}),
               threading.Thread(target=run, args=("strict",))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results["allowed"] == UserThing(3)
    assert isinstance(results["strict"], DisallowedGlobalError)


def test_concurrent_guards_keep_the_originals_intact():
    """Many threads enter and leave (nested) guards at random, with the
    interpreter switching threads as often as it can; each sees every patch
    for as long as it is inside; afterwards every original is back."""
    errors: List[BaseException] = []
    data = pickle.dumps({"k": [1, 2]})
    start = threading.Barrier(8, timeout=30)
    original_loads, original_torch_load = _ORIGINALS["pickle.loads"][2], _ORIGINALS["torch.load"][2]

    def churn(seed: int) -> None:
        rng = random.Random(seed)
        try:
            start.wait()
            for i in range(300):
                with guard(sandbox="never"):
                    assert pickle.loads is not original_loads
                    if rng.random() < 0.5:
                        with guard(sandbox="never", allow=[UserThing]):
                            assert torch.load is not original_torch_load
                    if i % 10 == 0:
                        assert pickle.loads(data) == {"k": [1, 2]}
                    assert pickle.loads is not original_loads and torch.load is not original_torch_load
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=churn, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
    assert not errors, errors[:3]
    assert_originals()


# ---------------------------------------------------------------- modules imported inside the block


def test_modules_first_imported_inside_the_block_are_guarded(tmp_path):
    """In a fresh interpreter without torch, numpy or joblib: importing them
    inside the block patches them (torch.load and joblib.load are bound by
    `from .serialization import load`-style imports while the import runs),
    and the exit restores every home."""
    canary = tmp_path / "late.canary"
    pickled = build_malicious("joblib.load", tmp_path, canary)
    checkpoint = tmp_path / "late.pt"
    rewrite_zip(_clean_checkpoint(tmp_path), checkpoint,
                lambda name, data: pickled.read_bytes() if name.endswith("/data.pkl") else data)
    script = textwrap.dedent("""
        import sys
        import aisbom
        from aisbom import guard
        assert not {"torch", "numpy", "joblib"} & set(sys.modules)
        with guard():
            import joblib
            import torch
            for load, path in ((joblib.load, sys.argv[1]), (torch.load, sys.argv[2]),
                               (lambda p: __import__("numpy").load(p, allow_pickle=True), sys.argv[1])):
                try:
                    load(path)
                except aisbom.MaliciousModelError:
                    print("refused")
        import joblib.numpy_pickle, numpy, numpy.lib._npyio_impl
        homes = [joblib.load, joblib.numpy_pickle.load, torch.load, torch.serialization.load, numpy.load,
                 numpy.lib._npyio_impl.load]
        assert joblib.load is joblib.numpy_pickle.load and torch.load is torch.serialization.load
        assert numpy.load is numpy.lib._npyio_impl.load
        assert not any(hasattr(f, "__aisbom_guard_original__") for f in homes)
        print("restored")
    """)
    proc = subprocess.run([sys.executable, "-c", script, str(pickled), str(checkpoint)], capture_output=True,
                          text=True, timeout=120)
    assert proc.stdout.split() == ["refused"] * 3 + ["restored"], proc.stderr
    assert not canary.exists()


def _clean_checkpoint(folder: Path) -> Path:
    path = folder / "clean.pt"
    torch.save({"w": torch.ones(2)}, path)
    return path
