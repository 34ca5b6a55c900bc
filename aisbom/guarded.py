"""aisbom.guard(): route other libraries' unpickling through safe_load.

    with aisbom.guard():                       # safe_load's keyword arguments, if any
        model = some_library.from_pretrained(path)

Libraries open model files with ``torch.load``, ``pickle.load``/``loads``,
``pickle.Unpickler(...).load()``, ``numpy.load`` and ``joblib.load``; a caller
cannot pass them ``aisbom.safe_load`` instead. While a guard is active those
functions are replaced, in the modules that define them, by wrappers that do
what ``safe_load`` does with the guard's keyword arguments: scan, refuse a
malicious file, load a clean one in-process through the allowlisting
unpickler, sandbox (or refuse) a suspicious one. A guarded call never falls
back to the real loader for data that could run code; where a wrapper does
call the real function (``numpy.load`` without pickles) it is with pickles
disabled.

The replacement is global (module attributes), reference-counted under a
lock, and undone when the last active guard exits, on error too. The keyword
arguments are per thread (a context variable): each thread's innermost guard
decides; a thread with no guard of its own gets safe_load's defaults while any
other thread holds a guard. Modules imported for the first time inside the
block are patched as their import finishes. References captured before the
block (``from pickle import loads``) are not module attributes of the target
modules: pass their modules as ``guard(modules=[...])``. docs/guard.md has the
full semantics and limits.
"""
from __future__ import annotations

import contextlib
import contextvars
import functools
import importlib
import importlib.machinery
import inspect
import io
import os
import pickletools
import struct
import sys
import threading
import types
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Tuple, Union

from aisbom import _core
from aisbom.loader import load_buffer, safe_load, safe_loads

__all__ = ["guard"]

# A wrapper or guarded class keeps the object it replaced under this name (in
# its own __dict__, so that subclasses of a guarded class do not look guarded).
_ORIGINAL_ATTR = "__aisbom_guard_original__"
_MISSING = object()
_READAHEAD = 1 << 16  # bytes a seekable stream is read ahead while its pickle is delimited
_MAX_READ = 1 << 20  # no single read asks for more, whatever length a file claims
_NPY_MAGIC = b"\x93NUMPY"
_NUMPY_ENCODINGS = ("ASCII", "latin1", "bytes")
_PICKLE_ARGS = ("encoding", "errors", "fix_imports")

Impl = Callable[..., Any]  # impl(original, options, *call_args, **call_kwargs)


# ---------------------------------------------------------------- state


@dataclass
class _Patch:
    """One attribute this module replaced, and what to put back."""

    namespace: Any
    attr: str
    original: Any
    replacement: Any


class _State:
    """Process-wide patch state. Every field is changed under `lock` only."""

    def __init__(self) -> None:
        # Reentrant: _enter undoes a failed install through _leave while
        # holding it, and the import hook takes it too.
        self.lock = threading.RLock()
        self.depth = 0  # guards active in all threads
        self.patches: Dict[Tuple[int, str], _Patch] = {}
        # id(original) -> (original, replacement). Kept for the life of the
        # process so a replacement is the same object in every guard, and so
        # a stale reference to one (captured during a block) is recognised.
        self.replacements: Dict[int, Tuple[Any, Any]] = {}


_state = _State()
_options_stack: contextvars.ContextVar[Tuple[Dict[str, Any], ...]] = contextvars.ContextVar(
    "aisbom_guard_options", default=()
)


def _current_options() -> Optional[Dict[str, Any]]:
    """safe_load keyword arguments for a guarded call made now, or None when
    no guard is active in any thread (a stale wrapper then behaves like the
    function it replaced). A thread without a guard of its own, while another
    thread holds one, gets safe_load's defaults: guarded, never trusted."""
    if _state.depth == 0:
        return None
    stack = _options_stack.get()
    return dict(stack[-1]) if stack else {}


# ---------------------------------------------------------------- options per call


def _with(options: Mapping[str, Any], **overrides: Any) -> Dict[str, Any]:
    """The guard's options, with the values a call passed explicitly (not None) on top."""
    merged = dict(options)
    merged.update({k: v for k, v in overrides.items() if v is not None})
    return merged


def _is_path(f: Any) -> bool:
    return isinstance(f, (str, bytes, os.PathLike))


