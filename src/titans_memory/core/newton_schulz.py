"""Newton-Schulz orthogonalisation, the core of Muon (Jordan et al., 2024) and of ATLAS' inner
optimiser (arXiv 2505.23735v1, eqs. 32-33: ``NewtonShulz-k`` with k steps; "NS-5" in its Table 1).
ATLAS gives no coefficients and refers to Muon's; these are Muon's reference ones.

For a matrix G with SVD ``U S V^T`` the iteration drives every singular value towards 1, i.e. G
towards its orthogonal polar factor ``U V^T``, with matmuls only. Muon's quintic step::

    X_0 = G / (||G||_F + eps)
    X_{j+1} = a X_j + b (X_j X_j^T) X_j + c (X_j X_j^T)^2 X_j,   (a, b, c) = (3.4445, -4.7750, 2.0315)

These coefficients maximise the slope at 0 rather than converge: after 5 steps the singular
values lie near [0.7, 1.2], not at 1. The normalisation makes the result invariant to the scale
of G, and a zero matrix stays zero. A wide-or-square orientation is used (a tall matrix is
transposed first) so that ``X X^T`` is the smaller Gram matrix.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor

#: Muon's quintic coefficients (a, b, c).
MUON_COEFFICIENTS: tuple[float, float, float] = (3.4445, -4.7750, 2.0315)


def check_ns_steps(steps: object, name: str = "ns_steps") -> int:
    """``steps`` is an integer >= 0 (a clear error otherwise)."""
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 0:
        raise ValueError(f"{name} (Newton-Schulz steps) must be an integer >= 0, got {steps!r}")
    return steps


def newton_schulz(
    g: Tensor, steps: int, coefficients: tuple[float, float, float] = MUON_COEFFICIENTS, eps: float = 1e-7
) -> Tensor:
    """``steps`` quintic Newton-Schulz steps on every matrix of ``g`` ``(..., m, n)``.

    ``steps = 0`` returns ``g / (||g||_F + eps)`` (the normalisation alone). Differentiable; works
    in the dtype of ``g`` (float64 in the exactness tests).
    """
    check_ns_steps(steps, "steps")
    tall = g.shape[-2] > g.shape[-1]
    x = g.transpose(-1, -2) if tall else g
    x = x / (torch.linalg.matrix_norm(x, keepdim=True) + eps)
    shape = x.shape
    x = x.reshape(-1, *shape[-2:])  # (batch, m, n), m <= n
    if steps:
        if torch.is_grad_enabled() and x.requires_grad:
            x = _Iterations.apply(x, steps, coefficients)
        else:
            x = _iterate(x, steps, coefficients)
    x = x.reshape(shape)
    return x.transpose(-1, -2) if tall else x


def _iterate(x: Tensor, steps: int, coefficients: tuple[float, float, float], saved: list | None = None) -> Tensor:
    """The quintic steps on ``x`` ``(batch, m, n)``, the sums fused into the matmuls; ``saved``
    receives ``(X_j, A_j, P_j)`` of every step for the backward."""
    a, b, c = coefficients
    for _ in range(steps):
        gram = torch.bmm(x, x.transpose(-1, -2))  # A = X X^T, (batch, m, m)
        poly = torch.baddbmm(gram, gram, gram, beta=b, alpha=c)  # P = b A + c A^2
        if saved is not None:
            saved.append((x, gram, poly))
        x = torch.baddbmm(x, poly, x, beta=a)  # a X + P X
    return x


class _Iterations(torch.autograd.Function):
    """The quintic steps as one autograd node with the chain rule written out. Per step, with
    ``Y = a X + P X``, ``P = b A + c A^2``, ``A = X X^T`` (A and P symmetric) and ``dY`` given::

        dP = dY X^T,   Q = dP + dP^T,   R = Q A
        dX = a dY + P dY + (b Q + c (R + R^T)) X

    3 m^2 n + 2 m^3 multiply-adds against the forward's 2 m^2 n + m^3 (autograd's own backward
    of the same ops is about 3.5 times the forward on the CPU)."""

    @staticmethod
    def forward(ctx, x: Tensor, steps: int, coefficients: tuple[float, float, float]) -> Tensor:  # noqa: D102
        saved: list = []
        out = _iterate(x, steps, coefficients, saved)
        ctx.coefficients, ctx.steps = coefficients, steps
        ctx.save_for_backward(*(t for step in saved for t in step))
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dy: Tensor):  # noqa: D102
        a, b, c = ctx.coefficients
        stored = ctx.saved_tensors
        for j in range(ctx.steps - 1, -1, -1):
            x, gram, poly = stored[3 * j : 3 * j + 3]
            dp = torch.bmm(dy, x.transpose(-1, -2))
            q = dp + dp.transpose(-1, -2)
            r = torch.bmm(q, gram)
            d_gram = (r + r.transpose(-1, -2)).mul_(c).add_(q, alpha=b)  # the symmetric part, doubled
            dx = torch.baddbmm(dy, poly, dy, beta=a)  # a dY + P dY
            dy = dx.baddbmm_(d_gram, x)
        return dy, None, None


@functools.lru_cache(maxsize=32)
def newton_schulz_gain(steps: int, coefficients: tuple[float, float, float] = MUON_COEFFICIENTS) -> float:
    """The largest singular value ``newton_schulz`` can output: the maximum over [0, 1] of the
    scalar iteration ``s <- a s + b s^3 + c s^5`` applied ``steps`` times (the normalised input's
    singular values lie in [0, 1]), on a grid of 2^20 points plus a 1% margin. Used by the
    weight-norm bound of the stability envelope (``core/stability.py``)."""
    check_ns_steps(steps, "steps")
    a, b, c = coefficients
    # on the CPU whatever the default device (a model built under ``torch.device("meta")``)
    s = torch.linspace(0.0, 1.0, 2**20 + 1, dtype=torch.float64, device="cpu")
    for _ in range(steps):
        s = a * s + b * s**3 + c * s**5
    return 1.01 * float(s.abs().max())
