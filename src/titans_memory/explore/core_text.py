"""What the explorer's text tab computes: the core's surprise and gates, byte by byte of a text.

A text becomes tokens as its UTF-8 bytes (vocabulary 256), and each byte a vector through a
fixed random embedding (seeded, not learned: :func:`byte_embedding`). A :class:`NeuralMemory`
then walks the sequence, and the page shows, per byte:

* the **surprise**: the size of the memory's gradient step, ``theta_t ||grad l(M; k_t, v_t)||``
  (:meth:`NeuralMemory.surprise`);
* the **gates** (:meth:`NeuralMemory.gates`): the inner learning rate ``theta_t``, the forget rate
  ``alpha_t`` (Titans' meaning: the memory keeps ``1 - alpha_t``) and the momentum ``eta_t``.

Values are averaged over the heads. A character of several bytes (most Vietnamese letters take
two or three) shows the mean of its bytes, its tooltip each byte's value.

A fresh memory (a preset) has **untrained gates**: their projections start small, so every
token's gates sit near the preset's initial values and their variation is that of random
weights, not learned behaviour. A trained one is loaded from a checkpoint directory
(:func:`load_checkpoint`): a memory saved alone (:func:`save_checkpoint`), or a language model
written by ``titans train``, whose first memory layer is shown reading what it reads inside the
model (the hidden states of the text, not a random embedding).

Nothing here imports the web library. Bad input raises
:class:`~titans_memory.explore.texts.ExploreInputError`.
"""

from __future__ import annotations

import functools
import html
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from titans_memory.core.config import MemoryConfig
from titans_memory.core.neural_memory import NeuralMemory
from titans_memory.core.presets import PRESETS, preset
from titans_memory.explore.texts import ExploreInputError
from titans_memory.tasks.recall import RecallCurve, recall_vs_age

#: Longest text run, in UTF-8 bytes. At 1,000 bytes the slowest presets (TTT-MLP, TTT-Linear,
#: Titans) took 3-8 s on a busy 2-core machine (benchmarks/explore.py times the default text):
#: 600 keeps an answer within a few seconds.
MAX_TEXT_BYTES = 600

#: Model width of the fresh memories (the byte embedding's width too).
TEXT_DIM = 64

#: Seed of the byte embedding and of a fresh memory's weights.
TEXT_SEED = 0

#: Vocabulary: one token per byte value.
VOCAB = 256

#: The files of a checkpoint directory.
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"

#: Key of an optional trained byte embedding in the weights file, ``(256, dim)``.
EMBEDDING_KEY = "embedding.weight"

_SEED_LOCK = threading.Lock()


@dataclass(frozen=True)
class LoadedMemory:
    """A memory ready to read a text.

    Attributes:
        memory: the :class:`NeuralMemory` (eval mode, no gradients needed).
        embedding: ``(256, dim)``, byte -> vector.
        label: the preset's name, or the checkpoint's path.
        trained: True for a checkpoint, False for a fresh preset (untrained gates).
        trained_embedding: the embedding came from the checkpoint (else the fixed random one).
        inputs: for a memory inside a language model, ``ids (T,) -> (1, T, dim)``: what the
            memory writes when the model reads those bytes; None: ``embedding[ids]``.
    """

    memory: NeuralMemory
    embedding: Tensor
    label: str
    trained: bool
    trained_embedding: bool = False
    inputs: Callable[[Tensor], Tensor] | None = None


@dataclass(frozen=True)
class TextSignals:
    """Per-byte signals of one text, each ``(T,)`` float64 (mean over heads), or None.

    Attributes:
        data: the text's UTF-8 bytes, ``T`` of them.
        surprise: size of each byte's surprise step.
        lr: theta_t, the inner learning rate.
        forget: alpha_t, the forget rate (None: the memory never forgets).
        momentum: eta_t (None: no momentum).
        heads: number of heads averaged.
    """

    data: bytes
    surprise: np.ndarray
    lr: np.ndarray
    forget: np.ndarray | None
    momentum: np.ndarray | None
    heads: int


