"""Value detectors: secrets that hide under innocent keys or inside text.

Pure: :class:`Detectors` is compiled from one masking policy and :meth:`Detectors.find` takes a
string and returns :class:`Finding` spans; nothing here knows about dicts. The rules:

* the policy's ``[[formats]]`` (vendor tokens, JWTs, private keys, cards with Luhn, IBANs with
  mod-97 ...; :mod:`governance.secret_formats`);
* ``credentials_in_text``: ``password=...``, ``curl -u user:pass``, connection strings,
  credential headers (:mod:`governance.text_credentials`), named by the same key vocabulary as
  dict keys;
* ``kubernetes_secret``: the ``data:`` values of a Secret manifest held in a string;
* ``email``: addresses (the masker hashes them);
* ``high_entropy``: random-looking tokens no format names (:mod:`governance.generic_tokens`).

Every rule has an RE2 *gate* (a looser pattern that matches wherever the rule could) and all gates
form one RE2 set, so an innocent string costs one linear C-level scan; a rule's own matcher runs
only when its gate matched. Where two findings overlap, the one that starts first wins (then the
earlier rule): ``https://user:pass@example.com`` is one ``url_credentials`` finding, not an email.

Near misses that must pass: UUIDs (request ids), 32-hex correlation ids, words and identifiers,
URL and file paths, digests next to ``commit``/``sha``/``integrity``, numbers that fail Luhn.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import re2

from governance import generic_tokens, text_credentials
from governance.key_names import KeyClassifier
from governance.secret_formats import CHECKS, SecretFormat

if TYPE_CHECKING:
    from governance.masking_policy import MaskingPolicy

Matcher = Callable[..., Iterable[tuple[int, int]]]
SHORTEST_SECRET = 6  # "a@b.co", "pwd=abcd" is longer
EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
_BASE32_SECRET = re.compile(r"[A-Z2-7]{16,}=*|[a-z2-7]{16,}=*")
_OTP_CODE = re.compile(r"[0-9]{6,8}|[A-Za-z0-9]{4,5}(?:-[A-Za-z0-9]{4,5}){1,3}")


@dataclass(frozen=True, slots=True)
class Finding:
    """A detected secret: which rule, and where in the string."""

    rule: str
    start: int
    end: int


def _format_matcher(fmt: SecretFormat) -> Matcher:
    pattern = fmt.compiled()
    check = CHECKS[fmt.check] if fmt.check else None
    secret_group = "secret" in pattern.groupindex

    def spans(text: str) -> Iterable[tuple[int, int]]:
        for match in pattern.finditer(text):
            if check is not None and not check(match.group()):
                continue
            yield match.span("secret") if secret_group else match.span()
    return spans


def _emails(text: str) -> Iterable[tuple[int, int]]:
    return (match.span() for match in EMAIL.finditer(text))


class Detectors:
    """Every value detector of one masking policy, behind one RE2 set of gates."""

    def __init__(self, policy: MaskingPolicy, keys: KeyClassifier) -> None:
        enabled = policy.detectors
        rules: list[tuple[str, str, Matcher]] = [
            (fmt.kind, fmt.gate, _format_matcher(fmt)) for fmt in policy.formats]
        if "credentials_in_text" in enabled:
            rules += [
                ("credential", text_credentials.pair_gate(keys),
                 functools.partial(text_credentials.credential_pairs, keys=keys)),
                ("credential", text_credentials.option_gate(keys),
                 functools.partial(text_credentials.option_values, keys=keys)),
                ("credential", text_credentials.CURL_GATE, text_credentials.curl_passwords),
                ("credential", text_credentials.MYSQL_GATE, text_credentials.mysql_passwords),
            ]
        if "kubernetes_secret" in enabled:
            rules.append(("kubernetes_secret", text_credentials.KUBERNETES_GATE,
                          text_credentials.kubernetes_secret_values))
        if "email" in enabled:
            rules.append(("email", "@", _emails))
        self._generic_index = -1
        if "high_entropy" in enabled:
            self._generic_index = len(rules)
            rules.append(("high_entropy", generic_tokens.GATE, functools.partial(
                generic_tokens.generic_tokens, min_length=policy.entropy_min_length,
                min_bits=policy.entropy_min_bits)))
        self.rules = rules
        gates = re2.Set.SearchSet(re2.Options())
        for _rule, gate, _matcher in rules:
            gates.Add(gate)
        gates.Compile()
        # The binding's own Match (UTF-8 bytes in, the indexes of the gates that matched out, or
        # an empty list): its Python wrapper costs ~0.3 us a call on short texts.
        self.gate_hits: Callable[[bytes], list[int]] = gates._set.Match

    def find(self, text: str, *, generic: bool = True,
             hits: list[int] | None = None) -> list[Finding]:
        """Spans of ``text`` that the rules take for secrets, left to right, not overlapping.

        ``generic=False`` leaves out the generic token rule (for values under hash-named keys,
        which are deliberate digests). ``hits`` is :attr:`gate_hits` of ``text`` when the caller
        has already scanned it (the masker's fast path), so the scan is not repeated."""
        if len(text) < SHORTEST_SECRET:
            return []
        candidates = self.gate_hits(text.encode()) if hits is None else hits
        if not candidates:
            return []
        found: list[tuple[int, int, int, str]] = []
        generic_index = self._generic_index
        for order in candidates:
            if order != generic_index:
                rule, _gate, matcher = self.rules[order]
                found.extend((start, order, end, rule) for start, end in matcher(text) if end > start)
        if generic and generic_index in candidates:
            # The generic rule is the costly one and comes last in the order, so a run it would
            # find inside a span a named format already found starts no earlier and loses the
            # overlap to that span, as long as the span itself is kept. The named spans are
            # passed in to be skipped, and in the rare case that one of them is dropped (it
            # overlapped an earlier finding) the generic rule is run again on everything.
            named = [(start, end) for start, _order, end, _rule in found]
            findings, named_kept = self._resolve(found + self._generic(text, named))
            if named_kept == len(named):
                return findings
            found += self._generic(text, ())
        return self._resolve(found)[0]

    def _generic(self, text: str,
                 covered: Sequence[tuple[int, int]]) -> list[tuple[int, int, int, str]]:
        order = self._generic_index
        rule, _gate, matcher = self.rules[order]
        return [(start, order, end, rule) for start, end in matcher(text, covered=covered)
                if end > start]

    def _resolve(self, found: list[tuple[int, int, int, str]]) -> tuple[list[Finding], int]:
        """Findings left to right, not overlapping: where two overlap, the one that starts first
        wins, then the earlier rule. Also how many named-rule (not generic) findings were kept."""
        found.sort()
        findings: list[Finding] = []
        named_kept = 0
        for start, order, end, rule in found:
            if findings and start < findings[-1].end:
                continue  # overlaps a finding that started earlier
            findings.append(Finding(rule, start, end))
            named_kept += order != self._generic_index
        return findings, named_kept


def is_email(text: str) -> bool:
    """True when ``text`` (stripped) is exactly one email address."""
    return EMAIL.fullmatch(text.strip()) is not None


def is_otp_secret(value: object) -> bool:
    """One-time-password material: a base32 secret, a 6-8 digit code, a recovery code."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return 100_000 <= abs(value) <= 99_999_999
    return isinstance(value, str) and bool(
        _BASE32_SECRET.fullmatch(value) or _OTP_CODE.fullmatch(value)
    )

