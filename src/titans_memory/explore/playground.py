"""What the explorer's playground computes: the demo layer on an editable series, as arrays.

The playground shows the six panels of the full-pipeline figure (input, raw and smoothed
surprise, write gate, weight norm, write heatmap) for a series the learner edits. Everything the
page plots comes from :func:`run_playground`, which runs :class:`TitansMemoryLayer` exactly as a
figure scenario does (:meth:`DemoScenario.run`: seed, build, run) and turns the trace into arrays
with the figures' own helpers (:func:`trace_array`, :func:`weight_norms`, :func:`write_updates`),
so a panel and its figure show the same numbers. Nothing here imports the web library.

A series is edited as two texts, so that each stays short and readable:

* the *base* series, numbers separated by commas, spaces or new lines (``"1, 2, 3, 1, 2, 3"``);
* the *anomalies*, ``t: height`` pairs (``"14: 99, 35: 99"``), each overwriting the base at
  timestep ``t``. A click on the input panel adds or removes one (:func:`toggle_anomaly`).

Parsing errors are :class:`~titans_memory.explore.texts.ExploreInputError` (a ``ValueError``)
whose message says what was wrong and where, in English or Vietnamese.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np
import torch

from titans_memory.demo import TitansMemoryLayer
from titans_memory.explore.texts import ExploreInputError
from titans_memory.viz.demo import (
    DEFAULT_SEED,
    SCENARIOS,
    trace_array,
    weight_norm,
    weight_norms,
    write_updates,
)

#: Longest series the playground runs: at ~8,000 steps/s plus one weight snapshot per step, this
#: keeps an update well under a second on a laptop core.
MAX_STEPS = 2000

#: Largest absolute input value accepted (the layer is stable for any finite input; this keeps
#: the plots' axes readable and catches typos such as a missing decimal point).
MAX_ABS_VALUE = 1e6

_SEPARATORS = re.compile(r"[,;\s]+")
_PAIR = re.compile(r"^\s*(-?\d+)\s*[:=]\s*(\S+)\s*$")

# torch.manual_seed sets a process-wide generator: one run at a time builds its layer.
_SEED_LOCK = threading.Lock()


@dataclass(frozen=True)
class PlaygroundSettings:
    """The sliders of the playground: the layer's arguments and the seed.

    Defaults are the full-pipeline scenario's (the page opens on it).
    """

    write_lr: float = 0.01  # memory step size at a fully open write gate
    forget_rate: float = 0.01  # fraction of every memory weight removed per step
    momentum: float = 0.9  # EMA factor of the smoothed surprise
    memory_dim: int = 16  # width of the memory MLP's hidden layer ("memory size")
    hidden_dim: int = 16  # width of the surprise predictor's hidden layer
    seed: int = DEFAULT_SEED  # torch.manual_seed before the layer is built

    def layer_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :class:`TitansMemoryLayer` (besides ``input_dim=1``)."""
        return {
            "memory_dim": self.memory_dim,
            "hidden_dim": self.hidden_dim,
            "momentum": self.momentum,
            "forget_rate": self.forget_rate,
            "write_lr": self.write_lr,
        }

    def replace(self, **changes: Any) -> PlaygroundSettings:
        """A copy with some fields changed."""
        return replace(self, **changes)


