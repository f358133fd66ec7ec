"""The secret rules one by one: formats as policy data, checksums, credentials inside text, the
generic token rule, and the fast path's promise that a joined scan finds what per-string scans do."""

from __future__ import annotations

import random
import re
import string

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from governance import generic_tokens
from governance.checksums import IBAN_LENGTHS, iban_valid, is_card_number
from governance.detectors import SHORTEST_SECRET, is_otp_secret
from governance.errors import PolicyError
from governance.generic_tokens import (
    _ascii_shape_is_random,
    _shape_is_random,
    is_relative_path,
    looks_random,
    shannon_bits,
)
from governance.generic_tokens import (
    generic_tokens as generic_token_spans,
)
from governance.masking import Masker
from governance.masking_policy import load_masking_policy
from governance.secret_formats import parse_format, parse_formats

POLICY = load_masking_policy()
MASKER = Masker(POLICY)
DETECT = MASKER.detectors


def masked_note(text: str) -> str:
    """The stored text of ``{"note": text}``."""
    return str(MASKER.mask({"note": text})["note"])


# ------------------------------------------------------------------ formats as data

@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"kind": "x_token", "about": "a", "prefix": "x_", "body": "[a-z]{8}", "colour": 1},
         "unknown field 'colour'"),
        ({"kind": "X", "about": "a", "prefix": "x_", "body": "[a-z]"}, "kind = 'X' is invalid"),
        ({"kind": "x_token", "prefix": "x_", "body": "[a-z]"}, "about = None is invalid"),
        ({"kind": "x_token", "about": "a", "prefix": [], "body": "[a-z]"}, "prefix = \\[\\] is invalid"),
        ({"kind": "x_token", "about": "a", "pattern": "(", "gate": "x"}, "not a valid regex"),
        ({"kind": "x_token", "about": "a", "pattern": "x", "gate": "(?<!a)x"},
         "not valid RE2 syntax \\(invalid perl operator: \\(\\?<!\\): a gate may not use lookaround"),
        ({"kind": "x_token", "about": "a", "pattern": "x", "gate": "x", "prefix": "x"},
         "either pattern \\(with gate\\) or prefix and body"),
        ({"kind": "x_token", "about": "a", "pattern": "x", "gate": "x", "check": "crc64"},
         "check = 'crc64' is unknown: use one of basic_credentials, iban, luhn"),
    ],
)
def test_bad_formats_name_the_entry_the_field_and_the_fix(entry: dict[str, object], message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        parse_format(entry, "test.toml [[formats]] #1")


def test_formats_must_be_an_array_of_tables() -> None:
    with pytest.raises(PolicyError, match=r"formats must be an array of tables \(\[\[formats\]\]\)"):
        parse_formats({"kind": "x"}, "test.toml")


def test_every_shipped_format_says_what_it_is_for() -> None:
    assert len(POLICY.formats) >= 100
    assert all(len(fmt.about) >= 10 for fmt in POLICY.formats)


def test_a_prefix_format_finds_its_token_only_at_a_word_start() -> None:
    fmt = parse_format({"kind": "acme_key", "about": "Acme keys", "prefix": ["acme_"],
                        "body": "[a-z0-9]{12}"}, "test")
    pattern = fmt.compiled()
    assert pattern.search("key acme_0123456789ab used")
    assert not pattern.search("xacme_0123456789ab")
    assert not pattern.search("acme_0123456789abcdef")  # longer than the body allows


_SECRET_PIECES = st.sampled_from([
        "password=hunter22", "ghp_" + "a1B2" * 9, "AKIAIOSFODNN7EXAMPLE", "sig=abc%2Bdef%3D1234567890ab",
        "4111 1111 1111 1111", "GB82 WEST 1234 5698 7654 32", "curl -u a:b4cd3f",
        "kind: Secret\ndata:\n  k: dg==", "PDO->__construct('d', 'u', 'pw1234')",
        "pyotp.TOTP('JBSWY3DPEHPK3PXP')",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJl", "hf_" + "abcdEFGH" * 4 + "ab",
        "mysql -u root -pS3cret!", "--access-key-secret Zx9Kq2Lm8Np4Rs7Tv1Wy", "x@y.example",
        "ZXhhbXBsZS10b2tlbi0xMjM0NTY3ODkwYWJjZGVm", "Bearer ", "a1B2c3D4e5" * 4, " ", "\n", ":", "=",
        "/", "-", "'", '"', "token: ", "Authorization: Basic ", "https://u:", "@h.example/",
        "xoxb-123456789012-", "sk_live_", "Zx9Kq2Lm8Np4Rs7Tv1WyQ3",
])


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_every_gate_matches_wherever_its_rule_finds_something(data: st.DataObject) -> None:
    """The one-pass RE2 set is sound only if each gate is a superset of its rule."""
    text = "".join(data.draw(st.lists(st.one_of(_SECRET_PIECES, st.text(max_size=8)), max_size=8)))
    gates = set(DETECT.gate_hits(text.encode()))
    for order, (_rule, _gate, matcher) in enumerate(DETECT.rules):
        if any(end > start for start, end in matcher(text)):
            assert order in gates, (text, DETECT.rules[order][1])


def _every_rule_on_everything(text: str, generic: bool) -> list[tuple[str, int, int]]:
    """The definition find() must meet: every rule run on the whole text, then the earliest
    start wins an overlap (then the earlier rule)."""
    found = sorted(
        (start, order, end, rule)
        for order, (rule, _gate, matcher) in enumerate(DETECT.rules)
        if generic or rule != "high_entropy"
        for start, end in matcher(text) if end > start)
    expected: list[tuple[str, int, int]] = []
    for start, _order, end, rule in found:
        if not expected or start >= expected[-1][2]:
            expected.append((rule, start, end))
    return expected if len(text) >= 6 else []


# Found by a seeded search over joined pieces: a named span overlapping a longer one (so that
# the longer is dropped and the generic rule must be run again inside it), and generic runs
# that overlap a named span without lying inside it (so they must not be skipped).
_CHAIN_CASES = [
    "sig=abc%2Bdef%3D1234567890abx@y.examplehf_abcdEFGHabcdEFGHabcdEFGHabcdEFGHab"
    "a1B2c3D4e5a1B2c3D4e5a1B2c3D4e5a1B2c3D4e5GB82 WEST 1234 5698 7654 32",
    "a1B2c3D4e5a1B2c3D4e5a1B2c3D4e5a1B2c3D4e5/xoxb-123456789012-ZXhhbXBsZS10b2tlbi0xMjM0NTY3ODkwYWJjZGVm",
    "ZXhhbXBsZS10b2tlbi0xMjM0NTY3ODkwYWJjZGVm/x@y.exampleBearer ",
    "GB82 WEST 1234 5698 7654 32sk_live_--access-key-secret Zx9Kq2Lm8Np4Rs7Tv1Wy/AKIAIOSFODNN7EXAMPLE",
]


@settings(max_examples=500)
@given(st.text(max_size=SHORTEST_SECRET - 1) | st.text("0123456789-ABCDEFGHIJKLMNOPQRSTUVWXYZ234567",
                                                     max_size=SHORTEST_SECRET - 1))
def test_nothing_shorter_than_the_shortest_secret_is_one(text: str) -> None:
    # The walk returns such strings at once, under OTP-named keys too.
    assert not is_otp_secret(text)
    assert not [rule for rule, _gate, matcher in DETECT.rules if any(e > s for s, e in matcher(text))]


@pytest.mark.parametrize("text", _CHAIN_CASES)
def test_find_skips_the_generic_rule_only_where_that_changes_nothing(text: str) -> None:
    assert [(f.rule, f.start, f.end) for f in DETECT.find(text)] == _every_rule_on_everything(text, True)


@settings(max_examples=1000, deadline=None)
@given(st.lists(st.one_of(_SECRET_PIECES, st.text(max_size=8)), max_size=8).map("".join), st.booleans())
def test_find_equals_every_rule_run_on_everything(text: str, generic: bool) -> None:
    """find() skips generic runs inside spans a named format found (the costly rule)."""
    found = DETECT.find(text, generic=generic)
    assert [(f.rule, f.start, f.end) for f in found] == _every_rule_on_everything(text, generic)


# Runs the generic rule must judge: one-case words (what the gate and the skip pass over),
# random pieces, capitals, digits, UUIDs, and what breaks or joins runs.
_RUN_PIECES = st.one_of(
    st.text(alphabet=string.ascii_lowercase + "_-+/", min_size=1, max_size=24),
    st.text(alphabet=string.ascii_uppercase + "_-", min_size=1, max_size=24),
    st.text(alphabet=string.ascii_letters + string.digits + "+/_-=", min_size=1, max_size=16),
    # Long runs of two classes only, next to what the skip and the gate pass over.
    st.text(alphabet=string.ascii_lowercase + string.digits, min_size=20, max_size=40),
    st.text(alphabet=string.ascii_letters, min_size=20, max_size=40),
    st.sampled_from(["password_reset_requested", "ACCOUNT_LOCKED_AFTER_RETRIES", "a1B2c3D4e5" * 3,
                     "3f2504e0-4f89-41d3-9a0c-0305e82c3301", "abcdefab-abcd-abcd-abcd-abcdefabcdef",
                     "JBSWY3DPEHPK3PXPJBSWY3DP", "7", "Q", " ", "\n", "/", "=", "é", "sha256:", "https://h/"]),
)
_THRESHOLDS = (st.integers(0, 40), st.floats(0.0, 4.5))


@settings(max_examples=1000, deadline=None)
@given(st.text(alphabet=string.ascii_lowercase + "+/_=-", max_size=60)
       | st.text(alphabet=string.ascii_uppercase + "+/_=-", max_size=60), *_THRESHOLDS)
def test_a_run_with_no_digit_and_one_letter_case_never_looks_random(
        token: str, min_length: int, min_bits: float) -> None:
    """Why the generic rule may pass over such runs first (_ONE_CASE_WORDS), whatever the policy's
    thresholds: base32 needs two digits, hex a digit, the shape test two classes of character."""
    assert generic_tokens._ONE_CASE_WORDS.fullmatch(token)
    assert not looks_random(token, min_length, min_bits)


@settings(max_examples=1000, deadline=None)
@given(st.lists(_RUN_PIECES, max_size=10).map("".join), *_THRESHOLDS)
def test_the_one_case_skip_changes_no_finding(text: str, min_length: int, min_bits: float) -> None:
    fast = list(generic_token_spans(text, min_length, min_bits))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(generic_tokens, "_ONE_CASE_WORDS", re.compile(r"(?!)"))  # never matches
        slow = list(generic_token_spans(text, min_length, min_bits))
    assert fast == slow


@settings(max_examples=1000, deadline=None)
@given(st.lists(_RUN_PIECES, max_size=10).map("".join), *_THRESHOLDS)
def test_the_generic_gate_matches_wherever_the_rule_could_find_a_token(
        text: str, min_length: int, min_bits: float) -> None:
    """The gate only asks for a digit or a capital in a 20-character run; with low thresholds
    the rule finds many tokens, and each needs the gate to have matched."""
    generic = DETECT.rules.index(next(r for r in DETECT.rules if r[0] == "high_entropy"))
    if any(end > start for start, end in generic_token_spans(text, min_length, min_bits)):
        assert generic in DETECT.gate_hits(text.encode()), text


def test_long_runs_of_small_letters_do_not_wake_the_generic_rule() -> None:
    generic = DETECT.rules.index(next(r for r in DETECT.rules if r[0] == "high_entropy"))
    assert generic not in DETECT.gate_hits(b"admin\npassword_reset_requested_by_support/agent-console")
    assert generic in DETECT.gate_hits(b"password_reset_requested_by_support7")
    assert generic in DETECT.gate_hits(b"password_reset_requested_By_support")


# ------------------------------------------------------------------ checksums

def _iban(rng: random.Random, country: str) -> str:
    body = "".join(rng.choice(string.digits + string.ascii_uppercase)
                   for _ in range(IBAN_LENGTHS[country] - 4))
    number = int("".join(str(int(c, 36)) for c in body + country + "00"))
    return f"{country}{98 - number % 97:02d}{body}"


@settings(max_examples=300)
@given(st.sampled_from(sorted(IBAN_LENGTHS)), st.randoms(use_true_random=False), st.data())
def test_ibans_with_their_check_digits_pass_and_one_changed_character_fails(
        country: str, rng: random.Random, data: st.DataObject) -> None:
    iban = _iban(rng, country)
    assert iban_valid(iban) and iban_valid(" ".join(iban[i:i + 4] for i in range(0, len(iban), 4)))
    assert [f.rule for f in DETECT.find(f"pay to {iban} today")] == ["iban"]
    position = data.draw(st.integers(2, len(iban) - 1))
    digit = data.draw(st.sampled_from([d for d in string.digits if d != iban[position]])) \
        if iban[position].isdigit() else data.draw(st.sampled_from(
            [c for c in string.ascii_uppercase if c != iban[position]]))
    changed = iban[:position] + digit + iban[position + 1:]
    assert not iban_valid(changed)  # mod-97 catches every single substitution


@pytest.mark.parametrize("text", ["DE00370400440532013000", "DE8937040044053201300", "XX89370400440532013000",
                                  "DE89 3704 0044 0532 0130 01", "de89370400440532013000ü"])
def test_iban_shaped_codes_that_fail_the_check_pass_unmasked(text: str) -> None:
    assert not iban_valid(text)
    assert masked_note(f"ref {text}") == f"ref {text}"


def test_form_encoded_card_numbers_are_cards_but_phone_numbers_are_not() -> None:
    assert is_card_number("4111+1111+1111+1111")
    assert masked_note("cc=4111+1111+1111+1111&x=1") == "cc=[masked]&x=1"
    assert masked_note("call +4111111111111") == "call +4111111111111"


# ------------------------------------------------------------------ credentials inside text

@pytest.mark.parametrize(
    ("text", "stored"),
    [
        ("SQLSTATE[28000] Access denied; password=Tr0ub4dor&3",
         "SQLSTATE[28000] Access denied; password=[masked]"),
        ("login failed (pwd: Zx81!kq)", "login failed (pwd: [masked])"),
        ('payload {"secret": "s3 cr3t v@lue", "user": "bo"}', 'payload {"secret": "[masked]", "user": "bo"}'),
        ("curl -u deploy:S3cr3tPa55 https://x", "curl -u deploy:[masked] https://x"),
        ("['curl', '-u', 'svc:Pa55-w0rd', 'https://x']", "['curl', '-u', 'svc:[masked]', 'https://x']"),
        ("Server=db;User Id=sa;Password=Qw3rty!9;Database=app",
         "Server=db;User Id=sa;Password=[masked];Database=app"),
        ("jdbc:mysql://db/app?user=a&password=p4ss%21&ssl=true",
         "jdbc:mysql://db/app?user=a&password=[masked]&ssl=true"),
        ("Authorization: Token 9f8e7d6c5b4a", "Authorization: Token [masked]"),
        ("X-Api-Key: live_51Hx9", "X-Api-Key: [masked]"),
        ("Cookie: PHPSESSID=abc123; theme=dark", "Cookie: [masked]"),
        ("[password] => Hunter22\n[user] => bob", "[password] => [masked]\n[user] => bob"),
        ("DB_PASSWORD=n0t-s0-s3cret\nDB_HOST=db", "DB_PASSWORD=[masked]\nDB_HOST=db"),
        ("aliyun configure --access-key-secret Zx9Kq2Lm8N --region cn",
         "aliyun configure --access-key-secret [masked] --region cn"),
        ("mysqldump -u root -pS3cret! app", "mysqldump -u root -p[masked] app"),
        ("apiVersion: v1\nkind: Secret\ndata:\n  user: YWRtaW4=\n  pass: c2VjcmV0\ntype: Opaque",
         "apiVersion: v1\nkind: Secret\ndata:\n  user: [masked]\n  pass: [masked]\ntype: Opaque"),
    ],
)
def test_credentials_inside_text_are_masked_and_the_text_stays_readable(text: str, stored: str) -> None:
    assert masked_note(text) == stored


@pytest.mark.parametrize(
    "text",
    [
        "Access denied for user 'app'@'10.0.0.5' (using password: YES)",
        "password: [redacted]", "password=***", "password: <your-password>", "password=${DB_PASSWORD}",
        "secret: '%kernel.secret%'", "password = %s", "token: expired", "Token: invalid",
        "password reset email sent", "password_min_length: 12", "api_key_header: X-Api-Key",
        "token_ttl: 3600", "Compass: north", "the secret santa list", "pass: 5/5 tests",
    ],
)
def test_text_that_mentions_a_credential_without_holding_one_passes(text: str) -> None:
    assert masked_note(text) == text


# ------------------------------------------------------------------ the generic token rule

_WORDS = ["user", "Profile", "settings", "Tenant", "invoice", "Export", "queue", "Worker", "cache",
          "Billing", "account", "Report", "session", "Audit", "policy", "Request", "handler"]


@settings(max_examples=300)
@given(st.lists(st.sampled_from(_WORDS), min_size=4, max_size=9),
       st.sampled_from(["", "_", "-", "/"]), st.booleans())
def test_identifiers_and_paths_made_of_words_are_not_tokens(words: list[str], sep: str, camel: bool) -> None:
    name = sep.join(w.capitalize() if camel else w for w in words)
    assert masked_note(f"in {name} at line 3") == f"in {name} at line 3"


@settings(max_examples=300)
@given(st.randoms(use_true_random=False), st.integers(32, 64),
       st.sampled_from([string.ascii_letters + string.digits, string.ascii_lowercase + string.digits,
                        string.ascii_uppercase + "234567", string.ascii_letters + string.digits + "+/"]))
def test_random_tokens_of_real_alphabets_are_masked(rng: random.Random, length: int, alphabet: str) -> None:
    token = "".join(rng.choice(alphabet) for _ in range(length))
    # By design these shapes read as paths: "/a.../b..." after a space, "words/.../words".
    assume(not token.startswith("/") and not is_relative_path(token))
    if not (looks_random(token, 32, 3.5)):
        # A draw can be degenerate (few distinct characters); the rule may pass it, not mask half.
        assert masked_note(f"value {token} end") == f"value {token} end"
        return
    assert token not in masked_note(f"value {token} end")


_TOKEN_PIECES = st.one_of(
    st.text(alphabet=string.ascii_letters + string.digits + "+/_-=", min_size=1, max_size=12),
    st.sampled_from(["Camel", "Case", "HTTP", "Id", "v2", "2024", "xY", "ABCdef", "aB"]),
)


@settings(max_examples=1000)
@given(st.lists(_TOKEN_PIECES, min_size=1, max_size=10).map("".join), st.sampled_from([3.0, 3.5, 4.0]))
def test_the_ascii_shape_fast_path_decides_as_the_readable_measures_do(token: str, bits: float) -> None:
    # The fast path derives transitions and segments from a class string; the readable one
    # from class_transitions and mean_segment. Tokens mix random runs with CamelCase words
    # and capitals, where the segment arithmetic ("ABCdef" is "AB" + "Cdef") could go wrong.
    assert _ascii_shape_is_random(token, bits) == _shape_is_random(token, bits)


@settings(max_examples=500)
@given(st.text(min_size=1, max_size=300))
def test_entropy_from_the_table_is_bit_identical_to_the_formula(text: str) -> None:
    from collections import Counter
    from math import log2

    length = len(text)
    assert shannon_bits(text) == -sum(n / length * log2(n / length) for n in Counter(text).values())


@pytest.mark.parametrize(
    "text",
    [
        "https://docs.google.com/document/d/1AbCdEfGhIjKlMnOpQrStUvWxYz0123456789abcdefg/edit",
        "merged commit 3f9a2b7c1d0e4f5a6b7c8d9e0f1a2b3c4d5e6f7a into main",
        "docker pull registry/app@sha256:6c35f855637bcfc00951655dc4422a05a825e31e75705c0803c3d5da063581d9",
        "integrity sha512-Kl0xOKo4YY2P+YbTWsQfKgVMH7FoJBSE3S9uh1j8sQTR+OOiCKHer3ma7eeb9ZGuKl0xOKo4YY2P+Yb==",
        "expected sha256 6c35f855637bcfc00951655dc4422a05a825e31e75705c0803c3d5da063581d9, "
        "got 8d853eced2634d9ab1c689b8b45ed841be034c797339412271885cc80eb30a33",
        "/home/app/.cache/pip/wheels/3f/a1/9b/0f8e2c4d1a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d/x.whl",
        "trace Root=1-e571b488-11421ec919eff202484c4379;Parent=d6ed2b190edd4c5b",
        "multipart/form-data; boundary=----WebKitFormBoundaryFVS42nprgOA1D203",
        "VGhlIHF1aWNrIGJyb3duIGZveCBqdW1wcyBvdmVyIHRoZSBsYXp5IGRvZw==",
        "request 3f2504e0-4f89-41d3-9a0c-0305e82c3301-3f2504e0-4f89-41d3-9a0c-0305e82c3302",
    ],
)
def test_paths_digests_ids_and_encoded_text_pass(text: str) -> None:
    assert masked_note(text) == text


# ------------------------------------------------------------------ the fast path

@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(
    st.sampled_from(["password=", "hunter22", "ghp_", "a1B2c3D4e5" * 4, "commit ", "sha256:",
                     "https://h/", "?code=", " ", "\n", "kind: Secret\n", "data:\n  k: dg==",
                     "-u ", "a:b4cd3f", "4111 1111 1111 1111", "@", "x.example", "--token ", "Zx9Kq2Lm8N"]),
    st.text(max_size=6)).map(lambda parts: "".join(parts)), max_size=5))
def test_a_clean_joined_scan_means_every_string_is_clean(texts: list[str]) -> None:
    metadata = {f"k{i}": text for i, text in enumerate(texts)}
    if MASKER._is_clean(metadata):
        assert all(not DETECT.find(text) for text in texts)
        assert MASKER.mask(metadata) == metadata
