"""The generic token rule: long random-looking runs that no vendor format names.

Pure. :func:`generic_tokens` finds candidate runs of token characters and keeps those that look
random, judged by shape and by the words around them:

* **random, not a name**: a token mixes character classes often (in random base62 about 60% of
  neighbouring characters change class, in ``CamelCaseIdentifiers`` or ``SNAKE_CASE_2`` under
  20%), or is a long hex string, or is a short lower-case prefix (``xyz_``) followed by a body of
  high entropy, letters only included;
* **not a URL path**: a run inside the path of a URL (``https://host/a/b``) or a file path is
  left alone; query values are judged (``?code=...``), denied names there are the
  credentials-in-text rule's;
* **not a digest in context**: hex or base64 next to ``commit``, ``sha``, ``digest``,
  ``checksum``, ``rev``, ``integrity`` ..., after ``sha256:`` or ``sha512-``, or at the start of a
  ``sha256sum`` line, is a content hash, not a credential;
* **not a UUID**, nor base64 of ordinary text (it decodes to words and spaces).
"""

from __future__ import annotations

import base64
import binascii
import functools
import math
import re
from collections import Counter
from collections.abc import Iterator, Sequence

# "=" only as base64 padding at the end, so "code=<token>" is a name and a token, not one run.
CANDIDATE = re.compile(r"(?<![A-Za-z0-9+/_-])[A-Za-z0-9+/_-]{20,}={0,2}")
# The rule's RE2 gate (governance.detectors): a run of 20 candidate characters holding a digit
# or a capital, i.e. a 20-character window around one, at any of its 20 places. A run of small
# letters alone ("password_reset_requested", in most rows' metadata) is never random (see
# _ONE_CASE_WORDS), and the gate passing over it spares the detectors' walk (~2.6 us a row).
_RUN = "[A-Za-z0-9+/_-]"
GATE = "|".join(f"{_RUN}{{{before}}}[0-9A-Z]{_RUN}{{{19 - before}}}" for before in range(20))
HEX_TOKEN_MIN = 40  # sha1-sized and up: 32-hex correlation ids (PHP's bin2hex(random_bytes(16))) pass
UUID_REMAINDER_MIN = 20  # what is left of a run once its UUIDs are taken out must be this long
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_HEX = re.compile(r"[0-9a-f]+|[0-9A-F]+")
_HEX_LOWER = re.compile(r"[0-9a-f]+")
_SID = re.compile(r"[A-Z]{1,4}(?P<hex>[0-9a-f]{24,})")
GIT_OBJECT_ID = 40
# Upper-case base32 of 24+ characters (TOTP seeds): random, though only digits 2-7 break the
# letters, so the class-change test would undercount it.
_BASE32 = re.compile(r"[A-Z2-7]{24,}={0,6}")
_PREFIXED = re.compile(r"(?P<prefix>[a-z][a-z0-9]{1,9}(?:[_-][a-z0-9]{1,9}){0,2}[_-])"
                       r"(?P<body>[A-Za-z0-9]{20,})")
_DIGEST_WORDS = re.compile(
    r"(?i)(?<![a-z])(?:commit(?:ted|s)?|sha(?:1|224|256|384|512)?(?:sum)?|digests?|checksums?|revs?|"
    r"revision|integrity|hash(?:es)?|md5|etag|fingerprint|blob|tree|parent|merged?|objects?|"
    r"cherry-picked|reverts?|builds?|images?|references?|ref|boundary|shasum|"
    r"ids?|uuid|guid|cursor|trace|span)(?![a-z])"
    r"[^\r\n]{0,24}\Z")  # \Z: "$" would also match before a final newline
_DIGEST_TOKEN = re.compile(r"(?i)(?:sha(?:1|224|256|384|512)|md5)[-:]|----WebKitFormBoundary")
_HEX_RUN = re.compile(r"[0-9a-fA-F]{32,}")
_DIGEST_PREFIX = re.compile(r"(?i)(?:sha(?:1|224|256|384|512)|md5|blake2b?|xxh64|\bh1)[:-]\Z")
_SUMFILE_LINE = re.compile(r"[ \t]+\*?[\w./-]+")  # "<hex>  path/to/file" of sha256sum
_WORD_BREAKS = frozenset("\"'`<>()[]{},;")  # with white space, where a word before a run starts
_USER_PASSWORD = re.compile(r"[^\s:{}\[\]\",]+:\S+")
# A run with no digit and letters of one case (snake_case names, "password_reset_requested"):
# every path of looks_random answers False for it (see generic_tokens), so it is passed over first.
_ONE_CASE_WORDS = re.compile(r"[a-z+/_=-]*|[A-Z+/_=-]*")
_SEGMENT = re.compile(r"[A-Z][a-z]+|[a-z]+|[A-Z]+(?![a-z])|[0-9]+")
WORDS_MEAN_SEGMENT = 4.0
_CONTEXT = 48
TRANSITIONS_MIN = 0.3


