"""Benchmark of governance.masking against sentry-sdk's EventScrubber, in one run.

    .venv/bin/pip install -e '.[bench]'
    .venv/bin/python bench/masking.py [--dicts 20000] [--rounds 5] [--seed 7]

The corpus: seeded, ~200-byte metadata dicts shaped like this project's traces (ids, routes,
statuses, durations, a client block, tags, free-text notes), 5% carrying one planted secret of a
random kind: half under a key a denylist knows (``password``, ``api_key``, ...), half under an
innocent key (``note``, ``details``, ``callback_url``, ...) where only value detection can find it.

Printed, side by side: dicts/s of ``Masker.mask`` in its two modes, and of
``EventScrubber(recursive=True).scrub_dict``, with ratios; then the share of planted secrets
each leaves out of its output, by placement, and the share of clean dicts our masker changed
(false positives). The modes:

* ``mask(d)``: the pure API, always a new object (the copy is inside the timed region);
* ``mask(d, owned=True)``: what the writer thread uses on its own thawed snapshot; clean
  metadata is returned uncopied. Like EventScrubber, which mutates in place, it is given deep
  copies made outside the timed region.
Target (issue 4): at least EventScrubber's throughput while catching the value-based secrets it
misses. The contenders take turns on every slice of 200 dicts, so that the swings of a shared
machine fall on all of them alike; the ratio printed is the median of the rounds' ratios.
"""

from __future__ import annotations

import argparse
import copy
import random
import statistics
import string
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sentry_sdk._types import AnnotatedValue
from sentry_sdk.scrubber import EventScrubber

from governance.hashing import Keyring
from governance.masking import Masker
from governance.masking_policy import load_masking_policy

WORDS = [
    "admin", "user", "role", "grant", "deny", "login", "logout", "reset", "request", "profile",
    "update", "billing", "invoice", "export", "import", "report", "queue", "worker", "cache",
    "session", "audit", "policy", "account", "email", "phone",
]
ROUTES = ["admins.list", "admins.update", "auth.login", "auth.stepup", "billing.invoice.show",
          "reports.export", "users.search", "settings.security"]
DENY_KEYS = ["password", "api_key", "token", "authorization", "secret", "cookie"]
SLICE = 200  # dicts timed per turn
INNOCENT_KEYS = ["note", "details", "callback_url", "value", "context", "debug"]


def _rand(rng: random.Random, alphabet: str, n: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def luhn_card(rng: random.Random) -> str:
    digits = [4] + [rng.randrange(10) for _ in range(14)]
    total = 0
    for position, digit in enumerate(reversed(digits)):
        value = digit * 2 if position % 2 == 0 else digit
        total += value - 9 if value > 9 else value
    digits.append((10 - total % 10) % 10)
    return "".join(map(str, digits))


def planted_secret(rng: random.Random) -> tuple[str, str]:
    """(kind, full text); the text embeds the secret the way a careless caller would."""
    alnum = string.ascii_letters + string.digits
    kind = rng.choice(["jwt", "bearer", "aws", "github", "card", "url", "email", "private_key",
                       "slack", "generic"])
    secret = {
        "jwt": "eyJhbGciOiJIUzI1NiJ9.eyJ" + _rand(rng, alnum, 30) + "." + _rand(rng, alnum, 43),
        "bearer": "Bearer " + _rand(rng, alnum, 40),
        "aws": "AKIA" + _rand(rng, string.ascii_uppercase + string.digits, 16),
        "github": "ghp_" + _rand(rng, alnum, 36),
        "card": luhn_card(rng),
        "url": f"https://svc:{_rand(rng, alnum, 12)}@api.example.com/v1",
        "email": f"{_rand(rng, string.ascii_lowercase, 8)}@example.com",
        "private_key": "-----BEGIN PRIVATE KEY-----\nMIIE" + _rand(rng, alnum, 40),
        "slack": "xoxb-" + _rand(rng, string.digits, 12) + "-" + _rand(rng, alnum, 24),
        "generic": _rand(rng, alnum, 40),
    }[kind]
    return kind, secret


def clean_dict(rng: random.Random) -> dict[str, Any]:
    return {
        "target_id": rng.randrange(1, 10**6),
        "action": rng.choice(WORDS) + "_" + rng.choice(WORDS),
        "route": rng.choice(ROUTES),
        "status": rng.choice(["ok", "denied", "failed", "pending"]),
        "duration_ms": round(rng.uniform(0.5, 900), 2),
        "client": {"platform": rng.choice(["web", "ios", "android"]),
                   "version": f"4.{rng.randrange(20)}.{rng.randrange(10)}"},
        "tags": rng.sample(WORDS, 2),
        "note": " ".join(rng.choice(WORDS) for _ in range(rng.randrange(3, 9))),
    }


def make_corpus(n: int, seed: int) -> tuple[list[dict[str, Any]], list[tuple[int, str, str, str]]]:
    """Dicts, and for each planted one (index, kind, placement, secret text)."""
    rng = random.Random(seed)
    corpus, planted = [], []
    for index in range(n):
        item = clean_dict(rng)
        if rng.random() < 0.05:
            kind, secret = planted_secret(rng)
            placement = rng.choice(["deny_key", "innocent_key"])
            key = rng.choice(DENY_KEYS if placement == "deny_key" else INNOCENT_KEYS)
            item[key] = secret
            planted.append((index, kind, placement, secret))
        corpus.append(item)
    return corpus, planted


def strings_in(value: Any) -> list[str]:
    """Every string in an output, AnnotatedValue placeholders included."""
    if isinstance(value, AnnotatedValue):
        return strings_in(value.value)
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (str(k), *strings_in(v))]
    if isinstance(value, (list, tuple)):
        return [s for v in value for s in strings_in(v)]
    return [value] if isinstance(value, str) else []


