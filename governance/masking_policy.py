"""Loading and validating ``policies/masking.toml`` (tomllib, no extra dependency).

:func:`load_masking_policy` returns a frozen :class:`MaskingPolicy` or raises
:class:`PolicyError` naming the file, the key, the value and what is allowed. The policy's
SHA-256 (of the file's bytes) goes with it so reports can say which policy was in force.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from governance.errors import PolicyError
from governance.policy_files import get_positive, get_value, get_words, parse_policy_toml, read_policy_file
from governance.secret_formats import SecretFormat, parse_formats

# The built-in detectors (code in governance.detectors); vendor and other token formats are data,
# the [[formats]] tables of the policy file.
DETECTORS = ("credentials_in_text", "kubernetes_secret", "email", "high_entropy")

@dataclass(frozen=True)
class MaskingPolicy:
    """What to mask and how; see ``policies/masking.toml`` for the meaning of each field."""

    replacement: str = "[masked]"
    record_masked: bool = True
    max_depth: int = 32
    max_string_chars: int = 4096
    max_total_chars: int = 16384
    deny_keys: frozenset[str] = frozenset()
    allow_keys: frozenset[str] = frozenset()
    hash_suffixes: frozenset[str] = frozenset()
    describe_suffixes: frozenset[str] = frozenset()
    id_words: frozenset[str] = frozenset()
    otp_words: frozenset[str] = frozenset()
    detectors: frozenset[str] = frozenset(DETECTORS)
    formats: tuple[SecretFormat, ...] = ()
    entropy_min_length: int = 32
    entropy_min_bits: float = 3.5
    email_mode: str = "hash"
    sha256: str = ""
    source: str = "<defaults>"


DEFAULT = MaskingPolicy()  # the one place each default is written: the dataclass


def parse_masking_policy(data: bytes, source: str = "<bytes>") -> MaskingPolicy:
    """Validate the bytes of a masking policy file into a :class:`MaskingPolicy`."""
    doc = parse_policy_toml(data, source)
    limits = get_value(doc, "limits", dict, source, {})
    keys = get_value(doc, "keys", dict, source, {})
    detectors = get_value(doc, "detectors", dict, source, {})
    email = get_value(doc, "email", dict, source, {})
    mode = get_value(email, "mode", str, f"{source} [email]", DEFAULT.email_mode)
    if mode not in {"hash", "mask"}:
        raise PolicyError(f"{source} [email]: mode = {mode!r} is invalid: use 'hash' or 'mask'")
    bits = get_value(detectors, "entropy_min_bits", float, f"{source} [detectors]",
                     DEFAULT.entropy_min_bits)
    if not 0 < bits <= 6:
        raise PolicyError(
            f"{source} [detectors]: entropy_min_bits = {bits} is invalid: a number in (0, 6] "
            "is required (base64 text carries at most 6 bits per character)"
        )
    return MaskingPolicy(
        replacement=get_value(doc, "replacement", str, source, DEFAULT.replacement),
        record_masked=get_value(doc, "record_masked", bool, source, DEFAULT.record_masked),
        max_depth=get_positive(limits, "max_depth", f"{source} [limits]", DEFAULT.max_depth),
        max_string_chars=get_positive(limits, "max_string_chars", f"{source} [limits]",
                                      DEFAULT.max_string_chars),
        max_total_chars=get_positive(limits, "max_total_chars", f"{source} [limits]",
                                     DEFAULT.max_total_chars),
        deny_keys=get_words(keys, "deny", f"{source} [keys]", DEFAULT.deny_keys),
        allow_keys=get_words(keys, "allow", f"{source} [keys]", DEFAULT.allow_keys),
        hash_suffixes=get_words(keys, "hash_suffixes", f"{source} [keys]", DEFAULT.hash_suffixes),
        describe_suffixes=get_words(keys, "describe_suffixes", f"{source} [keys]", DEFAULT.describe_suffixes),
        id_words=get_words(keys, "id_words", f"{source} [keys]", DEFAULT.id_words),
        otp_words=get_words(keys, "otp_words", f"{source} [keys]", DEFAULT.otp_words),
        # Left out, every detector is on: a policy that forgets the list fails safe.
        detectors=get_words(detectors, "enabled", f"{source} [detectors]", DEFAULT.detectors,
                            DETECTORS.__contains__, f"known detectors are {', '.join(DETECTORS)}"),
        entropy_min_length=get_positive(detectors, "entropy_min_length", f"{source} [detectors]",
                                        DEFAULT.entropy_min_length),
        entropy_min_bits=bits,
        formats=parse_formats(doc.get("formats"), source),
        email_mode=mode,
        sha256=hashlib.sha256(data).hexdigest(),
        source=source,
    )


def load_masking_policy(path: str | Path | None = None) -> MaskingPolicy:
    """Read and validate a masking policy file (``policies/masking.toml`` by default)."""
    return parse_masking_policy(*read_policy_file(path, "masking.toml"))
