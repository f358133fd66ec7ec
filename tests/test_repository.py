"""Checks on the repository itself: the README's commands are the ones CI runs."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def readme_commands() -> list[str]:
    lines = (ROOT / "README.md").read_text().splitlines()
    return [line.strip() for line in lines[:10] if line.startswith("    ")]


def test_readme_opens_with_the_two_fresh_machine_commands() -> None:
    run, test = readme_commands()
    assert "flask --app trace_service run" in run
    assert test.endswith("python -m pytest")


def test_ci_runs_exactly_the_readme_test_command() -> None:
    _, test = readme_commands()
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert test in ci_lines


# ---------------------------------------------------------------- no SQL writes audit_logs

import ast  # noqa: E402
import re  # noqa: E402

from governance.sql_targets import protected_writes  # noqa: E402

PROTECTED = frozenset({"audit_logs"})
# The guard's own tests must spell out the writes they check are refused.
EXEMPT = {
    "tests/governance/test_sql_targets.py",
    "tests/governance/test_audit_guard.py",
    "tests/governance/test_grants.py",
    "tests/test_repository.py",
    "bench/guard.py",  # times the guard on a write it must refuse
    "tests/trace_service/http/test_counters.py",  # a refused write, to see the block counted and persisted
    "tests/support/audit_table.py",  # plants the PHP side's table for tests that prove it untouched
}
SQL_START = re.compile(
    r"(?is)^\s*(?:/\*.*?\*/\s*|--[^\n]*\n\s*)*(?:/\*[M!]|INSERT|REPLACE|UPDATE|DELETE|TRUNCATE|"
    r"ALTER|DROP|RENAME|LOAD|CREATE|WITH|SELECT|PREPARE|EXECUTE|CALL|LOCK|GRANT|SET|OPTIMIZE)\b"
)
CODE_SUFFIXES = {".py", ".sql", ".mako", ".ini", ".cfg", ".toml"}


def sql_strings(path: Path, text: str) -> list[str]:
    """The texts in a file that could be SQL: Python string literals, or the whole file."""
    if path.suffix != ".py":
        return [text]
    strings = []
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            strings.append(node.value)
        elif isinstance(node, ast.JoinedStr):  # f-strings: the literal parts, joined
            strings.append("".join(v.value for v in node.values
                                   if isinstance(v, ast.Constant) and isinstance(v.value, str)))
    return strings


def audit_writes_in(path: Path, text: str) -> list[str]:
    """Every SQL text in the file that would write audit_logs."""
    return [s for s in sql_strings(path, text)
            if "audit_logs" in s.lower() and SQL_START.match(s) and protected_writes(s, PROTECTED)]


def project_files() -> list[Path]:
    skip = {".venv", ".git", "__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache",
            ".hypothesis", "instance", "build", "dist"}
    return [p for p in ROOT.rglob("*")
            if p.is_file() and p.suffix in CODE_SUFFIXES and not skip & set(p.relative_to(ROOT).parts)]


def test_no_project_code_writes_audit_logs() -> None:
    offenders = {}
    for path in project_files():
        relative = path.relative_to(ROOT).as_posix()
        if relative in EXEMPT or relative.endswith(".egg-info"):
            continue
        found = audit_writes_in(path, path.read_text(encoding="utf-8", errors="replace"))
        if found:
            offenders[relative] = [s[:80] for s in found]
    assert offenders == {}


@pytest.mark.parametrize(
    ("source", "found"),
    [
        ('sql = "DELETE FROM audit_logs WHERE id < 5"', 1),
        ('conn.execute(text(f"INSERT INTO {schema}.audit_logs VALUES (1)"))', 1),
        ('q = """\n  /* purge */ TRUNCATE audit_logs\n"""', 1),
        ('q = "SELECT * FROM audit_logs"', 0),
        ('doc = "telemetry must never write audit_logs"', 0),
    ],
)
def test_the_repository_check_finds_planted_writes(source: str, found: int) -> None:
    assert len(audit_writes_in(Path("planted.py"), source)) == found


# ---------------------------------------------------------------- packaging

import configparser  # noqa: E402

# Folders of the checkout and the package each is installed as (setup.cfg's package_dir).
INSTALLED_AS = {"policies": "governance.policies", "migrations": "trace_service.migrations"}


def _setup_cfg() -> configparser.ConfigParser:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    return config


def test_every_package_folder_is_listed_in_setup_cfg() -> None:
    """setup.cfg lists its packages (the mapped ones cannot be found): a new folder must be added
    there, or the wheel would install without it."""
    listed = set(_setup_cfg()["options"]["packages"].split())
    folders = set()
    for init in ROOT.glob("*/**/__init__.py"):
        parts = init.parent.relative_to(ROOT).parts
        if parts[0] in {"tests", "bench", ".venv", "build"}:
            continue
        top = INSTALLED_AS.get(parts[0], parts[0])
        folders.add(".".join((top, *parts[1:])))
    assert folders == listed


def test_the_mapped_folders_are_where_setup_cfg_says() -> None:
    mapping = dict(
        (name.strip(), folder.strip()) for name, _, folder in
        (line.partition("=") for line in _setup_cfg()["options"]["package_dir"].split("\n") if line.strip()))
    assert mapping == {package: folder for folder, package in INSTALLED_AS.items()}
