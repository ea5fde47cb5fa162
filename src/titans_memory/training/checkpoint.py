"""Checkpoints: safetensors for tensors, JSON for everything else; loading never executes code.

A checkpoint is a folder that is at once a training checkpoint and a Hugging Face model folder::

    config.json            the ModelConfig (and ``model_type: "titans"`` for transformers' Auto classes)
    model.safetensors      the weights, under TitansLM's parameter names
    training.safetensors   the optimiser's moments and the RNG states
    trainer_state.json     TrainConfig, step, schedule, data positions, evaluations, optimiser groups
    tokenizer.json ...     the tokenizer, where ``tokenizers`` is installed (for transformers' tools)

A run's folder keeps them under ``checkpoints/step_NNNNNNN`` with ``checkpoints/index.json``
naming the latest and the best (lowest held-out bits per byte); the last ``keep_last`` and the best
are kept, older ones deleted (never the best, never the newest one whose weights and score are
finite). Each is written to a temporary folder, flushed to disk (fsync) and renamed into place, so
a run killed mid-write, or one whose disk fills up, leaves the previous checkpoints intact and no
temporary folder behind.
"""

from __future__ import annotations

import math
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from titans_memory.fileio import (
    WriteError,
    atomic_write_text,
    describe_os_error,
    fault_point,
    fsync_dir,
    fsync_tree,
    json_text,
    remove_tree,
)
from titans_memory.models.config import ModelConfig
from titans_memory.models.lm import TitansLM
from titans_memory.training.config import read_json_file

FORMAT = "titans-miras/checkpoint/1"
MODEL_TYPE = "titans"  # transformers' model_type of TitansConfig
CONFIG_FILE = "config.json"
MODEL_FILE = "model.safetensors"
TRAINING_FILE = "training.safetensors"
STATE_FILE = "trainer_state.json"
INDEX_FILE = "index.json"
_STEP_DIR = re.compile(r"^step_(\d{7,})$")


class CheckpointError(ValueError):
    """A checkpoint folder that is missing, from another model, or does not match what it says."""


# --- the model: config.json + model.safetensors ---------------------------------------------------
def model_config_dict(config: ModelConfig, tokenizer: str | None = None) -> dict:
    """``config.json``: the ModelConfig's fields, plus what transformers' Auto classes look for."""
    return {
        "model_type": MODEL_TYPE,
        "architectures": ["TitansForCausalLM"],
        "titans_format": FORMAT,
        "tokenizer": tokenizer,  # None: bytes
        **config.to_dict(),
    }


def read_json(path: Path, what: str) -> dict:
    missing = f"{str(path.parent)!r} is not a Titans checkpoint: it has no {path.name}"
    data = read_json_file(path, what, error=CheckpointError, missing=missing)
    if not isinstance(data, dict):
        raise CheckpointError(f"{what} {str(path)!r} must hold a JSON object")
    return data


#: fields a config saved by an older version lacks, with the value that version behaved as: MAC
#: wrote the attention output y before ``mac_write`` existed (its default is now "y+u")
LEGACY_FIELDS = {"mac_write": "y"}


def read_model_config(folder: Path) -> tuple[ModelConfig, str | None]:
    """The ModelConfig of a checkpoint (or of a ``save_pretrained`` folder) and its tokenizer name."""
    data = read_json(folder / CONFIG_FILE, "model config")
    if data.get("model_type") != MODEL_TYPE:
        raise CheckpointError(
            f"{str(folder)!r} is not a Titans checkpoint: its config.json has model_type "
            f"{data.get('model_type')!r}, expected {MODEL_TYPE!r}"
        )
    fields = set(ModelConfig.__dataclass_fields__)
    data = {**LEGACY_FIELDS, **data}
    try:
        config = ModelConfig.from_dict({k: v for k, v in data.items() if k in fields})
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{str(folder / CONFIG_FILE)!r}: {err}") from None
    tokenizer = data.get("tokenizer")
    if tokenizer is not None and not isinstance(tokenizer, str):
        raise CheckpointError(f"{str(folder / CONFIG_FILE)!r}: tokenizer must be a string or null")
    return config, tokenizer


def read_tensors(path: Path, what: str) -> dict[str, Tensor]:
    """A safetensors file (no code runs while reading it), with a clear error if absent or corrupt."""
    if not path.is_file():
        raise CheckpointError(f"{str(path.parent)!r} is not a complete checkpoint: it has no {path.name}")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{what} {str(path)!r} cannot be read: {err}") from None


