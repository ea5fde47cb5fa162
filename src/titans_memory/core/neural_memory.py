"""``NeuralMemory``: the neural long-term memory of Titans (arXiv 2501.00663) as a sequence layer."""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from titans_memory._tensors import all_finite
from titans_memory.core.config import MemoryConfig
from titans_memory.core.conv import causal_depthwise_conv
from titans_memory.core.models import init_memory_weights
from titans_memory.core.objectives import make_objective
from titans_memory.core.ops import chunked_memory, recurrent_memory
from titans_memory.core.retention import make_retention, simplex_scale
from titans_memory.core.state import MemoryState

Backend = Literal["chunked", "recurrent"]


def _logit(p: float) -> float:
    return math.log(p) - math.log1p(-p)


class NeuralMemory(nn.Module):
    """A memory whose weights are written at test time by gradient steps on surprise.

    Per head, for each token (DESIGN section 2; Titans eqs. 8-15)::

        k_t = l2norm(conv(silu(x_t W_K)))   v_t = conv(silu(x_t W_V))   q_t = l2norm(conv(silu(x_t W_Q)))
        S_t = eta_t S_{t-1} - theta_t grad l(M; k_t, v_t)      l = ||M(k_t) - v_t||^2
        M_t = (1 - alpha_t) M_{t-1} + S_t
        y_t = W_O (norm(M_t(q_t)) * sigmoid(x_t W_G))

    Inside a chunk of ``chunk_size`` tokens the gradients are taken at the chunk-start weights
    (Titans sec. 3.2); everything else is per token. The gates theta_t (inner learning rate, in
    (0, max_lr]), eta_t (momentum, in (0, 1)) and alpha_t (forget rate, in (0, 1)) are sigmoids of
    linear maps of x_t, one per head. ``alpha`` means Titans' forget rate (MIRAS's retention is
    1 - alpha).

    Args:
        config: a :class:`MemoryConfig`; or leave it out and give its fields as keywords.

    Example::

        >>> mem = NeuralMemory(MemoryConfig(dim=64, heads=2, chunk_size=16))
        >>> x = torch.randn(2, 100, 64)                       # (batch, time, dim)
        >>> y, state = mem(x)                                # y: (2, 100, 64)
        >>> y2, state = mem(torch.randn(2, 7, 64), state)    # continue the same two streams
        >>> state = state.detach()                           # truncate backprop here

    ``mem(x[:, :40])`` then ``mem(x[:, 40:], state)`` gives the same outputs and state as
    ``mem(x)``, for any split (chunks are aligned to the stream position).
    """

    def __init__(self, config: MemoryConfig | None = None, **overrides) -> None:
        super().__init__()
        if config is None:
            config = MemoryConfig(**overrides)
        elif overrides:
            config = config.replace(**overrides)
        if not isinstance(config, MemoryConfig):
            raise TypeError(f"config must be a MemoryConfig, got {type(config).__name__}")
        self.config = cfg = config
        heads, d_head = cfg.heads, cfg.d_head
        inner = heads * d_head

        self.to_qkv = nn.Linear(cfg.dim, 3 * inner, bias=False)
        # depthwise causal convolution over time on q, k, v: one filter of conv_kernel taps per
        # channel (nn.Conv1d's default initialisation; tap -1 multiplies the current token)
        bound = 1.0 / math.sqrt(cfg.conv_kernel)
        self.conv_weight = nn.Parameter(torch.empty(3 * inner, cfg.conv_kernel).uniform_(-bound, bound))

        # data-dependent gates per head: theta (inner lr), eta (momentum), alpha (forget) and
        # Huber's threshold delta, each where the config asks for it
        self._gate_names = (
            (["lr"] if cfg.lr_gate else [])
            + (["momentum"] if cfg.momentum else [])
            + (["forget"] if cfg.forget else [])
            + (["huber_delta"] if cfg.objective == "huber" else [])
        )
        self.to_gates = None
        if self._gate_names:
            self.to_gates = nn.Linear(cfg.dim, len(self._gate_names) * heads)
            with torch.no_grad():
                # small weights: at initialisation the biases decide, so gates start at *_init
                self.to_gates.weight.mul_(0.1)
                bias = {
                    "lr": _logit(cfg.lr_init / cfg.max_lr) if cfg.lr_gate else 0.0,
                    "momentum": _logit(cfg.momentum_init),
                    "forget": _logit(cfg.forget_init),
                    "huber_delta": math.log(math.expm1(cfg.huber_delta_init)),  # softplus^-1
                }
                self.to_gates.bias.copy_(
                    torch.tensor([bias[n] for n in self._gate_names]).repeat_interleave(heads)
                )

        # the memory's initial weights M_0, learned by the outer loop, one set per head
        self.memory_init = nn.ParameterList(
            nn.Parameter(w) for w in init_memory_weights(cfg.layer_shapes, heads)
        )
        self.objective = make_objective(cfg)
        if cfg.retention == "kl":  # Memora: the memory starts on the scaled simplex (uniform)
            with torch.no_grad():
                for w in self.memory_init:
                    w.fill_(simplex_scale(*w.shape[-2:]) / (w.shape[-2] * w.shape[-1]))
        # Moneta: each weight matrix is kept at the q-norm its initial memory has now
        radius = [w.detach().abs().pow(cfg.q).sum((-2, -1)).pow(1 / cfg.q) for w in self.memory_init]
        self.register_buffer("lq_radius", torch.stack(radius, 0), persistent=True)  # (L, H)

        self.out_norm_weight = nn.Parameter(torch.ones(heads, d_head))  # RMSNorm per head
        self.to_out_gate = nn.Linear(cfg.dim, inner, bias=False) if cfg.output_gate else None
        self.to_out = nn.Linear(inner, cfg.dim, bias=False)

    # ------------------------------------------------------------------------------------------
    def init_state(self, batch_size: int, *, dtype: torch.dtype | None = None, device=None) -> MemoryState:
        """A fresh state for ``batch_size`` streams: the learned initial memory, zero momentum.

        It stays attached to ``memory_init``, so the initial memory is trained end to end.
        """
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        ref = self.memory_init[0]
        dtype = dtype or ref.dtype
        device = device or ref.device
        weights = tuple(
            w.to(dtype=dtype, device=device).unsqueeze(0).expand(batch_size, *w.shape)
            for w in self.memory_init
        )
        retention = self._retention(batch_size, dtype, device)
        if retention is not None:  # a fresh memory already satisfies the retention's constraint
            flat = retention([w.reshape(-1, *w.shape[2:]) for w in weights])
            weights = tuple(w.reshape(batch_size, -1, *w.shape[1:]) for w in flat)
        momentum = tuple(torch.zeros_like(w) for w in weights)
        k = self.config.conv_kernel
        tail = None
        if k > 1:
            tail = torch.zeros(batch_size, k - 1, self.conv_weight.shape[0], dtype=dtype, device=device)
        return MemoryState(weights, momentum, weights, tail, 0, self.config.chunk_size)

    def _retention(self, batch_size: int, dtype, device):
        """The chunk-end retention for ``batch_size`` streams (None for plain decay)."""
        radii = None
        if self.config.retention == "lq":
            radii = [
                r.to(dtype=dtype, device=device).repeat(batch_size).view(-1, 1, 1) for r in self.lq_radius
            ]  # (B H, 1, 1), batch-major like the flattened state
        return make_retention(self.config, radii)

    def _check_input(self, x: Tensor, state: MemoryState | None) -> None:
        cfg = self.config
        if not isinstance(x, Tensor):
            raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
        if not x.is_floating_point():
            raise TypeError(f"x must be a floating-point tensor, got dtype {x.dtype}")
        if x.dim() != 3 or x.shape[-1] != cfg.dim:
            raise ValueError(f"x must have shape (batch, time, dim={cfg.dim}), got {tuple(x.shape)}")
        if x.shape[0] == 0:
            raise ValueError("x must have batch size >= 1")
        if not all_finite(x):
            raise ValueError("x contains NaN or Inf")
        param_dtype = self.to_qkv.weight.dtype
        if x.dtype != param_dtype:
            raise TypeError(
                f"x has dtype {x.dtype} but the module's parameters are {param_dtype}; "
                f"convert one of them (e.g. module.to({x.dtype}) or x.to({param_dtype}))"
            )
        if state is None:
            return
        if not isinstance(state, MemoryState):
            raise TypeError(f"state must be a MemoryState or None, got {type(state).__name__}")
        expected = [(x.shape[0], cfg.heads, a, b) for a, b in cfg.layer_shapes]
        for name in ("weights", "momentum", "anchor"):
            got = [tuple(w.shape) for w in getattr(state, name)]
            if got != expected:
                raise ValueError(
                    f"state does not fit this memory: {name} {got}, expected {expected} "
                    "(a state from a different config or batch size)"
                )
        tail = None
        if cfg.conv_kernel > 1:
            tail = (x.shape[0], cfg.conv_kernel - 1, self.conv_weight.shape[0])
        got_tail = None if state.conv_tail is None else tuple(state.conv_tail.shape)
        if got_tail != tail:
            raise ValueError(
                f"state.conv_tail has shape {got_tail}, expected {tail} "
                f"(a state from a memory with another conv_kernel; this one has {cfg.conv_kernel})"
            )
        if state.chunk_size != cfg.chunk_size:
            raise ValueError(f"state.chunk_size={state.chunk_size} but config.chunk_size={cfg.chunk_size}")
        if state.dtype != x.dtype:
            raise ValueError(f"state dtype {state.dtype} does not match x dtype {x.dtype}")
        if state.device != x.device:
            raise ValueError(f"state is on {state.device} but x is on {x.device}")

    # ------------------------------------------------------------------------------------------
    def forward(
        self, x: Tensor, state: MemoryState | None = None, *, backend: Backend = "chunked"
    ) -> tuple[Tensor, MemoryState]:
        """Read and write the memory along ``x``.

        Args:
            x: ``(batch, time, dim)``. ``time`` may be anything >= 0, shorter than a chunk included
                (the memory is still updated).
            state: from a previous call, to continue the same streams; None starts fresh.
            backend: ``"chunked"`` (fast, default) or ``"recurrent"`` (the token-by-token reference).

        Returns:
            ``(y, state)``: ``y`` of shape ``(batch, time, dim)``, and the state after the last token.
        """
        self._check_input(x, state)
        if backend not in ("chunked", "recurrent"):
            raise ValueError(f"backend must be 'chunked' or 'recurrent', got {backend!r}")
        cfg = self.config
        B, T, _ = x.shape
        if state is None:
            state = self.init_state(B, dtype=x.dtype, device=x.device)
        if T == 0:
            return x.new_zeros(B, 0, cfg.dim), state

        # projections, SiLU, causal depthwise conv carried across calls through conv_tail
        qkv = F.silu(self.to_qkv(x))  # (B, T, 3 H D)
        qkv, tail = causal_depthwise_conv(qkv, self.conv_weight, state.conv_tail)
        q, k, v = rearrange(qkv, "b t (three h d) -> three (b h) t d", three=3, h=cfg.heads)
        q = F.normalize(q, dim=-1, eps=cfg.eps)  # l2-normalised keys and queries keep steps stable
        k = F.normalize(k, dim=-1, eps=cfg.eps)

        named = {}
        if self.to_gates is not None:
            gates = rearrange(self.to_gates(x), "b t (g h) -> g (b h) t", h=cfg.heads)
            named = dict(zip(self._gate_names, gates, strict=True))
        if cfg.lr_gate:
            lr = cfg.max_lr * torch.sigmoid(named["lr"])  # theta_t in (0, max_lr]
        else:
            lr = q.new_full(q.shape[:2], cfg.lr_init)
        log_momentum = F.logsigmoid(named["momentum"]) if cfg.momentum else None  # log eta_t
        log_retention = F.logsigmoid(-named["forget"]) if cfg.forget else None  # log(1 - alpha_t)
        huber_delta = F.softplus(named["huber_delta"]) if cfg.objective == "huber" else None

        op = chunked_memory if backend == "chunked" else recurrent_memory
        y, op_state = op(
            q, k, v, lr, log_retention, log_momentum, state.to_op_state(),
            chunk_size=cfg.chunk_size, activation=cfg.activation, error_fn=self.objective,
            objective_param=huber_delta, decayed_gradient=cfg.decayed_gradient,
            chunk_end_retention=self._retention(B, x.dtype, x.device),
        )  # y: (B H, T, D)

        y = rearrange(y, "(b h) t d -> b t h d", b=B)
        y = y * torch.rsqrt(y.pow(2).mean(-1, keepdim=True) + cfg.eps) * self.out_norm_weight
        y = rearrange(y, "b t h d -> b t (h d)")
        if self.to_out_gate is not None:
            y = y * torch.sigmoid(self.to_out_gate(x))
        new_state = MemoryState.from_op_state(op_state, B, tail, state.position + T, cfg.chunk_size)
        return self.to_out(y), new_state

    def extra_repr(self) -> str:
        c = self.config
        return (
            f"dim={c.dim}, heads={c.heads}, head_dim={c.d_head}, depth={c.depth}, "
            f"chunk_size={c.chunk_size}, activation={c.activation}"
        )
