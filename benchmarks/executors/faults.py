"""Injected faults for testing the Ray executor's fault handling (a testing hook, not a feature).

Setting ``FEWSHOT_FAULT=KIND:METHOD:LOG`` in the environment of ``python -m benchmarks.run
--executor ray`` makes every training group of ``METHOD`` fail in the worker after its first
cell is tested and before anything is returned to the driver, so the group's work is lost:

- ``raise``: raise :class:`TransientCellError` once, which Ray retries;
- ``kill``: the worker kills its own process with SIGKILL once, which Ray retries as a dead worker;
- ``fail``: raise :class:`InjectedFailure` every time, a deterministic error that is not retried.

``LOG`` is a file on the worker's machine that gets one line per fault fired; ``raise`` and
``kill`` fire only while it is empty, which is how they know that they already fired once.
The local executor ignores the variable.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from pathlib import Path

FAULT_ENV = "FEWSHOT_FAULT"
KINDS = ("raise", "kill", "fail")


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

    def fire(self, method: str) -> None:
        """Fail as configured when ``method`` is the target and the fault is still due."""
        if method != self.method:
            return
        log = Path(self.log)
        if self.kind != "fail" and log.exists() and log.read_text().strip():
            return
        with log.open("a") as handle:
            handle.write(f"{self.kind} pid {os.getpid()}\n")
        if self.kind == "raise":
            raise TransientCellError(f"injected transient fault in a {method} group")
        if self.kind == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        raise InjectedFailure(f"injected deterministic failure in a {method} group")
