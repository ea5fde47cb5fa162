"""titans_memory.viz.longcontext: the figures of the long-context benchmarks, checked on the data
they draw (line values, heatmap cells), with a diverged seed among the records."""

from __future__ import annotations

import numpy as np

from titans_memory.viz.longcontext import plot_accuracy_vs_length, plot_depth_heatmaps, plot_mqar


def _rec(model, n, acc, seed, depth, task="passkey", pairs=None):
    return dict(model=model, task=task, context_length=n, depth=depth, pairs=pairs, accuracy=acc,
                chance=0.01 if task == "passkey" else 1 / 64, seed=seed)


RECORDS = [
    _rec("lmm", 32, 1.0, 0, 0.0), _rec("lmm", 32, 0.5, 0, 1.0),
    _rec("lmm", 32, 1.0, 1, 0.0), _rec("lmm", 32, 1.0, 1, 1.0),
    _rec("lmm", 512, 0.25, 0, 0.0), _rec("lmm", 512, 0.75, 0, 1.0),
    _rec("lmm", 512, None, 1, 0.0), _rec("lmm", 512, None, 1, 1.0),  # seed 1 diverged
    _rec("swa", 32, 0.0, 0, 0.0), _rec("swa", 32, 0.0, 0, 1.0),
    _rec("swa", 512, 0.0, 0, 0.0), _rec("swa", 512, 0.0, 0, 1.0),
]


def test_accuracy_vs_length_draws_the_seed_means():
    fig = plot_accuracy_vs_length(RECORDS, ["passkey"], window=32)
    ax = fig.axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    x, y = lines["lmm"].get_data()
    assert list(x) == [32, 512]
    # 32: seeds 0.75 and 1.0 -> 87.5; 512: seed 0 only (seed 1 diverged) -> 50
    np.testing.assert_allclose(y, [87.5, 50.0])
    np.testing.assert_allclose(lines["swa"].get_data()[1], [0.0, 0.0])
    np.testing.assert_allclose(lines["chance"].get_data()[1], [1.0, 1.0])


def test_depth_heatmaps_hold_the_cells():
    fig = plot_depth_heatmaps(RECORDS, ["lmm", "swa"], cols=2)
    images = [ax.images[0] for ax in fig.axes if ax.images]
    assert len(images) == 2
    lmm = np.ma.filled(images[0].get_array(), np.nan)  # rows: depths 0, 1; columns: 32, 512
    np.testing.assert_allclose(lmm, [[100.0, 25.0], [75.0, 75.0]])  # the diverged seed left out


def test_mqar_figure_has_one_panel_per_length():
    recs = [_rec("lmm", n, acc, 0, None, task="mqar", pairs=p)
            for n, p, acc in [(64, 4, 1.0), (64, 8, 0.5), (128, 4, 0.75)]]
    fig = plot_mqar(recs)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == ["length 64", "length 128"]
    x, y = fig.axes[0].get_lines()[0].get_data()
    assert list(x) == [4, 8]
    np.testing.assert_allclose(y, [100.0, 50.0])
