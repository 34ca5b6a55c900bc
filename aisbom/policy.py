"""The policy: which globals a file may name.

An exact allowlist decides what is clean; the blocklist only decides which of
the rest are known to be dangerous (malicious) rather than merely unknown
(suspicious). Both live in data files with the source of every entry.

Names are resolved the way ``find_class`` resolves them: Python 2 names are
mapped (``__builtin__`` -> ``builtins``, ``copy_reg`` -> ``copyreg``, ...) and
protocol-4 dotted names are walked, so ``STACK_GLOBAL('shutil', 'os.system')``
is checked as ``os.system`` too. A dotted path never inherits trust: only the
exact spelled name can be allowlisted.
"""
from __future__ import annotations

import _compat_pickle
import os
import re
import sys
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Callable, Dict, FrozenSet, Iterable, List, Mapping, Optional, Tuple, Union

from aisbom.report import Severity

__all__ = ["Policy", "Classification", "default_policy", "global_name_of", "AllowSpec"]

_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*(\.\*)?$")
# Components of a dotted name that reach into an object's internals.
_DUNDER_OK = frozenset({"__newobj__", "__newobj_ex__", "__main__"})
# torch.load (weights_only=False) loads these module names under another name.
_TORCH_MODULE_MAPPING = {"torch.tensor": "torch._tensor"}
# Module names that exist only in Python 2: the raw spelling cannot import.
_PY2_ONLY = frozenset(
    m
    for m in list(_compat_pickle.IMPORT_MAPPING) + [k[0] for k in _compat_pickle.NAME_MAPPING]
    if m.split(".")[0] not in getattr(sys, "stdlib_module_names", ())
)

AllowSpec = Union[str, Callable[..., object], type]


def _read_entries(filename: str) -> List[Tuple[str, str]]:
    """Parse one of the data files strictly: a malformed line is a bug, not a skip."""
    # A plain file beside the module (the package has a C extension, so it is
    # never imported from a zip): importlib.resources would add to every start-up.
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", filename), encoding="utf-8") as f:
        text = f.read()
    entries: List[Tuple[str, str]] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(None, 1)
        if len(parts) != 2 or not _PATTERN.match(parts[0]):
            raise ValueError(f"{filename}:{lineno}: malformed entry {raw!r}")
        entries.append((parts[0], parts[1].strip()))
    return entries


def global_name_of(obj: AllowSpec) -> str:
    """The exact "module.qualname" of a callable, or the string itself."""
    if isinstance(obj, str):
        if not obj or any(not part.isidentifier() for part in obj.split(".")) or "." not in obj:
            raise ValueError(f"not a module.qualname global name: {obj!r}")
        return obj
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str):
        raise TypeError(f"cannot tell the module.qualname of {obj!r}; pass the name as a string")
    return f"{module}.{qualname}"


@dataclass(frozen=True)
class Classification:
    severity: Severity
    rule: Optional[str]  # None when allowed
    name: str  # the resolved module.qualname the verdict is about
    reason: str


