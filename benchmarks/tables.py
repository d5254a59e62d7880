"""Comparison tables generated from records: CSV, Markdown and LaTeX under the output folder."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pandas as pd

from methods import method_class

from .plots import setting_order, write_plots
from .published import PUBLISHED, tolerance
from .records import RecordStore
from .statistics import across_seeds, paired_table, seeds_table


def load_records(out: Path) -> pd.DataFrame:
    """Every dataset's records under ``out`` as one frame, the latest record per config hash."""
    rows = []
    for records_file in sorted(Path(out).glob("*/records.jsonl")):
        rows.extend(RecordStore(records_file.parent).records())
    if not rows:
        return pd.DataFrame()
    frame = pd.DataFrame(rows)
    frame["method_options"] = [
        _with_current_defaults(method, options)
        for method, options in zip(frame["method"], frame["method_options"])
    ]
    return frame.drop_duplicates("config_hash", keep="last").reset_index(drop=True)


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


def _method_labels(records: pd.DataFrame) -> pd.Series:
    """Each record's method label (see :func:`_method_label`), aligned with ``records``."""
    return records.apply(lambda r: _method_label(records.loc[[r.name]]), axis=1)


def device_kind(records: pd.DataFrame) -> pd.Series:
    """``"gpu"`` for records run on a CUDA device, else ``"cpu"`` (from each record's config)."""
    if "config" not in records:
        return pd.Series("cpu", records.index)
    return records["config"].map(
        lambda config: "gpu" if str(config.get("device", "cpu")).startswith("cuda") else "cpu"
    )


def table_stem(out: Path, dataset: str, split: str, preset: str, kind: str) -> Path:
    """Where one table family is written: ``<out>/<dataset>/<split>-<preset>`` for CPU records,
    with ``-gpu`` appended for GPU records, so timings of different hardware never share a table."""
    return Path(out) / dataset / (f"{split}-{preset}" + ("-gpu" if kind == "gpu" else ""))


def _accuracy_cell(cell: pd.DataFrame) -> str:
    """``mean ± ci95`` in percent: the episode CI for one seed, the CI across seeds (Student's t)
    for several."""
    if len(cell) == 1:
        row = cell.iloc[0]
        return f"{100 * row.accuracy:.2f} ± {100 * row.ci95:.2f}"
    mean, half = across_seeds(cell["accuracy"].to_numpy())
    return f"{100 * mean:.2f} ± {100 * half:.2f} ({len(cell)} seeds)"


