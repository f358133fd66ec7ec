"""policies/reports.toml: the shipped file loads; bad values are refused naming key and value."""

from __future__ import annotations

import pytest

from governance.errors import PolicyError
from jobs.report_policy import ReportsPolicy, load_reports_policy, parse_reports_policy


def test_the_shipped_policy_loads() -> None:
    policy = load_reports_policy()
    assert (policy.weekday, policy.time, policy.timezone, policy.grace_hours) == ("mon", "06:00", "UTC", 26)
    assert len(policy.sha256) == 64 and policy.source.endswith("reports.toml")


def test_an_empty_file_gives_the_defaults() -> None:
    policy = parse_reports_policy(b"version = 1\n", "empty.toml")
    defaults = ReportsPolicy()
    assert (policy.weekday, policy.scan_batch_size) == (defaults.weekday, defaults.scan_batch_size)


@pytest.mark.parametrize(("body", "words"), [
    ('[schedule]\nweekday = "monday"', "weekday = 'monday' is invalid: one of mon, tue"),
    ('[schedule]\ntime = "6:00"', "time = '6:00' is invalid"),
    ('[schedule]\ntimezone = "Mars/Olympus"', "timezone = 'Mars/Olympus' is invalid: an IANA name"),
    ("[retention]\ngrace_hours = 0", "grace_hours"),
    ('[scan]\nbatch_size = "big"', "batch_size = 'big' is invalid"),
])
def test_bad_values_name_the_file_table_key_and_value(body: str, words: str) -> None:
    with pytest.raises(PolicyError) as caught:
        parse_reports_policy(f"version = 1\n{body}\n".encode(), "reports.toml")
    assert "reports.toml [" in str(caught.value) and words in str(caught.value)
