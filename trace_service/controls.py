"""The run-time switches a writer obeys before it queues anything: the kill switch and sampling.

* **Kill switch.** ``TRACE_ENABLED=0`` switches telemetry off for the life of the process:
  ``record()`` returns False at once and the endpoint answers every item ``discarded``, both
  counted as ``disabled``, touching no database connection. ``TRACE_KILL_SWITCH_FILE`` switches
  it at run time without a restart: while that file exists, telemetry is off. The file is
  looked at (one ``stat``, no read) at most once per ``TRACE_CONTROLS_REFRESH_SECONDS`` (default
  5) by whichever call comes due, so turning it on or off takes effect within that time in every
  process of the host; a file, not a signal, because a signal handler belongs to the host
  application (and gunicorn), not to a library it imports.
* **Sampling** (``governance.sampling``), decided per request id.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from governance.sampling import SamplingPolicy
from trace_service.queue import DiscardReason
from trace_service.values import canonical_severity


class KillSwitch:
    """Whether telemetry is off now: statically (``enabled=False``) or while ``path`` exists."""

    def __init__(self, enabled: bool, path: str = "", refresh: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.enabled = enabled
        self.path = path
        self.refresh = refresh
        self._clock = clock
        self._due = float("-inf")
        self._file_off = False

    def off(self) -> bool:
        """True while telemetry is switched off (never raises: an unreadable directory counts
        as no file)."""
        if not self.enabled:
            return True
        if not self.path:
            return False
        now = self._clock()
        if now >= self._due:
            self._due = now + self.refresh
            self._file_off = os.path.exists(self.path)
        return self._file_off


class Gate:
    """Decides, before an item is queued, whether it is discarded and why (pure but for the
    kill switch's file). ``sampling`` is None when the policy keeps everything: no cost then."""

    def __init__(self, switch: KillSwitch, sampling: SamplingPolicy | None) -> None:
        self.switch = switch
        self.sampling = None if sampling is None or sampling.keeps_everything else sampling

    def sampled_out(self, event_key: str, severity: object, request_id: str | None) -> bool:
        """Whether the sampling policy keeps this trace out (``severity`` as given: a name in
        any case, or Monolog's number)."""
        sampling = self.sampling
        return sampling is not None and not sampling.keeps(
            event_key, canonical_severity(severity), request_id)

    def reason(self, event_key: str, severity: object, request_id: str | None) -> DiscardReason | None:
        """Why a trace is not to be stored, or None to store it."""
        if self.switch.off():
            return DiscardReason.DISABLED
        if self.sampled_out(event_key, severity, request_id):
            return DiscardReason.SAMPLED_OUT
        return None
