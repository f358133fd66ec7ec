"""``flask keys create|list|revoke``: API keys for the HTTP API (the key is shown once)."""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import AppGroup

from trace_service.http.keys import SCOPES, KeyStore

keys_cli = AppGroup("keys", help="API keys for the HTTP API: ingest, reports:read, traces:read, admin.")


def _store() -> KeyStore:
    store: KeyStore = current_app.extensions["trace_keys"]
    return store


@keys_cli.command("create")
@click.option("--name", required=True, help="Who or what the key is for.")
@click.option("--scope", "scopes", multiple=True, default=("ingest",), show_default=True,
              type=click.Choice(SCOPES), help="Repeat for several scopes.")
def create(name: str, scopes: tuple[str, ...]) -> None:
    """Create a key and print it (it cannot be shown again)."""
    if not name.strip() or len(name) > 100:
        raise click.BadParameter("1 to 100 characters are required", param_hint="--name")
    key, token = _store().create(name.strip(), list(scopes))
    click.echo(f"id {key.id}  name {key.name}  scopes {' '.join(sorted(key.scopes))}")
    click.echo(f"key: {token}")
    click.echo("Store it now: only its hash is kept.")


@keys_cli.command("list")
def list_keys() -> None:
    """List keys (prefixes only, never the keys)."""
    for key in _store().list():
        state = f"revoked {key.revoked_at:%Y-%m-%d %H:%M}" if key.revoked_at else "active"
        click.echo(f"{key.id:>4}  {key.key_prefix}...  {key.name:30s}  "
                   f"{' '.join(sorted(key.scopes)):25s}  {state}")


@keys_cli.command("revoke")
@click.argument("key_id", type=int)
def revoke(key_id: int) -> None:
    """Revoke key KEY_ID (see `flask keys list`)."""
    if not _store().revoke(key_id):
        raise click.ClickException(f"no active key with id {key_id}: see `flask keys list`")
    click.echo(f"key {key_id} revoked")