def comparison_table(records: pd.DataFrame) -> pd.DataFrame:
    """Methods as rows, settings as columns, for records of one dataset, split and preset.

    Accuracy columns hold ``mean ± 95% CI`` in percent; cost columns list one value per setting
    in the order of the accuracy columns.
    """
    settings = setting_order(records["setting"].tolist())
    rows = []
    precision = (
        records["precision"].fillna("fp32") if "precision" in records
        else pd.Series("fp32", records.index)
    )
    for (_, backbone, _, _), group in records.groupby(
        ["method", "backbone", records["method_options"].map(repr), precision], sort=True
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


def table_caption(records: pd.DataFrame) -> str:
    """What the table shows and where its numbers come from."""
    first = records.iloc[0]
    episodes = sorted(set(records["test_episodes"]))
    seeds = sorted(set(records["seed"]))
    devices = sorted(set(records["device_name"]))
    clocks = sorted(set(records["eval_device_clock"]))
    return (
        f"{first.dataset} / {first.split} split, preset '{first.preset}': test accuracy (%) ± 95% "
        f"CI over {', '.join(map(str, episodes))} test episodes per cell (1.96·std/√episodes; "
        f"with several seeds, Student's t across seeds), seeds {', '.join(map(str, seeds))}. ms/episode: wall "
        f"time of one test episode's forward pass ({', '.join(clocks)} also recorded), per "
        f"setting in column order; measured on {'; '.join(devices)}."
    )


def write_tables(out: Path) -> list[Path]:
    """Regenerate every table and plot under ``out`` from its records; returns the main tables'
    Markdown files."""
    records = load_records(out)
    written = []
    if records.empty:
        return written
    groups = records.groupby(["dataset", "split", "preset", device_kind(records)])
    for (dataset, split, preset, kind), group in groups:
        table = comparison_table(group)
        stem = table_stem(out, dataset, split, preset, kind)
        caption = table_caption(group)
        _write_table(stem, table, caption)
        latex = table.to_latex(index=False, caption=caption.replace("%", r"\%").replace("±", r"$\pm$"))
        stem.with_suffix(".tex").write_text(latex.replace("±", r"$\pm$"))
        written.append(stem.with_suffix(".md"))
        store = RecordStore(Path(out) / dataset)
        accuracies = {r.config_hash: store.accuracies(r._asdict()) for r in group.itertuples()}
        labels = _method_labels(group)
        intro = first_line(group)
        _write_table(
            stem.with_name(f"{stem.name}-paired"), paired_table(group, accuracies, labels),
            f"{intro}: paired differences of per-episode test accuracy (the methods saw identical "
            "episodes); ± is the 95% CI of the mean difference.",
        )
        _write_table(
            stem.with_name(f"{stem.name}-seeds"), seeds_table(group, labels),
            f"{intro}: per-seed accuracy (± 95% CI over test episodes), the mean over seeds and "
            "its 95% CI across seeds (Student's t).",
        )
        sources = sorted({PUBLISHED[k].source for k in _published_keys(group)})
        _write_table(
            stem.with_name(f"{stem.name}-published"), published_table(group),
            f"{intro}: ours (mean ± 95% CI over test episodes, per seed) next to the published "
            "accuracy. 'within tolerance': |ours - published| at most 1 point at 5-way and 2 "
            "points at 20-way, the bar for shortened (CPU) training; 'train time' is that of the "
            "model behind the cell, shared by the cells it serves.",
            "Sources:\n" + "".join(f"- {source}\n" for source in sources),
        )
        write_plots(group, stem, labels)
    return written


def _write_table(stem: Path, table: pd.DataFrame, caption: str, footer: str = "") -> None:
    """``stem.csv`` and ``stem.md`` (caption, table, footer); nothing for an empty table."""
    if table.empty:
        return
    table.to_csv(stem.with_suffix(".csv"), index=False)
    text = f"{caption}\n\n{table.to_markdown(index=False)}\n"
    stem.with_suffix(".md").write_text(text + (f"\n{footer}" if footer else ""))


def _published_keys(records: pd.DataFrame) -> list[tuple]:
    keys = [
        (r.method, r.dataset, r.split, int(r.n_way), int(r.k_shot)) for r in records.itertuples()
    ]
    return [k for k in keys if k in PUBLISHED]


def published_table(records: pd.DataFrame) -> pd.DataFrame:
    """Ours vs published per cell with a published value: difference, and whether the published
    value lies inside our 95% CI."""
    rows = []
    ordered = records.assign(label=_method_labels(records))
    ordered = ordered.sort_values(["label", "n_way", "k_shot", "seed"])
    for r in ordered.itertuples():
        key = (r.method, r.dataset, r.split, int(r.n_way), int(r.k_shot))
        if key not in PUBLISHED:
            continue
        ref = PUBLISHED[key]
        ours, half = 100 * r.accuracy, 100 * r.ci95
        rows.append({
            "method": r.label,
            "setting": r.setting,
            "seed": r.seed,
            "ours": f"{ours:.2f} ± {half:.2f}",
            "published": _as_published(ref.accuracy) + (f" ± {_as_published(ref.ci95)}" if ref.ci95 else ""),
            "ours - published": f"{ours - ref.accuracy:+.2f}",
            "published in our CI": "yes" if abs(ours - ref.accuracy) <= half else "no",
            "within tolerance": (
                f"{'yes' if abs(ours - ref.accuracy) <= tolerance(int(r.n_way)) else 'no'} "
                f"(±{tolerance(int(r.n_way)):.0f})"
            ),
            "train episodes": int(r.train_episodes),
            "train time": f"{r.train_wall_s / 60:.1f} min",
        })
    return pd.DataFrame(rows)


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


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.report [--out results]``: regenerate tables without training."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.report",
        description="Regenerate the comparison tables from the records under --out.",
    )
    parser.add_argument("--out", default="results", help="results folder (default: results)")
    parser.add_argument(
        "--embed", metavar="FILE", nargs="*", default=[],
        help="also refresh the <!-- table: NAME --> blocks of these documents (e.g. README.md)",
    )
    args = parser.parse_args(argv)
    written = write_tables(Path(args.out))
    if not written:
        print(f"no records under {args.out}; run python -m benchmarks.run first")
        return 1
    for document in args.embed:
        embed_tables(Path(document), Path(args.out))
    for path in written:
        print(f"{path}\n{path.read_text()}")
    return 0
