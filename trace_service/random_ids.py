"""Random ids (request ids: UUID v4; event ids: UUID v7) from a per-process buffer of
``os.urandom`` bytes.

``uuid.uuid4()`` makes one ``os.urandom(16)`` call, a ``getrandom`` syscall, per id, and the
syscall releases the GIL: in a gunicorn worker the writer thread could take it then and keep it
for up to its 5 ms switch interval, a convoy behind every request id. Here the syscall reads
:data:`BUFFER_BYTES` at once, kept as hex text, and each id takes the next hex digits of it: one
syscall per few hundred ids. The digits are still the kernel's CSPRNG output, each byte used
once, so an id says nothing about any other (event ids must stay unpredictable: a client that
could predict another's could send them first and have that client's traces dropped as
duplicates).

- Threads: :func:`random_hex` takes its digits under a lock, so two threads never get the same.
- Fork: a child must never hand out the digits its parent will hand out too; an
  ``os.register_at_fork`` hook empties the child's buffer (and gives it a new lock, in case
  another thread of the parent held it at the fork).
"""

from __future__ import annotations

import os
import threading
import time
from os import urandom

BUFFER_BYTES = 4096
_MS_MASK = (1 << 48) - 1
# The hex digit of the variant nibble (RFC 9562: bits 10xx) from a random digit's low two bits.
_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}


class _HexPool:
    """Hex digits of ``os.urandom`` output, each handed out once."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self.lock = threading.Lock()
        self.digits = ""
        self.position = 0

    def take(self, count: int) -> str:
        with self.lock:
            start = self.position
            end = start + count
            if end > len(self.digits):
                # One syscall for the next few hundred ids (and count > the buffer: enough for it).
                self.digits = urandom(max(BUFFER_BYTES, (count + 1) // 2)).hex()
                start, end = 0, count
            self.position = end
            return self.digits[start:end]


_pool = _HexPool()
os.register_at_fork(after_in_child=_pool._reset)


def random_hex(count: int) -> str:
    """``count`` random lower-case hex digits (4 bits each) from the process's buffer."""
    return _pool.take(count)


def uuid4_text() -> str:
    """A fresh UUID version 4 in the canonical lower-case 36-character form, as
    ``str(uuid.uuid4())``: 122 random bits, version digit 4, variant bits 10."""
    r = _pool.take(31)
    return f"{r[:8]}-{r[8:12]}-4{r[12:15]}-{_VARIANT[r[15]]}{r[16:19]}-{r[19:]}"


def uuid7_text() -> str:
    """A fresh UUID version 7 (RFC 9562) in the canonical form: 48 bits of Unix milliseconds,
    version digit 7, 12 random bits, variant bits 10, 62 random bits."""
    millis = f"{time.time_ns() // 1_000_000 & _MS_MASK:012x}"
    r = _pool.take(19)
    return f"{millis[:8]}-{millis[8:]}-7{r[:3]}-{_VARIANT[r[3]]}{r[4:7]}-{r[7:]}"
