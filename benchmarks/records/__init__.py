"""The results store: one record per cell, written and read here by the executors and reporting."""

from benchmarks.records.record import Record
from benchmarks.records.store import (
    OutputLockedError,
    RecordError,
    RecordStore,
    check_writable,
)

__all__ = ["OutputLockedError", "Record", "RecordError", "RecordStore", "check_writable"]
