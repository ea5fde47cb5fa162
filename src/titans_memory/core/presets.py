"""Named points of the MIRAS design space (arXiv 2504.13173), each just a :class:`MemoryConfig`.

A variant is a combination of four choices — memory architecture (``depth``), attentional bias
(``objective``), retention (``forget`` + ``retention``) and learning algorithm (``momentum``,
``decayed_gradient``) — never a new module. ``preset(name, **overrides)`` returns the config.

Conventions to keep in mind when comparing with closed forms: the l2 bias is ``||M(k) - v||^2``,
whose gradient carries a factor 2, so DeltaNet's ``beta_t`` is ``2 theta_t`` here (the delta-rule
presets cap theta at 0.5 so beta stays in (0, 1]). The closed forms written in the descriptions
are the token rule, i.e. ``chunk_size=1``; with the default ``chunk_size=64`` every gradient of a
chunk is taken at the chunk-start memory (Titans sec. 3.2, TTT's mini-batches), so DeltaNet and
Gated DeltaNet become their chunk-parallel approximations. Pass ``chunk_size=1`` for the exact
token rule (slower: one Python step per token).
"""

from __future__ import annotations

from titans_memory.core.config import MemoryConfig

_DELTA = dict(depth=1, momentum=False, max_lr=0.5, lr_init=0.25)
# Without momentum's ~10x amplification, a deep memory that also forgets needs a larger inner lr
# or the writes lose to the decay and it fades to M(x) = x (Yaad at lr 0.01: weights -> 0 within
# 4k tokens of unit Gaussian input; at 0.05 they settle near 1.5).
_GD = dict(momentum=False, lr_init=0.05)

PRESETS: dict[str, tuple[str, dict]] = {
    "titans": (
        "Titans LMM: deep MLP memory, l2 bias, decay (forget gate), gradient descent with momentum.",
        {},
    ),
    "moneta": (
        "Moneta: MLP memory, lp bias (p = 3), Lq retention (q = 4) on top of decay, plain gradient descent.",
        dict(_GD, objective="lp", p=3.0, retention="lq", q=4.0),
    ),
    "yaad": (
        "Yaad: MLP memory, Huber bias with a data-dependent threshold, decay, plain gradient descent.",
        dict(_GD, objective="huber"),
    ),
    "memora": (
        "Memora: MLP memory on the scaled simplex, l2 bias, KL retention, plain gradient descent.",
        dict(_GD, retention="kl"),
    ),
    "deltanet": (
        "DeltaNet: matrix memory, l2 bias, no decay, no momentum: M_t = M - beta (M k - v) k^T.",
        dict(_DELTA, forget=False),
    ),
    "gated_deltanet": (
        "Gated DeltaNet: DeltaNet with a forget gate and the gradient at the decayed memory.",
        dict(_DELTA, forget=True, decayed_gradient=True),
    ),
    "linear_attention": (
        "Linear attention: matrix memory, dot-product bias, theta = 1, no decay: M_t = M + v k^T.",
        dict(depth=1, objective="dot", lr_gate=False, lr_init=1.0, momentum=False, forget=False),
    ),
    "ttt_linear": (
        "TTT-Linear: matrix memory, l2 bias, mini-batch gradients at the batch start (chunk 16).",
        dict(depth=1, momentum=False, forget=False, chunk_size=16),
    ),
    "ttt_mlp": (
        "TTT-MLP: 2-layer MLP memory, l2 bias, mini-batch gradients at the batch start (chunk 16).",
        dict(depth=2, momentum=False, forget=False, chunk_size=16),
    ),
    # --- ATLAS (arXiv 2505.23735; docs/atlas.md) ---------------------------------------------
    "omeganet": (
        "OmegaNet (ATLAS): Titans' memory with the Omega rule, a gradient step on the last c = 16 tokens "
        "weighted by data-dependent gates gamma_i.",
        dict(algorithm="omeganet", omega_window=16),
    ),
    "atlas": (
        "Atlas (ATLAS): OmegaNet with Muon as the inner optimiser, the momentum orthogonalised by 5 "
        "Newton-Schulz steps per weight matrix before it is applied.",
        dict(algorithm="atlas", omega_window=16, ns_steps=5),
    ),
}


def preset(name: str, **overrides) -> MemoryConfig:
    """The :class:`MemoryConfig` of a named preset, with any field overridden.

    >>> cfg = preset("moneta", dim=128, heads=4)
    >>> cfg.objective, cfg.p, cfg.retention, cfg.q
    ('lp', 3.0, 'lq', 4.0)
    """
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return MemoryConfig(**{**PRESETS[name][1], **overrides})


def describe_presets() -> dict[str, str]:
    """One line per preset."""
    return {name: text for name, (text, _) in PRESETS.items()}
