"""The playground's computation: the panels show the numbers the library's own functions give."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from titans_memory.demo import TitansMemoryLayer
from titans_memory.explore import playground as pg
from titans_memory.explore.texts import ExploreInputError
from titans_memory.viz.demo import (
    SCENARIOS,
    trace_array,
    weight_norm,
    weight_norms,
    write_updates,
)


def _figure_arrays(run) -> dict[str, np.ndarray]:
    """What the full-pipeline figure plots for a ScenarioRun, from the figure's helpers."""
    result = run.result
    return {
        "inputs": run.seq.double().numpy(),
        "raw_surprise": trace_array(result, "surprise_scores"),
        "smooth_surprise": trace_array(result, "surprise_momentum"),
        "write_gate": trace_array(result, "write_gates"),
        "weight_norm": np.concatenate(
            [[weight_norm(run.initial_snapshot)], weight_norms(result["memory_snapshots"])]
        ),
        "write_heatmap": write_updates(
            result["memory_snapshots"], run.initial_snapshot, run.layer.memory.forget_rate
        ),
    }


def _assert_panels_equal(data: pg.PanelData, expected: dict[str, np.ndarray]) -> None:
    for key, want in expected.items():
        got = getattr(data, key)
        assert got.shape == want.shape, key
        np.testing.assert_array_equal(got, want, err_msg=key)


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_scenario_input_is_the_figure_scenario(name):
    series, settings = pg.scenario_input(name)
    seq, mask = series.sequence()
    want_seq, want_mask = SCENARIOS[name].sequence()
    torch.testing.assert_close(seq, want_seq, rtol=0, atol=0)
    torch.testing.assert_close(mask, want_mask, rtol=0, atol=0)
    # the layer the scenario builds, argument for argument
    layer_kwargs = settings.layer_kwargs()
    for key, value in SCENARIOS[name].layer_kwargs.items():
        assert layer_kwargs[key] == value, key


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_panels_equal_the_figure_numbers(name):
    series, settings = pg.scenario_input(name)
    data = pg.run_playground(series, settings)
    run = SCENARIOS[name].run()  # the figures' own run: seed 42, the scenario's layer
    _assert_panels_equal(data, _figure_arrays(run))
    assert data.anomalies == run.anomaly_indices
    np.testing.assert_array_equal(data.steps, np.arange(len(run.seq)))
    np.testing.assert_array_equal(data.norm_steps, np.arange(-1, len(run.seq)))


def test_every_slider_moves_the_panels_as_the_library_does():
    series, defaults = pg.scenario_input("full_pipeline")
    base = pg.run_playground(series, defaults)
    changes = {
        "write_lr": 0.05,
        "forget_rate": 0.05,
        "momentum": 0.5,
        "memory_dim": 8,
        "seed": 3,
    }
    for field, value in changes.items():
        settings = defaults.replace(**{field: value})
        data = pg.run_playground(series, settings)
        seed = settings.seed
        overrides = {k: v for k, v in settings.layer_kwargs().items() if k != "hidden_dim"}
        run = SCENARIOS["full_pipeline"].run(seed=seed, **overrides)
        _assert_panels_equal(data, _figure_arrays(run))
        # and the change shows: some panel differs from the default run
        moved = [
            key
            for key in ("smooth_surprise", "write_gate", "weight_norm")
            if getattr(data, key).shape != getattr(base, key).shape
            or not np.array_equal(getattr(data, key), getattr(base, key))
        ]
        assert moved, field


def test_edited_series_matches_a_direct_run_of_the_layer():
    base = np.array([0.5, -1.0, 2.0] * 7)
    anomalies = {3: 40.0, 11: -25.5}
    settings = pg.PlaygroundSettings(
        write_lr=0.1, forget_rate=0.02, momentum=0.8, memory_dim=4, hidden_dim=8, seed=7
    )
    data = pg.run_playground(pg.SeriesInput(base, anomalies), settings)

    seq = torch.tensor(base, dtype=torch.float32)
    seq[3], seq[11] = 40.0, -25.5
    torch.manual_seed(7)
    layer = TitansMemoryLayer(
        input_dim=1, memory_dim=4, hidden_dim=8, momentum=0.8, forget_rate=0.02, write_lr=0.1
    )
    initial = layer.memory.get_weight_snapshot()
    result = layer.process_sequence(seq.unsqueeze(-1))

    np.testing.assert_array_equal(data.inputs, seq.double().numpy())
    assert data.anomalies == [3, 11]
    np.testing.assert_array_equal(data.raw_surprise, trace_array(result, "surprise_scores"))
    np.testing.assert_array_equal(data.write_gate, trace_array(result, "write_gates"))
    assert data.weight_norm[0] == weight_norm(initial)
    np.testing.assert_array_equal(data.weight_norm[1:], weight_norms(result["memory_snapshots"]))
    np.testing.assert_array_equal(
        data.write_heatmap, write_updates(result["memory_snapshots"], initial, 0.02)
    )
    assert data.write_heatmap.shape == (4, len(base))  # memory_dim first-layer weights, T steps