def check_state_dict(expected: dict[str, Tensor], found: dict[str, Tensor], where: str) -> None:
    """CheckpointError naming the first missing, unexpected or mis-shaped tensor."""
    missing = sorted(set(expected) - set(found))
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise CheckpointError(f"{where} is missing the tensor {missing[0]!r}{more}")
    unexpected = sorted(set(found) - set(expected))
    if unexpected:
        raise CheckpointError(
            f"{where} has the tensor {unexpected[0]!r}, which this model does not have: "
            "the checkpoint is from another model or its config.json was changed"
        )
    for name, tensor in expected.items():
        if tuple(found[name].shape) != tuple(tensor.shape):
            raise CheckpointError(
                f"{where}: tensor {name!r} has shape {tuple(found[name].shape)}, the model built from "
                f"config.json expects {tuple(tensor.shape)}: the config was changed or is from another model"
            )


def save_model_files(folder: Path, config: ModelConfig, state: dict[str, Tensor], tokenizer=None) -> None:
    """``config.json``, ``model.safetensors`` and the tokenizer's files into ``folder``.

    ``tokenizer``: a :class:`~titans_memory.training.data.ByteTokenizer` or ``HFTokenizer`` (or None).
    """
    folder.mkdir(parents=True, exist_ok=True)
    name = None if tokenizer is None or tokenizer.name == "bytes" else tokenizer.name
    (folder / CONFIG_FILE).write_text(json_text(model_config_dict(config, name)) + "\n", encoding="utf-8")
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state.items()}
    save_file(tensors, str(folder / MODEL_FILE), metadata={"format": "pt"})
    _save_tokenizer(folder, tokenizer)


def _save_tokenizer(folder: Path, tokenizer) -> None:
    if tokenizer is None:
        return
    if tokenizer.name != "bytes":
        tokenizer.hf.save_pretrained(str(folder))
        return
    try:  # the byte tokenizer as transformers files, for lm-eval-harness and friends
        from titans_memory.hf.tokenizer import byte_tokenizer
    except ImportError:
        return
    byte_tokenizer().save_pretrained(str(folder))


def load_model(path: str | Path, *, device: str | torch.device = "cpu") -> tuple[TitansLM, Path, str | None]:
    """The model of a checkpoint: a checkpoint folder, a run folder (its best), or a save_pretrained folder.

    Returns ``(model, folder, tokenizer_name)``, the model in eval mode on ``device``.
    """
    folder = resolve(path, prefer="best")
    config, tokenizer = read_model_config(folder)
    check_parameter_memory(config, device, where=f"checkpoint {str(folder)!r}")
    model = TitansLM(config)
    found = read_tensors(folder / MODEL_FILE, "weights")
    check_state_dict(model.state_dict(), found, f"checkpoint {str(folder)!r}")
    model.load_state_dict(found)
    return model.to(device).eval(), folder, tokenizer


def parameter_count(config: ModelConfig) -> int:
    """Parameters of the model ``config`` describes, counted on the meta device (nothing allocated)."""
    with torch.device("meta"):
        model = TitansLM(config)
    return sum(p.numel() for p in model.parameters())


def available_memory(device: str | torch.device) -> int | None:
    """Bytes free for tensors on ``device``: the GPU's free memory, else the machine's available RAM."""
    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_available():
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None  # unknown: do not refuse


def check_parameter_memory(config: ModelConfig, device: str | torch.device, *, where: str, factor: int = 1) -> int:
    """ValueError when the float32 parameters (times ``factor``: 4 for weights, gradient and AdamW's
    two moments) would not fit in the memory ``device`` has free; returns the estimate in bytes.

    Estimated before allocating, so that a crafted or mistyped config is a one-line error with the
    figure, not the operating system killing the process.
    """
    need = parameter_count(config) * 4 * factor
    free = available_memory(device)
    if free is not None and need > free:
        raise ValueError(
            f"{where}: the model's parameters need about {need / 2**30:,.1f} GiB "
            f"({parameter_count(config):,} parameters{' x ' + str(factor) if factor > 1 else ''} in float32), "
            f"more than the {free / 2**30:,.1f} GiB free on {torch.device(device)}"
        )
    return need


# --- finding checkpoints --------------------------------------------------------------------------
def is_checkpoint(folder: Path) -> bool:
    return (folder / CONFIG_FILE).is_file() and (folder / MODEL_FILE).is_file()


