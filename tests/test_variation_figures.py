"""Figures of hipfrac.figures.variation draw from tidy frames (with suppressed cells) without error."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from hipfrac import geography  # noqa: E402
from hipfrac import variation as v  # noqa: E402
from hipfrac.figures import variation as fv  # noqa: E402


def _person_rows(seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for h in range(12):
        n = int(rng.integers(20, 400))
        p = 0.55 if h == 3 else 0.88
        rows.append(pd.DataFrame({"hospital": f"H{h:02d}", "region": f"R{h % 3}", "y": rng.binomial(1, p, n),
                                  "year": rng.integers(2015, 2019, n), "x": rng.normal(size=n)}))
    return pd.concat(rows, ignore_index=True)


def test_funnel_and_caterpillar():
    d = _person_rows()
    tab, info = v.funnel_table(d, "hospital", "y")
    tab = tab.rename(columns={"hospital": "unit"})
    tab.loc[0, ["n", "prop"]] = np.nan  # a suppressed unit is not drawn
    fig = fv.funnel_plot(tab, info["target"], "test", tau2=info["tau2"])
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert "H03" in texts
    plt.close(fig)
    fit = v.random_intercept_logit(d, "y", "hospital", ["x"], ci="wald")
    fig = fv.caterpillar_plot(fit.unit_effects, "test", highlight=["H03"])
    assert len(fig.axes[0].get_yticklabels()) == 12
    plt.close(fig)


def test_grid_trend_tilemap_heat():
    d = _person_rows()
    res = (d.groupby(["hospital", "region"]).y.agg(["size", "sum"]).reset_index()
           .rename(columns={"hospital": "unit", "size": "n", "sum": "events"}))
    res["prop"] = res.events / res.n
    res["level"] = np.where(res.prop >= 0.9, "green", np.where(res.prop >= 0.8, "yellow", "red"))
    res["low_n_flag"] = res.n < 30
    res["low_coverage"] = False
    res["indicator"] = "a"
    res2 = res.assign(indicator="b", level="none")
    res2.loc[0, "prop"] = np.nan
    fig = fv.hospital_grid(pd.concat([res, res2]), {"a": "Indicator A"})
    assert len(fig.axes[0].texts) >= 24
    plt.close(fig)
    nat = d.groupby("year").y.agg(["size", "sum"]).reset_index()
    nat["prop"] = nat["sum"] / nat["size"]
    nat["lower"], nat["upper"] = v.wilson_ci(nat["sum"], nat["size"])
    byr = d.groupby(["region", "year"]).y.mean().rename("prop").reset_index().rename(columns={"region": "unit"})
    plt.close(fv.trend_plot(nat, byr, target=0.9))
    grid = geography.tile_grid()
    vals = pd.DataFrame({"referral_area": grid.referral_area, "prop": np.linspace(0.7, 0.95, len(grid))})
    vals.loc[2, "prop"] = np.nan
    fig = fv.tile_map(vals, grid, title="t")
    assert len(fig.axes[0].patches) == len(grid)
    plt.close(fig)
    heat = pd.DataFrame({"indicator": ["a", "a", "b", "b"], "unit": ["R0", "R1", "R0", "R1"],
                         "prop": [0.8, 0.9, np.nan, 0.5]})
    plt.close(fv.heat_table(heat))