@dataclass(frozen=True)
class SeriesInput:
    """An editable series: base values, and anomalies overwriting some of them.

    Attributes:
        base: the base series, ``(T,)`` float64.
        anomalies: ``{t: height}``, each ``0 <= t < T``.
    """

    base: np.ndarray
    anomalies: Mapping[int, float]

    def sequence(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(seq, anomaly_mask)``, both ``(T,)`` float32, as the figures' scenarios give them."""
        seq = torch.tensor(self.base, dtype=torch.float32)
        mask = torch.zeros_like(seq)
        for t, height in self.anomalies.items():
            seq[t] = height
            mask[t] = 1.0
        return seq, mask


@dataclass(frozen=True)
class PanelData:
    """The arrays behind the six panels, all float64.

    Attributes:
        steps: timesteps ``0 .. T-1``, ``(T,)``.
        inputs: the input series, ``(T,)``.
        anomalies: timesteps of the anomalies, ascending.
        raw_surprise: ``s_t``, ``(T,)`` (``result["surprise_scores"]``).
        smooth_surprise: its moving average, ``(T,)`` (``result["surprise_momentum"]``).
        write_gate: ``g_t`` in ``[0, 1]``, ``(T,)`` (``result["write_gates"]``).
        norm_steps: ``-1 .. T-1``, ``(T + 1,)``: the norm before step 0 is plotted at ``-1``.
        weight_norm: L2 norm of all the memory weights, ``(T + 1,)``.
        write_heatmap: size of each write on each first-layer weight, ``(n_weights, T)``
            (:func:`write_updates`: forgetting factored out).
        settings: what the layer was run with.
    """

    steps: np.ndarray
    inputs: np.ndarray
    anomalies: list[int]
    raw_surprise: np.ndarray
    smooth_surprise: np.ndarray
    write_gate: np.ndarray
    norm_steps: np.ndarray
    weight_norm: np.ndarray
    write_heatmap: np.ndarray
    settings: PlaygroundSettings


# --------------------------------------------------------------------------------------------
# Text in, series out
# --------------------------------------------------------------------------------------------


# ``what`` names the field in an error message: a texts key and its parameters.
_What = tuple[str, dict[str, Any]]


def _checked(value: float, what: _What) -> float:
    if not math.isfinite(value):
        raise ExploreInputError("err_not_finite", what=what, value=value)
    if abs(value) > MAX_ABS_VALUE:
        raise ExploreInputError("err_out_of_range", what=what, value=value, limit=MAX_ABS_VALUE)
    return value


def _number(token: str, what: _What) -> float:
    try:
        value = float(token)
    except ValueError:
        raise ExploreInputError("err_not_a_number", what=what, token=token) from None
    return _checked(value, what)


def parse_series(text: str) -> np.ndarray:
    """Numbers separated by commas, semicolons, spaces or new lines, as a ``(T,)`` array.

    Raises:
        TypeError: ``text`` is not a string.
        ExploreInputError: no number, a token that is not a finite number, a value beyond
            :data:`MAX_ABS_VALUE`, or more than :data:`MAX_STEPS` values.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    tokens = [tok for tok in _SEPARATORS.split(text.strip()) if tok]
    if not tokens:
        raise ExploreInputError("err_empty_sequence")
    if len(tokens) > MAX_STEPS:
        raise ExploreInputError("err_too_long", count=len(tokens), limit=MAX_STEPS)
    return np.array(
        [_number(tok, ("what_value", {"index": i + 1})) for i, tok in enumerate(tokens)],
        dtype=np.float64,
    )


def parse_anomalies(text: str, length: int) -> dict[int, float]:
    """``"t: height, t: height"`` (or ``t=height``) as ``{t: height}``; an empty text is ``{}``.

    Args:
        text: the pairs, separated by commas, semicolons or new lines.
        length: the series' length ``T``; every ``t`` must be in ``[0, T)``.

    Raises:
        ExploreInputError: a pair that is not ``t: height``, ``t`` out of range or repeated, or a height
            that is not a finite number.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    out: dict[int, float] = {}
    for item in re.split(r"[,;\n]+", text):
        if not item.strip():
            continue
        match = _PAIR.match(item)
        if match is None:
            raise ExploreInputError("err_bad_anomaly", item=item.strip())
        t = int(match.group(1))
        if not 0 <= t < length:
            raise ExploreInputError("err_anomaly_step", t=t, last=length - 1)
        if t in out:
            raise ExploreInputError("err_anomaly_twice", t=t)
        out[t] = _number(match.group(2), ("what_anomaly", {"t": t}))
    return dict(sorted(out.items()))


def format_number(value: float) -> str:
    """A number as the playground writes it: ``3`` for 3.0, else the shortest exact form
    (``0.1``, ``2.5e-07``), so that parsing it back gives the same float."""
    value = float(value)
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def format_series(values: np.ndarray) -> str:
    """Inverse of :func:`parse_series`: ``"1, 2, 3"``."""
    return ", ".join(format_number(float(v)) for v in values)


def format_anomalies(anomalies: Mapping[int, float]) -> str:
    """Inverse of :func:`parse_anomalies`: ``"14: 99, 35: 99"``, by timestep."""
    return ", ".join(f"{t}: {format_number(h)}" for t, h in sorted(anomalies.items()))


def toggle_anomaly(
    anomalies: Mapping[int, float], t: int, height: float, length: int
) -> dict[int, float]:
    """A click on the input panel at timestep ``t``: remove the anomaly there, or place one.

    Args:
        anomalies: the current ``{t: height}``.
        t: the timestep clicked (the nearest to the click).
        height: the value a new anomaly takes.
        length: the series' length; a click outside ``[0, T)`` changes nothing.

    Returns:
        A new dict (the argument is left alone).
    """
    out = dict(anomalies)
    if not 0 <= t < length:
        return out
    if t in out:
        del out[t]
    else:
        out[t] = _checked(float(height), ("what_height", {}))
    return dict(sorted(out.items()))


def scenario_input(name: str) -> tuple[SeriesInput, PlaygroundSettings]:
    """A figure scenario as the playground's series and settings.

    The base is the scenario's pattern repeated, the anomalies its indices at its anomaly value;
    the settings are the layer arguments of the scenario (the layer's defaults where it gives
    none) and the seed the figures use. For the forgetting figure, which sweeps four rates, the
    forget_rate slider takes the layer's default and the learner sweeps it.

    Raises:
        ValueError: ``name`` is not a scenario.
    """
    if name not in SCENARIOS:
        raise ValueError(f"unknown scenario {name!r}; scenarios: {', '.join(SCENARIOS)}")
    scenario = SCENARIOS[name]
    base = np.tile(np.asarray(scenario.pattern, dtype=np.float64), scenario.repeats)
    anomalies = {i: float(scenario.anomaly_value) for i in scenario.anomaly_indices}
    defaults = {f.name: f.default for f in fields(PlaygroundSettings)}
    layer_defaults = {"memory_dim": 32, "hidden_dim": 16, "momentum": 0.0, "forget_rate": 0.01}
    layer_defaults["write_lr"] = 0.01
    kwargs = {key: scenario.layer_kwargs.get(key, layer_defaults[key]) for key in layer_defaults}
    settings = PlaygroundSettings(**{**defaults, **kwargs, "seed": DEFAULT_SEED})
    return SeriesInput(base, anomalies), settings


# --------------------------------------------------------------------------------------------
# Series in, panels out
# --------------------------------------------------------------------------------------------


def run_layer(
    seq: torch.Tensor, settings: PlaygroundSettings
) -> tuple[dict[str, list[Any]], TitansMemoryLayer, list[torch.Tensor]]:
    """Seed, build and run the layer as :meth:`DemoScenario.run` does.

    The process-wide torch generator is restored afterwards (the server's other users of it
    are left undisturbed), and a lock keeps two runs from seeding it at once.

    Args:
        seq: the series, ``(T,)``.
        settings: the layer's arguments and the seed.

    Returns:
        ``(result, layer, initial_snapshot)``: the trace of ``process_sequence``, the layer after
        the run, and its memory weights before step 0.
    """
    with _SEED_LOCK, torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.seed)
        layer = TitansMemoryLayer(input_dim=1, **settings.layer_kwargs())
        initial = layer.memory.get_weight_snapshot()
        result = layer.process_sequence(seq.unsqueeze(-1))
    return result, layer, initial


