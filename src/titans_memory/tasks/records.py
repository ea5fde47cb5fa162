"""Benchmark records read back: the JSON that ``titans bench niah|mqar --json`` writes, loaded,
checked and merged, so that tables and figures can be made again without training
(``titans bench report``).

A record file is ``{"settings": {...}, "wall_seconds": ..., "records": [...]}`` (see
:mod:`titans_memory.tasks.bench`). Files written before a setting existed are read with the value
the run had then: MQAR files without ``widths``/``lrs`` ran one model width (``model.dim``) and one
learning rate (``train.lr``), and their records get those ``width`` and ``lr``.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass, fields, replace
from pathlib import Path

from titans_memory.tasks.bench import MQARSettings, NiahSettings, Settings
from titans_memory.tasks.longcontext import TaskModelConfig

#: the keys every record must carry to be tabulated
RECORD_KEYS = ("model", "task", "context_length", "depth", "accuracy", "chance", "seed")
_SETTINGS = {"niah": NiahSettings, "mqar": MQARSettings}


@dataclass(frozen=True)
class Run:
    """One record file: where it came from, its settings as written and as a dataclass, its records."""

    path: str
    raw_settings: dict
    settings: Settings
    records: list[dict]

    @property
    def task(self) -> str:
        return self.settings.task


def _dataclass_from_dict(cls: type, data: dict, where: str) -> object:
    """``cls(**data)`` for the fields ``data`` has (the others keep their defaults), lists as tuples,
    nested dataclasses built the same way; keys ``cls`` does not know are ignored (newer files)."""
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected an object, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    values = {}
    for f in fields(cls):
        if f.name not in data:
            continue
        value, hint = data[f.name], hints[f.name]
        if dataclasses.is_dataclass(hint):
            value = _dataclass_from_dict(hint, value, f"{where}.{f.name}")
        elif typing.get_origin(hint) is tuple:
            if not isinstance(value, list | tuple):
                raise ValueError(f"{where}.{f.name}: expected a list, got {value!r}")
            value = tuple(value)
        values[f.name] = value
    return cls(**values)


def settings_from_dict(data: dict, where: str = "settings") -> Settings:
    """The :class:`NiahSettings` or :class:`MQARSettings` that :func:`~titans_memory.tasks.bench.settings_to_dict`
    wrote (its ``task`` says which); ``ValueError`` naming ``where`` for anything else."""
    if not isinstance(data, dict) or data.get("task") not in _SETTINGS:
        task = data.get("task") if isinstance(data, dict) else None
        raise ValueError(f"{where}: task {task!r} is not one of niah, mqar")
    cls = _SETTINGS[data["task"]]
    try:
        settings = _dataclass_from_dict(cls, data, where)
    except TypeError as err:
        raise ValueError(f"{where}: {err}") from None
    if cls is MQARSettings:  # files from before the widths and the sweep: one of each
        if "widths" not in data:
            settings = replace(settings, widths=(settings.model.dim,))
        if "lrs" not in data:
            settings = replace(settings, lrs=(settings.train.lr,))
    return settings


def load_run(path: str | Path) -> Run:
    """Read one record file; ``ValueError`` (one line, naming the file) if it is missing, not JSON,
    not a ``titans bench niah|mqar`` record file, or its records lack the keys of :data:`RECORD_KEYS`."""
    name = str(path)
    path = Path(path)
    if not path.exists():
        raise ValueError(f"{name!r} does not exist")
    if path.is_dir():
        raise ValueError(f"{name!r} is a directory, not a record file")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ValueError(f"cannot read {name!r}: {err.strerror or err}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{name!r} is not a text file (JSON records expected)") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{name!r} is not JSON (line {err.lineno}: {err.msg})") from None
    if not isinstance(data, dict) or not isinstance(data.get("settings"), dict) or not isinstance(data.get("records"), list):
        raise ValueError(f"{name!r} is not a benchmark record file (expected the 'settings' and 'records' "
                         "that titans bench niah|mqar --json writes)")
    task = data["settings"].get("task")
    if task == "lm":
        raise ValueError(f"{name!r} holds titans bench lm records; report reads niah and mqar records")
    settings = settings_from_dict(data["settings"], f"{name!r}: settings")
    records = data["records"]
    if not records:
        raise ValueError(f"{name!r} holds no records")
    for i, r in enumerate(records):
        missing = [k for k in RECORD_KEYS if not isinstance(r, dict) or k not in r]
        if missing:
            raise ValueError(f"{name!r}: record {i} lacks {', '.join(missing)}")
        if (r["task"] == "mqar") != (task == "mqar"):
            raise ValueError(f"{name!r}: record {i} is a {r['task']} record in a {task} file")
    # width and learning rate as the run had them (older files do not write them)
    records = [{**r, "width": r.get("width", settings.model.dim), "lr": r.get("lr", settings.train.lr)} for r in records]
    return Run(name, data["settings"], settings, records)


def cell_key(record: dict) -> tuple:
    """What makes a record one grid cell of one trained model."""
    return (record["model"], record["task"], record["context_length"], record["depth"], record.get("pairs"),
            record["seed"], record.get("width"), record.get("lr"))


def _describe(key: tuple) -> str:
    model, task, n, depth, pairs, seed, width, lr = key
    parts = [f"model {model}", f"kind {task}", f"length {n}"]
    parts += [f"depth {depth:g}"] if depth is not None else []
    parts += [f"{pairs} pairs"] if pairs is not None else []
    return ", ".join(parts + [f"seed {seed}", f"width {width}", f"lr {lr:g}"])


def _union(values) -> tuple:
    return tuple(dict.fromkeys(v for vs in values for v in vs))


def merge_runs(runs: list[Run]) -> tuple[Settings, list[dict]]:
    """One set of settings and records from several runs of one task.

    The records are concatenated in the files' order; the settings are the first file's with the
    models, seeds, kinds, lengths, widths and learning rates of all (in order of appearance;
    lengths sorted), so a single file gives back its own settings. Refused (``ValueError``):
    files of different tasks, different model configurations (window, depth, ...: their numbers
    would not compare), two files holding the same cell (model, kind, length, depth, pairs,
    seed, width, learning rate), and needle records of one model at two learning rates.
    """
    if not runs:
        raise ValueError("no record files given")
    first = runs[0]
    seen_paths: dict[str, str] = {}
    for run in runs:
        resolved = str(Path(run.path).resolve())
        if resolved in seen_paths:
            raise ValueError(f"{run.path!r} is given twice")
        seen_paths[resolved] = run.path
        if run.task != first.task:
            raise ValueError(f"{first.path!r} holds {first.task} records and {run.path!r} {run.task} records; "
                             "report one task at a time")
        if run.settings.model != first.settings.model:
            diff = [f"{f.name} {getattr(first.settings.model, f.name)} vs {getattr(run.settings.model, f.name)}"
                    for f in fields(TaskModelConfig)
                    if getattr(first.settings.model, f.name) != getattr(run.settings.model, f.name)]
            raise ValueError(f"{first.path!r} and {run.path!r} trained different models ({', '.join(diff)}); "
                             "their tables would not compare")
    owner: dict[tuple, str] = {}
    lrs: dict[str, dict[float, str]] = {}  # model -> learning rate -> the first file holding it
    records: list[dict] = []
    for run in runs:
        for r in run.records:
            key = cell_key(r)
            if key in owner and owner[key] != run.path:
                raise ValueError(f"{owner[key]!r} and {run.path!r} both hold the cell {_describe(key)}; "
                                 "give only one of them")
            owner[key] = run.path
            lrs.setdefault(r["model"], {}).setdefault(r["lr"], run.path)
        records += run.records
    if first.task == "niah":
        # the needle tables average a model's records per seed: two learning rates would be mixed
        for model, by_lr in lrs.items():
            if len(by_lr) > 1:
                (lr_a, path_a), (lr_b, path_b) = list(by_lr.items())[:2]
                raise ValueError(f"{path_a!r} holds {model} trained at learning rate {lr_a:g} and {path_b!r} at "
                                 f"{lr_b:g}; their tables would mix the two: report them apart (or --models)")
    if len(runs) == 1:
        return first.settings, records
    all_settings = [run.settings for run in runs]
    merged = replace(
        first.settings,
        models=_union(s.models for s in all_settings),
        seeds=_union(s.seeds for s in all_settings),
        lengths=tuple(sorted(_union(s.lengths for s in all_settings))),
        train_lengths=_union(s.train_lengths for s in all_settings),
    )
    if isinstance(merged, NiahSettings):
        merged = replace(merged, kinds=_union(s.kinds for s in all_settings))
    else:
        merged = replace(merged, widths=_union(s.widths for s in all_settings), lrs=_union(s.lrs for s in all_settings),
                         pairs=tuple(sorted(_union(s.pairs for s in all_settings))))
    return merged, records


__all__ = ["RECORD_KEYS", "Run", "cell_key", "load_run", "merge_runs", "settings_from_dict"]