def _without_mmap(options: Dict[str, Any]) -> Dict[str, Any]:
    """mmap= applies to paths only: a guard's mmap=True must not make a load
    from bytes or a stream fail."""
    options.pop("mmap", None)
    return options


def _pickle_encoding(encoding: str) -> Optional[str]:
    """pickle's default "ASCII" leaves the guard's encoding (if any) in place."""
    return None if encoding == "ASCII" else encoding


def _stream_name(stream: Any) -> str:
    """How errors name bytes read from a stream. Never a bare path: the
    sandbox would load the file at that path instead of the bytes scanned."""
    name = getattr(stream, "name", None)
    return f"<pickle read from {name}>" if isinstance(name, str) else "<stream>"


# ---------------------------------------------------------------- one pickle from a stream


def _seekable_start(stream: Any) -> Optional[int]:
    """The stream's position if it can seek back to it, else None."""
    try:
        return stream.tell() if stream.seekable() else None
    except (AttributeError, OSError):
        return None


class _StreamFailure(Exception):
    """The stream itself failed (I/O error, text instead of bytes): its error
    is the caller's to see, unlike a decoding failure, which aisbom judges."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


def _checked_bytes(data: Any) -> bytes:
    if data is None:
        return b""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"a bytes-like object is required, not '{type(data).__name__}'")
    return bytes(data)


class _StreamTap:
    """A read/readline view of a binary stream, keeping every byte it hands out.

    pickle.load leaves its stream right after the pickle's STOP, and callers
    rely on that (several pickles in one file, an EOFError ending a loop). To
    behave the same, the pickle's extent is found without running anything.
    A seekable stream is read ahead and delimited by aisbom's C parser
    (skip_pickle), then seeked back to the end of the pickle; any other
    stream is read exactly as far as pickletools.genops needs.
    """

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self._start = _seekable_start(stream)
        self._readahead = _READAHEAD if self._start is not None else 0
        self._buf = bytearray()
        self._pos = 0
        self._eof = False

    def _fill(self, need: int) -> None:
        """Have `need` bytes past the position buffered, or reach the end."""
        while len(self._buf) - self._pos < need and not self._eof:
            missing = need - (len(self._buf) - self._pos)
            chunk = self._call(self._stream.read, min(max(missing, self._readahead), _MAX_READ))
            if not chunk:
                self._eof = True
            else:
                self._buf += chunk

    def read(self, n: int) -> bytes:
        self._fill(n)
        with memoryview(self._buf) as view:  # one copy, and the export ends here
            out = bytes(view[self._pos:self._pos + n])
        self._pos += len(out)
        return out

    def readline(self) -> bytes:
        while True:
            nl = self._buf.find(b"\n", self._pos)
            if nl >= 0:
                return self.read(nl + 1 - self._pos)
            if self._eof:
                return self.read(len(self._buf) - self._pos)
            if self._readahead:
                self._fill(len(self._buf) - self._pos + 1)
            else:
                line = self._call(self._stream.readline)
                self._eof = not line
                self._buf += line

    @staticmethod
    def _call(method: Callable[..., Any], *args: Any) -> bytes:
        try:
            return _checked_bytes(method(*args))
        except Exception as exc:
            raise _StreamFailure(exc) from exc

    def skip_pickle(self) -> bool:
        """On a seekable stream, move past one pickle's STOP as found by
        aisbom's own parser (the one the loader uses), reading ahead as far as
        it needs; False on other streams. A pickle that breaks off leaves the
        tap at the end of the data, for aisbom to judge (and refuse)."""
        if not self._readahead:
            return False
        need = self._readahead
        while True:
            self._fill(need)
            end = _core.pickle_end(self._buf, self._pos)
            if end is not None:
                self._pos = end
                return True
            if self._eof:
                self._pos = len(self._buf)
                return True
            need = 2 * (len(self._buf) - self._pos)

    def rewind(self) -> None:
        """Back to the first byte read (still buffered)."""
        self._pos = 0

    def finish(self) -> bytes:
        """The bytes consumed; a seekable stream is left right after them."""
        if self._start is not None and len(self._buf) != self._pos:
            self._stream.seek(self._start + self._pos)
        with memoryview(self._buf) as view:
            return bytes(view[:self._pos])


def _consume_pickle(tap: _StreamTap) -> None:
    """Advance `tap` past one pickle's STOP. A stream that cannot seek back
    must not be read past the STOP, so there pickletools.genops reads opcode
    by opcode instead; when it rejects the bytes, the tap stops where it did
    and aisbom judges what was read (and refuses it as malformed)."""
    try:
        if tap.skip_pickle():
            return
    except _StreamFailure as failure:
        raise failure.error
    try:
        for _ in pickletools.genops(tap):  # type: ignore[arg-type]  # read/readline is all it uses
            pass
    except _StreamFailure as failure:
        raise failure.error
    except Exception:  # any decoding failure: the bytes so far go to aisbom
        pass


def _read_one_pickle(stream: Any) -> bytes:
    """The bytes of the next pickle in `stream`, leaving it where pickle.load would."""
    tap = _StreamTap(stream)
    _consume_pickle(tap)
    data = tap.finish()
    if not data:
        raise EOFError("Ran out of input")  # what pickle.load raises; loops stop on it
    return data


def _read_npy_or_pickle(stream: Any) -> bytes:
    """The next .npy (header and pickled object array) or plain pickle in
    `stream`, leaving it where numpy.load(allow_pickle=True) would."""
    tap = _StreamTap(stream)
    head = tap.read(8)
    if head[:6] == _NPY_MAGIC and len(head) == 8:
        size_format = "<H" if head[6] == 1 else "<I"  # format 1.0, or 2.0/3.0
        size = tap.read(struct.calcsize(size_format))
        if len(size) == struct.calcsize(size_format):
            tap.read(struct.unpack(size_format, size)[0])
    else:
        tap.rewind()
    _consume_pickle(tap)
    data = tap.finish()
    if not data:
        raise EOFError("No data left in file")
    return data


def _load_stream(stream: Any, options: Mapping[str, Any], encoding: str) -> Any:
    """pickle.load(stream) through safe_load semantics: exactly the next
    pickle is scanned and loaded, the stream is left after it."""
    data = _read_one_pickle(stream)
    kwargs = _without_mmap(_with(options, encoding=_pickle_encoding(encoding)))
    return load_buffer(data, path=_stream_name(stream), **kwargs)


# ---------------------------------------------------------------- the guarded targets


def _pickle_load(original: Any, options: Dict[str, Any], file: Any, *, fix_imports: bool = True,
                 encoding: str = "ASCII", errors: str = "strict", buffers: Any = None) -> Any:
    """pickle.load: fix_imports is moot (aisbom always maps Python 2 names),
    decoding is always strict, out-of-band buffers are refused by the scan."""
    return _load_stream(file, options, encoding)


def _pickle_loads(original: Any, options: Dict[str, Any], data: Any, /, *, fix_imports: bool = True,
                  encoding: str = "ASCII", errors: str = "strict", buffers: Any = None) -> Any:
    """pickle.loads: the whole buffer is scanned, bytes after the first STOP too."""
    if isinstance(data, str):
        raise TypeError("a bytes-like object is required, not 'str'")
    with memoryview(data) as view:
        if view.nbytes == 0:
            raise EOFError("Ran out of input")
    return safe_loads(data, **_without_mmap(_with(options, encoding=_pickle_encoding(encoding))))


def _torch_load(original: Any, options: Dict[str, Any], f: Any, map_location: Any = None, pickle_module: Any = None,
                *, weights_only: Optional[bool] = None, mmap: Optional[bool] = None, **pickle_load_args: Any) -> Any:
    """torch.load: weights_only and pickle_module cannot loosen or replace
    aisbom's allowlist, so they are ignored; tensors are always torch tensors
    (what torch.load's callers expect)."""
    unknown = sorted(set(pickle_load_args) - set(_PICKLE_ARGS))
    if unknown:
        raise TypeError(f"torch.load() got unexpected keyword arguments for the unpickler: {', '.join(unknown)}")
    kwargs = _with(options, tensors="torch", map_location=map_location, encoding=pickle_load_args.get("encoding"))
    if mmap is not None:
        kwargs["mmap"] = bool(mmap)  # mmap=True on a stream fails, as in torch.load
    elif not _is_path(f):
        _without_mmap(kwargs)
    return safe_load(f, **kwargs)


def _joblib_load(original: Any, options: Dict[str, Any], filename: Any, mmap_mode: Optional[str] = None,
                 ensure_native_byte_order: Any = "auto") -> Any:
    """joblib.load: mmap_mode is ignored (joblib's array wrapper is not
    allowlisted, so files with arrays are refused or sandboxed anyway)."""
    kwargs = dict(options)
    if not _is_path(filename):
        _without_mmap(kwargs)
    return safe_load(filename, **kwargs)


def _numpy_load(original: Any, options: Dict[str, Any], file: Any, mmap_mode: Optional[str] = None,
                allow_pickle: bool = False, fix_imports: bool = True, encoding: str = "ASCII", **more: Any) -> Any:
    """numpy.load: the real function, always with allow_pickle=False (it then
    runs no code). With allow_pickle=True, what numpy would unpickle goes to
    aisbom instead: a pickle or object .npy now, an .npz member on access."""
    if not allow_pickle or encoding not in _NUMPY_ENCODINGS:
        return original(file, mmap_mode, allow_pickle, fix_imports, encoding, **more)
    start = None if _is_path(file) else _seekable_start(file)
    try:
        result = original(file, mmap_mode, False, fix_imports, encoding, **more)
    except io.UnsupportedOperation:  # a stream numpy cannot seek: numpy's error
        raise
    except ValueError:  # it holds pickles (or numpy cannot read it without them)
        return _numpy_pickled(file, start, _with(options, encoding=_pickle_encoding(encoding)))
    if _is_npz(result):
        _pin_npz(result, _with(options, encoding=_pickle_encoding(encoding)))
    return result


def _numpy_pickled(file: Any, start: Optional[int], options: Dict[str, Any]) -> Any:
    """What numpy.load(allow_pickle=True) would have unpickled, through aisbom."""
    kwargs = _without_mmap(options)
    if _is_path(file):
        return safe_load(file, **kwargs)
    if start is not None:
        file.seek(start)
    return load_buffer(_read_npy_or_pickle(file), path=_stream_name(file), **kwargs)


def _is_npz(obj: Any) -> bool:
    """Whether numpy.load returned a (lazy) .npz archive; numpy is imported if it did."""
    for module_name in ("numpy.lib._npyio_impl", "numpy.lib.npyio"):  # numpy 2, numpy 1
        cls = getattr(sys.modules.get(module_name), "NpzFile", None)
        if isinstance(cls, type) and isinstance(obj, cls):
            return True
    return False


_NPZ_CLASSES: Dict[type, type] = {}


def _guarded_npz_class(npz_class: type) -> type:
    """An NpzFile whose object-array members load through aisbom, for good:
    the archive is read lazily, possibly after the guard has exited, and it
    was opened with allow_pickle=False so numpy itself never unpickles."""

    class GuardedNpzFile(npz_class):  # type: ignore[misc]
        _aisbom_options: Dict[str, Any] = {}

        def __getitem__(self, key: str) -> Any:
            try:
                return super().__getitem__(key)
            except ValueError:  # an object array (or unreadable without pickles)
                member = getattr(self, "_files", {}).get(key, key)
                data = self.zip.read(member)
                name = f"{_stream_name(getattr(self, 'fid', None))}!{member}"
                return load_buffer(data, path=name, **_without_mmap(dict(self._aisbom_options)))

    GuardedNpzFile.__name__ = GuardedNpzFile.__qualname__ = npz_class.__name__
    GuardedNpzFile.__module__ = npz_class.__module__
    return GuardedNpzFile


def _pin_npz(npz: Any, options: Dict[str, Any]) -> None:
    """Make an NpzFile numpy opened (allow_pickle=False) load its object arrays through aisbom."""
    with _state.lock:
        cls = _NPZ_CLASSES.get(type(npz))
        if cls is None:
            cls = _NPZ_CLASSES[type(npz)] = _guarded_npz_class(type(npz))
    npz.__class__ = cls
    npz._aisbom_options = options


# ---------------------------------------------------------------- replacements


def _function_replacement(original: Callable[..., Any], impl: Impl) -> Callable[..., Any]:
    """A function that calls impl while any guard is active, else the original."""

    @functools.wraps(original)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        options = _current_options()
        if options is None:
            return original(*args, **kwargs)
        return impl(original, options, *args, **kwargs)

    setattr(guarded, _ORIGINAL_ATTR, original)
    return guarded


def _unpickler_replacement(original: type, impl: Impl) -> type:
    """A subclass of pickle's Unpickler whose load() goes through aisbom when
    the instance was created while a guard was active (then for good: the
    instance outlives the block). find_class and persistent_load overrides
    are never consulted: aisbom's allowlist decides."""

    class GuardedUnpickler(original):  # type: ignore[misc]
        def __init__(self, file: Any, *args: Any, **kwargs: Any) -> None:
            super().__init__(file, *args, **kwargs)
            self._aisbom_options = _current_options()
            self._aisbom_file = file
            self._aisbom_encoding = kwargs.get("encoding", "ASCII")

        def load(self) -> Any:
            if self._aisbom_options is None:
                return super().load()
            return impl(original, self._aisbom_options, self._aisbom_file, encoding=self._aisbom_encoding)

    for attr in ("__name__", "__qualname__", "__module__", "__doc__"):
        setattr(GuardedUnpickler, attr, getattr(original, attr))
    setattr(GuardedUnpickler, _ORIGINAL_ATTR, original)
    return GuardedUnpickler


@dataclass(frozen=True)
class _Target:
    """A loader to guard: where it lives, and how to build its replacement."""

    homes: Tuple[Tuple[str, str], ...]  # (module, attribute)
    make: Callable[[Any, Impl], Any]
    impl: Impl


_TARGETS: Tuple[_Target, ...] = (
    _Target((("pickle", "load"), ("_pickle", "load"), ("pickle", "_load")), _function_replacement, _pickle_load),
    _Target((("pickle", "loads"), ("_pickle", "loads"), ("pickle", "_loads")), _function_replacement, _pickle_loads),
    _Target((("pickle", "Unpickler"), ("_pickle", "Unpickler"), ("pickle", "_Unpickler")), _unpickler_replacement,
            _pickle_load),
    _Target((("torch", "load"), ("torch.serialization", "load")), _function_replacement, _torch_load),
    _Target((("numpy", "load"), ("numpy.lib.npyio", "load"), ("numpy.lib._npyio_impl", "load")),
            _function_replacement, _numpy_load),
    _Target((("joblib", "load"), ("joblib.numpy_pickle", "load")), _function_replacement, _joblib_load),
)
_WATCHED = frozenset(module for target in _TARGETS for module, _ in target.homes)


def _original_of(obj: Any) -> Any:
    """What a replacement of ours replaced; any other object is its own original.
    Only functions and classes are inspected, through their own __dict__, so
    no foreign __getattr__ runs."""
    if isinstance(obj, (types.FunctionType, type)):
        return vars(obj).get(_ORIGINAL_ATTR, obj)
    return obj


def _replacement_for(original: Any, target: Optional[_Target]) -> Any:
    """The one replacement of `original` (built once per process); None for an
    object that is not a known original and no target to build one."""
    known = _state.replacements.get(id(original))
    if known is not None and known[0] is original:
        return known[1]
    if target is None:
        return None
    replacement = target.make(original, target.impl)
    _state.replacements[id(original)] = (original, replacement)
    return replacement


def _patch(namespace: Any, attr: str, target: Optional[_Target]) -> None:
    """Replace namespace.attr by its guarded version, once per guard session.

    Reads the module's __dict__ (never getattr: numpy's module __getattr__
    would import things). An attribute that already holds one of our
    replacements (a module that imported it from a patched module during the
    block) is recorded so that the exit puts the original back."""
    key = (id(namespace), attr)
    if key in _state.patches:
        return
    current = vars(namespace).get(attr, _MISSING)
    if current is _MISSING:
        return
    original = _original_of(current)
    replacement = current if original is not current else _replacement_for(original, target)
    if replacement is None:
        return
    if replacement is not current:
        setattr(namespace, attr, replacement)
    _state.patches[key] = _Patch(namespace, attr, original, replacement)


def _install_targets() -> None:
    """Patch every target home whose module is imported (partially imported
    modules included: what they define later is caught by the import hook)."""
    for target in _TARGETS:
        for module_name, attr in target.homes:
            module = sys.modules.get(module_name)
            if module is not None:
                _patch(module, attr, target)


def _install_aliases(modules: Iterable[types.ModuleType]) -> None:
    """Patch module-level references to the targets that other modules took
    before the block (``from pickle import loads``): matched by identity."""
    for module in modules:
        for attr, value in list(vars(module).items()):
            if id(_original_of(value)) in _state.replacements:
                _patch(module, attr, None)


def _restore_all() -> None:
    """Put every original back, except where someone else replaced our
    replacement meanwhile (theirs is left in place)."""
    for patch in _state.patches.values():
        if vars(patch.namespace).get(patch.attr, _MISSING) is patch.replacement:
            setattr(patch.namespace, patch.attr, patch.original)
    _state.patches.clear()


# ---------------------------------------------------------------- modules imported inside the block


class _PatchOnImport:
    """A meta path finder that patches a target module as soon as its import
    finishes, so a library that imports torch, numpy or joblib lazily inside
    the block is covered. It only finds the module's spec through the other
    finders and wraps that module's own loader instance's exec_module."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname not in _WATCHED:
            return None
        try:
            spec = _find_spec_elsewhere(self, fullname, path, target)
        except Exception:  # theirs to raise: importlib asks them again without us
            return None
        if spec is not None and isinstance(spec.loader, _PER_MODULE_LOADERS):
            _hook_exec(spec.loader)
        return spec

    def invalidate_caches(self) -> None:
        pass


# Loaders the path finder makes for one module each: hooking one's exec_module
# affects that import only.
_PER_MODULE_LOADERS = (importlib.machinery.SourceFileLoader, importlib.machinery.SourcelessFileLoader,
                       importlib.machinery.ExtensionFileLoader)


def _find_spec_elsewhere(hook: Any, fullname: str, path: Any, target: Any) -> Any:
    for finder in list(sys.meta_path):
        find = getattr(finder, "find_spec", None)
        if finder is hook or find is None:
            continue
        spec = find(fullname, path, target)
        if spec is not None:
            return spec
    return None


def _hook_exec(loader: Any) -> None:
    original_exec = loader.exec_module

    def exec_module(module: types.ModuleType) -> None:
        try:
            original_exec(module)
        finally:
            vars(loader).pop("exec_module", None)
        _on_imported()

    loader.exec_module = exec_module


def _on_imported() -> None:
    with _state.lock:
        if _state.depth > 0:
            _install_targets()


_hook = _PatchOnImport()


# ---------------------------------------------------------------- entering and leaving


def _enter(modules: List[types.ModuleType]) -> None:
    with _state.lock:
        _state.depth += 1
        try:
            if _hook not in sys.meta_path:
                sys.meta_path.insert(0, _hook)
            _install_targets()
            _install_aliases(modules)
        except BaseException:
            _leave()
            raise


def _leave() -> None:
    with _state.lock:
        _state.depth -= 1
        if _state.depth == 0:
            _restore_all()
            with contextlib.suppress(ValueError):
                sys.meta_path.remove(_hook)


def _resolve_modules(modules: Iterable[Union[types.ModuleType, str]]) -> List[types.ModuleType]:
    """Module objects for guard(modules=...); names are imported (outside the
    lock: an import may itself load files)."""
    resolved = []
    for m in modules:
        if isinstance(m, str):
            m = importlib.import_module(m)
        if not isinstance(m, types.ModuleType):
            raise TypeError(f"guard(modules=...) takes modules or module names, not {type(m).__name__}")
        resolved.append(m)
    return resolved


_SAFE_LOAD_SIGNATURE = inspect.signature(safe_load)


def _check_options(options: Dict[str, Any]) -> None:
    """Fail at the guard, not at the first load, on a misspelt keyword."""
    _SAFE_LOAD_SIGNATURE.bind(None, **options)
    if options.get("sandbox", "auto") not in ("auto", "never", "always"):
        raise ValueError("sandbox must be 'auto', 'never' or 'always'")


@contextlib.contextmanager
def guard(*, modules: Iterable[Union[types.ModuleType, str]] = (), **safe_load_kwargs: Any) -> Iterator[None]:
    """Inside the block, torch.load, pickle.load/loads/Unpickler, numpy.load
    and joblib.load load through safe_load(**safe_load_kwargs) semantics.

    modules: modules (or names) whose own references to those functions,
    taken before the block (``from pickle import loads``), are patched too.
    Usable as a decorator. See docs/guard.md.
    """
    _check_options(safe_load_kwargs)
    resolved = _resolve_modules(modules)
    _enter(resolved)
    token = _options_stack.set(_options_stack.get() + (dict(safe_load_kwargs),))
    try:
        yield
    finally:
        _options_stack.reset(token)
        _leave()
