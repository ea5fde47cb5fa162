"""Synthetic tasks that compare memory update rules (MIRAS presets) on controlled streams."""

from titans_memory.tasks.recall import (
    ABLATION_BIASES,
    BurstResult,
    OperatorSetup,
    RecallCurve,
    bias_ablation,
    operator_setup,
    outlier_burst,
    read_memory,
    recall_vs_age,
    write_memory,
)

__all__ = [
    "ABLATION_BIASES",
    "BurstResult",
    "OperatorSetup",
    "RecallCurve",
    "bias_ablation",
    "operator_setup",
    "outlier_burst",
    "read_memory",
    "recall_vs_age",
    "write_memory",
]
