"""Finding one person's rows: the one finder erasure and subject access export share.

* ``actor_id``: rows whose actor is that admin (``actor_admin_id``; on layout B ``actor_id``
  with ``actor_type = 'admin'``);
* ``email``: rows whose metadata holds the email's PHP-compatible keyed hash under *any* key of
  the ``CRYPTO_KEYS`` rotation set (so rows hashed by PHP or by us, before or after a key
  rotation, are found), as a value (``email_hash``, ``<key>_hash``) or inside text
  (``[email_hash:<hex>]``), or the email itself in clear (a leak of the same person).

Candidates are found with ``LIKE`` on the metadata text, then each is confirmed by parsing it,
so a string that merely contains a hash's characters is never taken for the person's row. The
subject is described to the ledger and the reports by :func:`describe`, never by the email.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from governance.errors import ConfigError
from governance.hashing import Keyring, email_hash, normalise_email
from trace_service.db import table_layout
from trace_service.layout import TABLE_NAME


@dataclass(frozen=True)
class Subject:
    """Whose rows to find: an admin id or an email (the email never shows in a repr)."""

    actor_id: int | None = None
    email: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if (self.actor_id is None) == (self.email is None):
            raise ValueError("give exactly one of actor_id and email")

    @property
    def by(self) -> str:
        """How the subject is named: ``actor_id`` or ``email`` (for the ledger's details)."""
        return "actor_id" if self.actor_id is not None else "email"


def keyed_email_hashes(email: str, keyring: Keyring | None,
                       active_only: bool = False) -> list[tuple[str, str]]:
    """``(key id, hash)`` of the email under every key of the rotation set (or only the active
    key); :class:`ConfigError` without ``CRYPTO_KEYS``."""
    if keyring is None:
        raise ConfigError(
            "CRYPTO_KEYS is not set: emails are stored as keyed hashes, so finding a person's rows "
            "by email (erase, export, opt-out) needs the same CRYPTO_KEYS (and every retired key) "
            "as the PHP application")
    ids = [keyring.active_id] if active_only else sorted(keyring.keys)
    return [(key_id, email_hash(email, keyring, key_id).hash) for key_id in ids]


def email_hashes(email: str, keyring: Keyring | None, active_only: bool = False) -> list[str]:
    """The email's hash under every key of the rotation set (or only the active key)."""
    return [hashed for _, hashed in keyed_email_hashes(email, keyring, active_only)]


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _mentions(metadata_text: str, hashes: list[str], email: str) -> bool:
    """Whether parsed metadata holds one of ``hashes`` (as a value or ``[email_hash:…]``) or
    ``email`` in clear (case-insensitively, as emails compare)."""
    try:
        metadata = json.loads(metadata_text)
    except ValueError:
        return False
    clear = _address(email)
    for text in _strings(metadata):
        if text in hashes or any(f"[email_hash:{h}]" in text for h in hashes):
            return True
        if email in text.lower() and clear.search(text.lower()):
            return True
    return False


def _address(email: str) -> re.Pattern[str]:
    """``email`` as a whole address inside text: ``ann@example.com`` is not in
    ``joann@example.com`` nor in ``ann@example.com.evil``, but is in ``mail ann@example.com.``"""
    return re.compile(r"(?<![\w.+-])" + re.escape(email) + r"(?![\w-]|\.[\w-])")


def find_rows(engine: Engine, subject: Subject, keyring: Keyring | None) -> list[int]:
    """The ids of the subject's rows, ascending."""
    layout = table_layout(engine)
    with engine.connect() as conn:
        if subject.actor_id is not None:
            where = ("actor_admin_id = :actor" if layout.actor_style == "admin_id"
                     else "actor_id = :actor AND actor_type = 'admin'")
            return [int(i) for i in conn.execute(
                sa.text(f"SELECT id FROM {TABLE_NAME} WHERE {where} ORDER BY id"),
                {"actor": subject.actor_id}).scalars()]
        email = normalise_email(subject.email or "")
        hashes = email_hashes(email, keyring)
        needles = {f"p{n}": f"%{value}%" for n, value in enumerate([*hashes, email])}
        like = " OR ".join(f"LOWER(metadata) LIKE :{name}" for name in needles)
        rows = conn.execute(sa.text(f"SELECT id, metadata FROM {TABLE_NAME} WHERE {like} ORDER BY id"),
                            needles).all()
    return [int(row[0]) for row in rows if row[1] is not None and _mentions(row[1], hashes, email)]


def describe(subject: Subject, keyring: Keyring | None) -> str:
    """The subject as the ledger and reports show it: never the email itself."""
    if subject.actor_id is not None:
        return f"actor_id {subject.actor_id}"
    return f"email_hash {email_hashes(subject.email or '', keyring, active_only=True)[0][:12]}…"
