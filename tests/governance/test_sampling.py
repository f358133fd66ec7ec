"""The sampling decision (pure): deterministic per request id, rate-respecting, monotone in the
rate, severities from the configured level kept; globs matched like a shell's; policy errors
name the file, the key, the value and the fix."""

from __future__ import annotations

import hashlib
import math
import uuid
from functools import cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from governance.errors import PolicyError
from governance.sampling import (
    SEVERITY_RANK,
    SamplingPolicy,
    SamplingRule,
    load_sampling_policy,
    parse_sampling_policy,
    request_hash,
)

SEVERITIES = list(SEVERITY_RANK)
RATES = st.floats(0.0, 1.0, allow_nan=False)
KEYS = st.text(st.sampled_from("abcxyz.*?-_%"), min_size=1, max_size=12)
IDS = st.text(min_size=1, max_size=40)


def policy(rate: float, keep_from: str = "warning") -> SamplingPolicy:
    return SamplingPolicy((SamplingRule("http.request.*", rate),), 1.0, keep_from)


def glob_oracle(pattern: str, text: str) -> bool:
    """A shell glob with ``*`` and ``?`` only, matched by plain recursion (not by fnmatch)."""

    @cache
    def match(p: int, t: int) -> bool:
        if p == len(pattern):
            return t == len(text)
        if pattern[p] == "*":
            return match(p + 1, t) or (t < len(text) and match(p, t + 1))
        return t < len(text) and pattern[p] in ("?", text[t]) and match(p + 1, t + 1)

    return match(0, 0)


@given(rate=RATES, request_id=IDS, severity=st.sampled_from(SEVERITIES))
def test_the_decision_is_the_same_on_every_host(rate: float, request_id: str, severity: str) -> None:
    # Two policies built apart stand for two processes or hosts: nothing is shared but the id.
    assert policy(rate).keeps("http.request.get", severity, request_id) == \
        policy(rate).keeps("http.request.get", severity, request_id)


@given(low=RATES, high=RATES, request_id=IDS)
def test_a_request_kept_at_a_rate_is_kept_at_every_higher_rate(low: float, high: float,
                                                               request_id: str) -> None:
    low, high = sorted((low, high))
    if policy(low).keeps("http.request.x", "info", request_id):
        assert policy(high).keeps("http.request.x", "info", request_id)


@given(rate=RATES, request_id=st.none() | IDS, severity=st.sampled_from(SEVERITIES),
       keep_from=st.sampled_from(SEVERITIES))
def test_severities_from_the_configured_level_up_are_always_kept(
        rate: float, request_id: str | None, severity: str, keep_from: str) -> None:
    kept = policy(rate, keep_from).keeps("http.request.x", severity, request_id)
    if SEVERITY_RANK[severity] >= SEVERITY_RANK[keep_from]:
        assert kept


@settings(max_examples=25, deadline=None)
@given(rate=st.floats(0.01, 0.99), seed=st.integers(0, 2**32))
def test_the_kept_share_is_within_binomial_bounds_of_the_rate(rate: float, seed: int) -> None:
    n = 4000
    ids = [str(uuid.UUID(int=(seed << 64) + i)) for i in range(n)]
    kept = sum(policy(rate).keeps("http.request.x", "info", i) for i in ids)
    sd = math.sqrt(n * rate * (1 - rate))
    assert abs(kept - n * rate) <= 5 * sd + 1


@given(rate=RATES, request_id=IDS)
def test_rates_0_and_1_keep_nothing_and_everything(rate: float, request_id: str) -> None:
    assert policy(1.0).keeps("http.request.x", "info", request_id)
    assert not policy(0.0).keeps("http.request.x", "debug", request_id)


def test_a_trace_without_a_request_id_is_decided_at_random_at_the_rate() -> None:
    kept = sum(policy(0.25).keeps("http.request.x", "info", None) for _ in range(8000))
    assert abs(kept - 2000) <= 5 * math.sqrt(8000 * 0.25 * 0.75)


