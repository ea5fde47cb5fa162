"""Polynomial feature maps on keys and queries (ATLAS, arXiv 2505.23735v1, sec. 3.1, eqs. 5 and 22).

ATLAS raises the capacity of a memory by reading and writing it through a feature map ``phi``
of the keys and queries instead of the keys themselves: ``l(M; k_i, v_i) = ||M(phi(k_i)) - v_i||^2``
(the loss inside the Omega rule, ATLAS eqs. 9-10) and ``y_t = M_t(phi(q_t))``. Its polynomial map
of degree p collects the monomials of the input up to degree p, ``phi_p(x) = [x^beta]_{|beta| <= p}``,
which lifts a matrix memory's capacity from O(d) to O(d^p) pairs (Proposition 2); weighting the
degree-i block by ``1 / sqrt(i!)`` (the blocks of the exponential map ``phi*``, ATLAS eq. 22) makes
its kernel eq. 5 with the paper's initial coefficients ``a_i = 1/i!``, the degree-p Taylor
truncation of Transformers' ``exp(q . k)``::

    <phi_p(q), phi_p(k)> = sum_{i=0}^{p} (q . k)^i / i!          -> exp(q . k) as p -> infinity

This module builds that map exactly, with each monomial appearing once: for degree i the
monomials ``x^beta`` with ``|beta| = i`` are weighted by ``sqrt(multinomial(i; beta) / i!)``, so
the identity above holds to rounding (a test). Feature dimension ``sum_i C(d + i - 1, i)``:
for d = 16 and p = 2, 1 + 16 + 136 = 153.

The map is fixed: ATLAS learns the ``a_i`` (eq. 5), this library keeps their initial values
(docs/atlas.md §7). ``MemoryConfig.feature_degree = None`` (the default) turns it off and leaves the
memory exactly as it was.
"""

from __future__ import annotations

import math
from functools import lru_cache
from itertools import combinations_with_replacement

import torch
from torch import Tensor


def _check_degree(degree: object) -> int:
    if not isinstance(degree, int) or isinstance(degree, bool) or degree < 1:
        raise ValueError(f"feature degree p must be an integer >= 1, got {degree!r}")
    return degree


def feature_dim(dim: int, degree: int) -> int:
    """Length of ``phi_p(x)`` for ``x`` of ``dim`` channels: ``sum_{i<=p} C(dim + i - 1, i)``."""
    _check_degree(degree)
    return sum(math.comb(dim + i - 1, i) for i in range(degree + 1))


@lru_cache(maxsize=64)
def _monomials(dim: int, degree: int) -> tuple[tuple[tuple[int, ...], ...], tuple[float, ...]]:
    """Per degree i >= 1, the index tuples of the monomials of degree i, and every feature's weight."""
    groups, weights = [], [1.0]  # degree 0: the constant feature a_0 = 1
    for i in range(1, degree + 1):
        combos = tuple(combinations_with_replacement(range(dim), i))
        groups.append(combos)
        for combo in combos:
            counts = [combo.count(j) for j in set(combo)]
            multinomial = math.factorial(i) / math.prod(math.factorial(c) for c in counts)
            weights.append(math.sqrt(multinomial / math.factorial(i)))  # a_i^2 * multinomial, a_i = 1/sqrt(i!)
    return tuple(groups), tuple(weights)


def polynomial_features(x: Tensor, degree: int) -> Tensor:
    """``phi_p(x)``: every monomial of ``x`` up to degree p, weighted as in the module docstring.

    Args:
        x: ``(..., d)``.
        degree: p >= 1.

    Returns:
        ``(..., feature_dim(d, p))``, ordered by degree: ``[1, x, degree-2 monomials, ...]`` (the
        degree-1 block is x itself, since ``a_1 = 1``).
    """
    _check_degree(degree)
    d = x.shape[-1]
    groups, weights = _monomials(d, degree)
    blocks = [x.new_ones(*x.shape[:-1], 1)]
    for combos in groups:
        idx = torch.tensor(combos, device=x.device)  # (monomials, i)
        blocks.append(x[..., idx].prod(-1))  # (..., monomials)
    out = torch.cat(blocks, dim=-1)
    return out * torch.tensor(weights, dtype=x.dtype, device=x.device)


def exp_kernel_taylor(q: Tensor, k: Tensor, degree: int) -> Tensor:
    """``sum_{i<=p} (q . k)^i / i!`` for ``q, k`` ``(..., d)``: the kernel ``phi_p`` computes."""
    s = (q * k).sum(-1)
    return sum(s**i / math.factorial(i) for i in range(_check_degree(degree) + 1))


# --- the memory on features ----------------------------------------------------------------------------
from dataclasses import dataclass  # noqa: E402

from titans_memory.core.architectures.mlp import MLPMemory  # noqa: E402


@dataclass(frozen=True)
class FeatureMLPMemory(MLPMemory):
    """The memory read through features: ``M(phi(x))`` with ``phi(x)`` ``(..., d_phi)`` in, ``d`` out.

    depth 1: ``M(phi) = phi W`` (a ``(d_phi, d)`` matrix, starting at 0, as ``MatrixMemory``);
    depth L >= 2: ``M(phi) = phi_1 + act(... act(phi W_1) ...) W_L``, the residual MLP whose skip
    connection carries the degree-1 block ``phi_1 = x`` of the features (``a_1 = 1``), so a fresh
    memory maps a key to itself as Titans' residual memory does. A member of the MLP family whose
    first layer is ``d_phi`` wide and whose skip starts at channel 1, so the chunked operators run
    it in the dual form (ATLAS' polynomial memory at the cost of a wider first layer).
    """

    d_in: int  # d_phi
    dim: int  # d, the values' width
    hidden: int
    depth: int = 1
    activation: str = "gelu"

    skip_offset = 1  # past the constant feature: the residual carries phi_1(x) = x

    @property
    def residual(self) -> bool:  # type: ignore[override]
        return self.depth > 1

    @property
    def layer_shapes(self) -> list[tuple[int, int]]:
        if self.depth == 1:
            return [(self.d_in, self.dim)]
        return [(self.d_in, self.hidden)] + [(self.hidden, self.hidden)] * (self.depth - 2) + [(self.hidden, self.dim)]

    def init_weights(self, heads, generator=None):
        if self.depth == 1:
            return [torch.zeros(heads, self.d_in, self.dim)]
        shapes, weights = self.layer_shapes, []
        for i, (a, b) in enumerate(shapes):
            std = (1.0 if i < len(shapes) - 1 else math.sqrt(0.1)) / math.sqrt(a)
            weights.append(torch.randn(heads, a, b, generator=generator) * std)
        return weights
