"""Masking: every detector with true positives and near misses, keys, emails, limits."""

from __future__ import annotations

import copy
import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from governance.checksums import card_issuer, luhn_valid
from governance.hashing import Keyring, email_hash
from governance.key_names import key_words
from governance.masking import DEPTH_LIMIT, TRUNCATED, Masker
from governance.masking_policy import MaskingPolicy, load_masking_policy

POLICY = load_masking_policy()
KEYRING = Keyring.from_json(
    '[{"id": "k1", "key": "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"}]', "k1")
MASKER = Masker(POLICY, KEYRING)
DETECT = MASKER.detectors

GITHUB = "ghp_" + "a1B2c3D4e5" * 4
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
PRIVATE_KEY = "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA\n-----END RSA PRIVATE KEY-----"
SECRETS = {
    "private_key": [PRIVATE_KEY, "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk"],
    "jwt": [JWT, f"token={JWT}&x=1"],
    "bearer": ["Bearer abcdefghijklmnop.qrs", "authorization: bearer 0123456789abcdef"],
    "basic_auth": ["Basic dXNlcjpwYXNzd29yZA==", "basic YWxhZGRpbjpvcGVuc2VzYW1l"],
    "aws_access_key": ["AKIAIOSFODNN7EXAMPLE", "key ASIAY34FZKBOKMUTVV7A used"],
    "github_token": [GITHUB, "github_pat_11ABCDEFG0123456789abcdefghijklmnopq"],
    "gitlab_token": ["glpat-abcdefghij0123456789"],
    "slack_token": ["xoxb-1234567890-abcdefghij"],
    "slack_webhook": ["https://hooks.slack.com/services/T000/B000/XXXX"],
    "otpauth": ["otpauth://totp/ACME:alice?secret=JBSWY3DPEHPK3PXP&issuer=ACME"],
    "url_credentials": ["mysql://app:s3cr3t@db:3306/x", "see https://user:pa55@example.com/path"],
    "card_number": ["4111 1111 1111 1111", "5555-5555-5555-4444", "378282246310005", "6011111111111117"],
    "email": ["alice@example.com", "contact bob.smith+tag@mail.example.co.uk today"],
    "high_entropy": ["Zm9vYmFyYmF6cXV4UXV1eDEyMzQ1Njc4OTBBQkNE",
                     "0123456789abcdef0123456789abcdef0123456789abcdef"],
}
NEAR_MISSES = [
    "synced to 3b2bf48a3921cae28ae7a028809805ccfce96e54",  # a git commit id (40 lower-case hex)
    "3f2504e0-4f89-41d3-9a0c-0305e82c3301",       # a UUID request id
    "0123456789abcdef0123456789abcdef",            # a 32-hex correlation id (PHP bin2hex(16))
    "the quick brown fox jumps over the lazy dog",
    "basic subscription plan",
    "bearer of good news",
    "order 12345678901234567",                      # a long id: no issuer prefix
    "4111 1111 1111 1112",                          # Visa prefix, fails Luhn
    "1234567890123456",                             # passes nothing
    "internationalization_and_localization_teams",  # a long identifier
    "ThisIsAVeryLongCamelCaseIdentifierName",       # no digits
    "/var/www/html/storage/logs/laravel-2026-11-24.log",
    "https://example.com/path?x=1",
    "user@localhost",                               # no TLD
    "auth.login.attempt",
]


@pytest.mark.parametrize(("rule", "text"), [(r, t) for r, texts in SECRETS.items() for t in texts])
def test_each_detector_finds_its_secret(rule: str, text: str) -> None:
    rules = [f.rule for f in DETECT.find(text)]
    assert rule in rules, rules


@pytest.mark.parametrize("text", NEAR_MISSES)
def test_near_misses_pass_untouched(text: str) -> None:
    assert DETECT.find(text) == []
    assert MASKER.mask({"value": text}) == {"value": text}


@pytest.mark.parametrize(("rule", "text"), [(r, t) for r, texts in SECRETS.items() for t in texts])
def test_masked_output_never_holds_the_secret(rule: str, text: str) -> None:
    masked = MASKER.mask({"innocent": text})
    secret_part = text.split()[-1] if rule in {"bearer", "basic_auth"} else text
    assert secret_part not in json.dumps(masked)
    assert {"rule": rule, "path": "innocent"} in masked["_masked"]


