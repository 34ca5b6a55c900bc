"""The process safe_load runs inside the jail for files that need more than
the allowlist: it loads the file with the library's own unsafe loader, reduces
what it got to plain data, and writes that to the fd it was given.

    python -m aisbom._child --format FMT --out-fd N --python PREFIX:VERSION MODEL

It is the only place aisbom ever calls torch.load(weights_only=False) or
pickle.load, and it runs with no network, read-only files, no exec, and
limits (aisbom/jail.py). Its output is untrusted too: the parent reads it back
through the allowlisting unpickler only.

Reduction: tensors, numpy arrays and builtin containers are kept (sharing
preserved); an nn.Module becomes {MODULE_KEY: class path, "state_dict": ...};
any other object becomes {PLACEHOLDER_KEY: class path, "state": its
attributes, reduced the same way}.
"""
from __future__ import annotations

import argparse
import collections
import os
import sys
from typing import Any, Dict, List

MODULE_KEY = "__aisbom_module__"
PLACEHOLDER_KEY = "__aisbom_placeholder__"
EXIT_WRONG_PYTHON = 3
EXIT_LOAD_FAILED = 4

_PLAIN = (str, bytes, bytearray, int, float, complex, bool, type(None))


def _class_path(obj: Any) -> str:
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


class _Reducer:
    """Walks what the file produced, keeping only what the parent may receive."""

    def __init__(self) -> None:
        self.memo: Dict[int, Any] = {}
        self.keep: List[Any] = []  # keeps reduced originals alive so ids stay unique
        try:
            import torch
        except ImportError:
            torch = None  # type: ignore[assignment]
        try:
            import numpy
        except ImportError:
            numpy = None  # type: ignore[assignment]
        self.torch = torch
        self.np = numpy

    def reduce(self, obj: Any, depth: int = 0) -> Any:
        if isinstance(obj, _PLAIN) and type(obj) in _PLAIN:
            return obj
        key = id(obj)
        if key in self.memo:
            return self.memo[key]
        self.keep.append(obj)
        out = self._reduce(obj, depth)
        self.memo[key] = out
        return out

    def _reduce(self, obj: Any, depth: int) -> Any:
        if depth > 200:
            return {PLACEHOLDER_KEY: "aisbom.too_deep", "state": None}
        torch, np = self.torch, self.np
        if torch is not None:
            if isinstance(obj, torch.nn.Parameter):
                return torch.nn.Parameter(obj.detach().as_subclass(torch.Tensor), obj.requires_grad)
            if isinstance(obj, torch.Tensor):
                t = obj.detach()
                return t if type(t) is torch.Tensor else t.as_subclass(torch.Tensor)
            if isinstance(obj, torch.nn.Module):
                state = collections.OrderedDict((k, self.reduce(v, depth + 1)) for k, v in obj.state_dict().items())
                return {MODULE_KEY: _class_path(obj), "state_dict": state}
            if isinstance(obj, (torch.dtype, torch.device, torch.Size)):
                return obj
        if np is not None:
            if isinstance(obj, np.ndarray):
                if obj.dtype.hasobject:
                    return np.array([self.reduce(x, depth + 1) for x in obj.ravel()], dtype=object).reshape(obj.shape)
                return np.ascontiguousarray(obj) if type(obj) is not np.ndarray else obj
            if isinstance(obj, (np.generic, np.dtype)):
                return obj
        if type(obj) in (dict, collections.OrderedDict, collections.defaultdict, collections.Counter):
            out: Any = collections.OrderedDict() if isinstance(obj, collections.OrderedDict) else {}
            for k, v in obj.items():
                out[self.reduce(k, depth + 1)] = self.reduce(v, depth + 1)
            return out
        if isinstance(obj, dict):
            return {self.reduce(k, depth + 1): self.reduce(v, depth + 1) for k, v in obj.items()}
        if isinstance(obj, (list, collections.deque)):
            return [self.reduce(x, depth + 1) for x in obj]
        if isinstance(obj, tuple):
            return tuple(self.reduce(x, depth + 1) for x in obj)
        if isinstance(obj, (set, frozenset)):
            items = [self.reduce(x, depth + 1) for x in obj]
            try:
                return type(obj)(items) if type(obj) in (set, frozenset) else set(items)
            except TypeError:
                return items
        out = {PLACEHOLDER_KEY: _class_path(obj), "state": None}
        self.memo[id(obj)] = out  # before the state: it may refer back to obj
        out["state"] = self.reduce(self._state_of(obj), depth + 1)
        return out

    @staticmethod
    def _state_of(obj: Any) -> Any:
        """What pickling would keep of an object: its __dict__, or __getstate__()."""
        state = getattr(obj, "__dict__", None)
        if isinstance(state, dict):
            return dict(state)
        getstate = getattr(obj, "__getstate__", None)
        if callable(getstate):
            try:
                return getstate()
            except Exception:
                return None
        return None


def _load(f: Any, fmt: str) -> Any:
    if fmt.startswith("torch"):
        import torch

        return torch.load(f, weights_only=False, map_location="cpu")
    if fmt == "joblib":
        try:
            import joblib  # type: ignore[import-untyped,import-not-found,unused-ignore]
        except ImportError:
            pass
        else:
            return joblib.load(f)
    if fmt in ("npy-object", "npz"):
        import numpy

        return numpy.load(f, allow_pickle=True)
    import pickle

    return pickle.load(f)


def _save(obj: Any, out: Any) -> None:
    try:
        import torch
    except ImportError:
        torch = None  # type: ignore[assignment]
    if torch is not None:
        torch.save(obj, out)
    else:
        import pickle

        pickle.dump(obj, out, protocol=4)


def main(argv: Any = None) -> int:
    p = argparse.ArgumentParser(prog="aisbom._child")
    p.add_argument("--format", required=True)
    p.add_argument("--out-fd", type=int, required=True)
    p.add_argument("--python", required=True, help="PREFIX:VERSION the parent runs")
    p.add_argument("--in-fd", type=int, required=True, help="the file to load, opened by the parent")
    args = p.parse_args(argv)
    here = f"{sys.prefix}:{sys.version}"
    if args.python != here:
        print(f"aisbom sandbox: the jail runs a different Python ({here}) than the caller ({args.python})",
              file=sys.stderr)
        return EXIT_WRONG_PYTHON
    try:
        with os.fdopen(args.in_fd, "rb") as f:
            obj = _load(f, args.format)
        reduced = _Reducer().reduce(obj)
        if args.format == "npz" and hasattr(obj, "files"):
            reduced = {k: _Reducer().reduce(obj[k]) for k in obj.files}
    except Exception as exc:  # the file's own failure, reported to the parent
        print(f"aisbom sandbox: loading failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_LOAD_FAILED
    with os.fdopen(args.out_fd, "wb") as out:
        _save(reduced, out)
    return 0


if __name__ == "__main__":
    status = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # The result is in the parent's memfd already. An interpreter that
    # imported torch spends half a second tearing it down, on the caller's
    # clock: this process has nothing left to clean up.
    os._exit(status)
