"""``flask queue``: the consumers of the durable ingest path, and what the stream holds.

    flask --app trace_service queue consume [--name NAME]   # any number, on any hosts
    flask --app trace_service queue status [--format json]  # length, pending, lag, dead letters
    flask --app trace_service queue dead [--limit N]        # what was parked, and why

Both read ``TRACE_QUEUE_URL`` and the other ``TRACE_QUEUE_*`` settings (README, "Queue").
"""

from __future__ import annotations

import json
import logging
import signal
import sys
from types import FrameType
from typing import Any

import click
import redis
from flask.cli import AppGroup

from jobs.cli import cli_config
from jobs.queue_consumer import (
    KEEP_CONNECTION_SECONDS,
    Consumer,
    QueueSettings,
    consumer_counters,
    default_name,
    use_a_short_switch_interval,
)
from trace_service.breaker import CircuitBreaker
from trace_service.db import create_engine
from trace_service.http.config import ServiceConfig
from trace_service.http.counters import CounterPersister
from trace_service.http.stream import dead_stream, queue_status
from trace_service.opt_outs import OptOutCache
from trace_service.sink import TraceSink

queue_cli = AppGroup("queue", help="The durable ingest queue (Redis stream): consumers and status.")


def _client(config: ServiceConfig) -> redis.Redis:
    if not config.queue_url:
        raise click.ClickException("TRACE_QUEUE_URL is not set: the service writes through its "
                                   "in-process writer and there is no queue to consume; set it "
                                   "to the redis:// URL the ingest service appends to")
    return redis.Redis.from_url(config.queue_url, socket_timeout=_BLOCK_TIMEOUT,
                                socket_connect_timeout=config.connect_timeout)


_BLOCK_TIMEOUT = 10.0  # above the consumer's 1 s blocking read


@queue_cli.command("consume")
@click.option("--name", default=None, help="This consumer's name in the group (default: "
                                           "<host>-<pid>); a restart under the same name resumes "
                                           "what it held.")
def consume(name: str | None) -> None:
    """Write the stream's traces to the table until SIGTERM or SIGINT (then finish the batch)."""
    config = cli_config()
    client = _client(config)
    # Three connections: the store keeps one from batch to batch (KEEP_CONNECTION_SECONDS);
    # the consumer's own thread, the expired-id cleanup and the counters share the others.
    engine = create_engine(config.database_url, connect_timeout=config.connect_timeout,
                           io_timeout=config.io_timeout, pool_size=3)
    # No masker: the endpoint masked every trace before it reached the stream. Opt-outs are
    # checked again here, for the traces queued before a subject opted out.
    opt_outs = OptOutCache(engine, config.opt_out_refresh, config.log_interval)
    sink = TraceSink(engine, config.table_timezone, None, config.idempotency_window,
                     opt_outs=opt_outs, keep_connection=KEEP_CONNECTION_SECONDS)
    settings = QueueSettings(config.queue_stream, config.queue_group, name or default_name(),
                             config.batch_size, config.queue_claim_seconds,
                             config.queue_max_deliveries)
    consumer = Consumer(client, sink, settings, CircuitBreaker(
        config.breaker_threshold, config.breaker_base_delay, config.breaker_max_delay))

    def stop(signum: int, frame: FrameType | None) -> None:
        click.echo(f"signal {signum}: finishing the batch in hand", err=True)
        consumer.stop()

    use_a_short_switch_interval()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    click.echo(f"consumer {settings.name} reading {settings.stream} in group {settings.group}",
               err=True)
    # The consumer's counts go to trace_counter_snapshots like the service's, for the reports.
    persister = CounterPersister(engine, lambda: consumer_counters(consumer.counts),
                                 config.counters_persist_seconds, config.log_interval).start()
    try:
        counts = consumer.run()
    finally:
        persister.stop()
        engine.dispose()
    click.echo(json.dumps({"consumer": settings.name, "batches": counts.batches,
                           "written": counts.written, "duplicates": counts.duplicates,
                           "claimed": counts.claimed, "dead_letters": dict(counts.dead),
                           "outages": counts.outages}))


@queue_cli.command("status")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True)
def status(fmt: str) -> None:
    """Length, pending per consumer, the oldest unacknowledged entry's age, lag, dead letters."""
    config = cli_config()
    try:
        found = queue_status(_client(config), config.queue_stream, config.queue_group)
    except redis.RedisError as exc:
        raise click.ClickException(f"the queue at TRACE_QUEUE_URL cannot be read "
                                   f"({type(exc).__name__}): check the URL and that Redis runs") from None
    if fmt == "json":
        click.echo(json.dumps(found))
        return
    click.echo(f"stream {found['stream']}: {found['length']} entries, {found['pending']} pending "
               f"in group {found['group']}, lag {found['lag']}, oldest pending "
               f"{found['oldest_pending_seconds']} s, dead letters {found['dead_letters']}")
    for consumer, pending in sorted(found["consumers"].items()):
        click.echo(f"  consumer {consumer}: {pending} pending")


@queue_cli.command("dead")
@click.option("--limit", type=click.IntRange(1, 10_000), default=20, show_default=True)
def dead(limit: int) -> None:
    """The newest dead letters: entry id, reason and error (the trace itself is masked)."""
    config = cli_config()
    try:
        client: Any = _client(config)  # redis-py types replies as "Awaitable | Any"
        rows = client.xrevrange(dead_stream(config.queue_stream), count=limit)
    except redis.RedisError as exc:
        raise click.ClickException(f"the queue at TRACE_QUEUE_URL cannot be read "
                                   f"({type(exc).__name__}): check the URL and that Redis runs") from None
    for _dead_id, fields in rows:
        click.echo(json.dumps({key.decode(): value.decode("utf-8", "replace")
                               for key, value in fields.items() if key != b"t"}))
    if not rows:
        click.echo("no dead letters", err=True)
    sys.stdout.flush()
