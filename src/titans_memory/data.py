"""The demo's synthetic sequences, now in :mod:`titans_memory.demo.data`; this name stays for old imports."""

from titans_memory.demo.data import generate_frequency_shift, generate_repeating_with_anomalies

__all__ = ["generate_frequency_shift", "generate_repeating_with_anomalies"]
