"""Training, sampling and evaluation of Titans language models (``titans train``, ``sample``, ``eval``).

* :mod:`~titans_memory.training.config`: :class:`TrainConfig`, every setting of a run;
* :mod:`~titans_memory.training.data`: streamed text (Python's standard library by default);
* :mod:`~titans_memory.training.loop`: :func:`train`, the loop;
* :mod:`~titans_memory.training.checkpoint`: safetensors + JSON checkpoints, exact resume;
* :mod:`~titans_memory.training.distributed`: DDP and FSDP2 under torchrun;
* :mod:`~titans_memory.training.evaluate` and :mod:`~titans_memory.training.sample`.
"""

from titans_memory.training.checkpoint import CheckpointError, load_model
from titans_memory.training.config import TrainConfig
from titans_memory.training.evaluate import EvalResult, evaluate
from titans_memory.training.loop import TrainResult, train
from titans_memory.training.sample import stream_tokens

__all__ = [
    "CheckpointError",
    "EvalResult",
    "TrainConfig",
    "TrainResult",
    "evaluate",
    "load_model",
    "stream_tokens",
    "train",
]
