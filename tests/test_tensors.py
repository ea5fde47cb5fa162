"""``all_finite``: the one-pass finite check used on every input."""

import pytest
import torch

from titans_memory._tensors import all_finite


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf"), None])
def test_agrees_with_isfinite_at_every_position(dtype, bad):
    gen = torch.Generator().manual_seed(0)
    base = torch.randn(2, 5, 3, generator=gen).to(dtype)
    for index in range(base.numel()):
        x = base.clone()
        if bad is not None:
            x.view(-1)[index] = bad
        assert all_finite(x) == bool(torch.isfinite(x).all()) == (bad is None)


def test_huge_but_finite_values_are_finite():
    x = torch.tensor([torch.finfo(torch.float32).max, torch.finfo(torch.float32).min, 0.0])
    assert all_finite(x)


def test_strided_views_and_scalars():
    x = torch.randn(4, 6).t()[:, ::2]  # non-contiguous
    assert all_finite(x)
    x[1, 1] = float("nan")
    assert not all_finite(x)
    assert all_finite(torch.tensor(1.5))
    assert not all_finite(torch.tensor(float("inf")))


def test_empty_integer_and_complex_tensors():
    assert all_finite(torch.empty(2, 0, 3))
    z = torch.randn(3, dtype=torch.complex64)
    assert all_finite(z)
    z[1] = complex(0.0, float("nan"))
    assert not all_finite(z)
    assert all_finite(torch.arange(5))
    assert all_finite(torch.tensor([True, False]))
