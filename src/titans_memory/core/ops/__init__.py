"""Memory update operators, one signature: ``op(inputs, state, rule) -> (outputs, final_state)``.

* :func:`recurrent_memory` (``"recurrent"``): the reference, token by token (the spec);
* :func:`chunked_memory` (``"chunked"``): the chunk-parallel fast path, exact to rounding;
* :func:`chunked_checkpoint_memory` (``"chunked_checkpoint"``): the same with chunk-level
  activation checkpointing (the backward recomputes each block of chunks: less memory, one
  forward of the memory more).

:data:`BACKENDS` is the one registry of operators: ``NeuralMemory(..., backend=name)`` and the
tests look names up there. A device kernel registers itself with :func:`register_backend` and is
then tested against the reference like the others; a kernel of the per-chunk work alone plugs into
the chunked operator's seam, ``chunked_memory(..., step=kernel)`` (:class:`ChunkStepInputs` in,
:class:`ChunkStepOutput` out; :func:`chunk_step` is the reference one).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from torch import Tensor

from titans_memory.core.ops.chunked import (
    ChunkStep,
    ChunkStepInputs,
    ChunkStepOutput,
    chunk_step,
    chunked_memory,
)
from titans_memory.core.ops.common import (
    MemoryInputs,
    MemoryOpState,
    check_op_inputs,
    fresh_op_state,
)
from titans_memory.core.ops.recurrent import recurrent_memory
from titans_memory.core.registry import add_entry
from titans_memory.core.rule import UpdateRule


def chunked_checkpoint_memory(
    inputs: MemoryInputs, state: MemoryOpState, rule: UpdateRule
) -> tuple[Tensor | None, MemoryOpState]:
    """:func:`chunked_memory` with ``checkpoint=True``."""
    return chunked_memory(inputs, state, rule, checkpoint=True)


MemoryOperator = Callable[[MemoryInputs, MemoryOpState, UpdateRule], tuple[Tensor | None, MemoryOpState]]

#: Operators by name. ``"recurrent"`` is the reference every other one is tested against.
BACKENDS: dict[str, MemoryOperator] = {
    "chunked": chunked_memory,
    "chunked_checkpoint": chunked_checkpoint_memory,
    "recurrent": recurrent_memory,
}

#: The reference operator's name.
REFERENCE = "recurrent"


def with_compiled_step(operator: MemoryOperator, backend: str = "inductor") -> MemoryOperator:
    """The same operator with its chunk step compiled by the ``torch.compile`` backend ``backend``
    where it has one (the chunked operators); any other operator as it is."""
    if operator is chunked_memory:
        return partial(chunked_memory, compile_step=backend)
    if operator is chunked_checkpoint_memory:
        return partial(chunked_memory, checkpoint=True, compile_step=backend)
    return operator


def register_backend(name: str, operator: MemoryOperator, *, replace: bool = False) -> None:
    """Add an operator with the common signature under ``name``."""
    add_entry(
        BACKENDS, name, operator, replace=replace, caller="register_backend",
        expected="operator must be callable",
    )


def get_backend(name: str) -> MemoryOperator:
    """The operator registered as ``name`` (a clear error for an unknown one)."""
    if not isinstance(name, str) or name not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(map(repr, BACKENDS))}, got {name!r}")
    return BACKENDS[name]


def operator_for(name: str, rule: UpdateRule) -> MemoryOperator:
    """The operator that runs ``rule`` for the backend called ``name``: the learning algorithm's own
    where it brings one (``LearningAlgorithm.operator``: ATLAS' Omega rule and its chunked form),
    else the registered one."""
    get_backend(name)  # a clear error for an unknown name
    own = rule.algorithm.operator(name)
    return own if own is not None else BACKENDS[name]


__all__ = [
    "BACKENDS",
    "REFERENCE",
    "ChunkStep",
    "ChunkStepInputs",
    "ChunkStepOutput",
    "MemoryInputs",
    "MemoryOpState",
    "MemoryOperator",
    "check_op_inputs",
    "chunk_step",
    "chunked_checkpoint_memory",
    "chunked_memory",
    "fresh_op_state",
    "get_backend",
    "operator_for",
    "recurrent_memory",
    "register_backend",
    "with_compiled_step",
]