def secret_core(secret: str) -> str:
    return secret.split()[-1] if secret.startswith("Bearer ") else secret.split("\n")[-1] \
        if secret.startswith("-----") else secret.split("@")[0].split(":")[-1] \
        if secret.startswith("https://") else secret


def caught(outputs: list[Any], planted: list[tuple[int, str, str, str]]) -> dict[str, float]:
    rates: dict[str, list[bool]] = {"deny_key": [], "innocent_key": []}
    for index, _kind, placement, secret in planted:
        core = secret_core(secret)
        rates[placement].append(not any(core in s for s in strings_in(outputs[index])))
    return {k: sum(v) / len(v) if v else float("nan") for k, v in rates.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dicts", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    corpus, planted = make_corpus(args.dicts, args.seed)
    size = statistics.mean(len(str(d)) for d in corpus)
    keyring = Keyring.from_json('[{"id": "k1", "key": "' + "ab" * 32 + '"}]', "k1")
    masker = Masker(load_masking_policy(), keyring)
    scrubber = EventScrubber(recursive=True)
    print(f"Python {sys.version.split()[0]}; {len(corpus)} dicts of ~{size:.0f} characters, "
          f"{len(planted)} with a planted secret; {args.rounds} rounds, "
          f"the contenders taking turns on every slice of {SLICE}")

    # Timed in slices of SLICE dicts, the three contenders taking turns on each slice in a
    # rotating order: on a shared machine the speed changes by tens of percent within seconds,
    # and interleaving this finely lets every contender meet the same conditions. Each round's
    # ratio compares the two sides over the same slices; the median round is reported.
    totals: dict[str, list[float]] = {"ours": [], "owned": [], "theirs": []}
    ours_out: list[Any] = []
    theirs_out: list[Any] = []
    for round_number in range(args.rounds):
        spent = dict.fromkeys(totals, 0.0)
        ours_out, owned_out, theirs_out = [], [], []
        for slice_number, first in enumerate(range(0, len(corpus), SLICE)):
            part = corpus[first:first + SLICE]
            owned_copies, scrub_copies = copy.deepcopy(part), copy.deepcopy(part)
            order = ["ours", "owned", "theirs"]
            shift = (round_number + slice_number) % 3
            for name in order[shift:] + order[:shift]:
                start = time.perf_counter()
                if name == "ours":
                    out = [masker.mask(d) for d in part]
                elif name == "owned":
                    owned_part = [masker.mask(d, owned=True) for d in owned_copies]
                else:
                    for d in scrub_copies:
                        scrubber.scrub_dict(d)
                spent[name] += time.perf_counter() - start
            ours_out += out
            owned_out += owned_part
            theirs_out += scrub_copies
        assert owned_out == ours_out
        for name in totals:
            totals[name].append(len(corpus) / spent[name])

    ours_rates, owned_rates, theirs_rates = totals["ours"], totals["owned"], totals["theirs"]
    ours, theirs = statistics.median(ours_rates), statistics.median(theirs_rates)
    owned = statistics.median(owned_rates)
    pure_ratio = statistics.median(o / t for o, t in zip(ours_rates, theirs_rates, strict=True))
    owned_ratios = [o / t for o, t in zip(owned_rates, theirs_rates, strict=True)]
    ours_caught, theirs_caught = caught(ours_out, planted), caught(theirs_out, planted)
    planted_ids = {p[0] for p in planted}
    changed_clean = sum(
        1 for i, d in enumerate(corpus) if i not in planted_ids and ours_out[i] != d
    ) / (len(corpus) - len(planted_ids))
    def rounds(rates: list[float]) -> str:
        return ", ".join(f"{r:.0f}" for r in rates)

    print(f"\n  Masker.mask(d):                {ours:9.0f} dicts/s  (rounds: {rounds(ours_rates)})")
    print(f"  Masker.mask(d, owned=True):    {owned:9.0f} dicts/s  (rounds: {rounds(owned_rates)})")
    print(f"  EventScrubber.scrub_dict(d):   {theirs:9.0f} dicts/s  (rounds: {rounds(theirs_rates)})")
    print(f"  ratio, pure API {pure_ratio:.2f}x; owned input (like for like) "
          f"{statistics.median(owned_ratios):.2f}x  (target >= 1.0x; rounds: "
          f"{', '.join(f'{r:.2f}' for r in owned_ratios)})")
    print("\n  planted secrets removed from the output:")
    for placement in ("deny_key", "innocent_key"):
        print(f"    under a {placement.replace('_', ' '):13s}  ours {ours_caught[placement]:6.1%}   "
              f"EventScrubber {theirs_caught[placement]:6.1%}")
    print(f"  clean dicts changed by our masker (false positives): {changed_clean:.2%}")


if __name__ == "__main__":
    main()
