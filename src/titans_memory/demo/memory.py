"""Long-term memory whose contents are the weights of a small MLP.

Reading is a forward pass. Writing is one gradient step that makes the MLP reproduce the written
value (``M(x) ~ x``), with a step size proportional to the surprise. Forgetting shrinks every
weight a little, so what is not re-written fades.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from titans_memory.demo import _checks, _mlp, _wide

# Below this surprise a write is skipped outright (a no-op step would still cost a backward pass).
_MIN_SURPRISE = 1e-8


class MemoryModule(nn.Module):
    """MLP memory ``M``: ``Linear(input_dim, memory_dim) -> ReLU -> Linear(memory_dim, memory_dim)
    -> ReLU -> Linear(memory_dim, input_dim)``.

    Args:
        input_dim: size of one stored vector.
        memory_dim: width of the two hidden layers (the memory's capacity).
        forget_rate: fraction of every weight removed by :meth:`apply_forgetting`, in ``[0, 1)``.
        write_lr: base step size of :meth:`write`, >= 0.
    """

    def __init__(
        self,
        input_dim: int,
        memory_dim: int = 32,
        forget_rate: float = 0.0,
        write_lr: float = 0.01,
    ) -> None:
        super().__init__()
        self.input_dim = _checks.positive_int("input_dim", input_dim)
        self.memory_dim = _checks.positive_int("memory_dim", memory_dim)
        self.forget_rate = _checks.real(
            "forget_rate", forget_rate, low=0.0, high=1.0, high_open=True
        )
        self.write_lr = _checks.real("write_lr", write_lr, low=0.0)
        self.memory_net = nn.Sequential(
            nn.Linear(self.input_dim, self.memory_dim),
            nn.ReLU(),
            nn.Linear(self.memory_dim, self.memory_dim),
            nn.ReLU(),
            nn.Linear(self.memory_dim, self.input_dim),
        )

    def _params(self) -> list[Tensor]:
        return _mlp.linear_params(self.memory_net)

    def _check_x(self, x: object) -> Tensor:
        return _checks.finite_tensor("x", x, self.input_dim, self.memory_net[0].weight)

    def read(self, x: Tensor) -> Tensor:
        """Recall: ``M(x)``, without changing the memory and without gradient.

        Finite for every finite ``x``: where a bound from the weight norms says the dtype could
        overflow (in float32, inputs near its maximum), the read is computed in float64, and
        values beyond the dtype's range are returned as its largest finite value (+-3.4e38 in
        float32).

        Args:
            x: ``(input_dim,)`` or ``(..., input_dim)``.

        Returns:
            Tensor of ``x``'s shape.
        """
        x = self._check_x(x)
        params = self._params()
        with torch.no_grad():
            if _wide.fits_for(params, x, upto="read"):
                return self.memory_net(x)
            _, y64, _ = _wide.forward(_wide.widen(params), x.reshape(-1, self.input_dim))
            return _wide.saturate(y64, x.dtype).reshape(x.shape)

    def write(self, x: Tensor, surprise_score: Tensor, max_grad_norm: float | None = None) -> None:
        """Store ``x``: one gradient step on ``mean((M(x) - x) ** 2)``.

        The step size is ``effective_lr = write_lr * surprise_score``: a surprise of 0 leaves the
        memory untouched, a large one writes hard. The surprise is used as given, unbounded, as in
        the original demo; :class:`~titans_memory.demo.TitansMemoryLayer` passes a gate in
        ``[0, 1]`` instead of the raw surprise, and a ``max_grad_norm``, so its writes stay bounded.

        Args:
            x: ``(input_dim,)`` or ``(..., input_dim)``.
            surprise_score: finite scalar >= 0 (0-d tensor or a Python number).
            max_grad_norm: if given, the gradient (all memory parameters together) is rescaled to
                at most this L2 norm first, so a write moves the weights by at most
                ``effective_lr * max_grad_norm``. ``None`` (default): the plain step.

        Where the dtype could overflow, the write is computed in float64: a clipped write stays
        exact for every finite ``x``; an unclipped one that leaves the dtype's range saturates
        the weights at its largest finite value (the original rule has no bound to keep).
        """
        x = self._check_x(x)
        if isinstance(surprise_score, Tensor) and surprise_score.numel() != 1:
            raise ValueError(
                f"surprise_score must be a scalar, got shape {tuple(surprise_score.shape)}"
            )
        surprise = _checks.real("surprise_score", surprise_score, low=0.0)
        if max_grad_norm is not None:
            max_grad_norm = _checks.positive_real("max_grad_norm", max_grad_norm)
        if surprise < _MIN_SURPRISE:
            return
        effective_lr = self.write_lr * surprise
        params = self._params()
        with torch.no_grad():
            x2 = x.reshape(-1, self.input_dim)
            if _wide.fits_for(params, x2, lr=effective_lr, max_grad_norm=max_grad_norm):
                y, inputs = _mlp.forward_cached(params, x2)
                _, grad_out = _mlp.mse_grad_out(y, x2)
                grads = _mlp.backward(params, inputs, grad_out)
                _mlp.sgd_step_(params, grads, effective_lr, max_grad_norm=max_grad_norm)
                return
            params64 = _wide.widen(params)
            x64, y64, inputs = _wide.forward(params64, x2)
            _, grad_out = _mlp.mse_grad_out(y64, x64)
            grads = _mlp.backward(params64, inputs, grad_out)
            _wide.step_(params, params64, grads, effective_lr, max_grad_norm=max_grad_norm)

    def apply_forgetting(self) -> None:
        """Multiply every weight and bias by ``1 - forget_rate`` (nothing if the rate is 0)."""
        if self.forget_rate <= 0.0:
            return
        with torch.no_grad():
            torch._foreach_mul_(self._params(), 1.0 - self.forget_rate)

    def get_weight_snapshot(self) -> list[Tensor]:
        """Copies of ``memory_net``'s parameters, ``[W_1, b_1, W_2, b_2, W_3, b_3]``.

        ``W_l`` has ``nn.Linear``'s shape ``(d_out, d_in)``; the copies do not change when the
        memory does.
        """
        return [p.detach().clone() for p in self.memory_net.parameters()]
