"""``NeuralMemory``: the neural long-term memory of Titans (arXiv 2501.00663) as a sequence layer.

Its steps can be used on their own (Titans sec. 4 composes them differently per architecture):

* :meth:`NeuralMemory.retrieve` reads the memory with the queries of an input, no write;
* :meth:`NeuralMemory.store` writes the keys and values of an input, no reads computed;
* :meth:`NeuralMemory.forward` does both at once, exactly: every token reads the memory right
  after its own write (the fused read-after-write of the chunk-parallel operator).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from titans_memory.core.config import MemoryConfig
from titans_memory.core.conv import causal_depthwise_conv
from titans_memory.core.features import polynomial_features
from titans_memory.core.finite import check_finite_mode, on_host, require_finite
from titans_memory.core.omega import omega_chunked  # noqa: F401  (registers the Omega rule's chunked form)
from titans_memory.core.ops import MemoryInputs, get_backend, operator_for, with_compiled_step
from titans_memory.core.rule import UpdateRule
from titans_memory.core.state import MemoryState

# eps of the input RMSNorm: small, so that scale invariance reaches tiny inputs (RMS >> 1e-6)
_INPUT_NORM_EPS = 1e-12


def _like(tail: Tensor | None, state: MemoryState) -> Tensor | None:
    """A convolution tail in the state's dtype (under autocast the projections are in another)."""
    return None if tail is None else tail.to(state.dtype)


def _logit(p: float) -> float:
    return math.log(p) - math.log1p(-p)


class MemoryGates(NamedTuple):
    """The data-dependent gates of every token, each ``(batch, heads, time)`` (None: gate off).

    Attributes:
        lr: theta_t, the inner learning rate, in (0, max_lr] (constant ``lr_init`` without a gate).
        momentum: eta_t in (0, 1), the weight of past surprise.
        forget: alpha_t in (0, 1), Titans' forget rate (the memory keeps ``1 - alpha_t``).
        bias_param: the attentional bias' parameter (Huber's delta_t > 0), or None.
        extra: the learning algorithm's other gates by name (their values), or None without any.
    """

    lr: Tensor
    momentum: Tensor | None
    forget: Tensor | None
    bias_param: Tensor | None
    extra: dict[str, Tensor] | None = None


class _OpGates(NamedTuple):
    """The per-token gates as the operators take them, ``(B H, T)`` each."""

    lr: Tensor
    log_retention: Tensor | None
    log_momentum: Tensor | None
    bias_param: Tensor | None
    extra: dict[str, Tensor]


