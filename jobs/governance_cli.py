"""``flask governance ...``: the leak scan, compliance reports, erasure and subject access export.

* ``flask governance scan [--since DAY] [--until DAY] [--fix] [--format text|json]``
* ``flask governance report --from DAY --to DAY [--format json|csv|html] [--output FILE]``
* ``flask governance reports [--limit N]`` and ``flask governance verify-report ID``
* ``flask governance erase (--actor-id N | --email ADDRESS|-) [--execute]`` (a dry run unless
  ``--execute``; ``--email -`` reads the address from stdin, out of shell history)
* ``flask governance opt-out add|remove (--actor-id N | --email ADDRESS|-)`` and ``opt-out
  list``; ``erase --execute --opt-out`` erases and opts out in one step
* ``flask governance export (--actor-id N | --email ADDRESS|-) [--format json|csv] [--output FILE
  [--force]]``: one person's rows as stored (subject access), to stdout or a 0600 file

Days are ``YYYY-MM-DD`` on the table's wall clock, both ends included. Registered like ``flask
jobs``, as an entry point of ``trace_service.commands`` (it needs ``jobs`` and ``trace_service``,
which ``governance`` itself must not import).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import TextIO

import click
from flask.cli import AppGroup

from governance.errors import PolicyError
from governance.hashing import Keyring
from governance.report_render import to_csv, to_html
from governance.report_store import get_report, list_reports
from governance.reports import Period
from jobs.cli import cli_config, command_engine
from jobs.compliance import ReportInputs, generate, report_inputs
from jobs.cutoff import format_wall
from jobs.erasure import Subject, erase
from jobs.leak_scan import run_scan
from jobs.opt_out_admin import add_opt_out, list_opt_outs, remove_opt_out
from jobs.subject_export import FORMATS, export_subject
from jobs.subject_rows import describe

governance_cli = AppGroup("governance", help="Leak scan, compliance reports, erasure and subject "
                                              "access export.")


def _day(option: str, value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date: use YYYY-MM-DD, e.g. 2026-11-16",
                                 param_hint=option) from None


def _inputs() -> ReportInputs:
    try:
        return report_inputs(cli_config())
    except PolicyError as exc:
        raise click.ClickException(str(exc)) from None


def _period(first: date, last: date) -> Period:
    if last < first:
        raise click.BadParameter(f"--to {last} is before --from {first}: swap them", param_hint="--to")
    return Period(first, last)


@governance_cli.command("scan")
@click.option("--since", default=None, help="First day to scan (YYYY-MM-DD); default: the oldest row.")
@click.option("--until", default=None, help="Last day to scan, included; default: the newest row.")
@click.option("--fix", is_flag=True, help="Rewrite the leaking values masked, in batches, and record "
                                          "what changed in the job ledger.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def scan(since: str | None, until: str | None, fix: bool, fmt: str) -> None:
    """Find secrets in stored rows (PHP-written ones too); exit 1 when any are found and not fixed."""
    first = None if since is None else _day("--since", since)
    last = None if until is None else _day("--until", until)
    if first and last:
        _period(first, last)
    inputs = _inputs()
    time_from = format_wall(Period(first, first).start) if first else None
    time_to = format_wall(Period(last, last).end) if last else None
    with command_engine() as engine:
        result = run_scan(engine, inputs.masker, time_from=time_from, time_to=time_to,
                          batch_size=inputs.reports.scan_batch_size, fix=fix)
    summary = result.tally.as_dict()
    if fmt == "json":
        click.echo(json.dumps({**summary, "rows_fixed": result.rows_fixed, "ledger_id": result.ledger_id,
                               "findings_list": [f.as_dict() for f in result.findings]}))
    else:
        for finding in result.findings:
            click.echo(f"{finding.row_id}\t{finding.column}\t{finding.path}\t{finding.kind}\t{finding.preview}")
        click.echo(f"{summary['rows_scanned']} rows scanned, {summary['findings']} finding(s) in "
                   f"{summary['rows_with_findings']} row(s); {summary['unreadable_metadata']} with "
                   f"unreadable metadata" + (f"; {result.rows_fixed} row(s) fixed (ledger row "
                                             f"{result.ledger_id})" if fix else ""), err=True)
    if summary["findings"] and not fix:
        sys.exit(1)


@governance_cli.command("report")
@click.option("--from", "first", required=True, help="First day of the period (YYYY-MM-DD).")
@click.option("--to", "last", required=True, help="Last day of the period, included (YYYY-MM-DD).")
@click.option("--format", "fmt", type=click.Choice(["json", "csv", "html"]), default="json",
              show_default=True)
@click.option("--output", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Write the report here instead of standard output.")
def report(first: str, last: str, fmt: str, output: str | None) -> None:
    """Generate, store (with its SHA-256) and print a compliance report for a period."""
    period = _period(_day("--from", first), _day("--to", last))
    inputs = _inputs()
    with command_engine() as engine:
        stored = generate(engine, period, inputs, datetime.now(UTC), trigger="manual")
    body = {"json": lambda: stored.content or "", "csv": lambda: to_csv(stored.report, stored.sha256),
            "html": lambda: to_html(stored.report, stored.sha256)}[fmt]()
    if output:
        with open(output, "w", encoding="utf-8") as handle:
            handle.write(body)
    else:
        click.echo(body)
    click.echo(f"report {stored.id}: {stored.status}; sha256 {stored.sha256}", err=True)


@governance_cli.command("reports")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
def reports(limit: int) -> None:
    """List stored reports, newest first."""
    with command_engine() as engine:
        for stored in list_reports(engine, limit):
            s = stored.summary()
            click.echo(f"{s['id']}\t{s['period_from']}..{s['period_to']}\t{s['status']}\t"
                       f"{s['generated_at']}\t{s['trigger']}\t{s['sha256']}")


@governance_cli.command("verify-report")
@click.argument("report_id", type=click.IntRange(min=1))
def verify_report(report_id: int) -> None:
    """Recompute a stored report's SHA-256; exit 1 if it does not match."""
    with command_engine() as engine:
        stored = get_report(engine, report_id)
    if stored is None:
        raise click.ClickException(f"no report {report_id}: `flask governance reports` lists them")
    if not stored.verified():
        raise click.ClickException(f"report {report_id}: its content does not match its SHA-256 "
                                   f"{stored.sha256}: it was changed after it was generated")
    click.echo(f"report {report_id}: content matches sha256 {stored.sha256}")