def shannon_bits(text: str) -> float:
    """Shannon entropy of ``text`` in bits per character."""
    length = len(text)
    if length <= _TERMS_MAX_LENGTH:
        # Token-sized texts take the terms n/len * log2(n/len) from a table per length: the
        # same floats summed in the same order, so the result is bit-identical.
        return -sum(map(_entropy_terms(length).__getitem__, Counter(text).values()))
    return -sum(n / length * math.log2(n / length) for n in Counter(text).values())


_TERMS_MAX_LENGTH = 256


@functools.lru_cache(maxsize=_TERMS_MAX_LENGTH)
def _entropy_terms(length: int) -> tuple[float, ...]:
    return (0.0, *(n / length * math.log2(n / length) for n in range(1, length + 1)))


def _char_class(char: str) -> int:
    return 0 if char.isdigit() else 1 if char.isupper() else 2 if char.islower() else 3


def class_transitions(token: str) -> float:
    """The share of neighbouring letters and digits that change class (digit, upper, lower).

    Separators (``/ _ - + =``) are skipped, so ``app/Http/VerifyCsrfToken`` is judged as the
    CamelCase words it is."""
    classes = [_char_class(char) for char in token if char.isalnum()]
    if len(classes) < 2:
        return 0.0
    return sum(a != b for a, b in zip(classes, classes[1:], strict=False)) / (len(classes) - 1)


def mean_segment(token: str) -> float:
    """Mean length of a token's word-like segments (``Camel``, ``case``, ``ABC``, ``2024``):
    4+ for CamelCaseIdentifiers, about 2 for random base62 (3.1 at most in 2,000 samples)."""
    alnum = "".join(char for char in token if char.isalnum())
    segments = _SEGMENT.findall(alnum)
    return len(alnum) / len(segments) if segments else 0.0


def _decodes_to_text(token: str) -> bool:
    """Base64 of printable text (pagination cursors, JSON, sentences) rather than of key material."""
    try:
        raw = base64.b64decode(token + "=" * (-len(token) % 4), validate=True)
        text = raw.decode("utf-8")
    except (binascii.Error, ValueError):
        return False
    # Key material decodes to random bytes; JSON cursors and ordinary text decode to print.
    # "user:password" (registry and .npmrc auth) decodes to print too, and is a credential.
    # A single printable word ("foobarbaz1234...") may be an encoded password: only text with
    # structure (spaces, JSON, a query string) counts as data.
    return len(text) >= 12 and sum(32 <= ord(c) < 127 for c in text) >= 0.95 * len(text) \
        and (" " in text or text[0] in "{[" or "=" in text or "://" in text) \
        and ("://" in text or not _USER_PASSWORD.fullmatch(text))


_ASCII_CLASSES = {code: ("d" if chr(code).isdigit() else "u" if chr(code).isupper()
                         else "l" if chr(code).islower() else None) for code in range(128)}
# A change of class is one of these pairs; a pair of two different letters cannot overlap
# itself, so str.count counts every occurrence.
_CLASS_CHANGES = ("du", "dl", "ud", "ul", "ld", "lu")


def _segments(classes: str, changes: int) -> int:
    """How many segments :data:`_SEGMENT` finds in a token with this class string: one per run
    of a class, less one wherever a lone capital starts a lower-case word ("Camel" is one)."""
    if not classes:
        return 0
    return changes + 1 - (classes.count("ul") - classes.count("uul"))


def looks_random(token: str, min_length: int, min_bits: float) -> bool:
    """The shape test, without context: does ``token`` look like key material?"""
    if _BASE32.fullmatch(token):
        return sum(c.isdigit() for c in token) >= 2 and shannon_bits(token) >= min_bits
    if ("-" in token or "/" in token) and _HEX.fullmatch(token.replace("-", "").replace("/", "")):
        return False  # grouped hex: UUIDs, W3C traceparent, B3, sentry-trace, Cloud Trace ids
    sid = _SID.fullmatch(token)
    if sid is not None:
        token = sid.group("hex")  # "SM8669...", "RQb4bb...": a type prefix on a hex object id
    if len(token) == GIT_OBJECT_ID and _HEX_LOWER.fullmatch(token):
        return False  # a git commit or object id, the commonest 40-hex string in logs
    if _HEX.fullmatch(token):
        return len(token) >= HEX_TOKEN_MIN and not token.isdigit() and not token.isalpha() \
            and shannon_bits(token) >= min(min_bits, 3.0)
    prefixed = _PREFIXED.fullmatch(token)
    if prefixed is not None:
        # "in_1P2q9w...", "price_...", "dpl_...": object ids carry short prefixes too; a prefixed
        # secret has a format of its own, so the body alone must be token-sized.
        token = prefixed.group("body")
    if len(token) < min_length:
        return False
    if token.isascii():
        return _ascii_shape_is_random(token, min_bits)
    return _shape_is_random(token, min_bits)