def resolve(path: str | Path, *, prefer: str = "best") -> Path:
    """The checkpoint folder ``path`` names: itself, or its (or its ``checkpoints/``) best or latest."""
    folder = Path(path)
    if not folder.exists():
        raise CheckpointError(f"checkpoint {str(folder)!r} does not exist")
    if not folder.is_dir():
        raise CheckpointError(f"checkpoint {str(folder)!r} is not a folder")
    if (folder / CONFIG_FILE).is_file() or (folder / MODEL_FILE).is_file():
        return folder
    for base in (folder / "checkpoints", folder):
        if (base / INDEX_FILE).is_file():
            index = read_json(base / INDEX_FILE, "checkpoint index")
            name = index.get(prefer) or index.get("latest")
            if not isinstance(name, str) or not _STEP_DIR.match(name):
                raise CheckpointError(f"{str(base / INDEX_FILE)!r} names no checkpoint ({prefer!r}: {name!r})")
            if not (base / name).is_dir():
                raise CheckpointError(f"{str(base / INDEX_FILE)!r} names {name!r}, which does not exist")
            return base / name
    raise CheckpointError(
        f"{str(folder)!r} is not a Titans checkpoint: no config.json, and no checkpoints/index.json of a run"
    )


# --- training checkpoints -------------------------------------------------------------------------
@dataclass
class TrainingState:
    """What :func:`read_training_state` returns: the JSON part and the tensors of a checkpoint."""

    state: dict  # trainer_state.json
    tensors: dict[str, Tensor]  # training.safetensors: "optimizer/<param>/<key>", "rng/<name>"
    folder: Path


def flatten_optimizer_state(optim_state: dict) -> tuple[dict[str, Tensor], list[dict]]:
    """A full optimiser state dict (keys: parameter names) as flat tensors and JSON param groups."""
    tensors: dict[str, Tensor] = {}
    for param, entries in optim_state["state"].items():
        for key, value in entries.items():
            if not isinstance(value, Tensor):
                value = torch.tensor(value)
            tensors[f"optimizer/{param}/{key}"] = value.detach().to("cpu").contiguous()
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in optim_state["param_groups"]]
    return tensors, groups


def unflatten_optimizer_state(tensors: dict[str, Tensor], groups: list[dict]) -> dict:
    state: dict[str, dict[str, Tensor]] = {}
    for name, value in tensors.items():
        if not name.startswith("optimizer/"):
            continue
        param, _, key = name[len("optimizer/") :].rpartition("/")
        state.setdefault(param, {})[key] = value
    param_groups = [{k: (tuple(v) if k == "betas" else v) for k, v in g.items()} for g in groups]
    return {"state": state, "param_groups": param_groups}


def check_optimizer_state(model_state: dict[str, Tensor], tensors: dict[str, Tensor], where: str) -> None:
    """CheckpointError unless the AdamW moments of ``tensors`` ("optimizer/<param>/<key>") match the
    weights: every moment has its parameter's shape, every step count is a scalar, no unknown name."""
    for name, value in tensors.items():
        if not name.startswith("optimizer/"):
            continue
        param, _, key = name[len("optimizer/") :].rpartition("/")
        if param not in model_state:
            raise CheckpointError(f"{where}: optimizer state for {param!r}, which this model does not have")
        if key == "step":
            if value.numel() != 1:
                raise CheckpointError(f"{where}: optimizer step of {param!r} has shape {tuple(value.shape)}, expected a scalar")
        elif tuple(value.shape) != tuple(model_state[param].shape):
            raise CheckpointError(
                f"{where}: optimizer state {key!r} of {param!r} has shape {tuple(value.shape)}, the parameter has "
                f"{tuple(model_state[param].shape)}: training.safetensors is from another model or was changed"
            )
        if not value.is_floating_point() and key != "step":
            raise CheckpointError(f"{where}: optimizer state {key!r} of {param!r} is not floating point ({value.dtype})")


def is_finite_state(tensors: dict[str, Tensor]) -> bool:
    """Whether every floating-point tensor of ``tensors`` holds only finite numbers."""
    return all(bool(torch.isfinite(t).all()) for t in tensors.values() if t.is_floating_point())


def write_checkpoint(
    folder: Path,
    *,
    model_config: ModelConfig,
    model_state: dict[str, Tensor],
    training_tensors: dict[str, Tensor],
    trainer_state: dict,
    tokenizer=None,
) -> Path:
    """Write a checkpoint into ``folder`` atomically: a temporary folder, flushed to disk, renamed into place.

    A failure while writing (a full disk) removes the temporary folder and raises
    :class:`~titans_memory.fileio.WriteError` naming the folder and the cause; the
    checkpoints already there stay as they were.
    """
    tmp = folder.with_name(folder.name + ".tmp")
    step = trainer_state.get("step")
    try:
        if tmp.exists():
            shutil.rmtree(tmp)
        save_model_files(tmp, model_config, model_state, tokenizer)
        fault_point("writing_tmp", step)  # a kill here leaves a half-written .tmp folder
        save_file({k: v.contiguous() for k, v in training_tensors.items()}, str(tmp / TRAINING_FILE))
        state = {"format": FORMAT, **trainer_state}
        (tmp / STATE_FILE).write_text(json_text(state) + "\n", encoding="utf-8")
        fsync_tree(tmp)  # the files are on disk before the rename publishes them
        if folder.exists():
            remove_tree(folder)
        os.replace(tmp, folder)
        fault_point("after_rename", step)
        fsync_dir(folder.parent)
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        raise WriteError(f"cannot write the checkpoint {str(folder)!r}: {describe_os_error(err)}") from None
    return folder


