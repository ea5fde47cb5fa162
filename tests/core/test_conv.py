"""The causal depthwise convolution against ``F.conv1d``, and its hand-written backward."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from titans_memory.core.conv import causal_depthwise_conv


def conv1d_reference(u, weight, tail):
    """``F.conv1d`` over the tail followed by u, no padding: one output per token of u."""
    full = torch.cat([tail, u], dim=1).transpose(1, 2)  # (B, C, K - 1 + T)
    return F.conv1d(full, weight.unsqueeze(1), groups=weight.shape[0]).transpose(1, 2)


@pytest.mark.parametrize("T", [1, 2, 3, 7, 64])
@pytest.mark.parametrize("K", [2, 4])
def test_matches_conv1d_and_carries_the_tail(T, K):
    g = torch.Generator().manual_seed(T * 10 + K)
    B, C = 2, 5
    u = torch.randn(B, T, C, generator=g, dtype=torch.float64)
    w = torch.randn(C, K, generator=g, dtype=torch.float64)
    tail = torch.randn(B, K - 1, C, generator=g, dtype=torch.float64)
    out, new_tail = causal_depthwise_conv(u, w, tail)
    torch.testing.assert_close(out, conv1d_reference(u, w, tail), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(new_tail, torch.cat([tail, u], dim=1)[:, -(K - 1) :])


@pytest.mark.parametrize("T", [1, 2, 5])
def test_backward_is_the_adjoint(T):
    g = torch.Generator().manual_seed(T)
    B, C, K = 2, 3, 4
    u = torch.randn(B, T, C, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(C, K, generator=g, dtype=torch.float64, requires_grad=True)
    tail = torch.randn(B, K - 1, C, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda *a: causal_depthwise_conv(*a)[0], (u, w, tail))
    # and equal to autograd through F.conv1d on a longer input
    grad = torch.randn(B, T, C, generator=g, dtype=torch.float64)
    ours = torch.autograd.grad(causal_depthwise_conv(u, w, tail)[0], (u, w, tail), grad)
    ref = torch.autograd.grad(conv1d_reference(u, w, tail), (u, w, tail), grad)
    for a, b in zip(ours, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_kernel_one_has_no_tail():
    u, w = torch.randn(2, 3, 4), torch.randn(4, 1)
    out, tail = causal_depthwise_conv(u, w, None)
    assert tail is None
    torch.testing.assert_close(out, u * w[:, 0])
