"""Surprise: how badly a small predictor network reconstructs the incoming value.

The predictor is trained online to reproduce its input. Values like those it has seen are
reconstructed well (low surprise); a value unlike anything seen before is reconstructed badly
(high surprise). The memory layer writes strongly only when the surprise is high.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from titans_memory.demo import _checks, _mlp, _wide


class SurpriseMetric(nn.Module):
    """Surprise of an input = mean squared error of a small predictor that reconstructs it.

    ``predictor`` is ``Linear(input_dim, hidden_dim) -> ReLU -> Linear(hidden_dim, input_dim)``.

    Args:
        input_dim: size of one input vector.
        hidden_dim: width of the predictor's hidden layer.
        momentum: factor of the exponential moving average kept by
            :meth:`compute_with_momentum`, in ``[0, 1)``; 0 means no smoothing.
    """

    def __init__(self, input_dim: int, hidden_dim: int = 16, momentum: float = 0.0) -> None:
        super().__init__()
        self.input_dim = _checks.positive_int("input_dim", input_dim)
        self.hidden_dim = _checks.positive_int("hidden_dim", hidden_dim)
        self.momentum = _checks.real("momentum", momentum, low=0.0, high=1.0, high_open=True)
        self.predictor = nn.Sequential(
            nn.Linear(self.input_dim, self.hidden_dim),
            nn.ReLU(),
            nn.Linear(self.hidden_dim, self.input_dim),
        )
        # Running EMA of the surprise; None until the first compute_with_momentum call.
        self._ema_surprise: Tensor | None = None

    def _params(self) -> list[Tensor]:
        return _mlp.linear_params(self.predictor)

    def _check_x(self, x: object) -> Tensor:
        return _checks.finite_tensor("x", x, self.input_dim, self.predictor[0].weight)

    def forward(self, x: Tensor) -> Tensor:
        """Raw surprise ``mean((predictor(x) - x) ** 2)``, computed without gradient.

        Finite for every finite ``x``: where a bound from the weight norms says the dtype could
        overflow (in float32, inputs from ~1e18 on), it is computed in float64, and a surprise
        beyond the dtype's range is returned as its largest finite value (3.4e38 in float32).

        Args:
            x: ``(input_dim,)`` or ``(..., input_dim)``; the mean runs over all elements.

        Returns:
            0-d tensor >= 0.
        """
        x = self._check_x(x)
        params = self._params()
        with torch.no_grad():
            if _wide.fits_for(params, x, upto="error"):
                return (self.predictor(x) - x).square().mean()
            x64, y64, _ = _wide.forward(_wide.widen(params), x.reshape(-1, self.input_dim))
            return _wide.saturate((y64 - x64).square().mean(), x.dtype)

    def update_predictor(
        self, x: Tensor, lr: float = 0.01, max_grad_norm: float | None = None
    ) -> None:
        """One gradient-descent step on ``mean((predictor(x) - x) ** 2)``.

        Args:
            x: ``(input_dim,)`` or ``(..., input_dim)``.
            lr: step size, >= 0.
            max_grad_norm: if given, the gradient (all predictor parameters together) is rescaled
                to at most this L2 norm first, so the step moves the weights by at most
                ``lr * max_grad_norm``. ``None`` (default) is the plain, unbounded step.

        Where the dtype could overflow, the step is computed in float64; a clipped step stays
        exact, an unclipped one that leaves the dtype's range saturates the weights at its
        largest finite value.
        """
        x = self._check_x(x)
        lr = _checks.real("lr", lr, low=0.0)
        if max_grad_norm is not None:
            max_grad_norm = _checks.positive_real("max_grad_norm", max_grad_norm)
        params = self._params()
        with torch.no_grad():
            x2 = x.reshape(-1, self.input_dim)
            if _wide.fits_for(params, x2, lr=lr, max_grad_norm=max_grad_norm):
                y, inputs = _mlp.forward_cached(params, x2)
                _, grad_out = _mlp.mse_grad_out(y, x2)
                grads = _mlp.backward(params, inputs, grad_out)
                _mlp.sgd_step_(params, grads, lr, max_grad_norm=max_grad_norm)
                return
            params64 = _wide.widen(params)
            x64, y64, inputs = _wide.forward(params64, x2)
            _, grad_out = _mlp.mse_grad_out(y64, x64)
            grads = _mlp.backward(params64, inputs, grad_out)
            _wide.step_(params, params64, grads, lr, max_grad_norm=max_grad_norm)

    def compute_with_momentum(self, x: Tensor) -> Tensor:
        """Exponential moving average of the surprise, updated with ``x``.

        ``ema = momentum * ema + (1 - momentum) * surprise(x)``; the first call after construction
        or :meth:`reset_momentum` sets ``ema = surprise(x)``.

        Returns:
            0-d tensor, a copy of the new average.
        """
        raw = self.forward(x)
        if self._ema_surprise is None:
            self._ema_surprise = raw.clone()
        else:
            # lerp(raw, ema, m) = m * ema + (1 - m) * raw, in one fused op.
            self._ema_surprise = torch.lerp(raw, self._ema_surprise, self.momentum)
        return self._ema_surprise.clone()

    def reset_momentum(self) -> None:
        """Forget the moving average (the next :meth:`compute_with_momentum` restarts it)."""
        self._ema_surprise = None
