"""Memory update operators: one signature, ``(outputs, final_state)``.

* :func:`recurrent_memory` — the reference, token by token (the spec);
* :func:`chunked_memory` — the chunk-parallel fast path, exact to rounding.
"""

from titans_memory.core.ops.chunked import chunked_memory
from titans_memory.core.ops.common import MemoryOpState, fresh_op_state
from titans_memory.core.ops.recurrent import recurrent_memory

__all__ = ["MemoryOpState", "chunked_memory", "fresh_op_state", "recurrent_memory"]