def subject_options(command: Callable[..., None]) -> Callable[..., None]:
    """``--actor-id N`` and ``--email ADDRESS|-``: the person a command is about (read by
    :func:`_subject`)."""
    command = click.option("--email", default=None,
                           help="The person's email; '-' reads it from stdin.")(command)
    return click.option("--actor-id", type=click.IntRange(min=1), default=None,
                        help="The admin's id.")(command)


def _subject(actor_id: int | None, email: str | None) -> Subject:
    """The person named by ``--actor-id`` or ``--email`` (``-``: read from stdin, out of shell
    history). An address is never echoed back, not even a malformed one."""
    if (actor_id is None) == (email is None):
        raise click.UsageError("give exactly one of --actor-id N and --email ADDRESS")
    if email == "-":
        email = sys.stdin.readline().strip()
    if email is not None and "@" not in email:
        raise click.BadParameter("is not an email address (no '@'); the value is not shown",
                                 param_hint="--email")
    return Subject(actor_id=actor_id, email=email)


@governance_cli.command("erase")
@subject_options
@click.option("--execute", is_flag=True, help="Delete (without it: a dry run that only counts).")
@click.option("--opt-out", "opt_out", is_flag=True,
              help="Also opt the person out, so no new trace of theirs is stored (with --execute).")
def erase_command(actor_id: int | None, email: str | None, execute: bool, opt_out: bool) -> None:
    """Delete one person's traces (written by PHP or by us), recorded in the job ledger."""
    if opt_out and not execute:
        raise click.UsageError("--opt-out takes effect with --execute only: a dry run changes "
                               "nothing; add --execute")
    subject = _subject(actor_id, email)
    with command_engine() as engine:
        keyring = Keyring.from_env()
        if opt_out:
            # First: no new trace of theirs lands between the erasure and the opt-out (the
            # writers apply it within TRACE_OPT_OUT_REFRESH_SECONDS).
            add_opt_out(engine, subject, keyring)
        result = erase(engine, subject, keyring, dry_run=not execute)
    verb = "deleted" if execute else "would delete"
    click.echo(f"{result.subject}: {result.matched} row(s) matched, {verb} "
               f"{result.deleted if execute else result.matched} (ids {result.first_id}..{result.last_id}); "
               f"ledger row {result.ledger.id if result.ledger else '-'}")
    if opt_out:
        click.echo(f"{result.subject}: opted out; writers apply it within their refresh "
                   "(TRACE_OPT_OUT_REFRESH_SECONDS)", err=True)
    if not execute:
        click.echo("dry run: nothing deleted; run again with --execute to delete", err=True)


