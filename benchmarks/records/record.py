"""The record of one finished cell: a typed, frozen dataclass and its JSON form.

A record is written as one JSON line of ``records.jsonl`` (see :mod:`benchmarks.records.store`)
and read back with :meth:`Record.from_dict`. A line may lack fields: records made before
``precision``, ``eval_warmup_episodes`` and ``train_resumed_at`` existed lack those (every other
field has been written since the first record), and records made by hand (tests) or by other
tools may lack any field but ``config_hash``. A field a line lacks takes its default (see
:func:`defaults`): ``None``, or an empty dict or list for the containers. Keys this class does
not know are kept in :attr:`Record.extra`, so reading and writing a record never loses anything.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, kw_only=True)
class Record:
    """One cell's result: what was run, on what, how well, at what cost.

    Fractions are in [0, 1]; times are wall-clock unless named ``device``. A non-finite float is
    stored as JSON ``null``, so it reads back as ``None``. The types are those of the records the
    suite writes; a record read from a line that lacks a field holds that field's default
    (:func:`defaults`) instead. The constructor takes every field but ``episodes_file`` and
    ``extra``, so that the code that builds a record cannot forget one.

    Attributes:
        config_hash: hash of ``config``: the cell's identity (the results store's key).
        training_hash: hash of what the training depends on; names the cell's checkpoint, shared
            by the cells tested on one trained model.
        method: registry name of the method (``"protonet"``).
        dataset: registry name of the dataset (``"omniglot"``).
        split: class split scheme of the dataset (``"vinyals"``).
        setting: the test setting as shown in tables (``"5-way 1-shot"``).
        n_way: classes per test episode.
        k_shot: support images per class in a test episode.
        n_query: query images per class in a test episode.
        seed: seed of the model's initialisation and of every episode stream.
        preset: name of the training recipe preset (``"quick"``).
        backbone: name of the backbone configuration (``"conv4"``).
        precision: ``"fp32"`` or ``"bf16"`` (autocast); ``None`` in records made before it was
            recorded, all of which ran in fp32.
        method_options: every option of the method as resolved (JSON types), defaults included.
        accuracy: mean per-episode test accuracy, fraction in [0, 1].
        ci95: half-width of the 95% confidence interval of ``accuracy`` over test episodes
            (1.96 * std / sqrt(test_episodes)), fraction.
        std: sample standard deviation (ddof=1) of the per-episode test accuracies, fraction.
        test_episodes: test episodes evaluated.
        train_episodes: training episodes (optimiser steps) taken; 0 for an untrained model.
        train_wall_s: wall time of the training, validation included, in seconds (that of the
            training that produced the checkpoint when it was reused).
        train_stopped_by_budget: whether the time budget ended training early.
        train_reused_checkpoint: whether the model was loaded from a checkpoint, not trained.
        train_resumed_at: episodes already trained each time the training continued from a
            snapshot after an interruption (empty: trained in one go, or made before snapshots).
        best_val_accuracy: best validation accuracy seen (fraction), whose weights were tested;
            ``None`` without validation.
        best_val_episode: training episodes done when ``best_val_accuracy`` was measured;
            ``None`` without validation.
        val_history: one entry per validation, in order: ``{"episode": int, "train_loss": float
            (mean training loss since the previous validation; None when non-finite),
            "val_accuracy": float (fraction)}``.
        eval_wall_ms_per_episode: wall time of one test episode's forward pass, data excluded,
            in milliseconds.
        eval_device_ms_per_episode: the same on ``eval_device_clock``, in milliseconds.
        eval_device_clock: ``"cuda_event"`` (GPU time) or ``"process_cpu"`` (CPU time of all
            threads).
        eval_warmup_episodes: untimed forward passes before the timed test pass; ``None`` in
            records made before warm-up existed (none was done).
        data_ms_per_episode: wall time to assemble one test episode and move it to the device,
            in milliseconds.
        params_backbone: parameters of the backbone (count).
        params_head: parameters outside the backbone (count).
        params_total: all parameters of the method (count).
        flops_per_episode: floating-point operations of one test episode's forward pass, as
            counted by torch's FLOP counter.
        peak_memory_mb: peak memory in MiB (2**20 bytes), of the kind ``peak_memory_kind``.
        peak_memory_kind: ``"cuda_max_allocated"`` (CUDA allocator peak during the test pass) or
            ``"process_max_rss"`` (the process's peak resident set size).
        dataset_fingerprint: fingerprint (SHA-256 hex) of the data read.
        dataset_matches_official: whether that data is the official release; ``None`` for a
            dataset that has none.
        finished_at: when the cell finished, ISO 8601 in UTC to the second.
        config: the cell's full resolved configuration (what ``config_hash`` hashes).
        device: the torch device the cell ran on (``"cpu"``, ``"cuda:0"``).
        device_name: the processor or GPU model, in words.
        torch_version: ``torch.__version__``.
        python_version: ``platform.python_version()``.
        num_threads: torch's intra-op CPU threads.
        git_commit: commit of the code, ``-dirty`` when tracked code had changes (see
            :func:`benchmarks.engine.environment.git_commit`).
        malloc: how the C library's allocator was set (``"keep-freed"`` or ``"system"``, see
            :mod:`benchmarks.engine.allocator`); ``None`` in records made before it was recorded.
        official_runs_error_pct: Omniglot with ``--test-runs``: the model's error rate (%) on
            Lake et al.'s 20 official 20-way one-shot runs, the mean over the runs.
        official_runs_errors_pct: the error rate (%) of each run, run01 first.
        official_runs_fingerprint: SHA-256 of the run files read.
        skipped_groups: within-alphabet test episodes: the groups (alphabets) with fewer
            classes than the episode's ways, which no episode drew from; ``None`` otherwise.
        eval_path: how test episodes were scored: ``"cached"`` (each image embedded once, the
            head run per episode) or ``"per-episode"`` (see
            :mod:`benchmarks.engine.evaluation`); ``None`` in records made before (per-episode).
        eval_timed_episodes: the episodes behind ``eval_wall_ms_per_episode``,
            ``eval_device_ms_per_episode`` and ``data_ms_per_episode`` (the first ones; all of
            them on the per-episode path).
        eval_embed_s: cached path: seconds to embed every distinct test image once.
        eval_embedded_images: cached path: how many distinct images that was.
        eval_head_ms_per_episode: cached path: milliseconds of one episode's head on cached
            features.
        pretrained_from: the key of the pre-trained backbone training started from (its files:
            ``pretrained/<key>.pt`` and ``.json`` beside the records); ``None`` without one.
        health: the training-health verdict (see :mod:`benchmarks.records.health`):
            ``{"verdict", "reasons", ...}``; computed from the history when a stored line lacks it.
        episodes_file: the ``.npy`` file of per-episode test accuracies, a POSIX path relative
            to the store's folder; ``None`` until the store writes the record.
        extra: keys of a stored record that this class does not define, kept as they were.
    """

    config_hash: str
    training_hash: str
    method: str
    dataset: str
    split: str
    setting: str
    n_way: int
    k_shot: int
    n_query: int
    seed: int
    preset: str
    backbone: str
    precision: str | None
    method_options: dict[str, Any]
    accuracy: float
    ci95: float
    std: float
    test_episodes: int
    train_episodes: int
    train_wall_s: float
    train_stopped_by_budget: bool
    train_reused_checkpoint: bool
    train_resumed_at: list[int]
    best_val_accuracy: float | None
    best_val_episode: int | None
    val_history: list[dict[str, Any]]
    eval_wall_ms_per_episode: float
    eval_device_ms_per_episode: float
    eval_device_clock: str
    eval_warmup_episodes: int | None
    data_ms_per_episode: float
    params_backbone: int
    params_head: int
    params_total: int
    flops_per_episode: int
    peak_memory_mb: float
    peak_memory_kind: str
    dataset_fingerprint: str
    dataset_matches_official: bool | None
    finished_at: str
    config: dict[str, Any]
    device: str
    device_name: str
    torch_version: str
    python_version: str
    num_threads: int
    git_commit: str
    malloc: str | None = None
    skipped_groups: list[str] | None = None
    official_runs_error_pct: float | None = None
    official_runs_errors_pct: list[float] | None = None
    official_runs_fingerprint: str | None = None
    eval_path: str | None = None
    eval_timed_episodes: int | None = None
    eval_embed_s: float | None = None
    eval_embedded_images: int | None = None
    eval_head_ms_per_episode: float | None = None
    pretrained_from: str | None = None
    health: dict[str, Any] | None = None
    episodes_file: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        clash = sorted(self.extra.keys() & _field_names())
        if clash:
            raise ValueError(f"extra keys {', '.join(clash)} are fields of a record")

    @classmethod
    def from_dict(cls, mapping: Mapping[str, Any]) -> Record:
        """The record stored as ``mapping`` (a parsed JSON line).

        A field that ``mapping`` lacks takes its default (see :func:`defaults`); a key that is no
        field goes to :attr:`extra`. Values are taken as they are, unconverted.

        Raises:
            ValueError: ``mapping`` has no ``config_hash``, without which it is no record.
        """
        if "config_hash" not in mapping:
            raise ValueError("not a complete record: it has no config_hash")
        names = _field_names()
        known = {key: value for key, value in mapping.items() if key in names}
        extra = {key: value for key, value in mapping.items() if key not in names}
        return cls(**{**defaults(), **known}, extra=extra)

    def as_dict(self) -> dict[str, Any]:
        """The JSON form: every field in declaration order, then the :attr:`extra` keys (not
        nested under ``"extra"``). Shallow: nested values are the record's own."""
        fields = {name: getattr(self, name) for name in _field_names()}
        return {**fields, **self.extra}


def defaults() -> dict[str, Any]:
    """What each field but ``config_hash`` holds when a stored line lacks it: an empty dict for
    ``config`` and ``method_options``, an empty list for ``val_history`` and
    ``train_resumed_at``, else ``None``."""
    hints = typing.get_type_hints(Record)
    return {name: _empty(hints[name]) for name in _field_names() if name != "config_hash"}


def _empty(hint: Any) -> Any:
    """An empty container of a container type (``dict[str, Any]`` -> ``{}``), else ``None``."""
    origin = typing.get_origin(hint)
    return origin() if origin in (dict, list) else None


def _field_names() -> tuple[str, ...]:
    """Names of the stored fields: every field but ``extra``."""
    return tuple(f.name for f in dataclasses.fields(Record) if f.name != "extra")
