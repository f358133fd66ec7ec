"""The leak scan: secrets that got into stored rows, found with the masking policy's own rules.

Pure: rows in, :class:`Finding` values out. A row is anything with the attributes of
:class:`ScannableRow` (``trace_service.reader.StoredTrace`` has them, for every layout); the
reading, and the rewriting that ``--fix`` does, are the I/O edge in ``jobs.leak_scan``.

What is scanned:

* ``metadata``: parsed from its stored JSON text (PHP's ``\\/`` and ``\\uXXXX`` escapes
  included) and walked by :meth:`Masker.findings`, so a denied key, a value detector, an OTP
  secret or a clear email is a finding exactly when the writer would have masked it;
* the free-text columns (:data:`SCANNED_COLUMNS`): the value detectors run over each.

A finding names the row id, the column, the key path and the kind (the masking rule), with a
*masked preview*: the value as masking would store it, or a description of its shape. The
secret itself is never in a finding, so a finding can go into a report or a log as it is.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from governance.masking import MASKED_KEY, Masker

# Columns of free text a client controls; severity, ip and the time are validated shapes.
SCANNED_COLUMNS = ("event_key", "route_name", "user_agent", "request_id")
# Masking rules that are size limits, not secrets.
_LIMIT_RULES = frozenset({"truncated", "depth_limit"})
PREVIEW_CHARS = 80
_COLUMN_CACHE_MAX = 10_000


class ScannableRow(Protocol):
    """What the scan reads from a stored row."""

    @property
    def id(self) -> int: ...
    @property
    def metadata_text(self) -> str | None: ...
    @property
    def event_key(self) -> str: ...
    @property
    def route_name(self) -> str | None: ...
    @property
    def user_agent(self) -> str | None: ...
    @property
    def request_id(self) -> str | None: ...


@dataclass(frozen=True)
class Finding:
    """One secret in one stored value; ``preview`` is masked, never the secret."""

    row_id: int
    column: str
    path: str
    kind: str
    preview: str

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values."""
        return {"id": self.row_id, "column": self.column, "path": self.path, "kind": self.kind,
                "preview": self.preview}


@dataclass(frozen=True)
class RowFix:
    """The masked replacements for one row's leaking values (Python values, not yet encoded)."""

    row_id: int
    values: dict[str, Any]
    findings: tuple[Finding, ...]


