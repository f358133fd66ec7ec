"""Masking: metadata in, a new masked object out (the caller's object is never mutated).

Driven by a :class:`~governance.masking_policy.MaskingPolicy` (``policies/masking.toml``):

* **keys**: a denied key (normalised: ``X-Api-Key`` -> ``x_api_key``, ``totpSecret`` ->
  ``totp_secret``; denied when its words contain a denied entry) has its value replaced, whatever
  the value, recursively through dicts and lists; ``allow`` keys are exempt;
* **values**: the detectors of ``governance.detectors`` run on every string (and long integers,
  for card numbers), so secrets under innocent keys are replaced where they stand;
* **emails**: a value that is exactly an email becomes the PHP-compatible keyed hash under
  ``<key>_hash``, ``<key>_hash_key_id``, ``<key>_hash_algo`` (``email`` -> ``email_hash`` ...,
  as PHP stores it); an email inside text becomes ``[email_hash:<hex>]``; with no keyring, or
  ``mode = "mask"``, the replacement text;
* **OTP keys** (``otp``, ``totp``, ``mfa``, ``2fa``, ``recovery_code`` ...): base32 secrets,
  6-8 digit codes and recovery codes are replaced; booleans pass;
* **limits**, each with a defined result and never an exception: containers deeper than
  ``max_depth`` -> ``"[depth limit]"`` (cycles end there too); strings longer than
  ``max_string_chars`` are cut and end with ``…[truncated]``; past ``max_total_chars`` of text the
  remaining entries are left out and counted in ``"_truncated"``; non-string keys become PHP's
  key strings; NaN and infinities -> None; bytes are decoded; other objects become ``str(obj)``
  and are scanned like any string.

With ``record_masked`` the result carries ``"_masked"``: a list of ``{"rule", "path"}`` for every
replacement (rule ids and key paths, never values), for the leak scan and compliance staff.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from math import isfinite
from typing import Any

from governance.checksums import is_card_number
from governance.detectors import SHORTEST_SECRET, Detectors, Finding, is_email, is_otp_secret
from governance.hashing import Keyring, email_hash
from governance.key_names import DENY, HASHED, OTP, PLAIN, KeyClassifier
from governance.masking_policy import MaskingPolicy
from governance.php import php_key, plain_scalar

TRUNCATED = "…[truncated]"
DEPTH_LIMIT = "[depth limit]"
MASKED_KEY = "_masked"
TRUNCATED_KEY = "_truncated"
_KEY_CACHE_MAX = 10_000
_SCALARS = (str, int, float, bool, type(None))
_QUIET = (PLAIN, HASHED)
_CARD_MIN = 10**11  # integers from 12 digits up may be card numbers: the full walk checks them
# repr() writes a float in fixed notation, as PHP does, from 1e-4 up to below 1e16 (mask_plain).
_PLAIN_FLOAT_MIN, _PLAIN_FLOAT_MAX = 1e-4, 1e16
# Deeper than this is not plain: PHP's encoder refuses nesting past 512 levels (the slow path
# raises there), where the C encoder has no limit; a policy's max_depth may be set above it.
_PLAIN_MAX_DEPTH = 256


def _copy(value: Any) -> Any:
    """A copy of clean metadata (only dicts, lists and immutable scalars, as _gather checked)."""
    vtype = type(value)
    if vtype is dict:
        return {k: v if type(v) in _SCALARS else _copy(v) for k, v in value.items()}
    if vtype is list:
        return [v if type(v) in _SCALARS else _copy(v) for v in value]
    return value


@dataclass
class _State:
    budget: int
    masked: list[dict[str, str]] = field(default_factory=list)

    def note(self, rule: str, path: str) -> None:
        self.masked.append({"rule": rule, "path": path or "$"})


class Masker:
    """Applies one masking policy (and, for emails, one keyring)."""

    def __init__(self, policy: MaskingPolicy, keyring: Keyring | None = None) -> None:
        self.policy = policy
        self.keyring = keyring if policy.email_mode == "hash" else None
        self.keys = KeyClassifier(policy.deny_keys, policy.allow_keys, policy.hash_suffixes,
                                  policy.otp_words, policy.describe_suffixes, policy.id_words)
        self.detectors = Detectors(policy, self.keys)
        self._max_depth = policy.max_depth
        self._card_numbers = any(fmt.check == "luhn" for fmt in policy.formats)
        self._quiet_keys: set[str] = set()  # keys known to be PLAIN or HASHED (the fast path)

    def key_kind(self, key: str) -> str:
        """How values under ``key`` are treated: deny, hashed (skip entropy), otp or plain."""
        kind = self.keys.kind(key)
        if kind in _QUIET:
            if len(self._quiet_keys) >= _KEY_CACHE_MAX:
                self._quiet_keys.clear()  # bounded: keys are client data
            self._quiet_keys.add(key)
        return kind

    def mask(self, metadata: Any, *, owned: bool = False) -> Any:
        """A masked version of ``metadata`` (with ``_masked`` when the policy records it).

        The caller's object is never mutated. By default the result is always a new object;
        with ``owned=True`` (the caller owns ``metadata`` and will not touch it again, as the
        writer thread owns its thawed snapshot) clean metadata is returned as it is, uncopied.
        """
        if self._is_clean(metadata):
            return metadata if owned else _copy(metadata)
        state = _State(budget=self.policy.max_total_chars)
        value = self._value(metadata, "", 0, PLAIN, state)
        if state.masked and self.policy.record_masked and isinstance(value, dict):
            value[MASKED_KEY] = state.masked
        return value

    def findings(self, metadata: Any) -> list[dict[str, str]]:
        """What :meth:`mask` would replace, as ``{"rule", "path"}`` (for the leak scan)."""
        if self._is_clean(metadata):
            return []
        state = _State(budget=self.policy.max_total_chars)
        self._value(metadata, "", 0, PLAIN, state)
        return state.masked

    # ------------------------------------------------------------------ the fast path

    def mask_plain(self, metadata: Any) -> tuple[Any, bool]:
        """``mask(metadata, owned=True)``, and whether the result is *JSON-plain*: a dict that
        was clean (returned as it is) and holds nothing that JSON writers write differently:
        no empty or ``"0"``-keyed nested dict (PHP writes arrays for those) and no float
        written whole or with an exponent (``12.0``, ``1e-05``). ``trace_service.php_json``
        then takes the C encoder (``encode_metadata(..., plain=True)``).

        Why here: the clean check already visits every value of every record, so noting these
        costs a comparison, where a walk of its own cost as much as it saved (bench/writer.py).
        """
        odd: list[object] = []
        if self._is_clean(metadata, odd):
            return metadata, not odd and type(metadata) is dict
        return self.mask(metadata, owned=True), False

    def _is_clean(self, metadata: Any, odd: list[object] | None = None) -> bool:
        """True when nothing in ``metadata`` needs masking (then the full walk is skipped).

        Most metadata is clean, so this is the common case: one walk that checks keys, types and
        sizes and gathers every string, then ONE detector scan over the strings joined by newlines.
        No detector's match or its suppressing context (a digest word, a URL path) crosses a line
        break, so a secret in one string is found in the joined text too; anything found at all, or any
        key, type or size that needs care, means "not clean" and the full walk decides.
        The walk also notes in ``odd`` what JSON writers disagree on (see :meth:`mask_plain`).
        """
        texts: list[str] = []
        if not self._gather(metadata, texts, 0, [] if odd is None else odd):
            return False
        if not texts:
            return True
        joined = "\n".join(texts)
        policy = self.policy
        if len(joined) > policy.max_string_chars and (
                len(joined) - len(texts) + 1 > policy.max_total_chars
                or max(map(len, texts)) > policy.max_string_chars):
            return False
        # One RE2 scan answers most calls; the detectors run only where a gate saw a candidate.
        hits = self.detectors.gate_hits(joined.encode())
        return not hits or not self.detectors.find(joined, hits=hits)

    def _gather(self, value: Any, texts: list[str], depth: int, odd: list[object]) -> bool:
        """Gather the strings of ``value``; False as soon as something needs the full walk.
        What JSON writers disagree on goes to ``odd`` (:meth:`mask_plain`).

        The hot loop of every record: types are dispatched in order of frequency, and lists of
        strings (tags) are read in place rather than by a call per item."""
        vtype = type(value)
        if vtype is dict:
            if depth >= self._max_depth:
                return False
            if depth and (not value or "0" in value or depth + 1 >= _PLAIN_MAX_DEPTH):
                odd.append(value)  # PHP: [] and a list, where JSON writes objects; depth below
            quiet = self._quiet_keys
            append = texts.append
            for key, item in value.items():
                if key not in quiet and (type(key) is not str or self.key_kind(key) not in _QUIET):
                    return False
                itype = type(item)
                if itype is str:
                    append(item)
                elif itype is int:
                    if not -_CARD_MIN < item < _CARD_MIN:
                        return False
                elif itype is float:
                    if not isfinite(item):
                        return False
                    if not _PLAIN_FLOAT_MIN <= abs(item) < _PLAIN_FLOAT_MAX or item.is_integer():
                        odd.append(item)
                elif itype is list:
                    if depth + 1 >= self._max_depth:
                        return False
                    for element in item:
                        if type(element) is str:
                            append(element)
                        elif not self._gather(element, texts, depth + 2, odd):
                            return False
                elif not (item is None or itype is bool or self._gather(item, texts, depth + 1, odd)):
                    return False
            return True
        if vtype is str:
            texts.append(value)
            return True
        if vtype is list:
            if depth >= self._max_depth:
                return False
            if depth >= _PLAIN_MAX_DEPTH:
                odd.append(value)
            for item in value:
                if type(item) is str:
                    texts.append(item)
                elif not self._gather(item, texts, depth + 1, odd):
                    return False
            return True
        if vtype is float and isfinite(value):
            if not _PLAIN_FLOAT_MIN <= abs(value) < _PLAIN_FLOAT_MAX or value.is_integer():
                odd.append(value)
            return True
        if vtype is bool or value is None:
            return True
        return vtype is int and -_CARD_MIN < value < _CARD_MIN

    # ------------------------------------------------------------------ the walk

    def _value(self, value: Any, path: str, depth: int, kind: str, state: _State) -> Any:
        vtype = type(value)
        if vtype is str:
            return self._string(value, path, kind, state)
        if vtype is bool or value is None:
            return value
        if vtype is int:
            return self._integer(value, path, kind, state)
        if vtype is float:
            return value if isfinite(value) else None
        if isinstance(value, (Mapping, list, tuple, set, frozenset)):
            if depth >= self.policy.max_depth:
                state.note("depth_limit", path)
                return DEPTH_LIMIT
            if isinstance(value, Mapping):
                return self._mapping(value, path, depth, state)
            items = sorted(value, key=repr) if isinstance(value, (set, frozenset)) else value
            return [
                self._value(item, f"{path}[{index}]", depth + 1, kind, state)
                for index, item in enumerate(items)
            ]
        # bytes, subclasses (IntEnum, str-Enum), other objects: as their plain value, scanned
        return self._value(plain_scalar(value), path, depth, kind, state)

    def _mapping(self, mapping: Mapping[Any, Any], path: str, depth: int, state: _State) -> Any:
        out: dict[str, Any] = {}
        omitted = 0
        for raw_key, item in mapping.items():
            key = raw_key if type(raw_key) is str else php_key(raw_key)
            if state.budget <= 0:
                omitted += 1
                continue
            state.budget -= len(key)
            child = f"{path}.{key}" if path else key
            kind = self.keys.kind(key)
            if kind == DENY:
                out[key] = self._deny(item, child, state)
            elif type(item) is str:  # the commonest value, without the dispatch of _value
                if "@" in item and self._whole_email(item):
                    out.update(self._email_fields(key, item, child, state))
                else:
                    out[key] = self._string(item, child, kind, state)
            else:
                out[key] = self._value(item, child, depth + 1, kind, state)
        if omitted:
            out[TRUNCATED_KEY] = omitted
        return out

    def _deny(self, item: Any, path: str, state: _State) -> Any:
        if item is None or item == "" or type(item) is bool:
            return item  # nothing secret in an absent value or a flag
        state.note("key", path)
        return self.policy.replacement

    def _integer(self, value: int, path: str, kind: str, state: _State) -> Any:
        if kind == OTP and is_otp_secret(value):
            state.note("otp", path)
            return self.policy.replacement
        if self._card_numbers and 10**11 <= abs(value) < 10**19 and is_card_number(str(abs(value))):
            state.note("card_number", path)
            return self.policy.replacement
        return value

    def _string(self, text: str, path: str, kind: str, state: _State) -> str:
        policy = self.policy
        if len(text) > policy.max_string_chars:
            text = text[: policy.max_string_chars] + TRUNCATED
            state.note("truncated", path)
        state.budget -= len(text)
        if len(text) < SHORTEST_SECRET:
            return text  # no rule, one-time codes included, finds anything this short
        if kind == OTP and is_otp_secret(text):
            state.note("otp", path)
            return policy.replacement
        findings = self.detectors.find(text, generic=kind != HASHED)
        if not findings:
            return text
        return self._replace(text, findings, path, state)

    def _replace(self, text: str, findings: list[Finding], path: str, state: _State) -> str:
        pieces = []
        cursor = 0
        for finding in findings:
            state.note(finding.rule, path)
            pieces.append(text[cursor:finding.start])
            secret = text[finding.start:finding.end]
            if finding.rule == "email" and self.keyring is not None:
                pieces.append(f"[email_hash:{email_hash(secret, self.keyring).hash}]")
            else:
                pieces.append(self.policy.replacement)
            cursor = finding.end
        pieces.append(text[cursor:])
        return "".join(pieces)

    def _whole_email(self, text: str) -> bool:
        return "email" in self.policy.detectors and is_email(text)

    def _email_fields(self, key: str, email: str, path: str, state: _State) -> dict[str, Any]:
        state.note("email", path)
        if self.keyring is None:
            return {key: self.policy.replacement}
        return email_hash(email, self.keyring).as_metadata(prefix=key)
