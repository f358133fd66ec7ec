"""Reading policy files: the shipped defaults, TOML, and checked values with errors that name
the file, the table, the key, the value and the fix.

Shared by every policy (masking here in ``governance``, retention and reports in ``jobs``). The
shipped files are the checkout's top-level ``policies/`` folder, installed as the package
``governance.policies`` (setup.cfg maps one to the other), so they are read through
:mod:`importlib.resources` from a wheel and from a checkout alike; a ``TRACE_*_POLICY`` path
overrides them.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from governance.errors import PolicyError

SHIPPED_POLICIES = "governance.policies"

T = TypeVar("T")


def shipped_policy(name: str) -> bytes:
    """The bytes of a shipped policy file (``masking.toml``, ``retention.toml``, ...)."""
    return resources.files(SHIPPED_POLICIES).joinpath(name).read_bytes()


def read_policy_file(path: str | Path | None, default_name: str) -> tuple[bytes, str]:
    """The bytes and the name of a policy file: ``path``, or the shipped ``default_name``."""
    if path is None:
        shipped = resources.files(SHIPPED_POLICIES).joinpath(default_name)
        try:
            return shipped.read_bytes(), str(shipped)
        except OSError as exc:
            raise PolicyError(f"{shipped}: the shipped policy cannot be read ({exc.strerror}): "
                              "reinstall the package, or set its TRACE_*_POLICY path") from None
    path = Path(path)
    try:
        return path.read_bytes(), str(path)
    except OSError as exc:
        raise PolicyError(f"{path}: cannot be read ({exc.strerror}): check the path") from None


def get_value(table: dict[str, Any], key: str, kind: type[T], where: str, default: T) -> T:
    """``table[key]`` (or ``default``) checked to be a ``kind``; the error names where and what."""
    value = table.get(key, default)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise PolicyError(
            f"{where}: {key} = {value!r} is invalid: a {kind.__name__} is required"
        )
    return value


def get_words(table: dict[str, Any], key: str, where: str, default: frozenset[str],
              check: Callable[[str], bool] | None = None, allowed: str = "") -> frozenset[str]:
    """``table[key]`` (or ``default``) checked to be a list of non-empty strings (each passing
    ``check`` when given), lower-cased; the error names where, the bad entry and ``allowed``."""
    if key not in table:
        return default
    values = get_value(table, key, list, where, [])
    out = set()
    for value in values:
        if not isinstance(value, str) or not value or (check is not None and not check(value)):
            raise PolicyError(
                f"{where}: {key} holds {value!r}: {allowed or 'non-empty strings are required'}"
            )
        out.add(value.lower())
    return frozenset(out)


def get_zone(table: dict[str, Any], key: str, where: str, default: str) -> str:
    """``table[key]`` checked to be an IANA time zone name."""
    zone = get_value(table, key, str, where, default)
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise PolicyError(f"{where}: {key} = {zone!r} is invalid: an IANA name such as "
                          "UTC or Africa/Cairo is required") from None
    return zone


def get_positive(table: dict[str, Any], key: str, where: str, default: int) -> int:
    """``table[key]`` (or ``default``) checked to be an integer of at least 1."""
    value = get_value(table, key, int, where, default)
    if value < 1:
        raise PolicyError(f"{where}: {key} = {value} is invalid: a positive integer is required")
    return value


def parse_policy_toml(data: bytes, source: str) -> dict[str, Any]:
    """The TOML document of a policy file, checked to be UTF-8, valid TOML and version 1."""
    try:
        doc = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise PolicyError(f"{source}: not valid TOML ({exc}): fix the syntax") from None
    if doc.get("version") != 1:
        raise PolicyError(f"{source}: version = {doc.get('version')!r} is not supported: use 1")
    return doc
