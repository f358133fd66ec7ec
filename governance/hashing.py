"""Hashes the PHP side uses for personal data in telemetry, byte for byte (docs/php-compat.md §3).

* :func:`email_hash`: ``hex(HMAC-SHA256(okm, lower(trim(email))))`` where
  ``okm = HMAC-SHA256(root, b"telemetry:email_hash:v1" + b"\\x01")`` (HKDF expand-only, one
  block, no salt) and ``root`` is the active key of the rotation set (``CRYPTO_KEYS``,
  ``CRYPTO_ACTIVE_KEY_ID``). PHP's ``trim`` strips space, ``\\t \\n \\r \\0 \\x0B``; lower-casing is
  ASCII-only (``strtolower`` since PHP 8.2). Same input and key on both sides, same hash: that is
  what lets staff find (and erase) one person's traces across PHP- and Python-written rows.
* :func:`session_hash`: ``sha256(session_id)`` hex.

Keys live in :class:`SecretBytes`, whose repr and str show nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import string
from collections.abc import Mapping
from dataclasses import dataclass

from governance.errors import ConfigError

EMAIL_HASH_ALGO = "hmac-sha256/hkdf-v1"
EMAIL_HASH_INFO = b"telemetry:email_hash:v1"
MIN_KEY_BYTES = 32
_PHP_TRIM = " \t\n\r\0\x0b"
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
_HEX = frozenset(string.hexdigits)


class SecretBytes:
    """Key material that never shows in a repr, a str or a log line."""

    __slots__ = ("_value",)

    def __init__(self, value: bytes) -> None:
        self._value = value

    def reveal(self) -> bytes:
        """The key bytes, for handing to HMAC only."""
        return self._value

    def __repr__(self) -> str:
        return "SecretBytes('**********')"

    __str__ = __repr__


@dataclass(frozen=True)
class Keyring:
    """A rotation set of root keys and the id of the active one."""

    keys: Mapping[str, SecretBytes]
    active_id: str

    def __post_init__(self) -> None:
        if self.active_id not in self.keys:
            known = ", ".join(sorted(self.keys)) or "none"
            raise ConfigError(
                f"CRYPTO_ACTIVE_KEY_ID={self.active_id!r} is not in CRYPTO_KEYS (ids: {known}): "
                "set it to one of the ids"
            )

    @property
    def active_key(self) -> SecretBytes:
        """The root key new hashes are made with."""
        return self.keys[self.active_id]

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Keyring | None:
        """The keyring from ``CRYPTO_KEYS`` and ``CRYPTO_ACTIVE_KEY_ID``; None when not set."""
        environ = os.environ if environ is None else environ
        raw = environ.get("CRYPTO_KEYS")
        if not raw:
            return None
        return cls.from_json(raw, environ.get("CRYPTO_ACTIVE_KEY_ID", ""))

    @classmethod
    def from_json(cls, raw: str, active_id: str) -> Keyring:
        """Parse PHP's ``CRYPTO_KEYS`` format: a JSON list of ``{"id": ..., "key": ...}``."""
        try:
            entries = json.loads(raw)
        except ValueError:
            raise ConfigError(
                'CRYPTO_KEYS is not JSON: a list like [{"id": "k1", "key": "<64 hex digits>"}] '
                "is required"
            ) from None
        if not isinstance(entries, list) or not entries:
            raise ConfigError('CRYPTO_KEYS must be a non-empty JSON list of {"id", "key"} objects')
        keys: dict[str, SecretBytes] = {}
        for position, entry in enumerate(entries):
            if not (isinstance(entry, dict) and isinstance(entry.get("id"), str)
                    and isinstance(entry.get("key"), str)):
                raise ConfigError(
                    f'CRYPTO_KEYS[{position}] must be an object with string "id" and "key"'
                )
            material = decode_key(entry["key"])
            if len(material) < MIN_KEY_BYTES:
                raise ConfigError(
                    f"CRYPTO_KEYS[{position}] (id {entry['id']!r}) is {len(material)} bytes: at "
                    f"least {MIN_KEY_BYTES} are required (64 hex digits)"
                )
            keys[entry["id"]] = SecretBytes(material)
        return cls(keys=keys, active_id=active_id or next(iter(keys)))


def decode_key(text: str) -> bytes:
    """A key as PHP reads it: hex-decoded when it is all hex digits, otherwise the raw bytes."""
    if text and len(text) % 2 == 0 and all(ch in _HEX for ch in text):
        return bytes.fromhex(text)
    return text.encode("utf-8")


def php_trim(text: str) -> str:
    """PHP's ``trim()`` with its default character list."""
    return text.strip(_PHP_TRIM)


def normalise_email(email: str) -> str:
    """``strtolower(trim($email))`` as PHP 8.2 does it: ASCII-only lower-casing."""
    return php_trim(email).translate(_ASCII_LOWER)


def derive_email_key(root: bytes) -> bytes:
    """HKDF-Expand (RFC 5869) with no salt, one block: ``HMAC(root, info || 0x01)``."""
    return hmac.new(root, EMAIL_HASH_INFO + b"\x01", hashlib.sha256).digest()


@dataclass(frozen=True)
class EmailHash:
    """An email hash and what a reader needs to know how it was made."""

    hash: str
    key_id: str
    algo: str = EMAIL_HASH_ALGO

    def as_metadata(self, prefix: str = "email") -> dict[str, str]:
        """The metadata keys PHP stores: ``email_hash``, ``email_hash_key_id``, ``email_hash_algo``."""
        return {
            f"{prefix}_hash": self.hash,
            f"{prefix}_hash_key_id": self.key_id,
            f"{prefix}_hash_algo": self.algo,
        }


def email_hash(email: str, keyring: Keyring, key_id: str | None = None) -> EmailHash:
    """The PHP-compatible keyed hash of ``email`` (with the active key unless ``key_id``)."""
    key_id = keyring.active_id if key_id is None else key_id
    okm = derive_email_key(keyring.keys[key_id].reveal())
    digest = hmac.new(okm, normalise_email(email).encode("utf-8"), hashlib.sha256).hexdigest()
    return EmailHash(hash=digest, key_id=key_id)


def session_hash(session_id: str) -> str:
    """``hash('sha256', $sessionId)``: how PHP stores session ids in telemetry."""
    return hashlib.sha256(session_id.encode("utf-8")).hexdigest()