def test_disabled_detectors_do_not_run() -> None:
    without = MaskingPolicy(**{**POLICY.__dict__,
                               "formats": tuple(f for f in POLICY.formats if f.kind != "jwt"),
                               "detectors": POLICY.detectors - {"high_entropy"}})
    assert Masker(without).detectors.find(JWT) == []
    assert [f.rule for f in DETECT.find(JWT)] == ["jwt"]


@pytest.mark.parametrize(
    ("digits", "issuer"),
    [("4111111111111111", "visa"), ("5555555555554444", "mastercard"), ("2223003122003222", "mastercard"),
     ("378282246310005", "amex"), ("6011111111111117", "discover"), ("3530111333300000", "jcb"),
     ("30569309025904", "diners"), ("6200000000000005", "unionpay"), ("9111111111111111", None)],
)
def test_card_issuers(digits: str, issuer: str | None) -> None:
    assert card_issuer(digits) == issuer
    if issuer:
        assert luhn_valid(digits)


@pytest.mark.parametrize(
    ("key", "words"),
    [("X-Api-Key", ("x", "api", "key")), ("totpSecret", ("totp", "secret")),
     ("APIKey", ("api", "key")), ("user_password", ("user", "password")), ("PHPSESSID", ("phpsessid",))],
)
def test_key_words(key: str, words: tuple[str, ...]) -> None:
    assert key_words(key) == words


@pytest.mark.parametrize(
    "key",
    ["Password", "user_password", "x-api-key", "totpSecret", "authorization", "Cookie", "session_id",
     "secret", "token", "csrf_token", "PHPSESSID", "client_secret", "cardNumber", "credentials"],
)
def test_denied_keys_are_masked_whatever_the_value(key: str) -> None:
    assert MASKER.mask({key: "plain words"}) == {
        key: "[masked]", "_masked": [{"rule": "key", "path": key}]}
    assert MASKER.mask({key: {"nested": 1}})[key] == "[masked]"


@pytest.mark.parametrize(
    "key", ["session_hash", "token_type", "password_changed_at", "tokens_used", "passenger", "keyboard"])
def test_allowed_and_innocent_keys_pass(key: str) -> None:
    assert MASKER.mask({key: "value"}) == {key: "value"}


def test_absent_values_under_denied_keys_are_kept() -> None:
    assert MASKER.mask({"password": None, "token": "", "has_token": True}) == {
        "password": None, "token": "", "has_token": True}


def test_a_sha256_digest_stored_as_session_hash_passes() -> None:
    digest = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
    assert MASKER.mask({"session_hash": digest, "payload_sha256": digest}) == {
        "session_hash": digest, "payload_sha256": digest}
    assert MASKER.mask({"value": digest})["value"] == "[masked]"  # the same digest under an innocent key


@pytest.mark.parametrize(
    ("value", "masked"),
    [("JBSWY3DPEHPK3PXP", True), ("123456", True), (123456, True), ("abcd-efgh-ijkl", True),
     (True, False), (False, False), ("enabled", False)],
)
def test_otp_keys(value: object, masked: bool) -> None:
    for key in ("otp", "totp_code", "mfa", "2fa_backup", "recovery_code"):
        result = MASKER.mask({key: value})
        assert (result[key] == "[masked]") is masked, (key, value)


def test_whole_value_email_becomes_the_php_hash_keys() -> None:
    expected = email_hash("alice@example.com", KEYRING)
    assert MASKER.mask({"email": " Alice@Example.COM "}) == {
        **expected.as_metadata(), "_masked": [{"rule": "email", "path": "email"}]}
    owner = MASKER.mask({"owner_email": "alice@example.com"})
    assert owner["owner_email_hash"] == expected.hash and "owner_email" not in owner


def test_embedded_email_becomes_a_findable_hash_and_without_keys_a_mask() -> None:
    digest = email_hash("alice@example.com", KEYRING).hash
    assert MASKER.mask({"m": "from alice@example.com!"})["m"] == f"from [email_hash:{digest}]!"
    plain = Masker(POLICY, None)
    assert plain.mask({"email": "alice@example.com", "m": "to alice@example.com"}) == {
        "email": "[masked]", "m": "to [masked]",
        "_masked": [{"rule": "email", "path": "email"}, {"rule": "email", "path": "m"}]}


