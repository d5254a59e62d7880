"""Comparison tables generated from records: CSV, Markdown and LaTeX under the output folder.

For each dataset, split, preset and device kind, :func:`write_tables` writes a family of tables
under ``<out>/<dataset>/<stem>`` (see :func:`table_stem`). The ``.md`` and ``.tex`` files are
display tables (``mean ± CI`` strings, costs per setting joined by ``/``); each ``.csv`` beside
them is instead *tidy*: one observation per row, plain numbers, snake_case columns, so that
``pandas.read_csv`` gives numeric (and boolean) dtypes. Numbers are never rounded: floats are
written as Python's shortest repr, which reads back to the very same value. Units: ``_pct`` is
percent, ``_points`` percentage points, ``_s`` seconds, ``_ms_`` milliseconds. An empty cell is a
missing value (a field an older record lacks, a CI that does not exist).

``<stem>.csv``, one row per cell (record), sorted by ``variant``, ``n_way``, ``k_shot``, ``seed``
(then ``config_hash``):
    ``method`` (registry name), ``variant`` (the row label of the display tables: the name, a
    non-fp32 precision and the options that differ from the defaults), ``method_options`` (all
    options as a JSON object, keys sorted), ``backbone``, ``dataset``, ``split``, ``preset``,
    ``n_way``, ``k_shot``, ``setting``, ``seed``, ``accuracy_pct`` (100 x the record's accuracy),
    ``ci95_pct`` (95% CI half-width over test episodes), ``test_episodes``, ``train_episodes``,
    ``train_wall_s`` (of the training behind the cell, shared by the cells it serves),
    ``ms_per_episode`` (wall time of one test episode), ``device_ms_per_episode`` and
    ``device_clock`` (the clock that measured it, e.g. ``process_cpu``), ``params_total``,
    ``params_backbone``, ``params_head``, ``flops_per_episode``, ``precision``, ``device_name``,
    ``config_hash``, ``training_hash``, ``dataset_fingerprint``.

``<stem>-paired.csv``, one row per pair of variants, setting and seed (see
:func:`benchmarks.reporting.statistics.paired_frame`):
    ``setting``, ``n_way``, ``k_shot``, ``seed``, ``method_a``, ``method_b`` (variant labels),
    ``diff_points`` (mean per-episode accuracy of A minus B), ``ci95_points`` (its 95% CI
    half-width), ``p_paired_t``, ``p_wilcoxon``, ``episodes``.

``<stem>-seeds.csv``, long form: one row per variant, setting and seed, for variants and settings
run with at least two seeds (see :func:`benchmarks.reporting.statistics.seeds_frame`):
    ``method``, ``variant``, ``setting``, ``n_way``, ``k_shot``, ``seeds`` (count),
    ``mean_pct`` and ``ci95_across_seeds_pct`` (Student's t; both repeated on each row of the
    group), ``seed``, ``accuracy_pct``, ``ci95_pct`` (that seed's CI over test episodes).

``<stem>-published.csv``, one row per cell with a published value (see :func:`published_frame`):
    ``method``, ``variant``, ``setting``, ``n_way``, ``k_shot``, ``seed``, ``ours_pct``,
    ``ci95_pct``, ``published_pct``, ``published_ci95_pct`` (empty when the source gives none),
    ``diff_points`` (ours - published), ``published_in_ci`` (bool: the published value lies in
    our 95% CI), ``within_tolerance`` (bool: ``|diff_points| <= tolerance_points``),
    ``tolerance_points``, ``train_episodes``, ``train_wall_s``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pandas as pd

from benchmarks.records.health import NOT_LEARNED, did_not_learn, record_health, verdict_name
from benchmarks.records.store import RecordStore
from benchmarks.reporting.leaderboard import TablePlace, write_leaderboard
from benchmarks.reporting.plots import setting_order, write_plots
from benchmarks.reporting.published import (
    LAKE_RUNS_PUBLISHED,
    REPRODUCTIONS,
    Published,
    published_numbers,
    tolerance,
)
from benchmarks.reporting.statistics import (
    across_seeds,
    paired_frame,
    paired_table,
    seeds_frame,
    seeds_table,
)
from methods import method_class


def load_records(out: Path) -> pd.DataFrame:
    """Every dataset's records under ``out`` as one frame, the latest record per config hash.

    One row per record, one column per key of :meth:`benchmarks.records.Record.as_dict` (the record's fields and
    any keys it kept that the suite does not know).
    """
    rows: list[dict[str, Any]] = []
    for records_file in sorted(Path(out).glob("*/records.jsonl")):
        rows.extend(
            {**record.as_dict(), "health": record_health(record)}
            for record in RecordStore(records_file.parent).records()
        )
    if not rows:
        return pd.DataFrame()
    frame = pd.DataFrame(rows)
    frame["method_options"] = [
        _with_current_defaults(method, options)
        for method, options in zip(frame["method"], frame["method_options"])
    ]
    frame = frame.drop_duplicates("config_hash", keep="last")
    position = _table_position(frame)
    frame = frame.drop_duplicates(position, keep="last")
    return frame.drop(columns=[c for c in position if c.startswith("_")]).reset_index(drop=True)


def _table_position(frame: pd.DataFrame) -> list[str]:
    """Adds to ``frame`` and names the columns that place a record in a table (dataset, split,
    preset, device kind, test protocol, method variant, setting, seed): of two records in one
    place, the later one (a re-run under a changed recipe) is shown; the file keeps both."""
    frame["_options"] = frame["method_options"].map(_options_json)
    frame["_precision"] = _precision(frame)
    frame["_device"] = device_kind(frame)
    frame["_episodes"] = episode_protocol(frame)
    return ["dataset", "split", "preset", "_device", "_episodes", "method", "_options",
            "_precision", "setting", "seed"]  # fmt: skip


def _defaults(method: str) -> dict[str, Any]:
    """The method's default options as a record stores them (JSON types); none for a method
    recorded elsewhere and not registered here."""
    try:
        return json.loads(json.dumps(method_class(method).Options().as_dict()))
    except KeyError:
        return {}


def _with_current_defaults(method: str, options: dict[str, Any]) -> dict[str, Any]:
    """A record's method options, completed with today's defaults of options added since it was
    made (an added option's default keeps the old behaviour), so that old and new records of
    one variant share a row."""
    return {**_defaults(method), **(options or {})}


def _method_label(group: pd.DataFrame) -> str:
    """The method's name plus the options that differ from its defaults."""
    method = group["method"].iloc[0]
    options = group["method_options"].iloc[0]
    precision = group["precision"].iloc[0] if "precision" in group else "fp32"
    name = method
    if isinstance(precision, str) and precision != "fp32":
        name += f" [{precision}]"
    defaults = _defaults(method)
    detail = ", ".join(f"{k}={v}" for k, v in options.items() if defaults.get(k) != v)
    return name + (f" ({detail})" if detail else "")


def method_labels(records: pd.DataFrame) -> pd.Series:
    """Each record's method label (see :func:`_method_label`), aligned with ``records``."""
    return records.apply(lambda r: _method_label(records.loc[[r.name]]), axis=1)


def device_kind(records: pd.DataFrame) -> pd.Series:
    """``"gpu"`` for records run on a CUDA device, else ``"cpu"`` (from each record's config)."""
    if "config" not in records:
        return pd.Series("cpu", records.index)
    return records["config"].map(
        lambda config: "gpu" if str(config.get("device", "cpu")).startswith("cuda") else "cpu"
    )


def table_stem(
    out: Path, dataset: str, split: str, preset: str, kind: str, episodes: str = "random"
) -> Path:
    """Where one table family is written: ``<out>/<dataset>/<split>-<preset>`` for CPU records,
    with ``-gpu`` appended for GPU records, so timings of different hardware never share a
    table; test episodes of another protocol than ``random`` add it after the split
    (``lake-within-alphabet-paper-cpu``)."""
    split_label = split if episodes == "random" else f"{split}-{episodes}"
    return Path(out) / dataset / (f"{split_label}-{preset}" + ("-gpu" if kind == "gpu" else ""))


def episode_protocol(records: pd.DataFrame) -> pd.Series:
    """The test-episode protocol of each record (``"random"`` unless its cell named one)."""
    if "config" not in records:
        return pd.Series("random", index=records.index)
    return records["config"].map(
        lambda config: config.get("episodes", "random") if isinstance(config, dict) else "random"
    )


def _accuracy_cell(cell: pd.DataFrame) -> str:
    """``mean ± ci95`` in percent: the episode CI for one seed, the CI across seeds (Student's t)
    for several."""
    flag = _did_not_learn_mark(cell)
    if len(cell) == 1:
        row = cell.iloc[0]
        return f"{100 * row.accuracy:.2f} ± {100 * row.ci95:.2f}{flag}"
    mean, half = across_seeds(cell["accuracy"].to_numpy())
    return f"{100 * mean:.2f} ± {100 * half:.2f} ({len(cell)} seeds){flag}"


#: How tables mark a cell whose model did not learn (see :mod:`benchmarks.records.health`).
DID_NOT_LEARN = " ✗ did not learn"


def _did_not_learn_mark(cell: pd.DataFrame) -> str:
    """:data:`DID_NOT_LEARN` when any record of ``cell`` did not learn, else ``""``."""
    if "health" not in cell:
        return ""
    return DID_NOT_LEARN if any(did_not_learn(h) for h in cell["health"]) else ""


def health_verdicts(records: pd.DataFrame) -> pd.Series:
    """Each record's training-health verdict (``"learned"``, ``"near-chance"``, ...)."""
    if "health" not in records:
        return pd.Series(verdict_name(None), index=records.index)
    return records["health"].map(verdict_name)


def comparison_table(records: pd.DataFrame) -> pd.DataFrame:
    """Methods as rows, settings as columns, for records of one dataset, split and preset.

    Accuracy columns hold ``mean ± 95% CI`` in percent; cost columns list one value per setting
    in the order of the accuracy columns.
    """
    settings = setting_order(records)
    rows: list[dict[str, Any]] = []
    for (_, backbone, _, _), group in records.groupby(
        ["method", "backbone", records["method_options"].map(repr), _precision(records)], sort=True
    ):
        row: dict[str, str | int] = {"method": _method_label(group), "backbone": backbone}
        for setting in settings:
            cell = group[group["setting"] == setting]
            row[setting] = _accuracy_cell(cell) if len(cell) else "-"
        by_setting = [group[group["setting"] == s] for s in settings]
        row["params"] = int(group["params_total"].iloc[0])
        row["MFLOPs/episode"] = " / ".join(
            f"{c['flops_per_episode'].mean() / 1e6:.1f}" if len(c) else "-" for c in by_setting
        )
        row["ms/episode"] = " / ".join(
            f"{c['eval_wall_ms_per_episode'].mean():.1f}" if len(c) else "-" for c in by_setting
        )
        trainings = group.drop_duplicates("training_hash")
        row["train episodes"] = " / ".join(
            str(int(c["train_episodes"].iloc[0])) if len(c) else "-" for c in by_setting
        )
        row["train time (total)"] = f"{trainings['train_wall_s'].sum() / 60:.1f} min"
        rows.append(row)
    return pd.DataFrame(rows)


def _precision(records: pd.DataFrame) -> pd.Series:
    """Each record's precision; ``"fp32"`` for records made before precision was recorded."""
    if "precision" not in records:
        return pd.Series("fp32", records.index)
    return records["precision"].fillna("fp32")


#: Record fields that ``<stem>.csv`` names otherwise.
_RENAMED = {
    "eval_wall_ms_per_episode": "ms_per_episode",
    "eval_device_ms_per_episode": "device_ms_per_episode",
    "eval_device_clock": "device_clock",
}

#: The columns of ``<stem>.csv``, in order (see the module docstring).
RECORD_COLUMNS = [
    "method",
    "variant",
    "method_options",
    "backbone",
    "dataset",
    "split",
    "preset",
    "n_way",
    "k_shot",
    "setting",
    "seed",
    "accuracy_pct",
    "ci95_pct",
    "test_episodes",
    "train_episodes",
    "train_wall_s",
    "ms_per_episode",
    "device_ms_per_episode",
    "device_clock",
    "params_total",
    "params_backbone",
    "params_head",
    "flops_per_episode",
    "precision",
    "health",
    "pretrained_from",
    "device_name",
    "config_hash",
    "training_hash",
    "dataset_fingerprint",
]


def records_frame(records: pd.DataFrame, labels: pd.Series) -> pd.DataFrame:
    """The tidy main table: one row per record with the columns :data:`RECORD_COLUMNS`, sorted by
    variant, way, shot and seed; a field a record lacks is left empty.

    Args:
        records: the records of one table (one per cell).
        labels: the variant label of each record (same index as ``records``).
    """
    frame = records.rename(columns=_RENAMED).assign(
        variant=labels,
        method_options=records["method_options"].map(_options_json),
        accuracy_pct=100 * records["accuracy"],
        ci95_pct=100 * records["ci95"],
        precision=_precision(records),
        health=health_verdicts(records),
    )
    frame = frame.reindex(columns=RECORD_COLUMNS)
    order = ["variant", "n_way", "k_shot", "seed", "config_hash"]
    return frame.sort_values(order, kind="stable").reset_index(drop=True)


def _options_json(options: dict[str, Any] | None) -> str:
    """A record's method options as a JSON object with sorted keys."""
    return json.dumps(options or {}, sort_keys=True)


def table_caption(records: pd.DataFrame) -> str:
    """What the table shows and where its numbers come from."""
    first = records.iloc[0]
    episodes = sorted(set(records["test_episodes"]))
    seeds = sorted(set(records["seed"]))
    devices = sorted(set(records["device_name"]))
    clocks = sorted(set(records["eval_device_clock"]))
    protocols = sorted(set(episode_protocol(records)) - {"random"})
    within = (
        f", {' and '.join(protocols)} test episodes (Lake et al.: one alphabet per episode, "
        "support and query by different drawers)"
        if protocols
        else ""
    )
    return (
        f"{first.dataset} / {first.split} split{within}, preset '{first.preset}': test accuracy "
        "(%) ± 95% "
        f"CI over {', '.join(map(str, episodes))} test episodes per cell (1.96·std/√episodes; "
        f"with several seeds, Student's t across seeds), seeds {', '.join(map(str, seeds))}. ms/episode: wall "
        f"time of one test episode's forward pass ({', '.join(clocks)} also recorded), per "
        f"setting in column order; measured on {'; '.join(devices)}."
    )


def write_tables(out: Path) -> list[Path]:
    """Regenerate every table and plot under ``out`` from its records; returns the main tables'
    Markdown files."""
    records = load_records(out)
    written: list[Path] = []
    if records.empty:
        return written
    groups = records.groupby(
        ["dataset", "split", "preset", device_kind(records), episode_protocol(records)]
    )
    places = []
    for (dataset, split, preset, kind, episodes), group in groups:
        table = comparison_table(group)
        stem = table_stem(out, dataset, split, preset, kind, episodes)
        caption = table_caption(group)
        labels = method_labels(group)
        place = TablePlace(dataset, split, preset, kind, episodes, stem)
        places.append((place, table, group, labels))
        _write_table(stem, table, records_frame(group, labels), caption)
        latex = table.to_latex(
            index=False, caption=caption.replace("%", r"\%").replace("±", r"$\pm$")
        )
        stem.with_suffix(".tex").write_text(latex.replace("±", r"$\pm$"))
        written.append(stem.with_suffix(".md"))
        store = RecordStore(Path(out) / dataset)
        accuracies = {r.config_hash: store.accuracies(r._asdict()) for r in group.itertuples()}
        intro = first_line(group)
        paired = paired_frame(group, accuracies, labels)
        _write_table(
            stem.with_name(f"{stem.name}-paired"),
            paired_table(paired),
            identified(paired, place, group, labels),
            f"{intro}: paired differences of per-episode test accuracy (the methods saw identical "
            "episodes); ± is the 95% CI of the mean difference.",
        )
        seeds = seeds_frame(group, labels)
        _write_table(
            stem.with_name(f"{stem.name}-seeds"),
            seeds_table(seeds),
            identified(seeds, place, group, labels),
            f"{intro}: per-seed accuracy (± 95% CI over test episodes), the mean over seeds and "
            "its 95% CI across seeds (Student's t).",
        )
        keys = _published_keys(group)
        sources = sorted({published_numbers()[k].source for k in keys})
        sources += sorted({r.source for k in keys for r in REPRODUCTIONS.get(k, {})})
        published = published_frame(group, labels)
        _write_table(
            stem.with_name(f"{stem.name}-published"),
            published_table(published),
            identified(published, place, group, labels),
            f"{intro}: ours (mean ± 95% CI over test episodes, per seed) next to the published "
            "accuracy. 'within tolerance': |ours - published| at most 1 point at 5-way and 2 "
            "points at 20-way, the bar for shortened (CPU) training; 'train time' is that of the "
            "model behind the cell, shared by the cells it serves."
            + (
                " Further columns: the same cell as re-implemented by others (their numbers, "
                "not our runs)."
                if any(k in REPRODUCTIONS for k in keys)
                else ""
            ),
            "Sources:\n" + "".join(f"- {source}\n" for source in sources),
        )
        if published.empty and episodes == "within-alphabet":
            _write_within_alphabet_published(group, stem, labels)
        _write_official_runs(group, stem, labels)
        flagged = group["health"].map(did_not_learn) if "health" in group else False
        write_plots(group, stem, labels.where(~flagged, labels + DID_NOT_LEARN))
    write_leaderboard(Path(out), places)
    return written


def identified(
    tidy: pd.DataFrame, place: TablePlace, group: pd.DataFrame, labels: pd.Series
) -> pd.DataFrame:
    """``tidy`` (a CSV's frame) led by the columns that say what its rows are about: dataset,
    split, test protocol, preset, device kind, and each method variant's backbone and options
    (for a variant column, or both of a pair's)."""
    if tidy.empty:
        return tidy
    front = {"dataset": place.dataset, "split": place.split, "protocol": place.episodes,
             "preset": place.preset, "device": place.device}  # fmt: skip
    of_label = group.assign(label=labels).drop_duplicates("label").set_index("label")
    options = of_label["method_options"].map(lambda o: json.dumps(o, sort_keys=True))
    identity = pd.DataFrame(front, index=tidy.index)
    for column, suffix in (("variant", ""), ("method_a", "_a"), ("method_b", "_b")):
        if column in tidy:
            identity[f"backbone{suffix}"] = tidy[column].map(of_label["backbone"])
            identity[f"method_options{suffix}"] = tidy[column].map(options)
    return pd.concat([identity, tidy], axis=1)


def official_runs_frame(records: pd.DataFrame, labels: pd.Series | None = None) -> pd.DataFrame:
    """Error rates on Lake et al.'s 20 official runs: one row per record tested on them, then
    the published figures (the columns of ``<stem>-official-runs.csv``)."""
    if "official_runs_error_pct" not in records or records["official_runs_error_pct"].isna().all():
        return pd.DataFrame()
    labels = method_labels(records) if labels is None else labels
    tested = records.assign(label=labels)[records["official_runs_error_pct"].notna()]
    rows = [
        {
            "who": r.label,
            "trained_for": r.setting,
            "seed": int(r.seed),
            "error_pct": float(r.official_runs_error_pct),
            "runs": len(r.official_runs_errors_pct),
            "worst_run_error_pct": float(max(r.official_runs_errors_pct)),
            "source": "this run",
        }
        for r in tested.sort_values(["label", "n_way", "k_shot", "seed"]).itertuples()
    ]
    rows += _lake_published_rows(trained_for="", seed=None, runs=20, worst_run_error_pct=None)
    return pd.DataFrame(rows)


def _lake_published_rows(**blank: Any) -> list[dict[str, Any]]:
    """Lake et al.'s published error rates as rows (``who``, ``error_pct``, ``source``), with
    ``blank`` filling the columns that only our rows have."""
    return [
        {"who": who, "error_pct": error, "source": source, **blank}
        for who, error, source in LAKE_RUNS_PUBLISHED
    ]


def _sources_footer(frame: pd.DataFrame) -> str:
    """The footer listing the published sources of a table's rows (ours are ``"this run"``)."""
    sources = sorted({s for s in frame["source"] if s != "this run"})
    return "Sources:\n" + "".join(f"- {source}\n" for source in sources)


def _seed_text(seed: Any) -> str:
    return "" if pd.isna(seed) else str(int(seed))


def within_alphabet_published_frame(
    records: pd.DataFrame, labels: pd.Series | None = None
) -> pd.DataFrame:
    """Within-alphabet 20-way one-shot error rates next to Lake et al.'s published figures: one
    row per such record (error = 100 - accuracy, its 95% CI over the test episodes), then the
    published rows (the columns of ``<stem>-published.csv`` for within-alphabet tables)."""
    labels = method_labels(records) if labels is None else labels
    chosen = records.assign(label=labels)
    chosen = chosen[(chosen["n_way"] == 20) & (chosen["k_shot"] == 1)]
    if chosen.empty:
        return pd.DataFrame()
    rows = [
        {
            "who": r.label,
            "seed": int(r.seed),
            "error_pct": 100 * (1 - r.accuracy),
            "ci95_pct": 100 * r.ci95,
            "evaluated_on": f"{int(r.test_episodes)} seeded within-alphabet episodes",
            "train_episodes": int(r.train_episodes),
            "train_wall_s": r.train_wall_s,
            "source": "this run",
        }
        for r in chosen.sort_values(["label", "seed"]).itertuples()
    ]
    rows += _lake_published_rows(
        seed=None,
        ci95_pct=None,
        evaluated_on="the 20 official runs",
        train_episodes=None,
        train_wall_s=None,
    )
    return pd.DataFrame(rows)


def _write_within_alphabet_published(group: pd.DataFrame, stem: Path, labels: pd.Series) -> None:
    frame = within_alphabet_published_frame(group, labels)
    if frame.empty:
        return
    display = pd.DataFrame(
        {
            "who": frame["who"],
            "seed": frame["seed"].map(_seed_text),
            "error (%)": [
                f"{e:.2f}" + ("" if pd.isna(h) else f" ± {h:.2f}")
                for e, h in zip(frame["error_pct"], frame["ci95_pct"])
            ],
            "evaluated on": frame["evaluated_on"],
            "train time": frame["train_wall_s"].map(
                lambda s: "" if pd.isna(s) else f"{s / 60:.1f} min"
            ),
        }
    )
    _write_table(
        stem.with_name(f"{stem.name}-published"),
        display,
        frame,
        f"{first_line(group)}: 20-way one-shot error rate within one alphabet (ours: mean ± 95% "
        "CI over the test episodes, support and query by different drawers) next to the figures "
        "Lake et al. published for their 20 official runs (20 items each, the same task). The "
        "episodes differ, so the comparison is of the task, not of identical trials; "
        "`--test-runs` adds the official runs themselves.",
        _sources_footer(frame),
    )


def _write_official_runs(group: pd.DataFrame, stem: Path, labels: pd.Series) -> None:
    frame = official_runs_frame(group, labels)
    if frame.empty:
        return
    display = pd.DataFrame(
        {
            "who": frame["who"],
            "trained for": frame["trained_for"],
            "seed": frame["seed"].map(_seed_text),
            "error (%) over the 20 runs": frame["error_pct"].map(lambda e: f"{e:.1f}"),
            "worst run (%)": frame["worst_run_error_pct"].map(
                lambda e: "" if pd.isna(e) else f"{e:.0f}"
            ),
        }
    )
    _write_table(
        stem.with_name(f"{stem.name}-official-runs"),
        display,
        frame,
        "Error rate on Lake et al.'s 20 official within-alphabet 20-way one-shot runs of Omniglot "
        "(20 test items each; every model of this table, whatever setting it was trained for), "
        "next to the published figures.",
        _sources_footer(frame),
    )


def _write_table(
    stem: Path, table: pd.DataFrame, tidy: pd.DataFrame, caption: str, footer: str = ""
) -> None:
    """``stem.md`` (caption, display ``table``, footer) and ``stem.csv`` (the ``tidy`` frame
    behind it, numbers unrounded); nothing for an empty table."""
    if table.empty:
        return
    tidy.to_csv(stem.with_suffix(".csv"), index=False)
    text = f"{caption}\n\n{table.to_markdown(index=False)}\n"
    stem.with_suffix(".md").write_text(text + (f"\n{footer}" if footer else ""))


def _cell_key(record: Any) -> tuple[str, str, str, int, int]:
    """The key of :func:`~benchmarks.reporting.published.published_numbers` for a record (a named tuple from ``itertuples``)."""
    return record.method, record.dataset, record.split, int(record.n_way), int(record.k_shot)


def _published_keys(records: pd.DataFrame) -> list[tuple]:
    """The keys of :func:`~benchmarks.reporting.published.published_numbers` that ``records`` have a published value for."""
    return [key for key in map(_cell_key, records.itertuples()) if key in published_numbers()]


def published_frame(records: pd.DataFrame, labels: pd.Series | None = None) -> pd.DataFrame:
    """The tidy comparison with published results: one row per cell that has a published value,
    sorted by variant, way, shot and seed (the columns of ``<stem>-published.csv``).

    Args:
        records: the records of one table.
        labels: the variant label of each record; by default :func:`method_labels`.
    """
    labels = method_labels(records) if labels is None else labels
    ordered = records.assign(label=labels).sort_values(["label", "n_way", "k_shot", "seed"])
    rows = [
        _published_row(r, published_numbers()[_cell_key(r)])
        for r in ordered.itertuples()
        if _cell_key(r) in published_numbers()
    ]
    return pd.DataFrame(rows)


def _published_row(record: Any, ref: Published) -> dict[str, Any]:
    """One row of :func:`published_frame`: a record (a named tuple with its ``label``) next to the
    published result for its cell."""
    ours, half = 100 * record.accuracy, 100 * record.ci95
    allowed = tolerance(int(record.n_way))
    return {
        "method": record.method,
        "variant": record.label,
        "setting": record.setting,
        "n_way": int(record.n_way),
        "k_shot": int(record.k_shot),
        "seed": int(record.seed),
        "ours_pct": ours,
        "ci95_pct": half,
        "published_pct": ref.accuracy,
        "published_ci95_pct": ref.ci95,
        "diff_points": ours - ref.accuracy,
        "published_in_ci": bool(abs(ours - ref.accuracy) <= half),
        "within_tolerance": bool(abs(ours - ref.accuracy) <= allowed),
        "tolerance_points": allowed,
        "train_episodes": int(record.train_episodes),
        "train_wall_s": record.train_wall_s,
        "health": verdict_name(getattr(record, "health", None)),
        **{r.column: value for r, value in REPRODUCTIONS.get(_cell_key(record), {}).items()},
    }


def published_table(published: pd.DataFrame) -> pd.DataFrame:
    """The display form of :func:`published_frame`: ours and the published value as
    ``mean ± CI``, the difference, yes/no verdicts and the training time in minutes."""
    if published.empty:
        return pd.DataFrame()
    return pd.DataFrame(
        {
            "method": published["variant"],
            "setting": published["setting"],
            "seed": published["seed"],
            "ours": [
                f"{ours:.2f} ± {half:.2f}" + (DID_NOT_LEARN if health in NOT_LEARNED else "")
                for ours, half, health in zip(
                    published["ours_pct"], published["ci95_pct"], published["health"]
                )
            ],
            "published": [
                _as_published(p) + (f" ± {_as_published(h)}" if pd.notna(h) and h else "")
                for p, h in zip(published["published_pct"], published["published_ci95_pct"])
            ],
            "ours - published": published["diff_points"].map(lambda d: f"{d:+.2f}"),
            "published in our CI": published["published_in_ci"].map(_yes_no),
            "within tolerance": [
                f"{_yes_no(within)} (±{allowed:.0f})"
                for within, allowed in zip(
                    published["within_tolerance"], published["tolerance_points"]
                )
            ],
            **{
                reproduction.title: published[reproduction.column].map(_as_reproduction)
                for reproduction in _reproductions()
                if reproduction.column in published
            },
            "train episodes": published["train_episodes"],
            "train time": published["train_wall_s"].map(lambda s: f"{s / 60:.1f} min"),
        }
    )


def _reproductions() -> list[Any]:
    """Every re-implementation with numbers, in a fixed order."""
    seen = {r.column: r for cells in REPRODUCTIONS.values() for r in cells}
    return [seen[column] for column in sorted(seen)]


def _as_reproduction(value: float) -> str:
    return "-" if pd.isna(value) else f"{value:.2f}"


def _yes_no(value: bool) -> str:
    return "yes" if value else "no"


def _as_published(value: float) -> str:
    """A published number with the digits it was published with: 96.0, 99.6, 50.44."""
    text = f"{value:.2f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


def first_line(records: pd.DataFrame) -> str:
    first = records.iloc[0]
    return f"{first.dataset} / {first.split} split, preset '{first.preset}'"


_MARKER = re.compile(r"(<!-- table: (?P<name>[\w./-]+) -->\n)(?P<body>.*?)(<!-- /table -->)", re.S)


def embed_tables(document: Path, out: Path) -> int:
    """Replace each ``<!-- table: NAME -->...<!-- /table -->`` block of ``document`` with the
    generated ``out/NAME``; returns how many blocks were filled."""
    text = document.read_text()
    count = 0

    def fill(match: re.Match) -> str:
        nonlocal count
        table = out / match["name"]
        if not table.exists():
            raise FileNotFoundError(f"{document} embeds {table}, which has not been generated")
        count += 1
        return match[1] + table.read_text().rstrip() + "\n" + match[4]

    document.write_text(_MARKER.sub(fill, text))
    return count
