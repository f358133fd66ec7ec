"""Secret formats as data: the ``[[formats]]`` tables of ``policies/masking.toml``, checked and
compiled.

Pure. Each format is either a *prefix* form (``prefix`` literals and a ``body`` regex fragment:
the common vendor token, such as ``ghp_`` and 36 alphanumerics) or a *pattern* form (a full
``pattern`` with an RE2 ``gate`` that matches wherever the pattern could: JWTs, private key
blocks, ``id|secret`` pairs). A named group ``secret`` marks the part to replace when only part of
the match is secret (``scheme://[masked]@host`` keeps the scheme). ``check`` names a validator
from :mod:`governance.checksums` (Luhn for cards, mod-97 for IBANs) or ``basic_credentials``.

Errors name the policy file, the format's index and kind, the field and the fix.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import re2

from governance.checksums import CHECKSUMS
from governance.errors import PolicyError

_FIELDS = {"kind", "about", "prefix", "body", "pattern", "gate", "check", "ignore_case"}
_KIND = re.compile(r"[a-z][a-z0-9_]{1,47}")


def _basic_has_credentials(match: str) -> bool:
    """``Basic <base64>`` whose decoded text holds ``user:password``."""
    encoded = match.split(None, 1)[-1]
    try:
        decoded = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        return False
    return b":" in decoded


CHECKS: dict[str, Callable[[str], bool]] = {**CHECKSUMS, "basic_credentials": _basic_has_credentials}


@dataclass(frozen=True)
class SecretFormat:
    """One checked format: ``pattern`` is Python ``re`` syntax, ``gate`` RE2 syntax."""

    kind: str
    about: str
    pattern: str
    gate: str
    check: str | None = None

    def compiled(self) -> re.Pattern[str]:
        """The pattern, compiled (``re`` caches compiled patterns by text)."""
        return re.compile(self.pattern)


def _text(entry: dict[str, Any], name: str, where: str, required: bool = True) -> str | None:
    value = entry.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise PolicyError(f"{where}: {name} = {value!r} is invalid: a non-empty string is required")
    return value


def _prefix_form(entry: dict[str, Any], where: str) -> tuple[str, str]:
    prefixes = entry.get("prefix")
    if isinstance(prefixes, str):
        prefixes = [prefixes]
    if not isinstance(prefixes, list) or not prefixes or not all(
            isinstance(p, str) and p for p in prefixes):
        raise PolicyError(f"{where}: prefix = {prefixes!r} is invalid: a non-empty string or list "
                          "of non-empty strings is required")
    body = _text(entry, "body", where)
    assert body is not None
    # Longest first, so "sk-proj-" is tried before "sk-".
    literals = "|".join(re.escape(p) for p in sorted(prefixes, key=len, reverse=True))
    flags = "(?i)" if entry.get("ignore_case") is True else ""
    # A token starts where a word starts and ends where its body ends, so a prefix inside a
    # longer word ("mask_ghp_...") still counts but "xghp_" does not.
    pattern = f"{flags}(?<![A-Za-z0-9])(?:{literals}){body}(?![A-Za-z0-9])"
    return pattern, f"{flags}(?:{literals})"


def parse_format(entry: Any, where: str) -> SecretFormat:
    """One ``[[formats]]`` table checked into a :class:`SecretFormat`."""
    if not isinstance(entry, dict):
        raise PolicyError(f"{where}: a table is required")
    unknown = sorted(set(entry) - _FIELDS)
    if unknown:
        raise PolicyError(f"{where}: unknown field {unknown[0]!r}: the fields are "
                          f"{', '.join(sorted(_FIELDS))}")
    kind = _text(entry, "kind", where)
    assert kind is not None
    if not _KIND.fullmatch(kind):
        raise PolicyError(f"{where}: kind = {kind!r} is invalid: use 2-48 lower-case letters, "
                          "digits and '_', starting with a letter")
    where = f"{where} ({kind})"
    about = _text(entry, "about", where)
    assert about is not None
    if "pattern" in entry:
        if "prefix" in entry or "body" in entry:
            raise PolicyError(f"{where}: give either pattern (with gate) or prefix and body, "
                              "not both")
        pattern, gate = _text(entry, "pattern", where), _text(entry, "gate", where)
        assert pattern is not None and gate is not None
    else:
        pattern, gate = _prefix_form(entry, where)
    check = _text(entry, "check", where, required=False)
    if check is not None and check not in CHECKS:
        raise PolicyError(f"{where}: check = {check!r} is unknown: use one of "
                          f"{', '.join(sorted(CHECKS))}")
    try:
        re.compile(pattern)
    except re.error as exc:
        raise PolicyError(f"{where}: pattern {pattern!r} is not a valid regex ({exc}): "
                          "fix the pattern") from None
    try:
        re2.compile(gate)
    except re2.error as exc:
        reason = exc.args[0].decode(errors="replace") if exc.args and isinstance(exc.args[0], bytes) \
            else str(exc)
        raise PolicyError(f"{where}: gate {gate!r} is not valid RE2 syntax ({reason}): "
                          "a gate may not use lookaround or backreferences") from None
    return SecretFormat(kind, about, pattern, gate, check)


def parse_formats(entries: Any, source: str) -> tuple[SecretFormat, ...]:
    """The ``[[formats]]`` array of a policy file, each entry checked, in file order."""
    if entries is None:
        return ()
    if not isinstance(entries, list):
        raise PolicyError(f"{source}: formats must be an array of tables ([[formats]])")
    return tuple(parse_format(entry, f"{source} [[formats]] #{index + 1}")
                 for index, entry in enumerate(entries))