@dataclass(frozen=True)
class Policy:
    """An allowlist plus the blocklist. Immutable; ``allowing()`` makes a wider copy."""

    allowed: FrozenSet[str]
    blocked_exact: Mapping[str, str] = field(repr=False)
    blocked_modules: Mapping[str, str] = field(repr=False)
    torch_defaults: FrozenSet[str] = field(default=frozenset(), repr=False)
    user_allowed: FrozenSet[str] = frozenset()
    allow_blocked: bool = False
    # classify() results: a directory of models names the same few globals over and over
    _memo: Dict[Tuple[str, str], Classification] = field(default_factory=dict, init=False, repr=False,
                                                         compare=False, hash=False)

    def allowing(self, names: Iterable[AllowSpec], *, allow_blocked: bool = False) -> "Policy":
        """A policy that also allows ``names`` (callables or exact "module.qualname" strings).

        Allowing a name the blocklist knows to be dangerous is refused unless
        ``allow_blocked=True`` is given explicitly.
        """
        extra = frozenset(global_name_of(n) for n in names)
        if not allow_blocked:
            for name in sorted(extra):
                module, _, qualname = name.rpartition(".")
                source = self.blocked_source(module, qualname)
                if source is not None:
                    raise ValueError(
                        f"{name} is on aisbom's blocklist ({source}); allowing it needs "
                        "allow_blocked=True (aisbom.safe_load(..., i_know_this_runs_code=True))"
                    )
        return Policy(
            allowed=self.allowed | extra,
            blocked_exact=self.blocked_exact,
            blocked_modules=self.blocked_modules,
            torch_defaults=self.torch_defaults,
            user_allowed=self.user_allowed | extra,
            allow_blocked=self.allow_blocked or allow_blocked,
        )

    # ---- name resolution ----

    @staticmethod
    def candidates(module: str, name: str) -> List[Tuple[str, str]]:
        """Every (module, qualname) the global may resolve to in some loader.

        CPython maps Python 2 names when the protocol is below 3 and torch's
        weights-only unpickler maps them always, so the mapped name always
        counts. The raw spelling counts too, unless its module only exists in
        Python 2 (it cannot be imported then). torch.load also reads
        torch.tensor as torch._tensor.
        """
        out: List[Tuple[str, str]] = []
        mapped = _compat_pickle.NAME_MAPPING.get((module, name))
        if mapped is None and module in _compat_pickle.IMPORT_MAPPING:
            mapped = (_compat_pickle.IMPORT_MAPPING[module], name)
        if mapped is not None:
            out.append((mapped[0], mapped[1]))
        if module not in _PY2_ONLY:
            out.append((module, name))
            if module in _TORCH_MODULE_MAPPING:
                out.append((_TORCH_MODULE_MAPPING[module], name))
        return list(dict.fromkeys(out))

    def blocked_source(self, module: str, qualname: str) -> Optional[str]:
        """The blocklist source for a global, or None.

        A module pattern covers the module, its submodules, and anything a
        dotted qualname reaches through them (``numpy`` + ``testing.x``). A
        qualname component may itself be a module reached by attribute
        (``shutil`` + ``os.system`` walks into ``os``), so every such walk is
        checked from where it starts. The module path itself is not
        re-read from the middle: ``mylib.code`` is not the stdlib ``code``.
        """
        mparts = module.split(".")
        parts = mparts + qualname.split(".")
        if len(parts) > 64:
            return "aisbom: a name of more than 64 components"
        for start in [0] + list(range(len(mparts), len(parts))):
            tail = parts[start:]
            if len(tail) >= 2:
                joined = ".".join(tail)
                if joined in self.blocked_exact:
                    return self.blocked_exact[joined]
            for cut in range(1, len(tail) + 1):
                prefix = ".".join(tail[:cut])
                if prefix in self.blocked_modules:
                    return self.blocked_modules[prefix]
        return None

    def classify_name(self, module: str, qualname: str) -> Classification:
        dotted = f"{module}.{qualname}"
        if dotted in self.allowed:
            return Classification(Severity.INFO, None, dotted, "allowlisted")
        source = self.blocked_source(module, qualname)
        if source is not None:
            if self.allow_blocked and dotted in self.user_allowed:
                return Classification(Severity.INFO, None, dotted, "allowed explicitly despite the blocklist")
            return Classification(Severity.MALICIOUS, "blocked-global", dotted, f"known to be dangerous ({source})")
        dunders = [p for p in qualname.split(".") if p.startswith("__") and p.endswith("__") and p not in _DUNDER_OK]
        if dunders:
            return Classification(
                Severity.MALICIOUS,
                "dunder-attribute",
                dotted,
                f"reaches into object internals through {dunders[0]}",
            )
        return Classification(Severity.SUSPICIOUS, "unknown-global", dotted, "not on the allowlist")

    def classify(self, module: str, name: str) -> Classification:
        """The worst classification over every name the global can resolve to."""
        hit = self._memo.get((module, name))
        if hit is not None:
            return hit
        worst: Optional[Classification] = None
        for cand_module, cand_name in self.candidates(module, name):
            c = self.classify_name(cand_module, cand_name)
            if worst is None or c.severity > worst.severity:
                worst = c
        assert worst is not None
        if len(self._memo) < 100_000:  # names are file-controlled: bounded
            self._memo[(module, name)] = worst
        return worst

    def torch_accepts(self, dotted: str) -> bool:
        """Whether torch.load(weights_only=True) accepts the global by default."""
        return dotted in self.torch_defaults


@lru_cache(maxsize=1)
def default_policy() -> Policy:
    allow = _read_entries("allowlist.txt")
    block = _read_entries("blocklist.txt")
    for name, _ in allow:
        if name.endswith(".*"):
            raise ValueError(f"allowlist.txt: {name}: the allowlist holds exact names only")
    exact = {n: s for n, s in block if not n.endswith(".*")}
    modules = {n[:-2]: s for n, s in block if n.endswith(".*")}
    return Policy(
        allowed=frozenset(n for n, _ in allow),
        blocked_exact=exact,
        blocked_modules=modules,
        torch_defaults=frozenset(n for n, s in allow if s.startswith("torch weights_only default")),
    )
