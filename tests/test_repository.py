"""Checks on the repository itself: the README's commands are the ones CI runs."""

from __future__ import annotations

from pathlib import Path

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
