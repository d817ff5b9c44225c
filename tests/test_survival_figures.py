"""hipfrac.figures.survival: every figure function draws from tidy frames and returns a Figure."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from hipfrac.figures import survival as sf  # noqa: E402


@pytest.fixture(autouse=True)
def _close():
    import matplotlib.pyplot as plt

    yield
    plt.close("all")


def test_km_plot_shows_numbers_at_risk():
    t = np.arange(0, 3 * 365.25, 7.0)
    curves = pd.concat([pd.DataFrame({"u": u, "time": t, "surv": np.exp(-k * t / 365), "lower": np.nan,
                                      "upper": np.nan, "n_risk": 100}) for u, k in (("A", 0.2), ("B", 0.3))])
    at = pd.DataFrame({"u": ["A", "A", "B", "B"], "time": [0, 365.25] * 2, "n_risk": [100, 80, 50, np.nan]})
    fig = sf.km_plot(curves, at, "u", title="t")
    texts = [x.get_text() for ax in fig.axes for x in ax.texts]
    assert {"100", "80", "50", "–"} <= set(texts)
    assert len(fig.axes[0].get_lines()) == 2


def test_excess_plot_marks_duration_and_other_figures():
    c = pd.DataFrame({"start": [0, 365.25], "stop": [365.25, 730.5], "excess_rate": [0.2, 0.01],
                      "lower": [0.1, -0.02], "upper": [0.3, 0.04]})
    d = pd.DataFrame({"duration_years": [1.0], "lower": [1.0], "upper": [2.0]})
    fig = sf.excess_hazard_plot(c, duration=d)
    assert any("Duration 1.0 y" in t.get_text() for t in fig.axes[0].get_legend().get_texts())
    smr = pd.DataFrame({"sex": ["female", "male"], "band": ["0-30 d"] * 2, "smr": [5.0, 7.0],
                        "lower": [4.0, 6.0], "upper": [6.0, 8.0]})
    assert sf.smr_plot(smr).axes[0].get_yscale() == "log"
    std = pd.DataFrame({"r": ["x", "y"], "time": [30.0, 30.0], "surv": [0.9, 0.8], "lower": [0.85, 0.75],
                        "upper": [0.95, 0.85]})
    assert len(sf.standardised_plot(std, "r").axes) == 1
    net = pd.DataFrame({"time": [0, 365.0], "surv": [1, 0.8], "lower": [1, 0.7], "upper": [1, 0.9]})
    assert sf.net_survival_plot(net).axes[0].get_ylim()[0] == 0
    hr = pd.DataFrame({"term": ["a", "b"], "hr": [1.2, 0.8], "lower": [1.0, 0.6], "upper": [1.4, 1.0]})
    assert sf.hazard_ratio_plot(hr).axes[0].get_xscale() == "log"
