"""MemoryConfig: safe defaults, validation naming the bad field, shapes, round trips."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from titans_memory.core.config import MemoryConfig


def test_defaults_are_safe():
    cfg = MemoryConfig()
    assert cfg.d_head == cfg.dim // cfg.heads and cfg.hidden_dim == round(cfg.expansion * cfg.d_head)
    # a fresh forget gate must not wipe the memory (docs/design.md: "start it small")
    assert cfg.forget_init < 0.05
    assert 0 < cfg.lr_init < cfg.max_lr


def test_frozen():
    cfg = MemoryConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.dim = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"dim": 0}, "dim"),
        ({"dim": -4}, "dim"),
        ({"dim": 8.0}, "dim"),
        ({"heads": 0}, "heads"),
        ({"dim": 10, "heads": 3}, "heads"),  # heads must divide dim when head_dim is None
        ({"head_dim": 0}, "head_dim"),
        ({"depth": 0}, "depth"),
        ({"depth": True}, "depth"),
        ({"chunk_size": 0}, "chunk_size"),
        ({"chunk_size": -1}, "chunk_size"),
        ({"conv_kernel": 0}, "conv_kernel"),
        ({"expansion": 0.0}, "expansion"),
        ({"expansion": float("inf")}, "expansion"),
        ({"expansion": float("nan")}, "expansion"),
        ({"activation": "swish"}, "activation"),
        ({"max_lr": -0.1}, "max_lr"),
        ({"max_lr": 0.0}, "max_lr"),
        ({"max_lr": float("inf")}, "max_lr"),
        ({"lr_init": 0.1}, "lr_init"),  # == max_lr
        ({"lr_init": 0.5}, "lr_init"),  # > max_lr
        ({"lr_init": 0.0}, "lr_init"),
        ({"momentum_init": 0.0}, "momentum_init"),
        ({"momentum_init": 1.0}, "momentum_init"),
        ({"momentum_init": 1.5}, "momentum_init"),
        ({"forget_init": 0.0}, "forget_init"),
        ({"forget_init": 1.0}, "forget_init"),
        ({"eps": 0.0}, "eps"),
        ({"eps": -1e-6}, "eps"),
        ({"objective": "l1"}, "objective"),
        ({"retention": "l2"}, "retention"),
        ({"p": 0.5}, "p"),
        ({"q": 0.0}, "q"),
        ({"huber_delta_init": 0.0}, "huber_delta_init"),
        ({"retention_strength": -1.0}, "retention_strength"),
        ({"decayed_gradient": True, "forget": False}, "decayed_gradient"),
        ({"lr_gate": False, "lr_init": 0.0}, "lr_init"),
    ],
)
def test_invalid_field_raises_naming_it(changes, field):
    base = {"dim": 8, "heads": 2}
    with pytest.raises(ValueError, match=rf"^MemoryConfig\.{field}\b"):
        MemoryConfig(**{**base, **changes})


@pytest.mark.parametrize(
    "changes",
    [{"p": float("inf")}, {"q": float("nan")}, {"huber_delta_init": float("inf")}, {"max_lr": float("nan")},
     {"retention_strength": float("inf")}, {"lp_sign_sharpness": float("inf")}, {"momentum_init": float("nan")}],
    ids=lambda c: next(iter(c)),
)
def test_non_finite_numbers_are_rejected(changes):
    field = next(iter(changes))
    with pytest.raises(ValueError, match=rf"^MemoryConfig\.{field} must be a finite number"):
        MemoryConfig(**changes)


@pytest.mark.parametrize("field", ["momentum", "forget", "output_gate", "decayed_gradient", "lr_gate"])
@pytest.mark.parametrize("value", ["no", "yes", 0, 1, None])
def test_boolean_fields_accept_only_booleans(field, value):
    """``momentum="no"`` used to switch momentum *on* (a non-empty string is truthy)."""
    with pytest.raises(TypeError, match=rf"^MemoryConfig\.{field} must be True or False, got {value!r}"):
        MemoryConfig(**{field: value})


@pytest.mark.parametrize(("field", "value"), [("dim", "8"), ("max_lr", "0.1"), ("objective", 2), ("p", True)])
def test_wrong_types_name_the_field(field, value):
    with pytest.raises((TypeError, ValueError), match=rf"^MemoryConfig\.{field} must be"):
        MemoryConfig(**{field: value})


def test_large_huber_threshold_builds():
    """``huber_delta_init = 1000`` used to overflow in math.expm1 while setting the gate's bias."""
    from titans_memory.core import NeuralMemory

    mem = NeuralMemory(MemoryConfig(dim=8, objective="huber", huber_delta_init=1000.0))
    with torch.no_grad():
        mem.to_gates.weight.zero_()
        delta = mem.gates(torch.randn(1, 3, 8)).bias_param
    torch.testing.assert_close(delta, torch.full_like(delta, 1000.0), rtol=1e-5, atol=0)


def test_fixed_lr_may_exceed_max_lr():
    """Without the lr gate, theta = lr_init for every token: max_lr no longer bounds it."""
    assert MemoryConfig(dim=8, lr_gate=False, lr_init=0.5).lr_init == 0.5


def test_replace_validates_again():
    cfg = MemoryConfig(dim=8)
    assert cfg.replace(chunk_size=5).chunk_size == 5
    with pytest.raises(ValueError, match=r"^MemoryConfig\.chunk_size must be an integer >= 1, got 0"):
        cfg.replace(chunk_size=0)


def test_heads_need_not_divide_dim_with_explicit_head_dim():
    cfg = MemoryConfig(dim=10, heads=3, head_dim=4)
    assert cfg.d_head == 4


@pytest.mark.parametrize(
    ("depth", "expected"),
    [
        (1, [(6, 6)]),
        (2, [(6, 12), (12, 6)]),
        (3, [(6, 12), (12, 12), (12, 6)]),
    ],
)
def test_layer_shapes(depth, expected):
    cfg = MemoryConfig(dim=12, heads=2, depth=depth, expansion=2.0)
    assert cfg.d_head == 6 and cfg.hidden_dim == 12
    assert cfg.layer_shapes == expected


def test_layer_shapes_follow_head_dim():
    cfg = MemoryConfig(dim=12, heads=2, head_dim=5, depth=2, expansion=1.6)
    assert cfg.layer_shapes == [(5, 8), (8, 5)]


def test_dict_round_trip():
    cfg = MemoryConfig(
        dim=24,
        heads=3,
        depth=3,
        expansion=1.5,
        activation="tanh",
        chunk_size=7,
        conv_kernel=2,
        max_lr=0.3,
        lr_init=0.01,
        momentum=False,
        momentum_init=0.5,
        forget=False,
        forget_init=0.02,
        output_gate=False,
        eps=1e-5,
    )
    data = cfg.to_dict()
    assert data["activation"] == "tanh" and data["chunk_size"] == 7
    back = MemoryConfig.from_dict(data)
    assert back == cfg
    assert MemoryConfig.from_dict(MemoryConfig().to_dict()) == MemoryConfig()


def test_from_dict_unknown_field_raises():
    data = MemoryConfig(dim=8).to_dict()
    data["learning_rate"] = 0.1
    with pytest.raises(ValueError, match=r"MemoryConfig.from_dict: unknown fields \['learning_rate'\]"):
        MemoryConfig.from_dict(data)


def test_from_dict_validates():
    data = MemoryConfig(dim=8).to_dict()
    data["chunk_size"] = 0
    with pytest.raises(ValueError, match=r"^MemoryConfig\.chunk_size must be an integer >= 1, got 0"):
        MemoryConfig.from_dict(data)