def test_paths_name_nested_keys_and_list_positions() -> None:
    masked = MASKER.mask({"a": {"b": [{"ok": 1}, {"c": JWT}]}})
    assert masked["_masked"] == [{"rule": "jwt", "path": "a.b[1].c"}]


def test_record_masked_can_be_switched_off() -> None:
    quiet = Masker(MaskingPolicy(**{**POLICY.__dict__, "record_masked": False}), KEYRING)
    assert quiet.mask({"password": "x"}) == {"password": "[masked]"}


def test_limits_have_defined_results() -> None:
    small = MaskingPolicy(**{**POLICY.__dict__, "max_depth": 3, "max_string_chars": 10,
                             "max_total_chars": 40})
    masker = Masker(small, KEYRING)
    assert masker.mask({"d": {"e": {"f": {"g": 1}}}})["d"]["e"]["f"] == DEPTH_LIMIT
    assert masker.mask({"s": "x" * 50})["s"] == "x" * 10 + TRUNCATED
    big = masker.mask({f"k{i}": "vvvvvvvv" for i in range(20)})
    assert big["_truncated"] > 0 and len(big) < 22


def test_odd_values_have_defined_results() -> None:
    cyclic: list[Any] = []
    cyclic.append(cyclic)
    result = MASKER.mask({
        1: "int key", None: "none key", b"k": b"bytes \xff", "nan": math.nan, "inf": -math.inf,
        "set": {3, 1}, "obj": object.__new__(type("Leaky", (), {"__str__": lambda s: f"key={JWT}"})),
        "cyclic": cyclic,
    })
    assert result["1"] == "int key" and result[""] == "none key" and result["k"] == "bytes \ufffd"
    assert result["nan"] is None and result["inf"] is None and result["set"] == [1, 3]
    assert result["obj"] == "key=[masked]"
    assert JWT not in json.dumps(result)


def test_the_callers_object_is_never_mutated() -> None:
    original = {"password": "x", "nested": {"token": "y", "list": [JWT]}, "email": "a@b.co"}
    before = copy.deepcopy(original)
    MASKER.mask(original)
    assert original == before


# ---------------------------------------------------------------- properties

PLANTED = [t for texts in SECRETS.values() for t in texts if "\n" not in t]
json_like = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300)
@given(json_like)
def test_masking_never_raises(value: object) -> None:
    MASKER.mask(value)


def _plant(value: Any, secret: str, where: int) -> Any:
    if isinstance(value, dict):
        return {**value, f"innocent{where}": f"before {secret} after"}
    return {"wrapped": value, "innocent": secret}


@settings(max_examples=300)
@given(json_like, st.sampled_from(PLANTED), st.integers(0, 5))
def test_no_planted_secret_survives(value: object, secret: str, where: int) -> None:
    masked = json.dumps(MASKER.mask(_plant(value, secret, where)), ensure_ascii=False)
    core = secret.split()[-1] if secret.lower().startswith(("bearer", "basic", "authorization")) else secret
    for token in (core, *[w for w in secret.split() if len(w) > 15]):
        assert token not in masked


class FullWalkOnly(Masker):
    """The same masker without its fast path, to check the fast path changes no result."""

    def _is_clean(self, metadata: Any, odd: list[object] | None = None) -> bool:
        return False


FULL_WALK = FullWalkOnly(POLICY, KEYRING)


@settings(max_examples=300)
@given(json_like, st.sampled_from([None, *PLANTED]), st.integers(0, 5))
def test_the_fast_path_agrees_with_the_full_walk(value: object, secret: str | None, where: int) -> None:
    metadata = value if secret is None else _plant(value, secret, where)
    assert MASKER.mask(metadata) == FULL_WALK.mask(metadata)
    assert MASKER.mask(copy.deepcopy(metadata), owned=True) == FULL_WALK.mask(metadata)
    assert MASKER.mask_plain(copy.deepcopy(metadata))[0] == FULL_WALK.mask(metadata)


def test_owned_mode_returns_clean_metadata_uncopied_and_masks_the_rest() -> None:
    clean = {"a": [1, {"b": "c"}]}
    assert MASKER.mask(clean, owned=True) is clean
    assert MASKER.mask(clean) is not clean and MASKER.mask(clean) == clean
    dirty = {"password": "x"}
    assert MASKER.mask(dirty, owned=True) is not dirty and dirty == {"password": "x"}
