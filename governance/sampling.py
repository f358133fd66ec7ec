"""Sampling by event key: which share of traces to keep, decided alike on every host (pure).

The policy (``policies/sampling.toml``; ``TRACE_SAMPLING_POLICY`` names another file) is a list
of rules, each an event-key glob (``http.request.*``) with a keep rate from 0 to 1; the first
rule whose glob matches the key gives the rate, else ``default_rate``. Traces whose severity is
``always_keep_from`` or above (default ``warning``) are always kept, whatever the rate.

The decision is a function of the request id, as OpenTelemetry's ``TraceIdRatioBased`` sampler
is of the trace id: the id is hashed to 64 bits (BLAKE2b, so ids of any shape, PHP's
``uniqid()`` as well as UUIDs, spread evenly) and kept when the hash is below ``rate * 2**64``.
So every trace of one request is kept or dropped together, by the writer and by the endpoint,
on every worker and host, and a request kept at 10% is also kept at 20%. A trace without a
request id has nothing to agree on and is decided at random.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from fnmatch import translate
from pathlib import Path
from typing import Any

from governance.errors import PolicyError
from governance.policy_files import get_value, parse_policy_toml, read_policy_file

# PSR-3 order; Monolog's numeric levels and the aliases PHP emits are folded first
# (trace_service.values), so a rank exists for every severity the table can hold.
SEVERITY_RANK = {name: rank for rank, name in enumerate(
    ("debug", "info", "notice", "warning", "error", "critical", "alert", "emergency"))}
_SCALE = 1 << 64
_KEY_CACHE = 4096  # distinct event keys whose rate is remembered (keys are few in practice)


@dataclass(frozen=True)
class SamplingRule:
    """Keep ``rate`` of the traces whose event key matches ``match`` (a glob: ``*``, ``?``,
    ``[...]``, matched case-sensitively against the whole key)."""

    match: str
    rate: float


@dataclass(frozen=True)
class SamplingPolicy:
    """The rules in force; :meth:`keeps` decides one trace."""

    rules: tuple[SamplingRule, ...] = ()
    default_rate: float = 1.0
    always_keep_from: str = "warning"
    sha256: str = ""
    source: str = "<defaults>"
    _patterns: tuple[tuple[Callable[[str], Any], float], ...] = field(
        init=False, repr=False, compare=False, default=())
    _rates: dict[str, float] = field(init=False, repr=False, compare=False, default_factory=dict)

    def __post_init__(self) -> None:
        patterns = tuple((re.compile(translate(rule.match)).match, rule.rate) for rule in self.rules)
        object.__setattr__(self, "_patterns", patterns)

    @property
    def keeps_everything(self) -> bool:
        """Whether no trace can be sampled out (the writer then skips the decision)."""
        return self.default_rate >= 1.0 and all(rule.rate >= 1.0 for rule in self.rules)

    def rate_for(self, event_key: str) -> float:
        """The keep rate of ``event_key``: the first matching rule's, else the default."""
        rate = self._rates.get(event_key)
        if rate is None:
            rate = next((r for match, r in self._patterns if match(event_key)), self.default_rate)
            if len(self._rates) < _KEY_CACHE:
                self._rates[event_key] = rate  # a racing thread writes the same value
        return rate

    def keeps(self, event_key: str, severity: str, request_id: str | None) -> bool:
        """Whether to keep a trace. ``severity`` is the canonical PSR-3 name (unknown names
        rank as ``info``)."""
        rate = self.rate_for(event_key)
        if rate >= 1.0:
            return True
        if SEVERITY_RANK.get(severity, 1) >= SEVERITY_RANK[self.always_keep_from]:
            return True
        if rate <= 0.0:
            return False
        return request_hash(request_id) < int(rate * _SCALE)

    def as_report(self) -> dict[str, Any]:
        """The rates in force, for the compliance report (so sampled volume is read as such)."""
        return {"source": self.source, "sha256": self.sha256, "default_rate": self.default_rate,
                "always_keep_from": self.always_keep_from,
                "rules": [{"match": rule.match, "rate": rule.rate} for rule in self.rules]}


_dice = random.Random()  # our own: the host application's `random` state is not ours to move


def request_hash(request_id: str | None) -> int:
    """A request id's 64-bit position in ``[0, 2**64)``: the same on every host and process;
    a random one when there is no request id."""
    if not request_id:
        return _dice.getrandbits(64)
    digest = hashlib.blake2b(request_id.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def _rate(value: Any, where: str, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
        raise PolicyError(f"{where}: {key} = {value!r} is invalid: a number from 0 to 1 is required "
                          "(0.1 keeps one trace in ten)")
    return float(value)


def parse_sampling_policy(data: bytes, source: str = "<bytes>") -> SamplingPolicy:
    """Validate the bytes of a sampling policy file into a :class:`SamplingPolicy`."""
    doc = parse_policy_toml(data, source)
    table = get_value(doc, "sampling", dict, source, {})
    where = f"{source} [sampling]"
    default_rate = _rate(table.get("default_rate", 1.0), where, "default_rate")
    keep_from = get_value(table, "always_keep_from", str, where, "warning")
    if keep_from not in SEVERITY_RANK:
        raise PolicyError(f"{where}: always_keep_from = {keep_from!r} is invalid: one of "
                          f"{', '.join(SEVERITY_RANK)} is required")
    rules = []
    for number, rule in enumerate(get_value(doc, "rules", list, source, []), start=1):
        rwhere = f"{source} [[rules]] #{number}"
        if not isinstance(rule, dict):
            raise PolicyError(f"{rwhere}: a table with match and rate is required")
        unknown = sorted(set(rule) - {"match", "rate"})
        if unknown:
            raise PolicyError(f"{rwhere}: unknown key(s) {', '.join(unknown)}: only match and rate")
        match = rule.get("match")
        if not isinstance(match, str) or not match:
            raise PolicyError(f"{rwhere}: match = {match!r} is invalid: an event-key glob such as "
                              "\"http.request.*\" is required")
        rules.append(SamplingRule(match, _rate(rule.get("rate"), rwhere, "rate")))
    return SamplingPolicy(tuple(rules), default_rate, keep_from,
                          hashlib.sha256(data).hexdigest(), source)


def load_sampling_policy(path: str | Path | None = None) -> SamplingPolicy:
    """Read and validate a sampling policy file (the shipped ``sampling.toml`` by default)."""
    return parse_sampling_policy(*read_policy_file(path, "sampling.toml"))