def _shape_is_random(token: str, min_bits: float) -> bool:
    """The last step of :func:`looks_random`, on the readable measures (any text)."""
    upper, lower = any(c.isupper() for c in token), any(c.islower() for c in token)
    if upper and lower and mean_segment(token) >= WORDS_MEAN_SEGMENT:
        return False  # CamelCase words: an identifier, not key material
    classes = sum((any(c.isdigit() for c in token), upper, lower))
    return classes >= 2 and shannon_bits(token) >= min_bits \
        and class_transitions(token) >= TRANSITIONS_MIN and not _decodes_to_text(token)


def _ascii_shape_is_random(token: str, min_bits: float) -> bool:
    """:func:`_shape_is_random` for ASCII, the only tokens :data:`CANDIDATE` yields: every long
    run in a trace passes through here. One C-level translate to a class string ("d" digit,
    "u" upper, "l" lower) gives the same measures as class_transitions and mean_segment (the
    property tests hold the two functions equal), cheapest first."""
    classes = token.translate(_ASCII_CLASSES)
    upper, lower = "u" in classes, "l" in classes
    if ("d" in classes) + upper + lower < 2:
        return False
    changes = sum(map(classes.count, _CLASS_CHANGES))
    if upper and lower and len(classes) / _segments(classes, changes) >= WORDS_MEAN_SEGMENT:
        return False  # CamelCase words: an identifier, not key material
    return changes / (len(classes) - 1) >= TRANSITIONS_MIN and shannon_bits(token) >= min_bits \
        and not _decodes_to_text(token)


def _word_before(text: str, start: int) -> str:
    """The part of the word that ends at ``start`` (back to white space or a quote, bracket,
    comma or semicolon); scanned backwards, so each run costs only its own word."""
    begin = start
    while begin and not (text[begin - 1].isspace() or text[begin - 1] in _WORD_BREAKS):
        begin -= 1
    return text[begin:start]


def _in_path(text: str, start: int, token: str) -> bool:
    """True when the run ``token`` at ``start`` is part of a URL path or a file path."""
    before = _word_before(text, start)
    if not before:
        return token.startswith("/") and "/" in token[1:]  # "/var/www/...", not "/k8Fq..."
    scheme = before.find("://")
    if scheme >= 0:
        # Path, query and fragment alike: secrets in URLs are named (sig=, token=, password=,
        # the credentials rule) or shaped (the formats); the rest are ids and digests.
        return True
    return "/" in before and "=" not in before  # "/home/app/.cache/..."; not "key=a/b..."


def is_relative_path(token: str) -> bool:
    """``app/Http/Middleware/VerifyCsrfToken``, ``uploads/01JMV1GG.../original``: segments of
    words, or words around ids, not base64 (which holds ``+`` or ``=`` or starts mid-word)."""
    segments = token.strip("/").split("/")
    if len(segments) < 2:
        return False
    if all(segment.isalpha() or not segment for segment in segments):
        return True
    first, last = segments[0], segments[-1]
    return "+" not in token and "=" not in token and len(first) >= 3 and len(last) >= 3 \
        and first.isalpha() and first.islower() and last.isalpha() and last.islower()


def _is_digest(text: str, start: int, end: int) -> bool:
    if _DIGEST_TOKEN.match(text, start):
        return True  # "sha384-<base64>" (subresource integrity) is one run with its label
    before = text[max(0, start - 3 * _CONTEXT):start]
    # Other digests in between do not break the context: "expected sha256 <hex>, got <hex>".
    before = _HEX_RUN.sub("", before)[-_CONTEXT:]
    return bool(_DIGEST_PREFIX.search(before) or _DIGEST_WORDS.search(before)
                or (start == 0 or text[start - 1] == "\n") and _SUMFILE_LINE.match(text, end))


def generic_tokens(text: str, min_length: int, min_bits: float,
                   covered: Sequence[tuple[int, int]] = ()) -> Iterator[tuple[int, int]]:
    """Spans of random-looking tokens in ``text`` that are not paths, digests or UUIDs.

    Runs lying wholly inside a ``covered`` span (one a named format already found) are not
    judged: see :meth:`governance.detectors.Detectors.find` for why that changes nothing."""
    for match in CANDIDATE.finditer(text):
        start, end = match.span()
        if covered and any(low <= start and end <= high for low, high in covered):
            continue
        token = match.group()
        if _ONE_CASE_WORDS.fullmatch(token):
            # The commonest long run in metadata, and never random: taking out UUIDs or a prefix
            # leaves a part with no more letter cases or digits; base32 needs two digits, hex
            # a digit, the shape test two of digits, capitals and small letters. This check
            # costs a tenth of the path it skips (bench/writer.py: every row's "reason").
            continue
        if _UUID.search(token):
            token = _UUID.sub("", token).strip("-_")
            if len(token) < UUID_REMAINDER_MIN:
                continue
        if _in_path(text, start, token) or ("/" in token and is_relative_path(token)):
            continue
        if looks_random(token, min_length, min_bits) and not _is_digest(text, start, end):
            yield start, end
