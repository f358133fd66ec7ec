"""Loading and validating ``policies/masking.toml`` (tomllib, no extra dependency).

:func:`load_masking_policy` returns a frozen :class:`MaskingPolicy` or raises
:class:`PolicyError` naming the file, the key, the value and what is allowed. The policy's
SHA-256 (of the file's bytes) goes with it so reports can say which policy was in force.
"""

from __future__ import annotations

import hashlib
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from governance.errors import PolicyError
from governance.secret_formats import SecretFormat, parse_formats

DEFAULT_POLICY_DIR = Path(__file__).resolve().parent.parent / "policies"
# The built-in detectors (code in governance.detectors); vendor and other token formats are data,
# the [[formats]] tables of the policy file.
DETECTORS = ("credentials_in_text", "kubernetes_secret", "email", "high_entropy")

T = TypeVar("T")


@dataclass(frozen=True)
class MaskingPolicy:
    """What to mask and how; see ``policies/masking.toml`` for the meaning of each field."""

    replacement: str = "[masked]"
    record_masked: bool = True
    max_depth: int = 32
    max_string_chars: int = 4096
    max_total_chars: int = 16384
    deny_keys: frozenset[str] = frozenset()
    allow_keys: frozenset[str] = frozenset()
    hash_suffixes: frozenset[str] = frozenset()
    describe_suffixes: frozenset[str] = frozenset()
    id_words: frozenset[str] = frozenset()
    otp_words: frozenset[str] = frozenset()
    detectors: frozenset[str] = frozenset(DETECTORS)
    formats: tuple[SecretFormat, ...] = ()
    entropy_min_length: int = 32
    entropy_min_bits: float = 3.5
    email_mode: str = "hash"
    sha256: str = ""
    source: str = "<defaults>"


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


def _words(table: dict[str, Any], key: str, where: str, check: Callable[[str], bool] | None = None,
           allowed: str = "") -> frozenset[str]:
    values = get_value(table, key, list, where, [])
    out = set()
    for value in values:
        if not isinstance(value, str) or not value or (check is not None and not check(value)):
            raise PolicyError(
                f"{where}: {key} holds {value!r}: {allowed or 'non-empty strings are required'}"
            )
        out.add(value.lower())
    return frozenset(out)


def get_zone(table: dict[str, Any], key: str, where: str, default: str = "UTC") -> str:
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


def parse_masking_policy(data: bytes, source: str = "<bytes>") -> MaskingPolicy:
    """Validate the bytes of a masking policy file into a :class:`MaskingPolicy`."""
    doc = parse_policy_toml(data, source)
    limits = get_value(doc, "limits", dict, source, {})
    keys = get_value(doc, "keys", dict, source, {})
    detectors = get_value(doc, "detectors", dict, source, {})
    email = get_value(doc, "email", dict, source, {})
    mode = get_value(email, "mode", str, f"{source} [email]", "hash")
    if mode not in {"hash", "mask"}:
        raise PolicyError(f"{source} [email]: mode = {mode!r} is invalid: use 'hash' or 'mask'")
    bits = get_value(detectors, "entropy_min_bits", float, f"{source} [detectors]", 3.5)
    if not 0 < bits <= 6:
        raise PolicyError(
            f"{source} [detectors]: entropy_min_bits = {bits} is invalid: a number in (0, 6] "
            "is required (base64 text carries at most 6 bits per character)"
        )
    return MaskingPolicy(
        replacement=get_value(doc, "replacement", str, source, "[masked]"),
        record_masked=get_value(doc, "record_masked", bool, source, True),
        max_depth=get_positive(limits, "max_depth", f"{source} [limits]", 32),
        max_string_chars=get_positive(limits, "max_string_chars", f"{source} [limits]", 4096),
        max_total_chars=get_positive(limits, "max_total_chars", f"{source} [limits]", 16384),
        deny_keys=_words(keys, "deny", f"{source} [keys]"),
        allow_keys=_words(keys, "allow", f"{source} [keys]"),
        hash_suffixes=_words(keys, "hash_suffixes", f"{source} [keys]"),
        describe_suffixes=_words(keys, "describe_suffixes", f"{source} [keys]"),
        id_words=_words(keys, "id_words", f"{source} [keys]"),
        otp_words=_words(keys, "otp_words", f"{source} [keys]"),
        detectors=_words(detectors, "enabled", f"{source} [detectors]", DETECTORS.__contains__,
                         f"known detectors are {', '.join(DETECTORS)}"),
        entropy_min_length=get_positive(detectors, "entropy_min_length", f"{source} [detectors]", 32),
        entropy_min_bits=bits,
        formats=parse_formats(doc.get("formats"), source),
        email_mode=mode,
        sha256=hashlib.sha256(data).hexdigest(),
        source=source,
    )


def read_policy_file(path: str | Path | None, default_name: str) -> tuple[bytes, str]:
    """The bytes and the name of a policy file (``policies/<default_name>`` when no path)."""
    path = Path(path) if path is not None else DEFAULT_POLICY_DIR / default_name
    try:
        return path.read_bytes(), str(path)
    except OSError as exc:
        raise PolicyError(f"{path}: cannot be read ({exc.strerror}): check the path") from None


def load_masking_policy(path: str | Path | None = None) -> MaskingPolicy:
    """Read and validate a masking policy file (``policies/masking.toml`` by default)."""
    return parse_masking_policy(*read_policy_file(path, "masking.toml"))
