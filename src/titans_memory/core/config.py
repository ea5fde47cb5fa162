"""One typed configuration for :class:`~titans_memory.core.neural_memory.NeuralMemory`."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace


@dataclass(frozen=True)
class MemoryConfig:
    """Configuration of a neural long-term memory layer (Titans, arXiv 2501.00663).

    Naming follows Titans: ``alpha`` is the *forget* rate (``M_t = (1 - alpha_t) M_{t-1} + S_t``).
    MIRAS/ATLAS call ``1 - alpha`` the retention; this library always means Titans' alpha.

    Gate initial values are what a freshly built layer uses for every token (the gate projections
    start small, so the biases decide). A forget rate near 0.5 halves the memory every token, so
    ``forget_init`` starts small (half-life ~140 tokens). Every gradient of a chunk is taken at the
    chunk-start weights and momentum 0.9 amplifies steps up to 10x, so the total step over a chunk
    grows like ``chunk_size * lr / (1 - momentum)``: without the stability mechanisms below,
    ``lr_init = 0.02`` diverged on unit Gaussian input within ~500 tokens and 0.01 held. With
    them (the defaults) no gate value makes the memory diverge (docs/design.md, "Stability"):

    * ``input_norm``: every token is scaled to unit RMS before the projections and gates, so the
      layer reads inputs of any scale, and outliers, as ordinary tokens;
    * ``max_step_norm``: each token's surprise gradient is bounded in Frobenius norm, which bounds
      the weights: ``||M_t|| <= b_t`` with ``b`` following the gates (``core/stability.py``).

    Switch both off (``input_norm=False, max_step_norm=None``) for the papers' rule exactly.
    """

    dim: int = 256  # model width: x and y are (batch, time, dim)
    heads: int = 1  # independent memories, each on head_dim channels
    head_dim: int | None = None  # channels per head; None means dim // heads
    depth: int = 2  # L: 1 = matrix memory M(x) = x W; L >= 2 = residual MLP x + MLP(x)
    expansion: float = 4.0  # hidden width of the MLP memory = expansion * head_dim
    activation: str = "gelu"  # non-linearity inside the MLP memory
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
    objective: str = "l2"  # attentional bias (objectives.BIASES): l2, lp (Moneta), huber (Yaad), dot
    p: float = 3.0  # exponent of the lp bias
    lp_sign_sharpness: float | None = None  # lp: sign(x) ~ tanh(a x) if set, else x / |x|_smooth
    huber_delta_init: float = 1.0  # Huber threshold delta_t at initialisation (data-dependent)
    retention: str = "decay"  # retention.RETENTIONS: decay only, or lq, kl, elastic_net at chunk ends
    q: float = 4.0  # exponent of the Lq retention (Moneta)
    retention_strength: float = 1e-3  # elastic net: threshold lambda; kl: pull to uniform
    decayed_gradient: bool = False  # gradient at (1 - alpha_t) M instead of M (Gated DeltaNet)
    lr_gate: bool = True  # False: theta_t = lr_init for every token (no learned inner lr)
    architecture: str | None = None  # architectures.ARCHITECTURES; None: matrix if depth 1, else residual_mlp
    # algorithms.ALGORITHMS; None: decayed_gradient if decayed_gradient, else titans with momentum,
    # else no_momentum (the three built-ins read momentum, forget and decayed_gradient)
    algorithm: str | None = None
    # --- stability by construction (docs/design.md, "Stability") --------------------------------
    input_norm: bool = True  # every token scaled to unit RMS before projections and gates
    max_step_norm: float | None = 10.0  # per-token bound on ||grad l||_F (all layers); None: off
    # --- ATLAS (arXiv 2505.23735; docs/atlas.md) -----------------------------------------------
    omega_window: int = 1  # c: the Omega rule's window (ATLAS eqs. 8-9; algorithm "omeganet" or "atlas"); 1 = Titans' rule
    omega_gamma_init: float = 0.5  # gamma_i, the window weight of a token, at initialisation (c > 1)
    ns_steps: int = 5  # Newton-Schulz steps of Atlas' Muon update (>= 0; algorithm="atlas")
    feature_degree: int | None = None  # p of the polynomial feature map on keys and queries; None: off

    def __post_init__(self) -> None:
        for name in ("dim", "heads", "depth", "chunk_size", "conv_kernel"):
            _check_int(name, getattr(self, name))
        if self.head_dim is None:
            if self.dim % self.heads:
                raise ValueError(
                    f"MemoryConfig.heads ({self.heads}) must divide dim ({self.dim}) when head_dim is None"
                )
        else:
            _check_int("head_dim", self.head_dim)
        _check_int("omega_window", self.omega_window)
        if not isinstance(self.ns_steps, int) or isinstance(self.ns_steps, bool) or self.ns_steps < 0:
            raise ValueError(f"MemoryConfig.ns_steps (Newton-Schulz steps) must be an integer >= 0, got {self.ns_steps!r}")
        if self.feature_degree is not None and (
            not isinstance(self.feature_degree, int) or isinstance(self.feature_degree, bool) or self.feature_degree < 1
        ):
            raise ValueError(
                f"MemoryConfig.feature_degree (polynomial degree p) must be None (off) or an integer >= 1, "
                f"got {self.feature_degree!r}"
            )
        _check_real("omega_gamma_init", self.omega_gamma_init, low=0.0, high=1.0)
        for name in ("momentum", "forget", "output_gate", "decayed_gradient", "lr_gate", "input_norm"):
            value = getattr(self, name)
            if not isinstance(value, bool):  # "no" would be truthy: never guess
                raise TypeError(f"MemoryConfig.{name} must be True or False, got {value!r}")
        for name in ("activation", "objective", "retention"):
            value = getattr(self, name)
            if not isinstance(value, str):
                raise TypeError(f"MemoryConfig.{name} must be a string, got {value!r}")
        for name in ("architecture", "algorithm"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise TypeError(f"MemoryConfig.{name} must be a string or None, got {value!r}")
        _check_real("expansion", self.expansion, low=0.0)
        if self.depth >= 2 and self.hidden_dim < 1:
            raise ValueError("MemoryConfig.expansion * head_dim must be >= 1")
        from titans_memory.core.architectures import ACTIVATIONS

        if self.activation not in ACTIVATIONS:
            raise ValueError(
                f"MemoryConfig.activation must be one of {', '.join(ACTIVATIONS)}; got {self.activation!r}"
            )
        _check_real("max_lr", self.max_lr, low=0.0)
        if self.lp_sign_sharpness is not None:
            _check_real("lp_sign_sharpness", self.lp_sign_sharpness, low=0.0)
        _check_real("p", self.p, low=1.0, closed=True)
        _check_real("q", self.q, low=1.0, closed=True)
        _check_real("huber_delta_init", self.huber_delta_init, low=0.0)
        _check_real("retention_strength", self.retention_strength, low=0.0)
        if self.decayed_gradient and not self.forget:
            raise ValueError("MemoryConfig.decayed_gradient needs forget=True (it decays by alpha_t)")
        if not self.lr_gate:
            _check_real("lr_init", self.lr_init, low=0.0)
        else:
            _check_real("lr_init", self.lr_init, low=0.0, high=self.max_lr)
        _check_real("momentum_init", self.momentum_init, low=0.0, high=1.0)
        _check_real("forget_init", self.forget_init, low=0.0, high=1.0)
        _check_real("eps", self.eps, low=0.0)
        if self.max_step_norm is not None:
            _check_real("max_step_norm", self.max_step_norm, low=0.0)
        if (self.omega_window > 1 or self.feature_degree is not None) and self.algorithm not in ("omeganet", "atlas"):
            raise ValueError(
                "MemoryConfig.omega_window > 1 and feature_degree need algorithm='omeganet' or 'atlas' "
                f"(ATLAS; omega_window=1 is the Titans rule), got algorithm={self.algorithm!r}"
            )
        # the named parts exist (registered) and build from this config
        from titans_memory.core.rule import UpdateRule

        UpdateRule.from_config(self)

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
        from titans_memory.core.rule import UpdateRule

        return UpdateRule.from_config(self).architecture.layer_shapes

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


def _check_int(name: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"MemoryConfig.{name} must be an integer >= 1, got {value!r}")


def _check_real(
    name: str, value: object, *, low: float, high: float | None = None, closed: bool = False
) -> None:
    """``value`` is a finite real number in ``(low, high)`` (``[low, ...`` when ``closed``)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise TypeError(f"MemoryConfig.{name} must be a number, got {value!r}")
    above = value >= low if closed else value > low
    below = high is None or value < high
    if not (math.isfinite(value) and above and below):
        lo = f"[{low}" if closed else f"({low}"
        hi = f"{high})" if high is not None else "inf)"
        raise ValueError(f"MemoryConfig.{name} must be a finite number in {lo}, {hi}, got {value!r}")