def byte_embedding(dim: int = TEXT_DIM, seed: int = TEXT_SEED) -> Tensor:
    """A fixed random embedding of the 256 byte values, ``(256, dim)``, entries N(0, 1).

    Seeded with its own generator: the same table every time, whatever the global RNG.
    """
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(VOCAB, dim, generator=gen)


def text_bytes(text: str) -> bytes:
    """The UTF-8 bytes of ``text``, checked against :data:`MAX_TEXT_BYTES`.

    Raises:
        TypeError: not a string.
        ExploreInputError: empty (or only white space), or too long.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    if not text.strip():
        raise ExploreInputError("err_empty_text")
    data = text.encode("utf-8")
    if len(data) > MAX_TEXT_BYTES:
        raise ExploreInputError("err_text_too_long", count=len(data), limit=MAX_TEXT_BYTES)
    return data


def preset_memory(name: str, dim: int = TEXT_DIM, seed: int = TEXT_SEED) -> LoadedMemory:
    """A fresh memory of preset ``name`` (untrained gates) and the fixed byte embedding.

    The weights are drawn under ``torch.manual_seed(seed)``; the global generator is restored.

    Raises:
        ValueError: unknown preset.
    """
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    config = preset(name, dim=dim)
    with _SEED_LOCK, torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        memory = NeuralMemory(config).eval()
    return LoadedMemory(memory, byte_embedding(dim, seed), name, trained=False)


def load_checkpoint(path: str | Path) -> LoadedMemory:
    """A trained memory from a directory holding ``config.json`` and ``model.safetensors``.

    Two kinds of directory load:

    **A checkpoint of** ``titans train`` (``config.json`` with ``model_type: "titans"``), or the
    run folder holding it (its best checkpoint is taken). The model is loaded (and checked)
    by :func:`titans_memory.training.checkpoint.load_model`; the page shows its first layer with
    memory, fed what that memory writes inside the model: the bytes go through the model's
    trained embedding and the layers before it (:func:`lm_memory_inputs`).

    **A memory saved alone** (:func:`save_checkpoint`):

    * ``config.json``: the :class:`MemoryConfig` fields (``MemoryConfig.to_dict()``), at the top
      level or under the key ``"memory"``.
    * ``model.safetensors``: the memory's ``state_dict()`` (keys as :class:`NeuralMemory` names
      them, or all under one prefix such as ``"memory."``), and optionally ``embedding.weight``,
      ``(256, dim)``, a trained byte embedding (else the fixed random one is used).

    The weights are read with safetensors (tensors only: loading never runs code).

    Raises:
        ExploreInputError: the directory or a file is missing, the config is not valid JSON or not
            a valid config, or the weights do not load into the memory (the message says which).
    """
    folder = Path(str(path).strip()).expanduser()
    if not str(path).strip() or not folder.is_dir():
        raise ExploreInputError("err_ckpt_dir", path=str(path))
    if not (folder / CONFIG_FILE).is_file() and (folder / "checkpoints" / "index.json").is_file():
        return _load_language_model(folder)  # a run folder of titans train
    missing = [name for name in (CONFIG_FILE, WEIGHTS_FILE) if not (folder / name).is_file()]
    if missing:
        raise ExploreInputError("err_ckpt_files", path=str(folder), missing=", ".join(missing))
    try:
        raw = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
        is_language_model = isinstance(raw, dict) and raw.get("model_type") == "titans"
        if isinstance(raw, dict) and isinstance(raw.get("memory"), dict):
            raw = raw["memory"]
        if not isinstance(raw, dict):
            raise ValueError("expected a JSON object of MemoryConfig fields")
        if not is_language_model:
            config = MemoryConfig.from_dict(raw)
    except (ValueError, TypeError) as err:  # JSONDecodeError is a ValueError
        raise ExploreInputError("err_ckpt_config", detail=str(err)) from None
    if is_language_model:
        return _load_language_model(folder)

    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(folder / WEIGHTS_FILE), device="cpu")
    except (SafetensorError, OSError, ValueError) as err:
        raise ExploreInputError("err_ckpt_weights", detail=str(err)) from None
    embedding = tensors.pop(EMBEDDING_KEY, None)
    try:
        with _SEED_LOCK, torch.random.fork_rng(devices=[]):
            memory = NeuralMemory(config)
        memory.load_state_dict(_strip_prefix(tensors, set(memory.state_dict())), strict=True)
        if embedding is not None and tuple(embedding.shape) != (VOCAB, config.dim):
            raise ValueError(
                f"{EMBEDDING_KEY} has shape {tuple(embedding.shape)}, expected ({VOCAB}, {config.dim})"
            )
    except (RuntimeError, ValueError) as err:
        raise ExploreInputError("err_ckpt_weights", detail=str(err).splitlines()[0]) from None
    memory = memory.to(torch.float32).eval()
    trained_embedding = embedding is not None
    if embedding is None:
        embedding = byte_embedding(config.dim)
    return LoadedMemory(
        memory, embedding.to(torch.float32), str(folder), True, trained_embedding
    )


def _load_language_model(folder: Path) -> LoadedMemory:
    """The first memory layer of a ``titans train`` checkpoint (or of a run folder's best)."""
    from titans_memory.training.checkpoint import CheckpointError, load_model

    try:
        with _SEED_LOCK, torch.random.fork_rng(devices=[]):
            model, found, _ = load_model(folder)
    except CheckpointError as err:
        raise ExploreInputError("err_ckpt_model", detail=str(err)) from None
    layers = model.config.layers_with_memory
    if not layers:
        raise ExploreInputError("err_ckpt_no_memory", path=str(found), arch=model.config.arch)
    if model.config.arch == "hope":  # its memories are not one NeuralMemory: the CMS tab shows them
        raise ExploreInputError("err_ckpt_hope", path=str(found))
    layer = layers[0]
    model = model.to(torch.float32).eval()
    return LoadedMemory(
        memory=model.blocks[layer].memory,
        embedding=model.embed.weight.detach(),
        label=f"{found} (layer {layer} of {model.config.arch.upper()})",
        trained=True,
        trained_embedding=True,
        inputs=functools.partial(lm_memory_inputs, model, layer),
    )


@torch.no_grad()
def lm_memory_inputs(model, layer: int, ids: Tensor) -> Tensor:
    """``(1, T', dim)``: what the memory of block ``layer`` writes while ``model`` reads ``ids`` ``(T,)``.

    Every architecture writes its memory by calling it (``memory(inputs, state)``; MAC once per
    segment, with the state carried), so the inputs of those calls, in order, are one stream the
    memory writes from a fresh state: for LMM, MAG and MAL the normalised hidden states of the
    layer (``T' = T``), for MAC the attention outputs of its segments (``T' = T`` too).
    """
    seen: list[Tensor] = []
    handle = model.blocks[layer].memory.register_forward_pre_hook(
        lambda _module, args: seen.append(args[0].detach())
    )
    try:
        model(ids.view(1, -1))
    finally:
        handle.remove()
    return torch.cat(seen, dim=1)  # (1, T, dim)


def _strip_prefix(tensors: dict[str, Tensor], wanted: set[str]) -> dict[str, Tensor]:
    """Drop one prefix shared by every key (``"memory."``) when the keys do not match as they are."""
    if set(tensors) == wanted or not tensors:
        return tensors
    first = next(iter(tensors))
    if "." in first:
        prefix = first.split(".", 1)[0] + "."
        if all(key.startswith(prefix) for key in tensors):
            return {key[len(prefix) :]: value for key, value in tensors.items()}
    return tensors


def save_checkpoint(
    folder: str | Path, memory: NeuralMemory, embedding: Tensor | None = None
) -> Path:
    """Write ``memory`` (and an optional byte embedding) as :func:`load_checkpoint` reads it."""
    from safetensors.torch import save_file

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    (out / CONFIG_FILE).write_text(json.dumps(memory.config.to_dict(), indent=2), encoding="utf-8")
    tensors = {k: v.detach().contiguous().clone() for k, v in memory.state_dict().items()}
    if embedding is not None:
        tensors[EMBEDDING_KEY] = embedding.detach().contiguous().clone()
    save_file(tensors, str(out / WEIGHTS_FILE))
    return out


def text_signals(loaded: LoadedMemory, text: str) -> TextSignals:
    """Surprise and gates of every byte of ``text`` (see the module docstring).

    Raises:
        ExploreInputError: empty or too long text.
    """
    data = text_bytes(text)
    ids = torch.tensor(list(data), dtype=torch.long)
    if loaded.inputs is not None:  # a memory inside a language model: what it writes there
        x = loaded.inputs(ids)  # (1, T, dim)
    else:
        x = loaded.embedding[ids].unsqueeze(0)  # (1, T, dim)
    memory = loaded.memory
    with torch.no_grad():
        surprise, _ = memory.surprise(x)  # (1, H, T)
        gates = memory.gates(x)  # each (1, H, T) or None

    def per_byte(values: Tensor | None) -> np.ndarray | None:
        if values is None:
            return None
        return values[0].mean(0).double().numpy()  # mean over heads -> (T,)

    return TextSignals(
        data=data,
        surprise=per_byte(surprise),
        lr=per_byte(gates.lr),
        forget=per_byte(gates.forget),
        momentum=per_byte(gates.momentum),
        heads=memory.config.heads,
    )


def char_spans(text: str) -> list[tuple[str, int, int]]:
    """Each character of ``text`` with the range ``[start, stop)`` of its UTF-8 bytes."""
    spans, start = [], 0
    for char in text:
        stop = start + len(char.encode("utf-8"))
        spans.append((char, start, stop))
        start = stop
    return spans


def char_values(text: str, per_byte: np.ndarray) -> list[tuple[str, float, list[float]]]:
    """Per character: ``(char, mean of its bytes' values, the bytes' values)``.

    Raises:
        ValueError: ``per_byte`` does not have one value per UTF-8 byte of ``text``.
    """
    spans = char_spans(text)
    n_bytes = spans[-1][2] if spans else 0
    if len(per_byte) != n_bytes:
        raise ValueError(f"per_byte has {len(per_byte)} values, the text has {n_bytes} bytes")
    return [
        (char, float(np.mean(per_byte[a:b])), [float(v) for v in per_byte[a:b]])
        for char, a, b in spans
    ]


def colour(value: float, low: float, high: float, rgb: tuple[int, int, int]) -> str:
    """A CSS colour from white (``value <= low``) to ``rgb`` (``value >= high``)."""
    share = 0.0 if high <= low else min(1.0, max(0.0, (value - low) / (high - low)))
    mix = [round(255 + share * (c - 255)) for c in rgb]
    return f"rgb({mix[0]}, {mix[1]}, {mix[2]})"


def coloured_html(
    text: str, per_byte: np.ndarray, rgb: tuple[int, int, int], signal: str
) -> tuple[str, float, float]:
    """The text as HTML, each character's background coloured by its value.

    White is the smallest value of the text, ``rgb`` the largest; each span carries its value in
    ``data-value`` and, with every byte's value, in its tooltip.

    Args:
        text: the text (escaped here).
        per_byte: one value per UTF-8 byte.
        rgb: the colour of the largest value.
        signal: a name for the spans' ``data-signal`` attribute.

    Returns:
        ``(html, low, high)``: the markup and the range the colours span.
    """
    values = char_values(text, per_byte)
    means = [v for _, v, _ in values]
    low, high = (min(means), max(means)) if means else (0.0, 0.0)
    spans = []
    for char, value, byte_values in values:
        tip = " ".join(f"{v:.4g}" for v in byte_values)
        shown = "⏎\n" if char == "\n" else html.escape(char)
        spans.append(
            f'<span class="tok" data-signal="{signal}" data-value="{value!r}" '
            f'title="{html.escape(repr(char))}: {tip}" '
            f'style="background:{colour(value, low, high, rgb)}">{shown}</span>'
        )
    return "".join(spans), low, high


@functools.lru_cache(maxsize=len(PRESETS))
def recall_curve(name: str) -> RecallCurve:
    """:func:`titans_memory.tasks.recall_vs_age` for preset ``name`` (defaults), cached."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return recall_vs_age(name)
