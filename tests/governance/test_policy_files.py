"""Policy files: the shipped defaults come from the installed package, a path overrides them, and
a file that sets nothing yields exactly the dataclass defaults (each default is written once)."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from governance.errors import PolicyError
from governance.masking_policy import MaskingPolicy, load_masking_policy, parse_masking_policy
from governance.policy_files import read_policy_file, shipped_policy
from jobs.report_policy import ReportsPolicy, parse_reports_policy
from jobs.retention_policy import RetentionPolicy, parse_retention_policy


@pytest.mark.parametrize(("parse", "policy_class"), [
    (parse_masking_policy, MaskingPolicy),
    (parse_retention_policy, RetentionPolicy),
    (parse_reports_policy, ReportsPolicy),
])
def test_a_file_that_sets_nothing_gives_the_dataclass_defaults(
        parse: Callable[[bytes, str], Any], policy_class: type) -> None:
    data = b"version = 1\n"
    expected = dataclasses.replace(policy_class(), sha256=hashlib.sha256(data).hexdigest(), source="x")
    assert parse(data, "x") == expected


@pytest.mark.parametrize("name", ["masking.toml", "retention.toml", "reports.toml"])
def test_the_shipped_policies_are_read_from_the_installed_package(name: str) -> None:
    data, source = read_policy_file(None, name)
    assert data == shipped_policy(name)
    assert Path(source).name == name and Path(source).is_file()


def test_a_path_overrides_the_shipped_policy(tmp_path: Path) -> None:
    own = tmp_path / "masking.toml"
    own.write_text('version = 1\nreplacement = "***"\n')
    assert load_masking_policy(own).replacement == "***"
    assert load_masking_policy().replacement == "[masked]"


def test_an_unreadable_path_names_the_path_and_the_fix(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match=r"missing\.toml: cannot be read .*check the path"):
        read_policy_file(tmp_path / "missing.toml", "masking.toml")