def test_a_run_leaves_the_global_generator_alone():
    series, settings = pg.scenario_input("momentum_vs_raw")
    torch.manual_seed(123)
    want = torch.rand(3)
    torch.manual_seed(123)
    pg.run_playground(series, settings)
    torch.testing.assert_close(torch.rand(3), want, rtol=0, atol=0)


def test_a_setting_the_layer_refuses_names_it():
    series, settings = pg.scenario_input("full_pipeline")
    with pytest.raises(ValueError, match="forget_rate"):
        pg.run_playground(series, settings.replace(forget_rate=1.0))


# --- text in ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("1, 2, 3", [1, 2, 3]),
        ("1 2\n3;4", [1, 2, 3, 4]),
        ("  -1.5e2 ,0.25,, 7 ", [-150, 0.25, 7]),
        ("42", [42]),
    ],
)
def test_parse_series(text, want):
    got = pg.parse_series(text)
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, np.array(want, dtype=np.float64))


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("", "err_empty_sequence"),
        (" , \n ", "err_empty_sequence"),
        ("1, 2, x", "err_not_a_number"),
        ("1, nan", "err_not_finite"),
        ("inf", "err_not_finite"),
        ("1, 2e7", "err_out_of_range"),
        (", ".join(["1"] * (pg.MAX_STEPS + 1)), "err_too_long"),
    ],
)
def test_parse_series_refuses(text, code):
    with pytest.raises(ExploreInputError) as err:
        pg.parse_series(text)
    assert err.value.code == code
    assert str(err.value) == err.value.message("en")
    assert err.value.message("vi") != err.value.message("en")


def test_parse_series_names_the_bad_value():
    with pytest.raises(ExploreInputError, match=r"sequence value #3: 'x' is not a number"):
        pg.parse_series("1, 2, x, 4")
    with pytest.raises(ExploreInputError) as err:
        pg.parse_series("1, 2, x, 4")
    assert err.value.message("vi") == "giá trị thứ 3 của chuỗi: 'x' không phải là một số"


def test_parse_series_needs_a_string():
    with pytest.raises(TypeError, match="text must be a str"):
        pg.parse_series([1, 2])  # type: ignore[arg-type]


def test_parse_anomalies():
    assert pg.parse_anomalies("", 5) == {}
    assert pg.parse_anomalies(" 3: 50, 1=-2.5\n4 : 1e3 ", 5) == {1: -2.5, 3: 50.0, 4: 1000.0}
    assert list(pg.parse_anomalies("4: 1, 0: 2", 5)) == [0, 4]  # sorted by timestep


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("3 50", "err_bad_anomaly"),
        ("a: 5", "err_bad_anomaly"),
        ("5: 1", "err_anomaly_step"),
        ("-1: 1", "err_anomaly_step"),
        ("2: 1, 2: 3", "err_anomaly_twice"),
        ("2: x", "err_not_a_number"),
        ("2: inf", "err_not_finite"),
    ],
)
def test_parse_anomalies_refuses(text, code):
    with pytest.raises(ExploreInputError) as err:
        pg.parse_anomalies(text, 5)
    assert err.value.code == code


def test_format_round_trips():
    values = np.array([1.0, -2.0, 0.1, 1 / 3, 2.5e-7, 123456.789, 0.0])
    text = pg.format_series(values)
    assert text.startswith("1, -2, 0.1, ")
    np.testing.assert_array_equal(pg.parse_series(text), values)
    anomalies = {12: 50.0, 3: 1 / 7}
    assert pg.parse_anomalies(pg.format_anomalies(anomalies), 20) == anomalies
    assert pg.format_anomalies({30: 50.0, 12: 99.0}) == "12: 99, 30: 50"


def test_toggle_anomaly():
    current = {3: 50.0}
    added = pg.toggle_anomaly(current, 7, 20.0, 10)
    assert added == {3: 50.0, 7: 20.0}
    assert current == {3: 50.0}  # the argument is left alone
    assert pg.toggle_anomaly(added, 3, 99.0, 10) == {7: 20.0}  # a click on one removes it
    assert pg.toggle_anomaly(current, 10, 1.0, 10) == current  # outside the series: nothing
    assert pg.toggle_anomaly(current, -1, 1.0, 10) == current
    with pytest.raises(ExploreInputError):
        pg.toggle_anomaly(current, 5, float("nan"), 10)


def test_series_input_sequence():
    series = pg.SeriesInput(np.array([1.0, 2.0, 3.0]), {1: -7.0})
    seq, mask = series.sequence()
    assert seq.dtype == torch.float32
    assert seq.tolist() == [1.0, -7.0, 3.0]
    assert mask.tolist() == [0.0, 1.0, 0.0]


def test_unknown_scenario():
    with pytest.raises(ValueError, match="unknown scenario 'nope'"):
        pg.scenario_input("nope")
