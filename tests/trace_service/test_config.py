"""Configuration from TRACE_* variables: casts, defaults, clear errors, hidden passwords."""

from __future__ import annotations

import logging

import pytest

from trace_service.config import DatabaseURL, WriterConfig
from trace_service.errors import ConfigError
from trace_service.http.config import ServiceConfig, TestingConfig


def test_defaults_need_no_environment() -> None:
    config = ServiceConfig.from_env({})
    assert config.database_url.backend == "sqlite"
    assert (config.table_timezone, config.writer_mode, config.strict) == ("UTC", "thread", False)


def test_values_are_cast() -> None:
    config = ServiceConfig.from_env({
        "TRACE_DATABASE_URL": "mysql+pymysql://u:p@db/x",
        "TRACE_TABLE_TIMEZONE": "Africa/Cairo",
        "TRACE_QUEUE_SIZE": "50",
        "TRACE_BATCH_SIZE": "10",
        "TRACE_FLUSH_INTERVAL": "0.25",
        "TRACE_STRICT": "yes",
        "TRACE_WRITER_MODE": "INLINE",
    })
    assert (config.queue_size, config.batch_size, config.flush_interval) == (50, 10, 0.25)
    assert config.strict is True and config.writer_mode == "inline"
    assert config.table_timezone == "Africa/Cairo"


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("TRACE_QUEUE_SIZE", "lots", r"TRACE_QUEUE_SIZE='lots' is invalid: an integer between 1 and"),
        ("TRACE_BATCH_SIZE", "0", r"TRACE_BATCH_SIZE='0' is invalid: an integer between 1 and 10000 "),
        ("TRACE_FLUSH_INTERVAL", "-1", r"TRACE_FLUSH_INTERVAL='-1' is invalid: a number between 0.001 and"),
        ("TRACE_TABLE_TIMEZONE", "Mars/Olympus",
         r"TRACE_TABLE_TIMEZONE='Mars/Olympus' is invalid: an IANA zone"),
        ("TRACE_WRITER_MODE", "async", r"TRACE_WRITER_MODE='async' is invalid: one of thread, inline"),
        ("TRACE_STRICT", "maybe", r"TRACE_STRICT='maybe' is invalid: one of 1/0"),
        ("TRACE_DATABASE_URL", "postgresql://u:secretpw@h/d",
         r"TRACE_DATABASE_URL=<hidden> is invalid: the backend must be"),
    ],
)
def test_bad_values_name_the_variable_the_value_and_what_is_allowed(
    variable: str, value: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        ServiceConfig.from_env({variable: value})
    assert "secretpw" not in str(caught.value)


def test_inconsistent_combinations_are_refused() -> None:
    with pytest.raises(ConfigError, match="TRACE_BATCH_SIZE=100 is above TRACE_QUEUE_SIZE=10"):
        ServiceConfig.from_env({"TRACE_BATCH_SIZE": "100", "TRACE_QUEUE_SIZE": "10"})
    with pytest.raises(ConfigError, match="TRACE_BREAKER_BASE_DELAY=9.0 is above"):
        ServiceConfig(breaker_base_delay=9.0, breaker_max_delay=1.0)


def test_password_never_shows_in_repr_str_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    config = ServiceConfig.from_env({"TRACE_DATABASE_URL": "mysql+pymysql://app:hunter2@db:3306/t"})
    logging.getLogger("test").warning("config %s %r", config, config)
    assert "hunter2" not in repr(config) + str(config.database_url) + caplog.text
    assert "hunter2" in config.database_url.render()


def test_garbage_url_message_does_not_echo_it() -> None:
    with pytest.raises(ValueError, match="not a URL") as caught:
        DatabaseURL("::not a url with hunter2::")
    assert "hunter2" not in str(caught.value)


def test_testing_config_is_strict_by_default() -> None:
    assert TestingConfig.from_env({}).strict is True
    assert TestingConfig.from_env({"TRACE_STRICT": "0"}).strict is False


def test_a_writer_config_reads_only_the_writer_settings() -> None:
    """A backend app builds a writer without the HTTP service's settings being read or checked."""
    environ = {"TRACE_INGEST_RATE": "lots", "TRACE_RATELIMIT_STORAGE": "ftp://x",
               "TRACE_RETENTION_POLICY": "/nowhere.toml", "TRACE_BATCH_SIZE": "7"}
    assert WriterConfig.from_env(environ).batch_size == 7
    with pytest.raises(ConfigError,
                       match="TRACE_(INGEST_RATE|RATELIMIT_STORAGE|RETENTION_POLICY)=.* is invalid"):
        ServiceConfig.from_env(environ)
    assert not {"ingest_rate", "ratelimit_storage", "retention_policy"} & set(vars(WriterConfig.from_env({})))
