"""Retention maps: the lq map's gradient at an all-zero memory (a zero memory_init)."""

from __future__ import annotations

import torch

from titans_memory.core.retention import lq_normalize


def test_lq_normalize_zero_matrix_has_finite_zero_gradient():
    # ||0||_q = 0: s^(1/q) has an infinite derivative there, and the map is 0 * radius / tiny = 0;
    # the gradient must be finite (it was NaN), and away from zero the value is unchanged
    w = torch.zeros(2, 3, 4, dtype=torch.float64, requires_grad=True)
    radius = torch.full((2, 1, 1), 2.0, dtype=torch.float64)
    out = lq_normalize(w, 4.0, radius)
    assert torch.equal(out, torch.zeros_like(out))
    (grad,) = torch.autograd.grad(out.sum(), w)
    assert torch.isfinite(grad).all()

    x = torch.randn(2, 3, 4, dtype=torch.float64, requires_grad=True)
    y = lq_normalize(x, 4.0, radius)
    expected = x * radius / x.abs().pow(4).sum((-2, -1), keepdim=True).pow(0.25)
    torch.testing.assert_close(y, expected, rtol=1e-14, atol=0)
    torch.testing.assert_close(
        torch.autograd.grad(y.pow(2).sum(), x)[0], torch.autograd.grad(expected.pow(2).sum(), x)[0], rtol=1e-12, atol=1e-14
    )
