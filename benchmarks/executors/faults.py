"""Injected faults for testing the executors' fault handling (a testing hook, not a feature).

Setting ``FEWSHOT_FAULT=KIND:METHOD:LOG`` in the environment of ``python -m benchmarks.run``
makes every training group of ``METHOD`` fail where it runs (in this process with the local
executor, in the worker with Ray):

- ``raise``: after its first cell is tested, before the cell is handed on, raise
  :class:`TransientCellError` once, which the executor retries;
- ``kill``: at the same point, the process kills itself with SIGKILL once, which Ray retries as a
  dead worker (with the local executor this ends the run: it is the process);
- ``fail``: at the same point, raise :class:`InjectedFailure` every time, a deterministic error
  that is not retried;
- ``halt``: snapshot the training after every step and raise :class:`InjectedFailure` once, right
  after the snapshot of episode :data:`HALT_EPISODE`: an interrupted training, to be resumed.

``LOG`` is a file on the worker's machine that gets one line per fault fired; ``raise``, ``kill``
and ``halt`` fire only while it is empty, which is how they know that they already fired once.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from pathlib import Path

FAULT_ENV = "FEWSHOT_FAULT"
KINDS = ("raise", "kill", "fail", "halt")
#: The training episode after whose snapshot a ``halt`` fault fires.
HALT_EPISODE = 3


class TransientCellError(RuntimeError):
    """A failure worth retrying: the same group may well succeed on a second attempt."""


class InjectedFailure(RuntimeError):
    """A deterministic failure injected by ``FEWSHOT_FAULT=fail:...``."""


@dataclass(frozen=True)
class Fault:
    """One injected fault: what happens (``kind``), to which method's groups, and its log file."""

    kind: str
    method: str
    log: str

    @classmethod
    def from_environment(cls) -> Fault | None:
        """The fault that ``$FEWSHOT_FAULT`` asks for, ``None`` when it is unset or empty.

        Raises:
            ValueError: the variable is set but malformed.
        """
        value = os.environ.get(FAULT_ENV, "").strip()
        if not value:
            return None
        kind, _, rest = value.partition(":")
        method, _, log = rest.partition(":")
        if kind not in KINDS or not method or not log:
            raise ValueError(
                f"{FAULT_ENV}={value!r} must look like KIND:METHOD:LOGFILE with KIND one of "
                f"{', '.join(KINDS)}, e.g. raise:protonet:/tmp/fault.log; unset it to run normally"
            )
        return cls(kind, method, log)

    @property
    def snapshots_every_step(self) -> bool:
        """Whether the groups it targets snapshot their training after every step."""
        return self.kind == "halt"

    def fire(self, method: str) -> None:
        """Fail as configured when ``method`` is the target and the fault is still due (called
        after a group's first cell is tested)."""
        if method != self.method or self.kind == "halt" or not self._due():
            return
        self._log()
        if self.kind == "raise":
            raise TransientCellError(f"injected transient fault in a {method} group")
        if self.kind == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        raise InjectedFailure(f"injected deterministic failure in a {method} group")

    def after_snapshot(self, method: str, episode: int) -> None:
        """A ``halt`` fault: fail once, right after ``method``'s snapshot of episode
        :data:`HALT_EPISODE` was kept."""
        if self.kind != "halt" or method != self.method or episode != HALT_EPISODE:
            return
        if self._due():
            self._log()
            raise InjectedFailure(f"injected halt of a {method} training at episode {episode}")

    def _due(self) -> bool:
        """``fail`` always; the others only while the log is empty (they fire once)."""
        log = Path(self.log)
        return self.kind == "fail" or not (log.exists() and log.read_text().strip())

    def _log(self) -> None:
        with Path(self.log).open("a") as handle:
            handle.write(f"{self.kind} pid {os.getpid()}\n")
