"""Standardisation, atlas statistics and funnel limits of hipfrac.variation against hand-computed values."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from hipfrac import variation as v


def _two_units():
    # unit A: young 2/100, old 10/50; unit B: young 5/200, old 3/10
    return pd.DataFrame({"unit": ["A", "A", "B", "B"], "age": ["young", "old", "young", "old"],
                         "d": [2, 10, 5, 3], "n": [100, 50, 200, 10]})


def test_scv_hand_computed():
    # (5-10)^2/10^2 + (30-20)^2/20^2 = 0.5; 1/10 + 1/20 = 0.15; 100/2 * 0.35 = 17.5
    assert v.scv([5, 30], [10, 20]) == pytest.approx(17.5, rel=1e-12)
    # less variation than chance -> negative
    assert v.scv([10, 20], [12, 16]) == pytest.approx(100 / 2 * (4 / 144 + 16 / 256 - 1 / 12 - 1 / 16))
    assert v.scv([10, 20], [12, 16]) < 0
    with pytest.raises(ValueError, match="positive"):
        v.scv([1, 2], [0, 3])


def test_eq_eq2_cv_hand_computed():
    vals = [2, 4, 5, 8]
    assert v.eq(vals) == 4.0
    assert v.eq2(vals) == 1.25
    # mean 4.75, sample SD sqrt(18.75/3) = 2.5
    assert v.cv(vals) == pytest.approx(100 * 2.5 / 4.75)
    assert math.isnan(v.eq2([1, 2, 3]))
    tab = v.atlas_statistics(vals, observed=[5, 30], expected=[10, 20])
    assert tab.set_index("statistic").loc["scv", "value"] == pytest.approx(17.5)


def test_direct_standardise_hand_computed():
    std = pd.DataFrame({"age": ["young", "old"], "weight": [60, 40]})
    res = v.direct_standardise(_two_units(), "unit", "age", "d", "n", standard=std).set_index("unit")
    assert res.loc["A", "std_rate"] == pytest.approx(0.6 * 0.02 + 0.4 * 0.2)
    assert res.loc["B", "std_rate"] == pytest.approx(0.6 * 0.025 + 0.4 * 0.3)
    assert res.loc["A", "crude_rate"] == pytest.approx(12 / 150)
    # variance: sum w^2 d, w = W/n: (0.6/100)^2*2 + (0.4/50)^2*10
    var_a = (0.006**2) * 2 + (0.008**2) * 10
    assert res.loc["A", "se"] == pytest.approx(math.sqrt(var_a))
    # Fay-Feuer gamma limits written out for unit A
    y, wm = 0.092, 0.008
    lo = var_a / (2 * y) * stats.chi2.ppf(0.025, 2 * y**2 / var_a)
    hi = (var_a + wm**2) / (2 * (y + wm)) * stats.chi2.ppf(0.975, 2 * (y + wm) ** 2 / (var_a + wm**2))
    assert res.loc["A", "lower"] == pytest.approx(lo)
    assert res.loc["A", "upper"] == pytest.approx(hi)
    assert lo < y < hi
    # default standard = pooled denominators (young 300, old 60)
    pooled = v.direct_standardise(_two_units(), "unit", "age", "d", "n").set_index("unit")
    assert pooled.loc["A", "std_rate"] == pytest.approx((300 * 0.02 + 60 * 0.2) / 360)


def test_direct_standardise_person_level_equals_aggregated():
    agg = _two_units()
    rows = []
    for r in agg.itertuples():
        rows += [{"unit": r.unit, "age": r.age, "y": 1}] * r.d + [{"unit": r.unit, "age": r.age, "y": 0}] * (r.n - r.d)
    person = pd.DataFrame(rows)
    a = v.direct_standardise(agg, "unit", "age", "d", "n")
    b = v.direct_standardise(person, "unit", "age", "y")
    pd.testing.assert_frame_equal(a, b)


def test_direct_standardise_errors():
    with pytest.raises(KeyError, match="nope"):
        v.direct_standardise(_two_units(), "unit", "nope", "d", "n")
    std = pd.DataFrame({"age": ["young"], "weight": [1]})
    with pytest.raises(ValueError, match="absent from the standard"):
        v.direct_standardise(_two_units(), "unit", "age", "d", "n", standard=std)


def test_indirect_standardise_hand_computed():
    ref = pd.DataFrame({"age": ["young", "old"], "rate": [0.02, 0.2]})
    res = v.indirect_standardise(_two_units(), "unit", "age", "d", "n", reference=ref).set_index("unit")
    # A: E = 100*0.02 + 50*0.2 = 12, O = 12; B: E = 200*0.02 + 10*0.2 = 6, O = 8
    assert res.loc["A", "expected"] == pytest.approx(12)
    assert res.loc["B", "expected"] == pytest.approx(6)
    assert res.loc["B", "oe"] == pytest.approx(8 / 6)
    # exact Poisson limits of O = 8
    assert res.loc["B", "oe_lower"] == pytest.approx(stats.chi2.ppf(0.025, 16) / 2 / 6)
    assert res.loc["B", "oe_upper"] == pytest.approx(stats.chi2.ppf(0.975, 18) / 2 / 6)
    # standardised rate = O/E x overall reference rate (18/360)
    assert res.loc["B", "std_rate"] == pytest.approx(8 / 6 * 18 / 360)
    # internal standard: pooled rates young 7/300, old 13/60; O/E of all units together is 1
    internal = v.indirect_standardise(_two_units(), "unit", "age", "d", "n")
    assert internal["observed"].sum() == pytest.approx(internal["expected"].sum())


def test_observed_expected_from_probabilities():
    d = pd.DataFrame({"h": ["a", "a", "b", "b", "b"], "y": [1, 0, 1, 1, 0], "p": [0.5, 0.5, 0.2, 0.2, 0.2]})
    res = v.observed_expected(d, "h", "y", "p").set_index("h")
    assert res.loc["a", "oe"] == pytest.approx(1.0)
    assert res.loc["b", "oe"] == pytest.approx(2 / 0.6)
    assert res.loc["b", "std_rate"] == pytest.approx(2 / 0.6 * 3 / 5)


def test_wilson_hand_computed():
    lo, hi = v.wilson_ci([8], [10])
    # Wilson 95 %: p=0.8, z=1.959964
    z = stats.norm.ppf(0.975)
    centre = (0.8 + z**2 / 20) / (1 + z**2 / 10)
    half = z * math.sqrt(0.8 * 0.2 / 10 + z**2 / 400) / (1 + z**2 / 10)
    assert lo[0] == pytest.approx(centre - half)
    assert hi[0] == pytest.approx(centre + half)
    assert lo[0] == pytest.approx(0.4901625, abs=1e-6)  # published value for 8/10


def test_funnel_limits_are_binomial_quantiles():
    n = np.array([1, 7, 50, 333, 2000])
    lim = v.funnel_limits(n, 0.85)
    assert list(lim.columns) == ["n", "target", "lower_95", "upper_95", "lower_99.8", "upper_99.8"]
    for level, name in ((0.95, "95"), (0.998, "99.8")):
        a = 1 - level
        np.testing.assert_allclose(lim[f"lower_{name}"], stats.binom.ppf(a / 2, n, 0.85) / n)
        np.testing.assert_allclose(lim[f"upper_{name}"], stats.binom.ppf(1 - a / 2, n, 0.85) / n)
    # narrower with n, wider with level
    assert (lim["upper_99.8"] >= lim["upper_95"]).all() and (lim["lower_99.8"] <= lim["lower_95"]).all()
    assert lim["upper_95"].iloc[-1] - lim["lower_95"].iloc[-1] < lim["upper_95"].iloc[2] - lim["lower_95"].iloc[2]


def test_funnel_limits_interpolated_between_steps():
    n = np.arange(20, 400, 7)
    q = v.funnel_limits(n, 0.9, method="quantile")
    i = v.funnel_limits(n, 0.9, method="interpolated")
    # interpolation moves the limit down by at most one event
    for c in ("lower_95", "upper_95", "lower_99.8", "upper_99.8"):
        assert (i[c] <= q[c] + 1e-12).all()
        assert (i[c] >= q[c] - 1 / n - 1e-12).all()
    # and approaches the normal approximation for large n
    big = v.funnel_limits([100000], 0.9, method="interpolated")
    assert big["upper_99.8"].iloc[0] == pytest.approx(0.9 + stats.norm.ppf(0.999) * math.sqrt(0.09 / 1e5), abs=2e-4)


def test_funnel_limits_bad_input():
    with pytest.raises(ValueError, match="target"):
        v.funnel_limits([10], 1.2)
    with pytest.raises(ValueError, match="positive integers"):
        v.funnel_limits([0], 0.5)


def test_overdispersion_hand_computed():
    events = np.array([45, 80, 30, 95, 60, 70, 10, 50, 88, 40])
    n = np.full(10, 100)
    od = v.overdispersion(events, n, 0.5)
    z = (events / 100 - 0.5) / math.sqrt(0.25 / 100)
    lo, hi = np.quantile(z, [0.1, 0.9])
    phi = np.mean(np.clip(z, lo, hi) ** 2)
    assert od["phi"] == pytest.approx(phi)
    w = np.full(10, 400.0)
    assert od["tau2"] == pytest.approx((10 * phi - 9) / (w.sum() - (w**2).sum() / w.sum()))
    # no overdispersion when units sit at the target
    assert v.overdispersion(np.full(10, 50), n, 0.5)["tau2"] == 0.0


def test_funnel_table_flags_extreme_unit():
    rng = np.random.default_rng(1)
    rows = []
    for h in range(20):
        p = 0.5 if h == 0 else 0.85
        y = rng.binomial(1, p, 300)
        rows.append(pd.DataFrame({"hospital": f"h{h:02d}", "y": y}))
    d = pd.concat(rows)
    tab, info = v.funnel_table(d, "hospital", "y", target=0.85)
    flagged = tab.loc[tab["outside_99.8"] != "", "hospital"].tolist()
    assert flagged == ["h00"]
    assert tab.loc[tab.hospital == "h00", "outside_99.8"].item() == "low"
    assert info["target"] == 0.85


def test_variation_params_validated():
    from hipfrac.params import ParamsError, load

    p = load("smoke", variation={"unit": "referral_area", "period": [2015, 2020], "indicators": ["surgery_48h"]})
    assert p.variation.unit == "referral_area" and p.variation.period == (2015, 2020)
    for bad, msg in (({"unit": "ward"}, "variation.unit"), ({"period": [2020, 2015]}, "period"),
                     ({"levels": [0.998, 0.95]}, "levels"), ({"colour": 1}, "unknown key")):
        with pytest.raises(ParamsError, match=msg):
            load("smoke", variation=bad)
