"""The benchmark scripts run (``--quick``) and print valid JSON with the expected keys.

No timing is asserted: the numbers depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from titans_memory.core import PRESETS

# every test runs a benchmark script: 6-125 s each on the 2-core machine under load
pytestmark = pytest.mark.slow

BENCH_DIR = Path(__file__).resolve().parents[1] / "benchmarks"


def _run(script: str, *extra: str) -> dict:
    """Run ``benchmarks/<script> --quick [extra]`` with this interpreter; return its JSON output."""
    proc = subprocess.run(
        [sys.executable, str(BENCH_DIR / script), "--quick", *extra],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=BENCH_DIR.parent,
    )
    assert proc.returncode == 0, f"{script} exited {proc.returncode}\nstderr:\n{proc.stderr[-4000:]}"
    try:
        return json.loads(proc.stdout)
    except json.JSONDecodeError as err:
        pytest.fail(f"{script} did not print one JSON document: {err}\nstdout:\n{proc.stdout[-4000:]}")


def _positive(value: object) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


def test_miras_benchmark_quick() -> None:
    out = _run("miras.py")
    assert {"machine", "shape", "reps", "presets"} <= set(out)
    assert set(out["presets"]) == set(PRESETS)
    for name, row in out["presets"].items():
        assert {"choices", "chunked_tokens_per_s", "recurrent_tokens_per_s", "chunked_speedup", "seconds"} <= set(row), name
        assert _positive(row["chunked_tokens_per_s"]) and _positive(row["recurrent_tokens_per_s"]), name


def test_neural_memory_benchmark_quick() -> None:
    out = _run("neural_memory.py")
    expected = {"machine", "vs_titans_pytorch", "chunked_vs_recurrent", "scaling", "streaming_memory", "achieved_flops"}
    assert expected <= set(out)
    peer = out["vs_titans_pytorch"]
    if isinstance(peer, list):  # the peer is not installed (the bench group)
        assert len(peer) == 1 and "skipped" in peer[0]
    else:  # one fresh process per shape and allocator regime
        assert set(peer) == {"allocator_default", "allocator_heap_kept"}
        for rows in peer.values():
            assert len(rows) == 2
            for row in rows:
                for kind in ("forward", "forward_backward"):
                    assert _positive(row[f"{kind}_speedup"])
                    assert _positive(row[f"{kind}_matmul_gflop"]["ours"]) and _positive(row[f"{kind}_matmul_gflop"]["peer"])
                    assert row[f"{kind}_minor_page_faults_per_call"]["ours"] >= 0
    assert _positive(out["chunked_vs_recurrent"]["chunked_speedup"])
    assert all(_positive(s) for s in out["scaling"]["seconds_one_call"].values())
    assert out["scaling"]["time_ratio_streamed"] > 0
    assert _positive(out["achieved_flops"]["achieved_gflop_per_s"])


def test_ab_compare_quick() -> None:
    if subprocess.run(["git", "rev-parse", "HEAD"], cwd=BENCH_DIR.parent, capture_output=True).returncode:
        pytest.skip("not a git checkout: nothing to compare against")
    out = _run("ab_compare.py")
    assert {"machine", "base", "reps", "rows"} <= set(out) and out["base"] == "HEAD"
    for row in out["rows"]:
        # both versions got the same weights: their outputs are finite and comparable
        assert math.isfinite(row["max_abs_output_diff"])
        assert _positive(row["forward_base_over_new"]) and _positive(row["forward_backward_base_over_new"])


def test_stability_quick():
    out = _run("stability.py")
    summary = out["summary"]
    assert set(summary) == {"default/init", "default/forced"}
    for row in summary.values():
        assert row["streams"] == 60 and row["finite"] == 60  # the envelope holds
        assert 0 < row["max_ratio_to_bound"] <= 1.0
    assert out["unbounded_default"]["streams"] == 120
    assert set(out["recall"]) == {
        f"{case}, max_step_norm={bound}"
        for case in ("titans (chunk 1)", "default config (chunk 64)")
        for bound in (10.0, None)
    }
    assert len(out["rows"]) == 120


def test_models_benchmark_quick() -> None:
    from titans_memory.models import ARCHS

    out = _run("models.py")
    assert {"machine", "device", "shape", "memory", "reps", "speed", "generation"} <= set(out)
    assert set(out["generation"]) == set(ARCHS)
    for arch, row in out["speed"].items():
        assert _positive(row["forward_tokens_per_s"]) and _positive(row["forward_backward_tokens_per_s"]), arch
        assert _positive(row["generation_tokens_per_s"]) and _positive(row["forward_vs_swa"]), arch
    for arch, row in out["generation"].items():
        assert _positive(row["long_run_tokens_per_s"]), arch
        rows = row["generation_memory"]
        assert [r["generated"] for r in rows] == [4, 8, 16, 32, 64]
        # 16 + 32 and 16 + 64 tokens: past the window, at the same offset in segment and chunk
        assert rows[-1]["cache_mib"] == rows[-2]["cache_mib"], arch


def test_vs_peer_benchmark_quick() -> None:
    out = _run("vs_peer.py")
    assert {"machine", "device", "speed_vs_titans_pytorch", "training_memory", "checkpoint_cost", "long_single_call"} <= set(out)
    speed = out["speed_vs_titans_pytorch"]
    if "skipped" not in speed:  # the peer is installed (the bench group)
        assert set(speed) == {"float32_allocator_default", "float32_allocator_heap_kept"}
        for rows in speed.values():
            assert [row["shape"].split()[3] for row in rows] == ["heads=1", "heads=4"]
            for row in rows:
                for kind in ("forward", "forward_backward"):
                    assert set(row[f"{kind}_s"]) == {"ours", "peer_default", "peer_equal"}
                    assert _positive(row[f"{kind}_peer_default_over_ours"])
                    assert _positive(row[f"{kind}_peer_equal_over_ours"])
                    # the work each did, counted: a backward adds work, and the rates follow from it
                    work = row["matmul_gflop"]
                    assert work["ours"]["forward_backward"] > work["ours"]["forward"] > 0
                    assert row[f"{kind}_gflop_per_s"]["ours"] == work["ours"][kind] / row[f"{kind}_s"]["ours"]
    for per_length in out["training_memory"]["float32"].values():
        for who in ("ours", "ours_checkpoint"):
            assert per_length[who]["peak_growth_mib"] >= 0 and per_length[who]["kib_per_token"] >= 0
    assert _positive(out["checkpoint_cost"]["checkpoint_time_ratio"])
    assert _positive(out["long_single_call"]["time_ratio_one_call"])


def test_train_benchmark_quick() -> None:
    from titans_memory.models import ARCHS

    out = _run("train.py")
    assert {"machine", "shape", "reps", "speed", "ddp"} <= set(out)
    assert set(out["speed"]) == set(ARCHS)
    for arch, row in out["speed"].items():
        assert _positive(row["tokens_per_s"]) and _positive(row["tokens_per_s_vs_swa"]), arch
    assert out["speed"]["swa"]["tokens_per_s_vs_swa"] == 1.0
    ddp = out["ddp"]
    assert set(ddp["tokens_per_s"]) == {"one_process_one_thread", "two_processes", "one_process_two_threads"}
    assert all(_positive(v) for v in ddp["tokens_per_s"].values())
    assert _positive(ddp["two_vs_one_process"]) and _positive(ddp["two_processes_vs_two_threads"])


def test_atlas_ablation_quick(tmp_path) -> None:
    """Two variants, two seeds, one worker; the table is printed from the record file."""
    path = tmp_path / "ablation.json"
    out = _run("atlas_ablation.py", "--variants", "titans (c=1)", "titans +poly2", "--workers", "1", "--out", str(path))
    assert [row["variant"] for row in out["rows"]] == ["titans (c=1)", "titans +poly2"]
    for row in out["rows"]:
        assert row["seeds"] == [0, 1] and len(row["accuracy_per_seed"]) == 2 and row["train_steps"] == [40]
        lo, hi = row["accuracy_range"]
        assert lo <= row["accuracy"] <= hi and set(row["accuracy_by_pairs"]) == {"4", "8", "12"}
    assert len(out["records"]) == 2 * 2 * len(out["pairs"]) * len(out["lengths"])
    table = subprocess.run([sys.executable, str(BENCH_DIR / "atlas_ablation.py"), "--table", str(path)],
                           capture_output=True, text=True, timeout=120, check=True).stdout.splitlines()
    assert table[0].startswith("| variant | accuracy % | 4 pairs | 8 pairs | 12 pairs |")
    assert [line.split(" | ")[0] for line in table[2:]] == ["| titans (c=1)", "| titans +poly2"]


def test_atlas_cost_quick(tmp_path) -> None:
    path = tmp_path / "cost.json"
    out = _run("atlas_cost.py", "--heads", "4", "--variants", "omeganet c=4", "--repeats", "1", "--out", str(path))
    assert [(r["variant"], r["heads"]) for r in out["rows"]] == [("titans", 4), ("omeganet c=4", 4)]
    assert all(_positive(r["forward_s"]) and _positive(r["forward_backward_ratio"]) for r in out["rows"])
    table = subprocess.run([sys.executable, str(BENCH_DIR / "atlas_cost.py"), "--table", str(path)],
                           capture_output=True, text=True, timeout=120, check=True).stdout.splitlines()
    assert table[0] == "| memory | 4 x 16: forward / fwd + bwd |" and table[3].startswith("| omeganet c=4 | ")