def panel_data(
    seq: torch.Tensor,
    mask: torch.Tensor,
    result: Mapping[str, Any],
    initial: list[torch.Tensor],
    settings: PlaygroundSettings,
) -> PanelData:
    """The six panels' arrays from a trace, computed by the figures' own helpers."""
    n_steps = len(seq)
    norms = np.concatenate(
        [[weight_norm(initial)], weight_norms(result["memory_snapshots"])]
    )
    return PanelData(
        steps=np.arange(n_steps, dtype=np.float64),
        inputs=seq.double().numpy(),
        anomalies=mask.nonzero().flatten().tolist(),
        raw_surprise=trace_array(result, "surprise_scores"),
        smooth_surprise=trace_array(result, "surprise_momentum"),
        write_gate=trace_array(result, "write_gates"),
        norm_steps=np.arange(-1, n_steps, dtype=np.float64),
        weight_norm=norms,
        write_heatmap=write_updates(result["memory_snapshots"], initial, settings.forget_rate),
        settings=settings,
    )


def run_playground(series: SeriesInput, settings: PlaygroundSettings) -> PanelData:
    """Everything the playground plots for ``series`` under ``settings``.

    Raises:
        ValueError: a setting out of the layer's range (its own message, naming the argument).
    """
    seq, mask = series.sequence()
    result, _, initial = run_layer(seq, settings)
    return panel_data(seq, mask, result, initial, settings)
