"""PHP-compatible hashing (docs/php-compat.md §3), against vectors from the specification."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from governance.errors import ConfigError
from governance.hashing import (
    EMAIL_HASH_ALGO,
    Keyring,
    decode_key,
    derive_email_key,
    email_hash,
    normalise_email,
    session_hash,
)

ROOT_HEX = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
KEYRING = Keyring.from_json(f'[{{"id": "k1", "key": "{ROOT_HEX}"}}]', "k1")
# Computed by PHP's hash_hmac on this machine (docs/php-compat.md §6).
PHP_VECTOR = "dbd64f6ac7c11c943fbf0964ec329bac84d7ef7553121c7fdbd906a28f63decf"


@pytest.mark.parametrize("email", ["Alice@Example.COM", "  alice@example.com\n", "\t\0alice@EXAMPLE.com\x0b"])
def test_email_hash_matches_the_php_vector(email: str) -> None:
    result = email_hash(email, KEYRING)
    assert (result.hash, result.key_id, result.algo) == (PHP_VECTOR, "k1", EMAIL_HASH_ALGO)


def test_derivation_step_by_step_from_the_specification() -> None:
    root = bytes.fromhex(ROOT_HEX)
    okm = hmac.new(root, b"telemetry:email_hash:v1\x01", hashlib.sha256).digest()
    assert derive_email_key(root) == okm
    expected = hmac.new(okm, b"alice@example.com", hashlib.sha256).hexdigest()
    assert expected == PHP_VECTOR


def test_lower_casing_is_ascii_only_like_php() -> None:
    assert normalise_email(" ÉLODIE@Example.com ") == "Élodie@example.com"


def test_metadata_keys_are_the_php_names() -> None:
    assert email_hash("a@b.co", KEYRING).as_metadata() == {
        "email_hash": email_hash("a@b.co", KEYRING).hash,
        "email_hash_key_id": "k1",
        "email_hash_algo": "hmac-sha256/hkdf-v1",
    }


def test_rotation_uses_the_active_key_and_old_keys_still_hash() -> None:
    ring = Keyring.from_json(
        f'[{{"id": "old", "key": "{"ab" * 32}"}}, {{"id": "new", "key": "{ROOT_HEX}"}}]', "new")
    assert email_hash("alice@example.com", ring).hash == PHP_VECTOR
    assert email_hash("alice@example.com", ring, key_id="old").hash != PHP_VECTOR


@pytest.mark.parametrize(
    ("text", "expected"),
    [(ROOT_HEX, bytes.fromhex(ROOT_HEX)), ("x" * 40, b"x" * 40), ("abc", b"abc"),
     ("ABCDEF12", b"\xab\xcd\xef\x12")],
)
def test_keys_are_hex_decoded_only_when_all_hex(text: str, expected: bytes) -> None:
    assert decode_key(text) == expected


@pytest.mark.parametrize(
    ("raw", "active", "message"),
    [
        ("not json", "k1", "CRYPTO_KEYS is not JSON"),
        ("[]", "k1", "non-empty JSON list"),
        ('[{"id": "k1"}]', "k1", r'CRYPTO_KEYS\[0\] must be an object'),
        ('[{"id": "k1", "key": "abcd"}]', "k1", r"is 2 bytes: at least 32"),
        (f'[{{"id": "k1", "key": "{ROOT_HEX}"}}]', "k9", "CRYPTO_ACTIVE_KEY_ID='k9' is not in CRYPTO_KEYS"),
    ],
)
def test_bad_keyrings_are_refused_with_the_fix(raw: str, active: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        Keyring.from_json(raw, active)
    assert ROOT_HEX not in str(caught.value)


def test_keys_never_show_in_reprs() -> None:
    assert ROOT_HEX not in repr(KEYRING) and "0011" not in repr(KEYRING) + str(KEYRING.active_key)


def test_keyring_from_env_is_optional() -> None:
    assert Keyring.from_env({}) is None
    ring = Keyring.from_env({"CRYPTO_KEYS": f'[{{"id": "k1", "key": "{ROOT_HEX}"}}]',
                             "CRYPTO_ACTIVE_KEY_ID": "k1"})
    assert ring is not None and ring.active_id == "k1"


def test_session_hash_is_plain_sha256_hex() -> None:
    assert session_hash("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


@given(st.emails())
def test_hash_ignores_case_and_php_trim_characters(email: str) -> None:
    assert email_hash(f" \t{email.upper()}\n", KEYRING).hash == email_hash(email.lower(), KEYRING).hash