class NeuralMemory(nn.Module):
    """A memory whose weights are written at test time by gradient steps on surprise.

    Per head, for each token (Titans eqs. 8-15; docs/design.md)::

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
        check_finite: check every input ``x`` and every state handed in for NaN and Inf (a clear
            error instead of a memory that turns NaN for good). ``True``: a ``ValueError`` on the
            CPU; on a GPU a device-side assertion, without a host synchronisation, that fails a
            later call instead. ``"sync"``: the ``ValueError`` on every device (a synchronisation
            per call on a GPU); ``"async"``: the device-side assertion everywhere; ``False``: no
            check, and a NaN in an input then spreads silently into the state and every later
            output (``core/finite.py``).
        backend: the operator :meth:`forward` and :meth:`store` use unless told otherwise (a name
            in :data:`titans_memory.core.ops.BACKENDS`); ``"chunked_checkpoint"`` trades one more
            forward of the memory in the backward for a fraction of the training memory.
        compile_step: run each whole chunk of the chunked operators through
            ``torch.compile(chunk_step, fullgraph=True)`` (opt-in: True for inductor, or the name
            of a ``torch.compile`` backend; compiled once per chunk shape, dtype and autograd
            pattern, cached on disk by inductor; needs a C++ compiler on the CPU). Under
            ``torch.compile(module)`` the operator's loop over chunks stays outside the caller's
            graph (one graph break there), so no sequence length recompiles; the chunk step then
            runs eagerly unless ``compile_step`` is set.

    Example::

        >>> mem = NeuralMemory(MemoryConfig(dim=64, heads=2, chunk_size=16))
        >>> x = torch.randn(2, 100, 64)                       # (batch, time, dim)
        >>> y, state = mem(x)                                # y: (2, 100, 64)
        >>> y2, state = mem(torch.randn(2, 7, 64), state)    # continue the same two streams
        >>> state = state.detach()                           # truncate backprop here
        >>> h, state = mem.retrieve(x, state)                # read only (Titans' MAC: M*(q))
        >>> state = mem.store(x, state)                      # write only

    ``mem(x[:, :40])`` then ``mem(x[:, 40:], state)`` gives the same outputs and state as
    ``mem(x)``, for any split (chunks are aligned to the stream position).
    """

    def __init__(
        self,
        config: MemoryConfig | None = None,
        *,
        check_finite: bool = True,
        backend: str = "chunked",
        compile_step: bool | str = False,
        **overrides,
    ) -> None:
        super().__init__()
        self.check_finite = check_finite_mode(check_finite)
        get_backend(backend)  # a clear error for an unknown name, now
        self.backend = backend
        if not isinstance(compile_step, bool | str) or compile_step == "":
            raise TypeError(f"compile_step must be True, False or a torch.compile backend name, got {compile_step!r}")
        self.compile_step = compile_step
        #: tokens per piece of a long call (None: automatic, see ``_in_pieces``); any value gives
        #: the same results to rounding
        self.piece_tokens: int | None = None
        if config is None:
            config = MemoryConfig(**overrides)
        elif overrides:
            if not isinstance(config, MemoryConfig):
                raise TypeError(f"config must be a MemoryConfig, got {type(config).__name__}")
            config = config.replace(**overrides)
        if not isinstance(config, MemoryConfig):
            raise TypeError(f"config must be a MemoryConfig, got {type(config).__name__}")
        self.config = cfg = config
        self.rule = rule = UpdateRule.from_config(cfg)
        heads, d_head = cfg.heads, cfg.d_head
        self.inner = inner = heads * d_head

        # rows [0, inner) make queries, [inner, 3 inner) keys and values: one matmul in forward,
        # slices of it in retrieve and store
        self.to_qkv = nn.Linear(cfg.dim, 3 * inner, bias=False)
        # depthwise causal convolution over time on q, k, v: one filter of conv_kernel taps per
        # channel (nn.Conv1d's default initialisation; tap -1 multiplies the current token)
        bound = 1.0 / math.sqrt(cfg.conv_kernel)
        self.conv_weight = nn.Parameter(torch.empty(3 * inner, cfg.conv_kernel).uniform_(-bound, bound))

        # data-dependent gates per head: theta (inner lr), the learning algorithm's gates (Titans:
        # eta, momentum, and alpha, forget) and the attentional bias' parameter, where asked for
        init = {"lr": _logit(cfg.lr_init / cfg.max_lr)} if cfg.lr_gate else {}  # theta = max_lr sigmoid(.)
        specs = rule.algorithm.gates()
        init.update((g.name, g.raw_init()) for g in specs if g.data_dependent)
        if rule.bias.param_init is not None:
            init["bias_param"] = rule.bias.raw_from_param(rule.bias.param_init)
        self._gate_names = tuple(init)
        # gates that are not data-dependent: one learned raw value per head
        static = {g.name: nn.Parameter(torch.full((heads,), g.raw_init())) for g in specs if not g.data_dependent}
        self.static_gates = nn.ParameterDict(static) if static else None
        self.to_gates = None
        if self._gate_names:
            self.to_gates = nn.Linear(cfg.dim, len(self._gate_names) * heads)
            with torch.no_grad():
                # small weights: at initialisation the biases decide, so gates start at *_init
                self.to_gates.weight.mul_(0.1)
                self.to_gates.bias.copy_(torch.tensor([init[n] for n in self._gate_names]).repeat_interleave(heads))

        # the memory's initial weights M_0, learned by the outer loop, one set per head
        weights = rule.architecture.init_weights(heads)
        if rule.retention is not None:  # e.g. Memora starts uniform on its simplex
            weights = rule.retention.init_memory(weights)
        self.memory_init = nn.ParameterList(nn.Parameter(w) for w in weights)
        constants = None if rule.retention is None else rule.retention.constants(weights)
        # (layers, heads): the chunk-end retention's constants (Moneta's q-norm radius), if any
        self.register_buffer("retention_constants", constants, persistent=constants is not None)

        self.out_norm_weight = nn.Parameter(torch.ones(heads, d_head))  # RMSNorm per head
        self.to_out_gate = nn.Linear(cfg.dim, inner, bias=False) if cfg.output_gate else None
        self.to_out = nn.Linear(inner, cfg.dim, bias=False)

    # --- state ---------------------------------------------------------------------------------------
    def init_state(self, batch_size: int, *, dtype: torch.dtype | None = None, device=None) -> MemoryState:
        """A fresh state for ``batch_size`` streams: the learned initial memory, zero momentum.

        It stays attached to ``memory_init``, so the initial memory is trained end to end.
        """
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        ref = self.memory_init[0]
        dtype = dtype or ref.dtype
        device = device or ref.device
        weights = tuple(
            w.to(dtype=dtype, device=device).unsqueeze(0).expand(batch_size, *w.shape) for w in self.memory_init
        )
        if self.rule.retention is not None:  # a fresh memory already satisfies the retention's constraint
            flat = self.rule.retention.apply(
                [w.reshape(-1, *w.shape[2:]) for w in weights], self._retention_constants(batch_size, dtype, device)
            )
            weights = tuple(w.reshape(batch_size, -1, *w.shape[1:]) for w in flat)
        momentum = tuple(torch.zeros_like(w) for w in weights)
        query_tail = kv_tail = None
        if self.config.conv_kernel > 1:
            k = self.config.conv_kernel - 1
            query_tail = torch.zeros(batch_size, k, self.inner, dtype=dtype, device=device)
            kv_tail = torch.zeros(batch_size, k, 2 * self.inner, dtype=dtype, device=device)
        carried = {  # the algorithm's and the architecture's carried tensors, (batch, heads, ...)
            name: t.reshape(batch_size, self.config.heads, *t.shape[1:])
            for name, t in self.rule.init_carried(batch_size * self.config.heads, dtype, device).items()
        }
        return MemoryState(weights, momentum, weights, query_tail, kv_tail, 0, self.config.chunk_size, carried)

    def _retention_constants(self, batch_size: int, dtype, device) -> tuple[Tensor, ...] | None:
        """The retention's constants as one ``(batch * heads, 1, 1)`` tensor per layer."""
        if self.retention_constants is None:
            return None
        return tuple(
            c.to(dtype=dtype, device=device).repeat(batch_size).view(-1, 1, 1)  # batch-major, like the state
            for c in self.retention_constants
        )

    # --- the steps ---------------------------------------------------------------------------------
    def _normalize(self, x: Tensor) -> Tensor:
        """With ``input_norm``: every token scaled to unit RMS, ``x_t / sqrt(mean(x_t^2) + 1e-12)``, so
        the layer sees the same input at any scale from about 1e-5 up (and an outlier token as an
        ordinary one); else ``x`` itself. A token so large that its squares overflow (beyond ~1e19
        in float32) is read as zero, never as NaN."""
        if not self.config.input_norm:
            return x
        return F.rms_norm(x, (x.shape[-1],), eps=_INPUT_NORM_EPS)

    def _queries(self, x: Tensor, tail: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """``q = l2norm(conv(silu(x W_Q)))`` as ``(B H, T, d)``, and the new query-path tail."""
        inner = self.inner
        u = F.silu(F.linear(x, self.to_qkv.weight[:inner]))  # (B, T, H D)
        u, tail = causal_depthwise_conv(u, self.conv_weight[:inner], tail)
        q = rearrange(u, "b t (h d) -> (b h) t d", h=self.config.heads)
        return self._features(F.normalize(q, dim=-1, eps=self.config.eps)), tail

    def _keys_values(self, x: Tensor, tail: Tensor | None) -> tuple[Tensor, Tensor, Tensor | None]:
        """``k = l2norm(conv(silu(x W_K)))``, ``v = conv(silu(x W_V))``, ``(B H, T, d)`` each."""
        inner = self.inner
        u = F.silu(F.linear(x, self.to_qkv.weight[inner:]))  # (B, T, 2 H D)
        u, tail = causal_depthwise_conv(u, self.conv_weight[inner:], tail)
        k, v = rearrange(u, "b t (two h d) -> two (b h) t d", two=2, h=self.config.heads)
        return self._features(F.normalize(k, dim=-1, eps=self.config.eps)), v, tail

    def _queries_keys_values(self, x: Tensor, state: MemoryState) -> tuple[Tensor, Tensor, Tensor, Tensor | None, Tensor | None]:
        """Both paths in one matmul and one convolution (``forward``); same values as the two above."""
        qkv = F.silu(self.to_qkv(x))  # (B, T, 3 H D)
        tail = None if state.query_tail is None else torch.cat([state.query_tail, state.kv_tail], dim=-1)
        qkv, tail = causal_depthwise_conv(qkv, self.conv_weight, tail)
        q, k, v = rearrange(qkv, "b t (three h d) -> three (b h) t d", three=3, h=self.config.heads)
        q = F.normalize(q, dim=-1, eps=self.config.eps)  # l2-normalised keys and queries keep steps stable
        k = F.normalize(k, dim=-1, eps=self.config.eps)
        q, k = self._features(q), self._features(k)
        q_tail = kv_tail = None
        if tail is not None:
            q_tail, kv_tail = tail[..., : self.inner], tail[..., self.inner :]
        return q, k, v, q_tail, kv_tail

    def _features(self, x: Tensor) -> Tensor:
        """ATLAS' polynomial feature map phi_p on normalised keys or queries (``core/features.py``),
        ``(B H, T, d) -> (B H, T, d_phi)``; the identity when ``feature_degree`` is None."""
        p = self.config.feature_degree
        return x if p is None else polynomial_features(x, p)

    def _gate_logits(self, x: Tensor) -> dict[str, Tensor]:
        """Raw gate values by name, each ``(B H, T)``."""
        raw: dict[str, Tensor] = {}
        if self.to_gates is not None:
            gates = rearrange(self.to_gates(x), "b t (g h) -> g (b h) t", h=self.config.heads)
            raw.update(zip(self._gate_names, gates, strict=True))
        if self.static_gates is not None:  # one value per head, the same for every token
            B, T = x.shape[:2]
            for name, value in self.static_gates.items():
                raw[name] = value.to(x.dtype).repeat(B)[:, None].expand(B * self.config.heads, T)
        return raw

    def _op_gates(self, x: Tensor) -> _OpGates:
        """The gates as the operators take them, ``(B H, T)`` each (:class:`_OpGates`)."""
        cfg, rule = self.config, self.rule
        raw = self._gate_logits(x)
        if cfg.lr_gate:
            lr = cfg.max_lr * torch.sigmoid(raw["lr"])  # theta_t in (0, max_lr]
        else:
            B, T = x.shape[:2]
            lr = x.new_full((B * cfg.heads, T), cfg.lr_init)
        # log(1 - alpha_t), log eta_t and the algorithm's other gates
        log_retention, log_momentum, extra = rule.algorithm.gate_inputs(raw)
        bias_param = rule.bias.param_from_raw(raw["bias_param"]) if "bias_param" in raw else None
        return _OpGates(lr, log_retention, log_momentum, bias_param, extra)

    def gates(self, x: Tensor) -> MemoryGates:
        """The gates every token of ``x`` ``(batch, time, dim)`` gets, each ``(batch, heads, time)``."""
        self._check_input(x, None)
        lr, log_retention, log_momentum, bias_param, extra = self._op_gates(self._normalize(x))
        heads = self.config.heads

        def unflat(t: Tensor | None) -> Tensor | None:
            return None if t is None else rearrange(t, "(b h) t -> b h t", h=heads)

        return MemoryGates(
            lr=unflat(lr),
            momentum=unflat(None if log_momentum is None else log_momentum.exp()),
            forget=unflat(None if log_retention is None else -torch.expm1(log_retention)),  # alpha = 1 - e^log(1-alpha)
            bias_param=unflat(bias_param),
            extra={name: unflat(g) for name, g in extra.items()} or None,
        )

    def _output(self, y: Tensor, x: Tensor) -> Tensor:
        """The output path: per-head RMSNorm, the output gate, the output projection."""
        cfg = self.config
        y = rearrange(y, "(b h) t d -> b t h d", b=x.shape[0])
        y = y * torch.rsqrt(y.pow(2).mean(-1, keepdim=True) + cfg.eps) * self.out_norm_weight
        y = rearrange(y, "b t h d -> b t (h d)")
        if self.to_out_gate is not None:
            y = y * torch.sigmoid(self.to_out_gate(x))
        return self.to_out(y)

    def _memory_inputs(self, q: Tensor | None, k: Tensor, v: Tensor, x: Tensor) -> MemoryInputs:
        lr, log_retention, log_momentum, bias_param, extra = self._op_gates(x)
        return MemoryInputs(
            q, k, v, lr, log_retention, log_momentum, bias_param,
            self._retention_constants(x.shape[0], x.dtype, x.device), extra or None,
        )

    def retrieve(self, x: Tensor, state: MemoryState | None = None) -> tuple[Tensor, MemoryState]:
        """Read the memory with the queries of ``x``; nothing is written.

        ``y_t = W_O (norm(M(q_t)) * sigmoid(x_t W_G))`` with M the state's current weights for every
        token (Titans eq. 15 without the write: MAC's ``h = M*(q)``, eq. 21).

        Args:
            x: ``(batch, time, dim)``.
            state: the memory to read (None: the fresh, learned initial memory).

        Returns:
            ``(y, state)``: ``y`` ``(batch, time, dim)``; the state with only its query-path
            convolution tail advanced.
        """
        self._check_input(x, state)
        if state is None:
            state = self.init_state(x.shape[0], dtype=x.dtype, device=x.device)
        if x.shape[1] == 0:
            return x.new_zeros(x.shape[0], 0, self.config.dim), state
        return self._in_pieces(self._retrieve, x, state)

    def _retrieve(self, x: Tensor, state: MemoryState) -> tuple[Tensor, MemoryState]:
        x = self._normalize(x)
        q, query_tail = self._queries(x, state.query_tail)
        y = self.rule.architecture.forward(state.to_op_state().weights, q)  # (B H, T, d)
        return self._output(y, x), state.replace(query_tail=_like(query_tail, state))

    def store(self, x: Tensor, state: MemoryState | None = None, *, backend: str | None = None) -> MemoryState:
        """Write the keys and values of ``x`` into the memory; no reads are computed.

        The same write as :meth:`forward` makes (Titans eqs. 9-14, chunk-aligned to the stream
        position), so ``store(x, s)`` ends in the state ``forward(x, s)`` ends in (its query tail
        aside, which only reads advance).

        Args:
            x: ``(batch, time, dim)``; any length, shorter than a chunk included.
            state: from a previous call (None: start fresh).
            backend: a name in :data:`titans_memory.core.ops.BACKENDS` (None: ``self.backend``).

        Returns:
            The state after the last token of ``x``.
        """
        self._check_input(x, state)
        op = self._operator(backend)
        if state is None:
            state = self.init_state(x.shape[0], dtype=x.dtype, device=x.device)
        if x.shape[1] == 0:
            return state

        def store(x: Tensor, state: MemoryState) -> tuple[None, MemoryState]:
            x = self._normalize(x)
            k, v, kv_tail = self._keys_values(x, state.kv_tail)
            _, op_state = op(self._memory_inputs(None, k, v, x), state.to_op_state(), self.rule)
            return None, state.with_op_state(op_state, x.shape[1]).replace(kv_tail=_like(kv_tail, state))

        return self._in_pieces(store, x, state)[1]

    def forward(
        self, x: Tensor, state: MemoryState | None = None, *, backend: str | None = None
    ) -> tuple[Tensor, MemoryState]:
        """Write and read the memory along ``x``: each token reads right after its own write.

        Args:
            x: ``(batch, time, dim)``. ``time`` may be anything >= 0, shorter than a chunk included
                (the memory is still updated).
            state: from a previous call, to continue the same streams; None starts fresh.
            backend: a name in :data:`titans_memory.core.ops.BACKENDS`: ``"chunked"`` (fast),
                ``"chunked_checkpoint"`` (the same, recomputing per-chunk intermediates in the
                backward: less memory in training) or ``"recurrent"`` (the token-by-token
                reference); None: ``self.backend`` (``"chunked"`` unless given to the constructor).

        Returns:
            ``(y, state)``: ``y`` of shape ``(batch, time, dim)``, and the state after the last token.
        """
        self._check_input(x, state)
        op = self._operator(backend)
        B, T, _ = x.shape
        if state is None:
            state = self.init_state(B, dtype=x.dtype, device=x.device)
        if T == 0:
            return x.new_zeros(B, 0, self.config.dim), state

        def forward(x: Tensor, state: MemoryState) -> tuple[Tensor, MemoryState]:
            x = self._normalize(x)
            q, k, v, query_tail, kv_tail = self._queries_keys_values(x, state)
            y, op_state = op(self._memory_inputs(q, k, v, x), state.to_op_state(), self.rule)  # (B H, T, d)
            new_state = state.with_op_state(op_state, x.shape[1]).replace(
                query_tail=_like(query_tail, state), kv_tail=_like(kv_tail, state)
            )
            return self._output(y, x), new_state

        return self._in_pieces(forward, x, state)

    def _operator(self, backend: str | None):
        """The operator ``backend`` names (None: ``self.backend``), with its chunk step compiled
        when ``compile_step`` is set; or the learning algorithm's own operator for that name
        (ATLAS' Omega rule brings its chunked form: ``LearningAlgorithm.operator``)."""
        name = self.backend if backend is None else backend
        op = operator_for(name, self.rule)
        if op is not get_backend(name):  # the algorithm's own (no compiled step there)
            return op
        if self.compile_step is not False:
            op = with_compiled_step(op, "inductor" if self.compile_step is True else self.compile_step)
        return op

    def _piece_length(self, x: Tensor) -> int:
        """Tokens per piece of a long call: a multiple of the chunk size, at most 2048 tokens, and
        small enough that the widest activation (q, k and v of every head) stays under 16 MiB."""
        if self.piece_tokens is not None:
            return self.piece_tokens
        c = self.config.chunk_size
        per_token = x.shape[0] * 3 * self.inner * x.element_size()
        return max(c, min(2048, (16 * 2**20) // per_token) // c * c)

    def _in_pieces(self, step, x: Tensor, state: MemoryState):
        """``step(x, state) -> (y or None, state)`` over ``x`` in pieces (:meth:`_piece_length`).

        One call at 16k tokens would allocate every projection of the whole sequence at once, far
        above the size up to which the C allocator reuses freed memory: each call would then pay a
        first-touch page fault for every page of them (21-22x the time of 1k tokens for 16x the
        length). Streaming is exact for any split, so a long call is streamed through pieces of a
        bounded size instead. Not while ``torch.compile`` traces (one graph for any length).
        """
        T = x.shape[1]
        piece = self._piece_length(x)
        if T <= piece or torch.compiler.is_compiling():
            return step(x, state)
        ys, start = [], 0
        while start < T:
            end = min(T, start + max(1, piece - (state.offset if start == 0 else 0)))  # later pieces start on chunk ends
            y, state = step(x[:, start:end], state)
            ys.append(y)
            start = end
        return (None if ys[0] is None else torch.cat(ys, dim=1)), state

    def surprise(self, x: Tensor, state: MemoryState | None = None) -> tuple[Tensor, MemoryState]:
        """How surprised the memory is by every token, ``theta_t ||grad l(M; k_t, v_t)||``, and the
        state after writing ``x``.

        The gradient is the one the update uses (Titans eq. 12, at the chunk-start weights, or at
        the decayed memory for a ``decayed_gradient`` rule); its norm is the Frobenius norm over
        all memory weights, before the step bound (the step taken is at most ``theta_t
        max_step_norm``). A diagnostic: it walks ``x`` chunk by chunk with :meth:`store`.

        Args:
            x: ``(batch, time, dim)``. state: as for :meth:`store`.

        Returns:
            ``(surprise, state)``: ``(batch, heads, time)``, and the state after the last token.
        """
        self._check_input(x, state)
        if state is None:
            state = self.init_state(x.shape[0], dtype=x.dtype, device=x.device)
        arch, B, T = self.rule.architecture, x.shape[0], x.shape[1]
        xn = self._normalize(x)
        k, v, _ = self._keys_values(xn, state.kv_tail)
        lr, log_retention, _, bias_param, _ = self._op_gates(xn)
        sizes, start = [], 0
        while start < T:
            n = min(T - start, self.config.chunk_size - state.offset)  # up to the next chunk end
            piece = slice(start, start + n)
            anchor = state.to_op_state().anchor
            param = None if bias_param is None else bias_param[:, piece, None]
            decay = None
            if self.rule.decayed_gradient:  # token j's gradient at the anchor times its decay
                decay = log_retention[:, piece].cumsum(-1).exp().unsqueeze(-1)  # (B H, n, 1)
            if arch.supports_dual_form:  # ||H_j^T Delta_j||_F = ||H_j|| ||Delta_j||, summed over layers
                path = arch.key_path(anchor, k[:, piece], v[:, piece], self.rule.bias, param, decay)
                squared = sum(h.pow(2).sum(-1) * d.pow(2).sum(-1) for h, d in zip(*path, strict=True))
            else:
                grads = [
                    arch.token_gradients(
                        anchor if decay is None else [w * decay[:, j, :, None] for w in anchor],
                        k[:, piece][:, j : j + 1], v[:, piece][:, j : j + 1], self.rule.bias,
                        None if param is None else param[:, j : j + 1],
                    )
                    for j in range(n)
                ]
                squared = torch.cat([sum(g.pow(2).sum((-2, -1)) for g in gj) for gj in grads], dim=1)
            sizes.append(lr[:, piece] * squared.sqrt())  # (B H, n)
            state = self.store(x[:, piece], state)
            start += n
        sizes = torch.cat(sizes, dim=1) if sizes else x.new_zeros(B * self.config.heads, 0)
        return rearrange(sizes, "(b h) t -> b h t", b=B), state

    # --- checks --------------------------------------------------------------------------------------
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
        require_finite(x, "x", self.check_finite)
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
        state.validate(check_finite=on_host(self.check_finite, x) and self.check_finite is not False)
        if self.check_finite is not False and not on_host(self.check_finite, x):
            for name, t in state.tensors().items():
                require_finite(t, f"MemoryState.{name}", self.check_finite)
        expected = [(x.shape[0], cfg.heads, a, b) for a, b in self.rule.architecture.layer_shapes]
        for name in ("weights", "momentum", "anchor"):
            got = [tuple(w.shape) for w in getattr(state, name)]
            if got != expected:
                raise ValueError(
                    f"state does not fit this memory: {name} {got}, expected {expected} "
                    "(a state from a different config or batch size)"
                )
        for name, channels in (("query_tail", self.inner), ("kv_tail", 2 * self.inner)):
            want = None if cfg.conv_kernel == 1 else (x.shape[0], cfg.conv_kernel - 1, channels)
            tail = getattr(state, name)
            got = None if tail is None else tuple(tail.shape)
            if got != want:
                raise ValueError(
                    f"state.{name} has shape {got}, expected {want} "
                    f"(a state from a memory with another conv_kernel; this one has {cfg.conv_kernel})"
                )
        wanted = self.rule.carried_shapes()
        for name in sorted(set(state.carried) - set(wanted)):
            raise ValueError(
                f"state.carried has the field {name!r}, which this memory does not expect "
                f"(its learning algorithm and architecture carry {sorted(wanted) or 'nothing'})"
            )
        for name, shape in wanted.items():
            want = (x.shape[0], cfg.heads, *shape)
            got = state.carried.get(name)
            if got is None or tuple(got.shape) != want:
                raise ValueError(
                    f"state.carried[{name!r}] has shape {None if got is None else tuple(got.shape)}, expected {want}"
                )
        if state.chunk_size != cfg.chunk_size:
            raise ValueError(f"state.chunk_size={state.chunk_size} but config.chunk_size={cfg.chunk_size}")
        if state.dtype != x.dtype:
            raise ValueError(f"state dtype {state.dtype} does not match x dtype {x.dtype}")
        if state.device != x.device:
            raise ValueError(f"state is on {state.device} but x is on {x.device}")

    def extra_repr(self) -> str:
        c = self.config
        return (
            f"dim={c.dim}, heads={c.heads}, head_dim={c.d_head}, depth={c.depth}, "
            f"chunk_size={c.chunk_size}, activation={c.activation}"
        )
