"""The synthetic data generators: the original return types and values, argument checks."""

from __future__ import annotations

import math
import re

import pytest
import torch

from titans_memory.demo.data import generate_frequency_shift, generate_repeating_with_anomalies


def test_repeating_with_anomalies_shapes_and_types():
    seq, mask = generate_repeating_with_anomalies([1.0, 2.0, 3.0], 10, [7, 15], anomaly_value=99.0)
    assert seq.shape == (30,) and mask.shape == (30,)
    assert seq.dtype == torch.float32 and mask.dtype == torch.float32


def test_repeating_with_anomalies_values():
    seq, mask = generate_repeating_with_anomalies([1.0, 2.0, 3.0], 4, [5, 0])
    expected = torch.tensor([99.0, 2, 3, 1, 2, 99, 1, 2, 3, 1, 2, 3])
    assert torch.equal(seq, expected)  # default anomaly_value is 99
    assert mask.nonzero().flatten().tolist() == [0, 5]
    assert torch.equal(seq[mask.bool()], torch.tensor([99.0, 99.0]))
    assert mask.sum() == 2


def test_repeating_without_anomalies_and_tensor_pattern():
    seq, mask = generate_repeating_with_anomalies(torch.tensor([4.0, 5.0]), 3, [])
    assert seq.tolist() == [4.0, 5.0] * 3
    assert not mask.any()


def test_frequency_shift_matches_the_formula():
    seq, shifts = generate_frequency_shift(200, base_freq=0.1, shifted_freq=0.5, shift_at=[100])
    assert seq.shape == (200,) and seq.dtype == torch.float32
    assert shifts == [100]
    for t in (0, 37, 99):
        assert seq[t].item() == pytest.approx(math.sin(2 * math.pi * 0.1 * t), abs=1e-6)
    for t in (100, 151, 199):
        assert seq[t].item() == pytest.approx(math.sin(2 * math.pi * 0.5 * t), abs=1e-6)


def test_frequency_shift_toggles_at_every_point_in_any_order():
    seq, shifts = generate_frequency_shift(30, 0.05, 0.2, shift_at=[20, 10])
    assert shifts == [20, 10]  # returned as given
    freq = [0.05] * 10 + [0.2] * 10 + [0.05] * 10
    expected = torch.tensor([math.sin(2 * math.pi * f * t) for t, f in enumerate(freq)])
    assert torch.allclose(seq, expected, atol=1e-6)


def test_frequency_shift_accepts_a_single_int():
    _, shifts = generate_frequency_shift(10, 0.1, 0.3, shift_at=4)
    assert shifts == [4]


@pytest.mark.parametrize(
    ("args", "error", "message"),
    [
        (([], 3, []), ValueError, "pattern must not be empty"),
        (("123", 3, []), TypeError, "pattern must be a sequence of numbers, got str"),
        (([1.0, float("nan")], 3, []), ValueError, "pattern element must be finite, got nan"),
        (([1.0], 0, []), ValueError, "repeats must be a positive int, got 0"),
        (([1.0], 2.0, []), TypeError, "repeats must be an int, got float"),
        (([1.0, 2.0], 2, [4]), ValueError, "anomaly_indices must lie in [0, 4), got [4]"),
        (([1.0, 2.0], 2, [-1]), ValueError, "anomaly_indices must lie in [0, 4), got [-1]"),
        (([1.0, 2.0], 2, [1.5]), TypeError, "anomaly_indices must contain ints, got float"),
        (([1.0, 2.0], 2, 1), TypeError, "anomaly_indices must be a sequence of ints, got int"),
    ],
)
def test_repeating_bad_arguments(args, error, message):
    with pytest.raises(error, match=re.escape(message)):
        generate_repeating_with_anomalies(*args)


def test_repeating_bad_anomaly_value():
    with pytest.raises(ValueError, match=r"anomaly_value must be finite, got inf"):
        generate_repeating_with_anomalies([1.0], 3, [1], anomaly_value=float("inf"))


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"length": 0}, ValueError, "length must be a positive int, got 0"),
        ({"base_freq": float("nan")}, ValueError, "base_freq must be finite, got nan"),
        ({"shifted_freq": "fast"}, TypeError, "shifted_freq must be a real number, got str"),
        ({"shift_at": [10]}, ValueError, "shift_at must lie in [0, 10), got [10]"),
        ({"shift_at": [2.5]}, TypeError, "shift_at must contain ints, got float"),
    ],
)
def test_frequency_shift_bad_arguments(kwargs, error, message):
    args = {"length": 10, "base_freq": 0.1, "shifted_freq": 0.3, "shift_at": [5], **kwargs}
    with pytest.raises(error, match=re.escape(message)):
        generate_frequency_shift(**args)


def test_the_generators_keep_their_public_imports():
    import titans_memory
    import titans_memory.data
    import titans_memory.demo

    for name in ("generate_frequency_shift", "generate_repeating_with_anomalies"):
        moved = getattr(titans_memory.demo.data, name)
        assert getattr(titans_memory, name) is moved
        assert getattr(titans_memory.demo, name) is moved
        assert getattr(titans_memory.data, name) is moved
