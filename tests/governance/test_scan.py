"""The leak scan's pure core: findings, masked previews and fixes, on rows made in memory."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from governance.masking import Masker
from governance.masking_policy import load_masking_policy
from governance.scan import Scanner, ScanTally

SCANNER = Scanner(Masker(load_masking_policy()))


@dataclass(frozen=True)
class Row:
    id: int
    metadata_text: str | None
    event_key: str = "auth.login.attempt"
    route_name: str | None = "admins.list"
    user_agent: str | None = "Mozilla/5.0"
    request_id: str | None = "3f2b8c4e-9d1a-4b7e-8c2f-1a2b3c4d5e6f"


@pytest.mark.parametrize(("metadata", "expected"), [
    ('{"password":"hunter2"}', [("metadata", "password", "key")]),
    ('{"a":{"b":[{"client_secret":"x1"}]}}', [("metadata", "a.b[0].client_secret", "key")]),
    ('{"note":"call me at bob@example.org"}', [("metadata", "note", "email")]),
    ('{"url":"https:\\/\\/u:p4ss@host.example\\/x"}', [("metadata", "url", "url_credentials")]),
    ('{"totp":"JBSWY3DPEHPK3PXP"}', [("metadata", "totp", "otp")]),
    ('{"card":"4111 1111 1111 1111"}', [("metadata", "card", "card_number")]),
    ('["ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789"]', [("metadata", "[0]", "github_token")]),
])
def test_planted_secret_is_found_with_its_path_and_kind(metadata: str,
                                                        expected: list[tuple[str, ...]]) -> None:
    findings = SCANNER.scan(Row(1, metadata))
    assert [(f.column, f.path, f.kind) for f in findings] == expected
    assert all(f.row_id == 1 for f in findings)


@pytest.mark.parametrize("metadata", [
    None,
    '{"target_id":3,"ok":true,"ratio":0.5}',
    '{"name":"Zo\\u00eb","path":"a\\/b","emoji":"\\ud83d\\ude00"}',
    '{"email_hash":"dbd64f6ac7c11c943fbf0964ec329bac84d7ef7553121c7fdbd906a28f63decf","email_hash_key_id":"k1"}',
    '{"correlation_id":"0123456789abcdef0123456789abcdef"}',
    '{"password":"[masked]","_masked":[{"rule":"key","path":"password"}]}',
    '{"password":"","has_password":true,"token_type":"bearer"}',
])
def test_clean_and_already_masked_metadata_has_no_finding(metadata: str | None) -> None:
    assert SCANNER.scan(Row(1, metadata)) == []


def test_free_text_columns_are_scanned() -> None:
    row = Row(5, None, user_agent="bot/1 Bearer abcdefghijklmnopqrstuvwx", route_name="alice@example.com")
    assert [(f.column, f.path, f.kind) for f in SCANNER.scan(row)] == [
        ("route_name", "$", "email"), ("user_agent", "$", "bearer")]


def test_unreadable_metadata_is_counted_not_guessed() -> None:
    tally = ScanTally()
    assert [SCANNER.scan_counted(row, tally) for row in (Row(1, "{not json"), Row(2, "{}"))] == [[], []]
    assert (tally.rows, tally.unreadable_metadata, tally.first_id, tally.last_id) == (2, 1, 1, 2)


def test_fix_keeps_the_writers_masked_list_and_adds_its_own() -> None:
    row = Row(3, '{"password":"[masked]","token":"t0k3n","_masked":[{"rule":"key","path":"password"}]}')
    fix = SCANNER.fix(row)
    assert fix is not None
    assert fix.values["metadata"] == {"password": "[masked]", "token": "[masked]", "_masked": [
        {"rule": "key", "path": "password"}, {"rule": "key", "path": "token"}]}
    assert SCANNER.fix(Row(4, '{"ok":1}')) is None


_SECRET_CHARS = st.text(alphabet="abcdefghijkLMNOPQRSTUV0123456789", min_size=8, max_size=40)


@settings(max_examples=200, deadline=None)
@given(secret=_SECRET_CHARS, key=st.sampled_from(["password", "api_key", "session_id", "X-Auth-Token"]),
       nest=st.integers(0, 3))
def test_previews_never_hold_the_secret_and_fixing_leaves_nothing(secret: str, key: str, nest: int) -> None:
    value: object = {key: secret}
    for _ in range(nest):
        value = {"outer": [value]}
    row = Row(9, json.dumps(value))
    findings = SCANNER.scan(row)
    assert findings, "a denied key with a value is always a finding"
    assert all(secret not in f.preview for f in findings)
    fix = SCANNER.fix(row)
    assert fix is not None
    fixed = Row(9, json.dumps(fix.values["metadata"]))
    assert SCANNER.scan(fixed) == []
    assert secret not in fixed.metadata_text  # type: ignore[operator]


@settings(max_examples=200, deadline=None)
@given(token=st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789", min_size=36,
                     max_size=60), prefix=st.text(alphabet="abc xyz.", max_size=20))
def test_detector_previews_mask_the_token_inside_text(token: str, prefix: str) -> None:
    text = f"{prefix} ghp_{token}"
    findings = SCANNER.scan(Row(1, json.dumps({"note": text})))
    assert [f.kind for f in findings] == ["github_token"]
    assert token not in findings[0].preview and "[masked]" in findings[0].preview