@dataclass
class ScanTally:
    """Running totals of a scan."""

    rows: int = 0
    rows_with_findings: int = 0
    unreadable_metadata: int = 0
    first_id: int | None = None
    last_id: int | None = None
    by_kind: Counter[str] = field(default_factory=Counter)
    by_column: Counter[str] = field(default_factory=Counter)

    def add(self, row_id: int, findings: list[Finding]) -> None:
        """Count one scanned row and its findings."""
        self.rows += 1
        self.first_id = row_id if self.first_id is None else min(self.first_id, row_id)
        self.last_id = row_id if self.last_id is None else max(self.last_id, row_id)
        if findings:
            self.rows_with_findings += 1
            self.by_kind.update(f.kind for f in findings)
            self.by_column.update(f.column for f in findings)

    @property
    def findings(self) -> int:
        """How many findings in all."""
        return sum(self.by_kind.values())

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values, kinds and columns sorted."""
        return {"rows_scanned": self.rows, "first_id": self.first_id, "last_id": self.last_id,
                "rows_with_findings": self.rows_with_findings, "findings": self.findings,
                "unreadable_metadata": self.unreadable_metadata,
                "by_kind": dict(sorted(self.by_kind.items())),
                "by_column": dict(sorted(self.by_column.items()))}


class Scanner:
    """Scans rows with one :class:`Masker` (so with one masking policy and keyring)."""

    def __init__(self, masker: Masker) -> None:
        self.masker = masker
        self._column_cache: dict[str, tuple[tuple[str, str], ...]] = {}

    def scan(self, row: ScannableRow) -> list[Finding]:
        """Every finding in one row, metadata first, then the columns in a fixed order."""
        findings, _ = self._scan(row)
        return findings

    def scan_counted(self, row: ScannableRow, tally: ScanTally) -> list[Finding]:
        """:meth:`scan`, counting the row and its findings in ``tally``."""
        findings, readable = self._scan(row)
        if not readable:
            tally.unreadable_metadata += 1
        tally.add(row.id, findings)
        return findings

    def fix(self, row: ScannableRow, findings: list[Finding] | None = None) -> RowFix | None:
        """The masked values that replace a row's leaking ones, or None when it is clean.

        Metadata is masked whole (as the writer would have stored it, ``_masked`` list
        included); a leaking column gets its detector findings replaced. ``findings`` are the
        row's, when the caller has just scanned it (the row is not scanned again).
        """
        if findings is None:
            findings, _ = self._scan(row)
        if not findings:
            return None
        values: dict[str, Any] = {}
        for column in {f.column for f in findings}:
            if column == "metadata":
                values[column] = self._mask_metadata(_parse(row.metadata_text))
            else:
                values[column] = self.masker.mask([getattr(row, column)])[0]
        return RowFix(row.id, values, tuple(findings))

    def _mask_metadata(self, metadata: Any) -> Any:
        earlier = metadata.pop(MASKED_KEY, None) if isinstance(metadata, dict) else None
        masked = self.masker.mask(metadata, owned=True)
        if isinstance(earlier, list) and isinstance(masked, dict):
            # Keep the writer's record of what it masked, then what the fix masked.
            masked[MASKED_KEY] = earlier + [m for m in masked.get(MASKED_KEY, []) if m not in earlier]
        return masked

    def _scan(self, row: ScannableRow) -> tuple[list[Finding], bool]:
        findings: list[Finding] = []
        readable = True
        if row.metadata_text is not None:
            try:
                metadata = _parse(row.metadata_text)
            except ValueError:
                readable = False  # counted, not guessed at: the report says how many
            else:
                findings.extend(self._metadata(row.id, metadata))
        for column in SCANNED_COLUMNS:
            text = getattr(row, column)
            if text:
                findings.extend(Finding(row.id, column, "$", rule, preview)
                                for rule, preview in self._column_hits(text))
        return findings, readable

    def _column_hits(self, text: str) -> tuple[tuple[str, str], ...]:
        """(rule, preview) of each secret in a column's text; cached, as user agents, routes and
        event keys repeat across most rows (the cache is cleared when full, so it stays bounded)."""
        hits = self._column_cache.get(text)
        if hits is None:
            hits = tuple((hit.rule, self._preview(hit.rule, text))
                         for hit in self.masker.detectors.find(text))
            if len(self._column_cache) >= _COLUMN_CACHE_MAX:
                self._column_cache.clear()
            self._column_cache[text] = hits
        return hits

    def _metadata(self, row_id: int, metadata: Any) -> Iterator[Finding]:
        if isinstance(metadata, dict) and MASKED_KEY in metadata:
            # Our own record of what was masked holds rule names and paths, never values.
            metadata = {k: v for k, v in metadata.items() if k != MASKED_KEY}
        notes = self.masker.findings(metadata)
        if not notes:
            return
        values = dict(_walk(metadata, ""))
        replacement = self.masker.policy.replacement
        for note in notes:
            path = note["path"]
            value = values.get("" if path == "$" else path)
            if note["rule"] in _LIMIT_RULES or value == replacement:
                continue  # a size limit, or a denied key already holding the mask: no secret
            yield Finding(row_id, "metadata", path, note["rule"], self._preview(note["rule"], value))

    def _preview(self, rule: str, value: Any) -> str:
        """The value as masking stores it (detector findings), or only its shape (keys, OTP)."""
        if isinstance(value, str) and rule not in ("key", "otp"):
            masked = str(self.masker.mask([value])[0])
            return masked if len(masked) <= PREVIEW_CHARS else masked[:PREVIEW_CHARS - 1] + "…"
        replacement = self.masker.policy.replacement
        if isinstance(value, str):
            return f"{replacement} (string, {len(value)} chars)"
        if isinstance(value, (dict, list)):
            return f"{replacement} ({type(value).__name__}, {len(value)} items)"
        return f"{replacement} ({type(value).__name__})"


def _parse(text: str | None) -> Any:
    """Stored metadata text to Python values (``json.JSONDecodeError`` is a ``ValueError``)."""
    return None if text is None else json.loads(text)


def _walk(value: Any, path: str) -> Iterator[tuple[str, Any]]:
    """Every (path, value) in ``value``, paths spelled as :class:`Masker` spells them."""
    yield path, value
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _walk(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _walk(item, f"{path}[{index}]")