def read_training_state(folder: Path) -> TrainingState:
    """The JSON and tensors a resumed run needs; CheckpointError if absent or not ours."""
    state = read_json(folder / STATE_FILE, "trainer state")
    if state.get("format") != FORMAT:
        raise CheckpointError(
            f"{str(folder / STATE_FILE)!r} is not a {FORMAT} trainer state (format {state.get('format')!r})"
        )
    for key in ("step", "config", "data", "schedule", "optimizer_groups"):
        if key not in state:
            raise CheckpointError(f"{str(folder / STATE_FILE)!r} has no {key!r}")
    tensors = read_tensors(folder / TRAINING_FILE, "training state")
    return TrainingState(state, tensors, folder)


class CheckpointManager:
    """A run's ``checkpoints/`` folder: numbered checkpoints, ``index.json``, keep the last N and the best."""

    def __init__(self, run_dir: Path, keep_last: int) -> None:
        self.root = run_dir / "checkpoints"
        self.keep_last = keep_last

    def clean(self) -> list[str]:
        """Remove what a killed run left behind: ``*.tmp`` checkpoint folders and half-pruned ones."""
        removed = []
        if self.root.is_dir():
            for path in sorted(self.root.iterdir()):
                if path.name.endswith(".tmp") or path.name.startswith(".trash-"):
                    if path.is_dir():
                        shutil.rmtree(path, ignore_errors=True)
                    else:
                        path.unlink(missing_ok=True)
                    removed.append(path.name)
        return removed

    def index(self) -> dict:
        if not (self.root / INDEX_FILE).is_file():
            return {}
        return read_json(self.root / INDEX_FILE, "checkpoint index")

    def latest(self) -> Path | None:
        """The newest checkpoint (by the index, else by the highest step folder), or None."""
        name = self.index().get("latest")
        if isinstance(name, str) and _STEP_DIR.match(name) and (self.root / name).is_dir():
            return self.root / name
        steps = self.steps()
        return self.root / steps[-1] if steps else None

    def steps(self) -> list[str]:
        if not self.root.is_dir():
            return []
        names = [p.name for p in self.root.iterdir() if p.is_dir() and _STEP_DIR.match(p.name)]
        return sorted(names, key=lambda n: int(_STEP_DIR.match(n).group(1)))

    def folder_for(self, step: int) -> Path:
        return self.root / f"step_{step:07d}"

    def commit(self, step: int, bits_per_byte: float | None, *, finite: bool = True) -> None:
        """Record checkpoint ``step`` as the latest (and the best if its bits per byte are lowest); prune.

        ``finite``: whether the checkpoint's weights are all finite. A checkpoint with non-finite
        weights or score is never the best, and pruning keeps the newest finite checkpoint and the
        best whatever ``keep_last`` says.
        """
        index = self.index()
        name = self.folder_for(step).name
        index["latest"] = name
        score_ok = bits_per_byte is None or math.isfinite(bits_per_byte)
        if finite and score_ok:
            index["last_finite"] = name
        best = index.get("best_bits_per_byte")
        if not isinstance(best, int | float) or not math.isfinite(best):
            best = None  # an index from before this check could hold NaN
        if finite and bits_per_byte is not None and score_ok and (
            best is None or bits_per_byte < best or index.get("best") == name
        ):
            index["best"], index["best_bits_per_byte"] = name, bits_per_byte
        elif index.get("best") == name:  # this step was the best before being rewritten non-finite
            index.pop("best", None)
            index.pop("best_bits_per_byte", None)
        fault_point("before_index", step)
        atomic_write_text(self.root / INDEX_FILE, json_text(index) + "\n", what="checkpoint index")
        keep = set(self.steps()[-self.keep_last :]) | {index.get("best"), index.get("last_finite"), name}
        for old in self.steps():
            if old not in keep:
                remove_tree(self.root / old, fault="during_prune")
