"""The model zoo: the trained models behind the committed records, shipped with them, each one
re-testable to its record's number on the very same seeded episodes.

``python -m benchmarks.zoo list`` prints them, ``python -m benchmarks.zoo test NAME`` re-tests
one, ``python -m benchmarks.zoo export`` adds the models of new records; from Python::

    from benchmarks.zoo import load

    model = load("protonet-omniglot-vinyals-quick-5w1s-seed0")   # eval mode, on the CPU
    scores = model(support_x, support_y, query_x)                  # [N*Q, N]
"""

from benchmarks.zoo.catalogue import ZooEntry, ZooError, entries, entry
from benchmarks.zoo.models import load

__all__ = ["ZooEntry", "ZooError", "entries", "entry", "load"]
