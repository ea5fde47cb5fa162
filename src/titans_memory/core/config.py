"""One typed configuration for :class:`~titans_memory.core.neural_memory.NeuralMemory`."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Literal

Activation = Literal["gelu", "silu", "relu", "tanh"]
Objective = Literal["l2", "lp", "huber", "dot"]
Retention = Literal["decay", "lq", "kl", "elastic_net"]


@dataclass(frozen=True)
class MemoryConfig:
    """Configuration of a neural long-term memory layer (Titans, arXiv 2501.00663).

    Naming follows Titans: ``alpha`` is the *forget* rate (``M_t = (1 - alpha_t) M_{t-1} + S_t``).
    MIRAS/ATLAS call ``1 - alpha`` the retention; this library always means Titans' alpha.

    Gate initial values are what a freshly built layer uses for every token (the gate projections
    start small, so the biases decide). They are chosen so a fresh memory neither wipes itself
    nor explodes. A forget rate near 0.5 halves the memory every token. On the other side, every
    gradient of a chunk is taken at the chunk-start weights and momentum 0.9 amplifies steps up to
    10x, so the total step over a chunk grows like ``chunk_size * lr / (1 - momentum)``: at the
    defaults (chunk 64, momentum 0.9) ``lr_init = 0.02`` already diverges on unit Gaussian input
    within ~500 tokens, ``0.01`` holds (measured over 4k-16k tokens, depth 1-3, 1-4 heads), and
    ``0.002`` lets the forgetting win, so the deep memory fades to ``M(x) = x``. Scale ``lr_init``
    down if you raise ``chunk_size``.
    """

    dim: int = 256  # model width: x and y are (batch, time, dim)
    heads: int = 1  # independent memories, each on head_dim channels
    head_dim: int | None = None  # channels per head; None means dim // heads
    depth: int = 2  # L: 1 = matrix memory M(x) = x W; L >= 2 = residual MLP x + MLP(x)
    expansion: float = 4.0  # hidden width of the MLP memory = expansion * head_dim
    activation: Activation = "gelu"  # non-linearity inside the MLP memory
    chunk_size: int = 64  # b: tokens whose gradients share the chunk-start weights (sec. 3.2)
    conv_kernel: int = 4  # causal depthwise convolution on q, k, v; 1 disables it
    max_lr: float = 0.1  # theta_t = max_lr * sigmoid(.) lies in (0, max_lr]
    lr_init: float = 0.01  # theta at initialisation (see the class docstring for the range)
    momentum: bool = True  # learn a momentum gate eta_t ("past surprise"); False: eta = 0
    momentum_init: float = 0.9  # eta at initialisation
    forget: bool = True  # learn a forget gate alpha_t; False: alpha = 0 (never forget)
    forget_init: float = 0.005  # alpha at initialisation: memory half-life ~ 140 tokens
    output_gate: bool = True  # y <- norm(y) * sigmoid(x W_g) before the output projection
    eps: float = 1e-6  # for the l2 norm of q, k and the output RMSNorm
    # --- MIRAS design space (arXiv 2504.13173); the defaults are Titans ----------------------
    objective: Objective = "l2"  # attentional bias: l2, lp (Moneta), huber (Yaad), dot (lin. attn.)
    p: float = 3.0  # exponent of the lp bias
    lp_sign_sharpness: float | None = None  # lp: sign(x) ~ tanh(a x) if set, else x / |x|_smooth
    huber_delta_init: float = 1.0  # Huber threshold delta_t at initialisation (data-dependent)
    retention: Retention = "decay"  # decay only, or a non-linear retention at chunk ends as well
    q: float = 4.0  # exponent of the Lq retention (Moneta)
    retention_strength: float = 1e-3  # elastic net: soft-threshold lambda; kl: scale c of the simplex
    decayed_gradient: bool = False  # gradient at (1 - alpha_t) M instead of M (Gated DeltaNet)
    lr_gate: bool = True  # False: theta_t = lr_init for every token (no learned inner lr)

    def __post_init__(self) -> None:
        for name in ("dim", "heads", "depth", "chunk_size", "conv_kernel"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"MemoryConfig.{name} must be an integer >= 1, got {value!r}")
        if self.head_dim is None:
            if self.dim % self.heads:
                raise ValueError(
                    f"MemoryConfig.dim ({self.dim}) must be divisible by heads ({self.heads}) "
                    "when head_dim is None"
                )
        elif not isinstance(self.head_dim, int) or self.head_dim < 1:
            raise ValueError(f"MemoryConfig.head_dim must be an integer >= 1, got {self.head_dim!r}")
        if not (self.expansion > 0 and math.isfinite(self.expansion)):
            raise ValueError(f"MemoryConfig.expansion must be > 0, got {self.expansion!r}")
        if self.depth >= 2 and self.hidden_dim < 1:
            raise ValueError("MemoryConfig.expansion * head_dim must be >= 1")
        if self.activation not in ("gelu", "silu", "relu", "tanh"):
            raise ValueError(
                f"MemoryConfig.activation must be one of gelu, silu, relu, tanh; got {self.activation!r}"
            )
        if not (0 < self.max_lr and math.isfinite(self.max_lr)):
            raise ValueError(f"MemoryConfig.max_lr must be > 0, got {self.max_lr!r}")
        if self.objective not in ("l2", "lp", "huber", "dot"):
            raise ValueError(f"MemoryConfig.objective must be one of l2, lp, huber, dot; got {self.objective!r}")
        if self.retention not in ("decay", "lq", "kl", "elastic_net"):
            raise ValueError(
                f"MemoryConfig.retention must be one of decay, lq, kl, elastic_net; got {self.retention!r}"
            )
        if self.lp_sign_sharpness is not None and not self.lp_sign_sharpness > 0:
            raise ValueError(
                f"MemoryConfig.lp_sign_sharpness must be > 0 or None, got {self.lp_sign_sharpness!r}"
            )
        if not self.p >= 1:
            raise ValueError(f"MemoryConfig.p must be >= 1, got {self.p!r}")
        if not self.q >= 1:
            raise ValueError(f"MemoryConfig.q must be >= 1, got {self.q!r}")
        if not self.huber_delta_init > 0:
            raise ValueError(f"MemoryConfig.huber_delta_init must be > 0, got {self.huber_delta_init!r}")
        if not self.retention_strength > 0:
            raise ValueError(f"MemoryConfig.retention_strength must be > 0, got {self.retention_strength!r}")
        if self.decayed_gradient and not self.forget:
            raise ValueError("MemoryConfig.decayed_gradient needs forget=True (it decays by alpha_t)")
        if not self.lr_gate:
            if not (0 < self.lr_init and math.isfinite(self.lr_init)):
                raise ValueError(f"MemoryConfig.lr_init must be > 0, got {self.lr_init!r}")
        elif not (0 < self.lr_init < self.max_lr):
            raise ValueError(
                f"MemoryConfig.lr_init must be in (0, max_lr={self.max_lr}), got {self.lr_init!r}"
            )
        if not (0 < self.momentum_init < 1):
            raise ValueError(f"MemoryConfig.momentum_init must be in (0, 1), got {self.momentum_init!r}")
        if not (0 < self.forget_init < 1):
            raise ValueError(f"MemoryConfig.forget_init must be in (0, 1), got {self.forget_init!r}")
        if not (self.eps > 0):
            raise ValueError(f"MemoryConfig.eps must be > 0, got {self.eps!r}")

    @property
    def d_head(self) -> int:
        """Channels per head."""
        return self.head_dim if self.head_dim is not None else self.dim // self.heads

    @property
    def hidden_dim(self) -> int:
        """Hidden width of the MLP memory (depth >= 2)."""
        return max(1, int(round(self.expansion * self.d_head)))

    @property
    def layer_shapes(self) -> list[tuple[int, int]]:
        """(d_in, d_out) of each memory weight, in the row-vector convention ``h @ W``."""
        d, h = self.d_head, self.hidden_dim
        if self.depth == 1:
            return [(d, d)]
        return [(d, h)] + [(h, h)] * (self.depth - 2) + [(h, d)]

    def replace(self, **changes) -> MemoryConfig:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> MemoryConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"MemoryConfig.from_dict: unknown fields {sorted(unknown)}")
        return cls(**data)
