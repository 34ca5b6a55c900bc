"""Project settings: ``[tool.aisbom]`` in pyproject.toml, shared by the CLI,
the pytest plugin and safe_load.

    [tool.aisbom]
    allow = ["mypkg.config.TrainConfig"]   # extra exact globals to allow
    fail-on = "malicious"                   # suspicious (default) or malicious
    exclude = ["data/cache/*"]              # globs skipped by directory scans

The file is found by looking for pyproject.toml from the current directory
upwards (the first one with a [tool.aisbom] table wins), or named with
``aisbom scan --config FILE``. Nothing is ever read from the network.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Dict, Optional, Tuple

__all__ = ["Config", "load_config", "find_config", "ConfigError"]

_FAIL_ON = ("suspicious", "malicious")


class ConfigError(ValueError):
    """The [tool.aisbom] table is malformed."""


@dataclass(frozen=True)
class Config:
    allow: Tuple[str, ...] = ()
    fail_on: str = "suspicious"
    exclude: Tuple[str, ...] = ()
    source: Optional[str] = None  # the file the settings came from
    extra: Dict[str, Any] = field(default_factory=dict)  # other keys, for the plugin


def _toml(path: str) -> Dict[str, Any]:
    try:
        import tomllib  # type: ignore[import-not-found,unused-ignore]
    except ImportError:  # Python < 3.11
        try:
            import tomli as tomllib  # type: ignore[import-not-found,no-redef,unused-ignore]
        except ImportError:
            raise ConfigError(f"{path}: reading TOML needs Python 3.11 or the tomli package") from None
    with open(path, "rb") as f:
        try:
            return tomllib.load(f)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: {exc}") from None


def _strings(table: Dict[str, Any], key: str, path: str) -> Tuple[str, ...]:
    value = table.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{path}: [tool.aisbom] {key} must be a list of strings")
    return tuple(value)


def parse(path: str) -> Config:
    """The settings of one pyproject.toml (defaults when it has no [tool.aisbom])."""
    table = _toml(path).get("tool", {}).get("aisbom", {})
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [tool.aisbom] must be a table")
    fail_on = table.get("fail-on", table.get("fail_on", "suspicious"))
    if fail_on not in _FAIL_ON:
        raise ConfigError(f"{path}: [tool.aisbom] fail-on must be one of {', '.join(_FAIL_ON)}")
    known = {"allow", "fail-on", "fail_on", "exclude"}
    return Config(
        allow=_strings(table, "allow", path),
        fail_on=fail_on,
        exclude=_strings(table, "exclude", path),
        source=path,
        extra={k: v for k, v in table.items() if k not in known},
    )


@lru_cache(maxsize=64)
def _has_table(path: str, mtime: float) -> bool:
    """Whether a pyproject.toml has [tool.aisbom]; read once per version of the file."""
    try:
        return "aisbom" in _toml(path).get("tool", {})
    except (ConfigError, OSError):
        return False


def find_config(start: Optional[str] = None) -> Optional[str]:
    """The nearest pyproject.toml with a [tool.aisbom] table, from `start` upwards.

    Only stat() runs per call; a file is parsed again only when it changes."""
    here = os.path.abspath(start or os.getcwd())
    while True:
        candidate = os.path.join(here, "pyproject.toml")
        try:
            mtime = os.stat(candidate).st_mtime
        except OSError:
            mtime = None
        if mtime is not None and _has_table(candidate, mtime):
            return candidate
        parent = os.path.dirname(here)
        if parent == here:
            return None
        here = parent


@lru_cache(maxsize=16)
def _cached(path: Optional[str], mtime: float) -> Config:
    return parse(path) if path else Config()


def load_config(path: Optional[str] = None, start: Optional[str] = None) -> Config:
    """Settings from `path`, or from the nearest pyproject.toml, or the defaults."""
    path = path or find_config(start)
    if path is None:
        return Config()
    try:
        mtime = os.path.getmtime(path)
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror}") from None
    return _cached(path, mtime)
