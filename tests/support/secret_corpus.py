"""The masking corpus (tests/governance/corpus/): loading it and measuring a masker on it.

    .venv/bin/python -m tests.support.secret_corpus [--half tune|holdout|fresh|final|extra|all] [--misses]

prints recall by kind and false positives by category for a half. A positive is *caught* when
none of its ``secrets`` survives anywhere in the masked output; an innocent is a *false positive*
when masking changed it at all. The masker was tuned against the ``tune`` half only; the
``holdout``, ``fresh`` and ``final`` halves were each measured once before they were looked at,
then tuned against too; ``extra`` was built last and never tuned against.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from governance.hashing import Keyring
from governance.masking import Masker
from governance.masking_policy import load_masking_policy

CORPUS = Path(__file__).resolve().parent.parent / "governance" / "corpus"


@dataclass(frozen=True)
class Result:
    """Caught positives and untouched innocents of one half, by kind and by category."""

    caught: dict[str, list[bool]]
    untouched: dict[str, list[bool]]
    missed_ids: list[str]
    changed_ids: list[str]

    @property
    def recall(self) -> float:
        """Share of positives caught."""
        flat = [hit for hits in self.caught.values() for hit in hits]
        return sum(flat) / len(flat)

    @property
    def false_positive_rate(self) -> float:
        """Share of innocents the masker changed."""
        flat = [ok for oks in self.untouched.values() for ok in oks]
        return 1 - sum(flat) / len(flat)


def load(name: str, half: str = "all") -> list[dict[str, Any]]:
    """The rows of a corpus file (``positives``, ``fresh_innocents`` ...) in one half (or all).

    The ``fresh``, ``final`` and ``extra`` halves live in their own files (``<half>_positives``,
    ``<half>_innocents``)."""
    if half in ("fresh", "final", "extra") and not name.startswith(half):
        name = f"{half}_{name}"
    rows = [json.loads(line) for line in (CORPUS / f"{name}.jsonl").read_text("utf-8").splitlines()
            if line.strip()]
    return [row for row in rows if half == "all" or row["half"] == half]


def strings(value: Any) -> Iterator[str]:
    """Every key and string in a value."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)
    elif isinstance(value, str):
        yield value


def default_masker() -> Masker:
    """The shipped policy with a keyring, as the writer runs it."""
    keyring = Keyring.from_json('[{"id": "k1", "key": "' + "ab" * 32 + '"}]', "k1")
    return Masker(load_masking_policy(), keyring)


def evaluate(masker: Masker, half: str) -> Result:
    """Mask every row of ``half`` and score it."""
    caught: dict[str, list[bool]] = defaultdict(list)
    untouched: dict[str, list[bool]] = defaultdict(list)
    missed, changed = [], []
    for row in load("positives", half):
        out = list(strings(masker.mask(row["metadata"])))
        hit = not any(secret in text for secret in row["secrets"] for text in out)
        caught[row["kind"]].append(hit)
        if not hit:
            missed.append(row["id"])
    for row in load("innocents", half):
        same = masker.mask(row["metadata"]) == row["metadata"]
        untouched[row["category"]].append(same)
        if not same:
            changed.append(row["id"])
    return Result(dict(caught), dict(untouched), missed, changed)


def report(result: Result, half: str) -> str:
    """Recall by kind, false positives by category, as text."""
    lines = [f"half: {half}",
             f"recall {result.recall:.1%} "
             f"({sum(map(sum, result.caught.values()))}/{sum(map(len, result.caught.values()))}); "
             f"false positives {result.false_positive_rate:.1%} "
             f"({len(result.changed_ids)}/{sum(map(len, result.untouched.values()))})",
             "", "recall by kind:"]
    for kind, hits in sorted(result.caught.items()):
        lines.append(f"  {kind:32s} {sum(hits)}/{len(hits)}")
    lines += ["", "innocents changed by category:"]
    for category, oks in sorted(result.untouched.items()):
        if not all(oks):
            lines.append(f"  {category:32s} {len(oks) - sum(oks)}/{len(oks)}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--half", default="extra",
                        choices=["tune", "holdout", "fresh", "final", "extra", "all"])
    parser.add_argument("--misses", action="store_true", help="list the ids missed and changed")
    args = parser.parse_args()
    result = evaluate(default_masker(), args.half)
    print(report(result, args.half))
    if args.misses:
        print("\nmissed:", *result.missed_ids, sep="\n  ")
        print("\nchanged:", *result.changed_ids, sep="\n  ")


if __name__ == "__main__":
    main()
