"""A run's numbers beside reference records of the same cells (by default the committed ones).

The committed results under ``results/`` are the reference; a user's run writes its own records
elsewhere (``runs/`` by default), so a fresh clone trains and tests instead of finding every cell
"already recorded". This module matches each of the run's records with the reference record of
the same experiment and says whether the two agree.

Two records describe the same experiment when their configurations are equal apart from the
device (a run on a GPU is compared with a CPU reference, and the table names both) and they read
data with the same fingerprint. They agree "within the CIs" when the difference of the two
accuracies lies inside the 95% CI of a difference of two independent estimates,
``sqrt(ci_a^2 + ci_b^2)``. That covers the test episodes' sampling error only: two trainings of
one seed on other hardware or another torch build can differ by more (see the across-seed
spread in the reference's ``-seeds`` table).
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from benchmarks.reporting.tables import load_records, method_labels


def experiment_key(config: dict[str, Any], fingerprint: str) -> str:
    """What identifies an experiment across machines: its configuration without the device,
    and the fingerprint of the data it read."""
    portable = {key: value for key, value in config.items() if key != "device"}
    text = json.dumps([portable, fingerprint], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _keys(records: pd.DataFrame) -> pd.Series:
    return pd.Series(
        [experiment_key(c, f) for c, f in zip(records["config"], records["dataset_fingerprint"])],
        index=records.index,
    )


def reference_frame(mine: pd.DataFrame, reference: pd.DataFrame) -> pd.DataFrame:
    """One row per record of ``mine``, numeric: the run's accuracy and CI, the reference's (NaN
    where the reference has no such cell), their difference and whether it is within the CIs.

    Accuracies, CIs and differences are in percentage points.
    """
    found: dict[str, Any] = {}
    if not reference.empty:
        found = {key: row for key, (_, row) in zip(_keys(reference), reference.iterrows())}
    rows = []
    labelled = mine.assign(label=method_labels(mine), key=_keys(mine))
    for r in labelled.sort_values(["label", "n_way", "k_shot", "seed"]).itertuples():
        ref = found.get(r.key)
        ours, ours_ci = 100 * r.accuracy, 100 * r.ci95
        row = {
            "method": r.label,
            "setting": r.setting,
            "n_way": int(r.n_way),
            "k_shot": int(r.k_shot),
            "seed": int(r.seed),
            "accuracy_pct": ours,
            "ci95_pct": ours_ci,
            "reference_pct": math.nan,
            "reference_ci95_pct": math.nan,
            "diff_points": math.nan,
            "combined_ci95_points": math.nan,
            "within_ci": None,
            "device_name": r.device_name,
            "reference_device_name": None,
            "config_hash": r.config_hash,
            "reference_config_hash": None,
        }
        if ref is not None:
            theirs, theirs_ci = 100 * ref["accuracy"], 100 * ref["ci95"]
            combined = math.hypot(ours_ci, theirs_ci)
            row.update(
                reference_pct=theirs,
                reference_ci95_pct=theirs_ci,
                diff_points=ours - theirs,
                combined_ci95_points=combined,
                within_ci=bool(abs(ours - theirs) <= combined),
                reference_device_name=ref["device_name"],
                reference_config_hash=ref["config_hash"],
            )
        rows.append(row)
    return pd.DataFrame(rows)


def reference_table(frame: pd.DataFrame) -> pd.DataFrame:
    """The display form of :func:`reference_frame`."""
    rows = []
    for r in frame.itertuples():
        known = r.within_ci is not None
        rows.append(
            {
                "method": r.method,
                "setting": r.setting,
                "seed": r.seed,
                "yours": f"{r.accuracy_pct:.2f} ± {r.ci95_pct:.2f}",
                "reference": f"{r.reference_pct:.2f} ± {r.reference_ci95_pct:.2f}"
                if known
                else "-",
                "yours - reference": f"{r.diff_points:+.2f} (CI ±{r.combined_ci95_points:.2f})"
                if known
                else "-",
                "within the CIs": ("yes" if r.within_ci else "no") if known else "no reference",
                "reference made on": r.reference_device_name if known else "-",
            }
        )
    return pd.DataFrame(rows)


def reference_caption(reference_dir: Path) -> str:
    return (
        f"Your run beside the reference records in {reference_dir} (the same experiment: equal "
        "configuration apart from the device, and the same data fingerprint). 'within the CIs': "
        "|yours - reference| <= sqrt(CI_yours^2 + CI_reference^2), the 95% CI of a difference of "
        "two independent estimates; it covers test-episode sampling only, and trainings on other "
        "hardware can differ by more (see the reference's -seeds table for the spread across "
        "seeds). 'no reference': no reference record of that experiment."
    )


def compare_with_reference(mine: pd.DataFrame, reference_dir: Path, stem: Path) -> str | None:
    """Write ``stem.md`` (display) and ``stem.csv`` (numeric) comparing ``mine`` with the records
    under ``reference_dir``; returns the Markdown text, or None when ``mine`` is empty."""
    if mine.empty:
        return None
    reference = load_records(reference_dir)
    if not reference.empty:
        reference = reference[reference["dataset"].isin(set(mine["dataset"]))]
    frame = reference_frame(mine, reference)
    text = (
        f"{reference_caption(reference_dir)}\n\n{reference_table(frame).to_markdown(index=False)}\n"
    )
    stem.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(stem.with_suffix(".csv"), index=False)
    stem.with_suffix(".md").write_text(text)
    return text
