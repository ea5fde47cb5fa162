"""What an explorer view of HOPE's continuum memory system computes: its levels writing on a text.

A text becomes bytes and each byte a vector (the fixed random :func:`byte_embedding` of the text
tab, or the hidden states of a trained HOPE model: :func:`lm_cms_inputs`); a
:class:`~titans_memory.core.hope.ContinuumMemory` reads it byte by byte, its state carried, and
the view shows per level and per byte:

* **writes**: the size ``||sum_t eta_t grad||`` of the step a level applies after the byte that
  ends one of its chunks (eq. 71), 0 elsewhere: level ``l`` writes every ``C_l`` bytes;
* **drift**: how far the level's weights are from where the text started, ``||theta_t - theta_0||``:
  a staircase whose steps are ``C_l`` bytes wide, the fast levels climbing early and often, the
  slow ones rarely.

:func:`cms_html` renders the text once per level, each byte coloured by the level's drift and the
bytes that end a chunk underlined. Nothing here imports the web library; the page's hook is one tab
that calls :func:`cms_signals` and shows :func:`cms_html` (:mod:`~titans_memory.explore.tab_cms`).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from titans_memory.core.hope import ContinuumMemory, HopeConfig
from titans_memory.explore.core_text import (
    _SEED_LOCK,
    TEXT_DIM,
    TEXT_SEED,
    byte_embedding,
    colour,
    text_bytes,
)

#: The levels of a fresh CMS: writes every 4, 16 and 64 bytes (three frequencies visible on a
#: paragraph of a few hundred bytes).
DEFAULT_CHUNKS: tuple[int, ...] = (4, 16, 64)


@dataclass(frozen=True)
class CMSSignals:
    """Per level and per byte of a text (``levels x T`` arrays).

    Attributes:
        data: the text's UTF-8 bytes.
        chunks: ``C_l`` of every level, fastest first.
        writes: the norm of the step level ``l`` applied after byte ``t`` (0 where none).
        drift: ``||theta_l after byte t - theta_l at the start||`` (Frobenius, both layers).
    """

    data: bytes
    chunks: tuple[int, ...]
    writes: np.ndarray
    drift: np.ndarray


def fresh_cms(chunks: tuple[int, ...] = DEFAULT_CHUNKS, dim: int = TEXT_DIM, seed: int = TEXT_SEED) -> ContinuumMemory:
    """An untrained CMS of width ``dim`` (its weights drawn with ``seed``), levels every ``chunks`` bytes."""
    # the lock: the page's warm-up thread draws weights under fork_rng too
    with _SEED_LOCK, torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return ContinuumMemory(dim, HopeConfig(cms_chunks=tuple(chunks))).eval()


def lm_cms_inputs(model, ids: Tensor, layer: int | None = None) -> tuple[ContinuumMemory, Tensor]:
    """The CMS of a HOPE model's block ``layer`` (default: the first HOPE block) and what it reads.

    ``ids`` ``(1, T)`` token ids; returns ``(cms, u)``, ``u`` ``(1, T, dim)`` the block's CMS inputs
    (``RMSNorm`` of the stream after the self-modifying memory), computed in one call.
    """
    from titans_memory.models.cache import LayerCache
    from titans_memory.models.hope import HopeBlock

    hope_layers = [i for i, b in enumerate(model.blocks) if isinstance(b, HopeBlock)]
    if not hope_layers:
        raise ValueError("the model has no HOPE block (ModelConfig(arch='hope'))")
    layer = hope_layers[0] if layer is None else layer
    if layer not in hope_layers:
        raise ValueError(f"layer must be one of the HOPE blocks {hope_layers}, got {layer!r}")
    with torch.no_grad():
        x = model.embed(ids)
        for block in model.blocks[:layer]:
            x, _ = block(x, LayerCache(), 0)
        block = model.blocks[layer]
        y, _ = block.smt(block.norm(x))
        return block.cms, block.cms_norm(x + y)


def cms_signals(text: str, cms: ContinuumMemory | None = None, inputs: Tensor | None = None) -> CMSSignals:
    """Run ``cms`` (default :func:`fresh_cms`) over ``text`` byte by byte; see :class:`CMSSignals`.

    ``inputs`` ``(1, T, dim)``: what the CMS reads (default: the byte embedding of the text).
    """
    data = text_bytes(text)
    cms = cms if cms is not None else fresh_cms()
    if inputs is None:
        ids = torch.tensor(list(data), dtype=torch.long)
        inputs = byte_embedding(cms.dim)[ids][None].to(cms.w1[0].dtype)
    levels, T = len(cms.chunks), inputs.shape[1]
    writes, drift = np.zeros((levels, T)), np.zeros((levels, T))
    with torch.no_grad():
        state = cms.init_state(1)
        start = state.weights
        for t in range(T):
            before = state.weights
            _, state = cms(inputs[:, t : t + 1], state)
            for level in range(levels):
                pair = slice(2 * level, 2 * level + 2)
                step = [a - b for a, b in zip(state.weights[pair], before[pair], strict=True)]
                writes[level, t] = float(torch.sqrt(sum((s * s).sum() for s in step)))
                moved = [a - b for a, b in zip(state.weights[pair], start[pair], strict=True)]
                drift[level, t] = float(torch.sqrt(sum((m * m).sum() for m in moved)))
    return CMSSignals(data, tuple(cms.chunks), writes, drift)


def cms_html(
    signals: CMSSignals,
    rgb: tuple[int, int, int] | Sequence[tuple[int, int, int]] = (52, 120, 246),
    label: str = "level {level}, C = {chunk}",
    tip: str = "byte {t}: drift {drift:.3g}, write {write:.3g}",
) -> str:
    """One line of the text per level, each byte coloured by that level's drift (0 .. its maximum),
    the bytes after which the level wrote underlined; a tooltip gives the values.

    ``rgb``: the colour of the largest drift, one for all levels or one per level. ``label``: each
    row's title, formatted with ``level`` (from 1) and ``chunk`` (``C_l``); ``tip``: each byte's
    tooltip, formatted with ``t`` (from 0), ``drift`` and ``write``: both in the page's language.
    """
    rows = []
    per_byte = list(signals.data)
    colours = [rgb] * len(signals.chunks) if isinstance(rgb[0], int) else list(rgb)
    if len(colours) != len(signals.chunks):
        raise ValueError(f"rgb must be one colour or one per level ({len(signals.chunks)}), got {len(colours)}")
    for level, C in enumerate(signals.chunks):
        top = float(signals.drift[level].max()) or 1.0
        spans = []
        for t, byte in enumerate(per_byte):
            ch = chr(byte) if 32 <= byte < 127 else "·"  # one cell per byte: non-ASCII bytes as dots
            wrote = signals.writes[level, t] > 0
            style = f"background:{colour(float(signals.drift[level, t]), 0.0, top, colours[level])}"
            if wrote:
                style += ";text-decoration:underline"
            value = float(signals.drift[level, t])  # the drift shown, for a browser test to read back
            tip_text = tip.format(t=t, drift=value, write=float(signals.writes[level, t]))
            spans.append(
                f'<span style="{style}" data-value="{value!r}" title="{html.escape(tip_text)}">'
                f"{html.escape(ch)}</span>"
            )
        rows.append(
            f'<div class="cms-level"><b>{html.escape(label.format(level=level + 1, chunk=C))}</b>: '
            f'<span style="font-family:monospace">{"".join(spans)}</span></div>'
        )
    return "\n".join(rows)