@governance_cli.group("opt-out")
def opt_out_group() -> None:
    """People whose traces are not to be stored: add, remove, list."""


@opt_out_group.command("add")
@subject_options
def opt_out_add(actor_id: int | None, email: str | None) -> None:
    """Opt a person out (kept as their id, or their email's hash under every CRYPTO_KEYS key)."""
    subject = _subject(actor_id, email)
    with command_engine() as engine:
        keyring = Keyring.from_env()
        new = add_opt_out(engine, subject, keyring)
        shown = describe(subject, keyring)
    click.echo(f"{shown}: opted out ({new} new row(s)); every writer and endpoint applies it "
               "within TRACE_OPT_OUT_REFRESH_SECONDS (default 30)")


@opt_out_group.command("remove")
@subject_options
def opt_out_remove(actor_id: int | None, email: str | None) -> None:
    """Withdraw a person's opt-out."""
    subject = _subject(actor_id, email)
    with command_engine() as engine:
        keyring = Keyring.from_env()
        removed = remove_opt_out(engine, subject, keyring)
        shown = describe(subject, keyring)
    if not removed:
        raise click.ClickException(f"{shown} is not opted out: `flask governance opt-out list` "
                                   "lists who is")
    click.echo(f"{shown}: opt-out withdrawn ({removed} row(s))")


@opt_out_group.command("list")
def opt_out_list() -> None:
    """Every opt-out: kind, admin id or the first digits of a hash, key id, since (UTC)."""
    with command_engine() as engine:
        entries = list_opt_outs(engine)
    for entry in entries:
        click.echo(f"{entry.kind}\t{entry.shown()}\t{entry.key_id or '-'}\t"
                   f"{entry.created_at:%Y-%m-%d %H:%M:%S}")
    click.echo(f"{len(entries)} opt-out row(s)", err=True)


def _open_private(path: str, force: bool) -> tuple[TextIO, bool]:
    """``path`` opened for writing, readable by its owner only (0600: it holds personal data),
    and whether this created it.

    Opened before the export runs, so a path that cannot be written fails before a ledger row
    claims an export. An existing file is refused unless ``force`` (``O_EXCL``: no window
    between a check and the create); with ``force`` it is set to 0600 and truncated only when
    the export is written, so a failed export leaves it as it was."""
    try:
        fd, created = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), True
    except FileExistsError:
        if not force:
            raise click.BadParameter(f"{path} exists: give --force to overwrite it",
                                     param_hint="--output") from None
        fd, created = _open_existing(path), False
    except OSError as exc:
        raise click.ClickException(f"cannot write {path}: {exc.strerror}") from None
    return os.fdopen(fd, "w", encoding="utf-8", newline=""), created


def _open_existing(path: str) -> int:
    try:
        fd = os.open(path, os.O_WRONLY)
        os.fchmod(fd, 0o600)  # the create mode applies to new files only
    except OSError as exc:
        raise click.ClickException(f"cannot write {path}: {exc.strerror}") from None
    return fd


@governance_cli.command("export")
@subject_options
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="json", show_default=True)
@click.option("--output", type=click.Path(dir_okay=False), default=None,
              help="Write the export to this file (mode 0600) instead of standard output.")
@click.option("--force", is_flag=True, help="Overwrite --output if it exists.")
def export_command(actor_id: int | None, email: str | None, fmt: str, output: str | None,
                   force: bool) -> None:
    """Export every stored row of one person (written by PHP or by us), as stored; recorded in
    the job ledger with the subject hashed."""
    subject = _subject(actor_id, email)
    handle, created = _open_private(output, force) if output else (None, False)
    try:
        with command_engine() as engine:
            result = export_subject(engine, subject, Keyring.from_env(), fmt=fmt)
    except BaseException:
        if handle is not None:
            handle.close()
            if created and output:
                os.unlink(output)  # no empty file left behind by a failed export
        raise
    if handle is not None:
        with handle:
            handle.truncate(0)
            handle.write(result.body)
    else:
        click.echo(result.body, nl=False)
    click.echo(f"{result.subject}: {result.count} row(s) exported as {fmt}"
               + (f" to {output}" if output else "")
               + f"; ledger row {result.ledger.id if result.ledger else '-'}", err=True)
