"""Masking policy files: the shipped one loads, bad ones fail naming the key and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from governance.errors import PolicyError
from governance.masking_policy import DETECTORS, load_masking_policy, parse_masking_policy


def test_shipped_policy_loads_with_every_detector() -> None:
    policy = load_masking_policy()
    assert policy.detectors == frozenset(DETECTORS)
    assert {"password", "authorization", "session_id"} <= policy.deny_keys
    assert "session_hash" in policy.allow_keys
    assert len(policy.sha256) == 64


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("version = 2", "version = 2 is not supported: use 1"),
        ("version = 1\nreplacement = 5", "replacement = 5 is invalid: a str is required"),
        ("version = 1\n[limits]\nmax_depth = 0", r"\[limits\]: max_depth = 0 is invalid: a positive integer"),
        ("version = 1\n[keys]\ndeny = ['ok', '']", r"\[keys\]: deny holds ''"),
        ("version = 1\n[detectors]\nenabled = ['email', 'telepathy']",
         "holds 'telepathy': known detectors are"),
        ("version = 1\n[detectors]\nentropy_min_bits = 9", "entropy_min_bits = 9.0 is invalid"),
        ("version = 1\n[email]\nmode = 'encrypt'", "mode = 'encrypt' is invalid: use 'hash' or 'mask'"),
        ("version = ", "not valid TOML"),
    ],
)
def test_bad_policies_name_the_key_the_value_and_the_fix(text: str, message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        parse_masking_policy(text.encode(), "test.toml")


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="cannot be read"):
        load_masking_policy(tmp_path / "nope.toml")
