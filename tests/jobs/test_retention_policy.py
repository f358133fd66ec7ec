"""policies/retention.toml: the shipped file loads; bad values are refused by name."""

from __future__ import annotations

import pytest

from governance.errors import PolicyError
from jobs.retention_policy import load_retention_policy, parse_retention_policy


def test_the_shipped_policy_loads() -> None:
    policy = load_retention_policy()
    assert policy.days == 30 and policy.schedule_times == ("03:15",)
    assert policy.prune.min_batch_size <= policy.prune.batch_size <= policy.prune.max_batch_size
    assert len(policy.sha256) == 64


@pytest.mark.parametrize(("text", "message"), [
    ("version = 2", "version = 2 is not supported: use 1"),
    ("version = 1\n[retention]\ndays = 0", "[retention]: days = 0 is invalid: a positive integer"),
    ("version = 1\n[retention]\ndays = '30'", "days = '30' is invalid: a int is required"),
    ("version = 1\n[prune]\nbatch_size = 10\nmin_batch_size = 20",
     "batch_size = 10 is outside min_batch_size = 20"),
    ("version = 1\n[prune]\npause_ms = -1", "pause_ms = -1 is invalid: 0 or a positive integer"),
    ("version = 1\n[schedule]\nretention = ['3:15']", "retention holds '3:15': 24-hour \"HH:MM\""),
    ("version = 1\n[schedule]\ntimezone = 'Mars/Olympus'", "timezone = 'Mars/Olympus' is invalid"),
    ("version = 1\n[replicas]\nurls = ['postgres://u:secret@h/db']", "urls holds postgres://u:<hidden>@h/db"),
    ("version = 1\n[partitions]\nbackoff_seconds = 0", "backoff_seconds = 0.0 is invalid"),
    ("version = [", "not valid TOML"),
])
def test_bad_values_name_the_file_key_and_fix(text: str, message: str) -> None:
    with pytest.raises(PolicyError) as caught:
        parse_retention_policy(text.encode(), "retention.toml")
    assert message in str(caught.value) and str(caught.value).startswith("retention.toml")
    assert "secret" not in str(caught.value)


def test_replica_passwords_stay_out_of_the_repr() -> None:
    policy = parse_retention_policy(b"version = 1\n[replicas]\nurls = ['mysql://u:hunter2@r1/db']")
    assert policy.prune.replica_urls == ("mysql://u:hunter2@r1/db",)
    assert "hunter2" not in repr(policy)