@given(request_id=IDS)
def test_request_hash_is_the_documented_function_of_the_id(request_id: str) -> None:
    # BLAKE2b-64 of the UTF-8 id, big-endian (the module docstring): hosts that run different
    # versions must agree, so a change of hash must not pass unnoticed.
    digest = hashlib.blake2b(request_id.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    assert request_hash(request_id) == int.from_bytes(digest, "big")


def test_no_request_id_has_no_fixed_position() -> None:
    assert len({request_hash(None) for _ in range(20)}) > 1


@given(pattern=st.text(st.sampled_from("ab.*?"), min_size=1, max_size=6),
       key=st.text(st.sampled_from("ab.c"), max_size=8))
def test_globs_match_the_whole_key_like_a_shell(pattern: str, key: str) -> None:
    rules = (SamplingRule(pattern, 0.5),)
    expected = 0.5 if glob_oracle(pattern, key) else 1.0
    assert SamplingPolicy(rules).rate_for(key) == expected


@given(key=KEYS)
def test_the_first_matching_rule_wins_else_the_default(key: str) -> None:
    rules = (SamplingRule("a*", 0.1), SamplingRule("*", 0.2))
    assert SamplingPolicy(rules, 0.3).rate_for(key) == (0.1 if key.startswith("a") else 0.2)
    assert SamplingPolicy((SamplingRule("a*", 0.1),), 0.3).rate_for(key) == \
        (0.1 if key.startswith("a") else 0.3)


def test_glob_metacharacters_of_sql_and_regex_are_plain_text() -> None:
    sampled = SamplingPolicy((SamplingRule("pay.%_(x)+", 0.0),))
    assert sampled.rate_for("pay.%_(x)+") == 0.0
    assert sampled.rate_for("pay.ab(x)+") == 1.0 and sampled.rate_for("pay.%_xx") == 1.0


def test_the_shipped_policy_keeps_everything() -> None:
    shipped = load_sampling_policy()
    assert shipped.keeps_everything and shipped.sha256


def test_a_policy_file_is_read_with_its_rules_in_order() -> None:
    data = (b'version = 1\n[sampling]\ndefault_rate = 0.5\nalways_keep_from = "error"\n'
            b'[[rules]]\nmatch = "http.request.*"\nrate = 0.1\n[[rules]]\nmatch = "http.*"\nrate = 0\n')
    parsed = parse_sampling_policy(data, "sampling.toml")
    assert parsed.rules == (SamplingRule("http.request.*", 0.1), SamplingRule("http.*", 0.0))
    assert (parsed.default_rate, parsed.always_keep_from) == (0.5, "error")
    assert parsed.as_report()["rules"][0] == {"match": "http.request.*", "rate": 0.1}


@pytest.mark.parametrize("body, message", [
    (b'[sampling]\ndefault_rate = 1.5', r"default_rate = 1.5 is invalid: a number from 0 to 1"),
    (b'[sampling]\ndefault_rate = "half"', r"default_rate = 'half' is invalid"),
    (b'[sampling]\nalways_keep_from = "loud"', r"always_keep_from = 'loud' is invalid: one of debug"),
    (b'[[rules]]\nmatch = ""\nrate = 0.1', r"#1: match = '' is invalid: an event-key glob"),
    (b'[[rules]]\nmatch = "a"\nrate = -1', r"#1: rate = -1 is invalid"),
    (b'[[rules]]\nmatch = "a"\nrate = true', r"#1: rate = True is invalid"),
    (b'[[rules]]\nmatch = "a"\nrate = 1\nkeep = 1', r"#1: unknown key\(s\) keep"),
])
def test_a_bad_policy_is_refused_naming_the_key_the_value_and_the_fix(body: bytes, message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        parse_sampling_policy(b"version = 1\n" + body, "sampling.toml")
