"""Training-health verdicts: did a recorded model learn?

A verdict is computed from a training history (the mean training loss and the validation
accuracy at each validation) against what chance would give: the loss of uniform scores under
the method's objective (``ln N`` for cross-entropy over N classes; for the Relation Network's
MSE, that of answering 1/N for every pair) and the accuracy ``1/N`` of validation episodes.

Verdicts:

- ``learned``: the last mean training loss is below :data:`LOSS_SHARE` of the chance loss and
  the best validation accuracy beats chance by :data:`ACCURACY_MARGIN` or more;
- ``near-chance``: training ended with a loss within 15% of chance, or validation never beat
  chance by 5 points: the model did not learn, whatever its test accuracy says;
- ``diverged``: a training loss in the history is not a finite number;
- ``unknown``: no history to judge (no validation, or no training): says nothing either way.

A model that starts from a pre-trained backbone and takes no steps of its own is judged by the
pre-training's history (its records name it, see ``pretrained_from``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from benchmarks.records.record import Record

#: The last training loss must be below this share of the chance loss.
LOSS_SHARE = 0.85
#: The best validation accuracy must beat chance by at least this (a fraction).
ACCURACY_MARGIN = 0.05

LEARNED = "learned"
NEAR_CHANCE = "near-chance"
DIVERGED = "diverged"
UNKNOWN = "unknown"
#: The verdicts of a model that did not learn.
NOT_LEARNED = (NEAR_CHANCE, DIVERGED)


def verdict(
    history: Sequence[dict[str, Any]], chance_loss: float | None, val_chance: float | None
) -> dict[str, Any]:
    """The training-health verdict of a history (entries ``{"episode", "train_loss",
    "val_accuracy"}``).

    Args:
        history: one entry per validation, in training order.
        chance_loss: the loss of uniform scores under the training objective, or ``None``
            when unknown (then only validation is judged).
        val_chance: the accuracy of guessing on validation episodes (1 / ways), or ``None``
            when validation does not say.

    Returns:
        ``{"verdict", "reasons", "final_train_loss", "chance_loss", "best_val_accuracy",
        "val_chance"}``; ``reasons`` is a list of sentences, empty for ``learned``.
    """
    losses = [entry.get("train_loss") for entry in history]
    accuracies = [a for a in (entry.get("val_accuracy") for entry in history) if a is not None]
    final = next((loss for loss in reversed(losses) if loss is not None), None)
    best = max(accuracies) if accuracies else None
    out: dict[str, Any] = {
        "final_train_loss": final,
        "chance_loss": chance_loss,
        "best_val_accuracy": best,
        "val_chance": val_chance,
    }
    if any(loss is not None and not math.isfinite(loss) for loss in losses):
        return {**out, "verdict": DIVERGED, "reasons": ["a training loss was not finite"]}
    if final is None:
        return {**out, "verdict": UNKNOWN, "reasons": ["no training history to judge"]}
    reasons = []
    if chance_loss is not None and final >= LOSS_SHARE * chance_loss:
        reasons.append(
            f"final training loss {final:.4g} is within {1 - LOSS_SHARE:.0%} of the chance "
            f"loss {chance_loss:.4g}"
        )
    if best is not None and val_chance is not None and best < val_chance + ACCURACY_MARGIN:
        reasons.append(
            f"best validation accuracy {best:.1%} is within {ACCURACY_MARGIN:.0%} of chance "
            f"({val_chance:.1%})"
        )
    return {**out, "verdict": NEAR_CHANCE if reasons else LEARNED, "reasons": reasons}


def verdict_name(health: dict[str, Any] | None) -> str:
    """The verdict of a health record (``"learned"``, ``"near-chance"``, ...), ``"unknown"``
    without one."""
    return str((health or {}).get("verdict", UNKNOWN))


def did_not_learn(health: dict[str, Any] | None) -> bool:
    """Whether a verdict says the model did not learn (near chance or diverged)."""
    return verdict_name(health) in NOT_LEARNED


def record_health(record: Record) -> dict[str, Any]:
    """The verdict a record carries, or, for records made before verdicts were stored, the one
    computed from its validation history (episodic training: against the chance loss of its
    training episodes; the classification protocol, whose class count records do not keep:
    against validation chance only)."""
    if record.health:
        return record.health
    train = (record.config.get("recipe") or {}).get("train") or {}
    val_way = train.get("val_n_way") or record.n_way
    chance = None
    if train.get("protocol") is None and train.get("n_way"):
        chance = _chance_loss(record, int(train["n_way"]))
    return verdict(record.val_history, chance, None if not val_way else 1 / val_way)


def _chance_loss(record: Record, n_way: int) -> float | None:
    """The chance loss of ``record``'s method at ``n_way``, or None for an unknown method."""
    from methods.registry import UnknownMethodError, build_options, method_class

    try:
        cls = method_class(record.method)
    except UnknownMethodError:
        return None
    try:
        options = build_options(record.method, record.method_options)
    except (ValueError, TypeError):
        options = cls.Options()
    return cls.chance_loss(n_way, options)
