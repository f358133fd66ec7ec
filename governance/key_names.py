"""How a key's name decides the treatment of its value: one vocabulary for dict keys and for the
``name=value`` pairs found inside text.

Pure. A key is split into words (``X-Api-Key`` -> x, api, key; ``totpSecret`` -> totp, secret)
and compared with the policy's lists: the masker asks about dict keys, the credentials-in-text
detector about the name before ``=`` or ``:`` in a log line, so ``DB_PASSWORD=...`` in a message is
masked exactly when ``{"DB_PASSWORD": ...}`` would be.
"""

from __future__ import annotations

import re

DENY, HASHED, OTP, PLAIN = "deny", "hashed", "otp", "plain"
_CACHE_MAX = 10_000
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_NON_WORD = re.compile(r"[^a-z0-9]+")


def key_words(key: str) -> tuple[str, ...]:
    """A key's words: ``X-Api-Key`` -> (x, api, key), ``totpSecret`` -> (totp, secret)."""
    return tuple(word for word in _NON_WORD.split(_CAMEL.sub("_", key).lower()) if word)


def contains_entry(words: tuple[str, ...], entries: frozenset[str]) -> bool:
    """True if some run of consecutive words, joined by ``_``, is one of ``entries``."""
    count = len(words)
    return any(
        "_".join(words[start:end]) in entries
        for start in range(count)
        for end in range(start + 1, count + 1)
    )


class KeyClassifier:
    """Classifies key names against one policy's deny, allow, hash-suffix and OTP lists (cached)."""

    def __init__(self, deny: frozenset[str], allow: frozenset[str], hash_suffixes: frozenset[str],
                 otp_words: frozenset[str], describe_suffixes: frozenset[str] = frozenset(),
                 id_words: frozenset[str] = frozenset()) -> None:
        self.deny, self.allow = deny, allow
        self.hash_suffixes, self.otp_words = hash_suffixes, otp_words
        self.describe_suffixes, self.id_words = describe_suffixes, id_words
        self._kinds: dict[str, str] = {}

    def kind(self, key: str) -> str:
        """How values under ``key`` are treated: deny, hashed (digests and ids: no generic token
    rule), otp or plain."""
        kind = self._kinds.get(key)
        if kind is None:
            kind = self._classify(key)
            if len(self._kinds) >= _CACHE_MAX:
                self._kinds.clear()  # bounded: keys are client data
            self._kinds[key] = kind
        return kind

    def _classify(self, key: str) -> str:
        words = key_words(key)
        joined = "_".join(words)
        if joined in self.allow or any(joined.endswith("_" + suffix)
                                       for suffix in self.describe_suffixes):
            return HASHED if words and words[-1] in self.hash_suffixes else PLAIN
        if contains_entry(words, self.deny):
            return DENY
        if words and (words[-1] in self.hash_suffixes or not self.id_words.isdisjoint(words)):
            return HASHED  # digests and ids: every rule but the generic token rule
        if contains_entry(words, self.otp_words):
            return OTP
        return PLAIN

    def gate_words(self) -> list[str]:
        """A word of every deny entry (its longest): a name that is denied contains one of these,
        so a looser pattern built from them finds every place a denied name can stand."""
        return sorted({max(entry.split("_"), key=len) for entry in self.deny})
