"""Variation between units (hospitals, trusts, regions, referral areas): standardisation, funnel
limits, overdispersion, atlas statistics and random-intercept logistic regression.

Every function is generic: any 0/1 outcome (or event count), any unit column. Proportions are
fractions in [0, 1]; rates are events per unit of the `n` column (persons or person-years).

Public API (used by notebooks 00, 01 and the survival / prevention notebooks):

    direct_standardise(data, unit, strata, events, n, standard=None)   -> per-unit standardised rates
    indirect_standardise(data, unit, strata, events, n, reference=None) -> per-unit O, E, O/E, std. rate
    observed_expected(data, unit, outcome, expected)                   -> O/E from per-patient p-hat
    scv(observed, expected), eq(values), eq2(values), cv(values), atlas_statistics(...)
    funnel_limits(n, target, levels=(0.95, 0.998))                     -> exact binomial limits
    overdispersion(events, n, target)                                  -> phi, tau2 (Spiegelhalter 2005)
    funnel_table(data, unit, events, n, target)                        -> per unit z, limits, flags
    random_intercept_logit(data, outcome, group, covariates)           -> ML fit (sigma2, MOR, ...)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

__all__ = [
    "direct_standardise",
    "indirect_standardise",
    "observed_expected",
    "scv",
    "eq",
    "eq2",
    "cv",
    "atlas_statistics",
    "wilson_ci",
    "funnel_limits",
    "overdispersion",
    "funnel_table",
    "overdispersed_limits",
    "mor_from_sigma2",
    "design_matrix",
    "random_intercept_logit",
    "RandomInterceptFit",
    "variance_explained",
]


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------
def _as_list(x) -> list:
    if x is None:
        return []
    if isinstance(x, str):
        return [x]
    return list(x)


def _require(data: pd.DataFrame, cols: Sequence[str], what: str) -> None:
    missing = [c for c in cols if c not in data.columns]
    if missing:
        raise KeyError(f"{what}: column(s) {missing} not in the data (columns: {list(data.columns)})")


def _aggregate(data: pd.DataFrame, keys: list[str], events: str, n: str | None) -> pd.DataFrame:
    """Sum events and n over keys. n=None: one row = one person (n counts rows)."""
    _require(data, keys + [events] + ([n] if n else []), "aggregate")
    d = data[keys + [events] + ([n] if n else [])].copy()
    if d[keys].isna().any().any():
        bad = [k for k in keys if d[k].isna().any()]
        raise ValueError(f"missing values in grouping column(s) {bad}; drop or recode them first")
    ev = pd.to_numeric(d[events], errors="coerce")
    if ev.isna().any():
        raise ValueError(f"column {events!r} has missing or non-numeric values; drop ineligible rows first")
    d["_events"] = ev.astype(float)
    d["_n"] = 1.0 if n is None else pd.to_numeric(d[n], errors="coerce").astype(float)
    if d["_n"].isna().any() or (d["_n"] < 0).any():
        raise ValueError(f"column {n!r} has missing or negative values")
    if (d["_events"] < 0).any():
        raise ValueError(f"column {events!r} has negative values")
    g = d.groupby(keys, sort=True, observed=True)[["_events", "_n"]].sum().reset_index()
    return g.rename(columns={"_events": "events", "_n": "n"})


def wilson_ci(events, n, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval for a binomial proportion events/n (arrays); NaN where n == 0."""
    x = np.asarray(events, dtype=float)
    m = np.asarray(n, dtype=float)
    z = stats.norm.ppf(0.5 + level / 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = x / m
        denom = 1 + z**2 / m
        centre = (p + z**2 / (2 * m)) / denom
        half = z * np.sqrt(p * (1 - p) / m + z**2 / (4 * m**2)) / denom
        lo = np.where(m > 0, np.clip(centre - half, 0, 1), np.nan)
        hi = np.where(m > 0, np.clip(centre + half, 0, 1), np.nan)
    return lo, hi


def _poisson_ci(observed, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Exact (Garwood, chi-square) interval for a Poisson count."""
    o = np.asarray(observed, dtype=float)
    a = 1 - level
    lo = np.where(o > 0, stats.chi2.ppf(a / 2, 2 * o) / 2, 0.0)
    hi = stats.chi2.ppf(1 - a / 2, 2 * (o + 1)) / 2
    return lo, hi


# --------------------------------------------------------------------------------------------------
# standardisation
# --------------------------------------------------------------------------------------------------
def direct_standardise(
    data: pd.DataFrame,
    unit: str | Sequence[str],
    strata: str | Sequence[str],
    events: str,
    n: str | None = None,
    standard: pd.DataFrame | pd.Series | None = None,
    level: float = 0.95,
    per: float = 1.0,
) -> pd.DataFrame:
    """Direct standardisation of rates (or proportions) to a fixed standard population, per unit.

    data: person-level rows (n=None: each row is one person, `events` 0/1) or aggregated rows with an
      event count column `events` and a denominator column `n` (persons or person-years).
    unit: unit column(s), e.g. "referral_area" (or ["referral_area", "year"]).
    strata: standardisation strata, e.g. ["sex", "age_band5"].
    standard: the standard population: a DataFrame with the strata columns and a column `weight`
      (or `n`), or a Series indexed by the strata. None = the pooled stratum distribution of `data`
      (the total denominator per stratum over all units).
    per: multiplier of the reported rates (1 = proportion; 1000 = per 1,000).

    Returns one row per unit, sorted: unit column(s), events, n, crude_rate, std_rate, se, lower, upper,
    strata_empty (standard strata with weight > 0 but n = 0 in the unit; they contribute rate 0).
    The CI is the gamma interval of Fay & Feuer (Stat Med 1997), as R's epitools::ageadjust.direct:
    with w_j = W_j / (n_j sum W), y = sum w_j d_j, v = sum w_j^2 d_j, wm = max_j w_j:
    lower = v/(2y) chi2_{a/2}(2y^2/v), upper = (v+wm^2)/(2(y+wm)) chi2_{1-a/2}(2(y+wm)^2/(v+wm^2));
    se = sqrt(v). Rates are events per one unit of n (times `per`).
    """
    units, strata = _as_list(unit), _as_list(strata)
    if not strata:
        raise ValueError("direct_standardise needs at least one stratum column")
    g = _aggregate(data, units + strata, events, n)
    if standard is None:
        std = g.groupby(strata, sort=True, observed=True)["n"].sum().rename("weight").reset_index()
    elif isinstance(standard, pd.Series):
        std = standard.rename("weight").reset_index()
    else:
        col = "weight" if "weight" in standard.columns else "n"
        _require(standard, strata + [col], "standard population")
        std = standard[strata + [col]].rename(columns={col: "weight"})
    if std.duplicated(strata).any():
        raise ValueError("standard population has duplicated strata")
    if (std["weight"] < 0).any() or std["weight"].sum() <= 0:
        raise ValueError("standard population weights must be non-negative with a positive sum")
    std = std[std["weight"] > 0].copy()
    std["weight"] = std["weight"] / std["weight"].sum()
    unknown = g.merge(std[strata], on=strata, how="left", indicator=True)
    unknown = unknown[(unknown["_merge"] == "left_only") & (unknown["n"] > 0)]
    if len(unknown):
        raise ValueError(f"{len(unknown)} unit x stratum rows fall in strata absent from the standard "
                         f"population, e.g. {unknown[strata].iloc[0].to_dict()}")
    # full grid unit x standard stratum
    ulist = g[units].drop_duplicates().sort_values(units).reset_index(drop=True)
    grid = ulist.merge(std, how="cross").merge(g, on=units + strata, how="left")
    grid[["events", "n"]] = grid[["events", "n"]].fillna(0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        grid["w"] = np.where(grid["n"] > 0, grid["weight"] / grid["n"], 0.0)
    grid["wd"] = grid["w"] * grid["events"]
    grid["w2d"] = grid["w"] ** 2 * grid["events"]
    grid["empty"] = (grid["n"] == 0).astype(int)
    agg = grid.groupby(units, sort=True).agg(
        events=("events", "sum"), n=("n", "sum"), y=("wd", "sum"), v=("w2d", "sum"),
        wm=("w", "max"), strata_empty=("empty", "sum")).reset_index()
    a = 1 - level
    y, v, wm = agg["y"].to_numpy(), agg["v"].to_numpy(), agg["wm"].to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        lower = np.where(y > 0, v / (2 * y) * stats.chi2.ppf(a / 2, 2 * y**2 / v), 0.0)
        upper = (v + wm**2) / (2 * (y + wm)) * stats.chi2.ppf(1 - a / 2, 2 * (y + wm) ** 2 / (v + wm**2))
        crude = agg["events"] / agg["n"]
    out = agg[units].copy()
    out["events"] = agg["events"]
    out["n"] = agg["n"]
    out["crude_rate"] = crude * per
    out["std_rate"] = y * per
    out["se"] = np.sqrt(v) * per
    out["lower"] = lower * per
    out["upper"] = upper * per
    out["strata_empty"] = agg["strata_empty"].astype(int)
    return out.reset_index(drop=True)


def indirect_standardise(
    data: pd.DataFrame,
    unit: str | Sequence[str],
    strata: str | Sequence[str],
    events: str,
    n: str | None = None,
    reference: pd.DataFrame | pd.Series | None = None,
    level: float = 0.95,
    per: float = 1.0,
) -> pd.DataFrame:
    """Indirect standardisation: observed vs expected events per unit from reference stratum rates.

    data: person-level rows (n=None: each row one person, `events` 0/1) or aggregated rows with
      counts `events` and denominators `n` (persons or person-years).
    strata: stratum columns, e.g. ["sex", "age_band5"] (may be empty: expected = n * overall rate).
    reference: reference rates per stratum: a DataFrame with the strata columns and a column `rate`,
      or a Series indexed by strata. None = the pooled rates of `data` itself (internal standard).

    Returns one row per unit (sorted): unit column(s), observed, expected, n, oe (= O/E), oe_lower,
    oe_upper (exact Poisson interval of O, divided by E), crude (O/n), std_rate (= O/E x overall
    reference rate, the indirectly standardised rate) with lower/upper, all times `per`.
    The overall reference rate is sum(expected)/sum(n) over all units.
    """
    units, strata = _as_list(unit), _as_list(strata)
    g = _aggregate(data, units + strata, events, n)
    if reference is None:
        if strata:
            ref = g.groupby(strata, sort=True, observed=True)[["events", "n"]].sum()
            ref = (ref["events"] / ref["n"]).rename("rate").reset_index()
        else:
            ref = None
            overall = g["events"].sum() / g["n"].sum()
    elif isinstance(reference, pd.Series):
        ref = reference.rename("rate").reset_index()
    else:
        _require(reference, strata + ["rate"], "reference rates")
        ref = reference[strata + ["rate"]]
    if strata:
        m = g.merge(ref, on=strata, how="left")
        miss = m["rate"].isna() & (m["n"] > 0)
        if miss.any():
            raise ValueError(f"no reference rate for stratum {m.loc[miss, strata].iloc[0].to_dict()}")
        m["expected"] = m["n"] * m["rate"].fillna(0.0)
    else:
        m = g.copy()
        if reference is not None:
            raise ValueError("reference rates need strata columns")
        m["expected"] = m["n"] * overall
    agg = m.groupby(units, sort=True).agg(observed=("events", "sum"), expected=("expected", "sum"),
                                          n=("n", "sum")).reset_index()
    return _oe_frame(agg, units, level, per, ref_rate=agg["expected"].sum() / agg["n"].sum())


def observed_expected(
    data: pd.DataFrame,
    unit: str | Sequence[str],
    outcome: str,
    expected: str | np.ndarray | pd.Series,
    level: float = 0.95,
    per: float = 1.0,
) -> pd.DataFrame:
    """O/E per unit from per-patient expected probabilities (e.g. a case-mix logistic model).

    outcome: 0/1 column. expected: column name or array of per-row predicted probabilities.
    Returns the same columns as `indirect_standardise`; std_rate = O/E x national observed rate
    (the indirectly standardised proportion), with the O/E interval (exact Poisson on O) carried over.
    """
    units = _as_list(unit)
    d = data[units + [outcome]].copy()
    d["_e"] = data[expected].to_numpy(float) if isinstance(expected, str) else np.asarray(expected, float)
    if d["_e"].isna().any() or d[outcome].isna().any():
        raise ValueError("observed_expected: missing outcome or expected values; drop ineligible rows first")
    agg = d.groupby(units, sort=True).agg(observed=(outcome, "sum"), expected=("_e", "sum"),
                                          n=(outcome, "size")).reset_index()
    agg["observed"] = agg["observed"].astype(float)
    agg["n"] = agg["n"].astype(float)
    return _oe_frame(agg, units, level, per, ref_rate=agg["observed"].sum() / agg["n"].sum())


def _oe_frame(agg: pd.DataFrame, units: list[str], level: float, per: float, ref_rate: float) -> pd.DataFrame:
    lo, hi = _poisson_ci(agg["observed"], level)
    e = agg["expected"].to_numpy(float)
    out = agg[units].copy()
    out["observed"] = agg["observed"].to_numpy(float)
    out["expected"] = e
    out["n"] = agg["n"].to_numpy(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        out["oe"] = out["observed"] / e
        out["oe_lower"] = lo / e
        out["oe_upper"] = hi / e
        out["crude"] = out["observed"] / out["n"] * per
    out["std_rate"] = out["oe"] * ref_rate * per
    out["lower"] = out["oe_lower"] * ref_rate * per
    out["upper"] = out["oe_upper"] * ref_rate * per
    return out.reset_index(drop=True)


# --------------------------------------------------------------------------------------------------
# atlas variation statistics
# --------------------------------------------------------------------------------------------------
def scv(observed, expected) -> float:
    """Systematic component of variation (McPherson et al. 1982; health atlases), in percent:

    SCV = 100 * (1/k) * [sum((y - e)^2 / e^2) - sum(1 / e)], over k units with observed counts y and
    expected counts e (from reference rates, e.g. indirect standardisation). Can be negative
    (less variation than chance); units with e <= 0 are an error.
    """
    y = np.asarray(observed, dtype=float)
    e = np.asarray(expected, dtype=float)
    if y.shape != e.shape or y.ndim != 1 or len(y) == 0:
        raise ValueError("scv: observed and expected must be equal-length, non-empty 1-D arrays")
    if np.any(~np.isfinite(e)) or np.any(e <= 0) or np.any(~np.isfinite(y)):
        raise ValueError("scv: expected counts must be positive and finite, observed finite")
    k = len(y)
    return float(100.0 / k * (np.sum((y - e) ** 2 / e**2) - np.sum(1.0 / e)))


def _finite_sorted(values) -> np.ndarray:
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    return np.sort(v)


def eq(values) -> float:
    """Extremal quotient: max / min of the unit rates (NaN ignored; inf if min is 0)."""
    v = _finite_sorted(values)
    if len(v) < 2:
        return float("nan")
    return float(v[-1] / v[0]) if v[0] > 0 else float("inf")


def eq2(values) -> float:
    """Extremal quotient of the 2nd highest to the 2nd lowest rate (robust to one outlier each side)."""
    v = _finite_sorted(values)
    if len(v) < 4:
        return float("nan")
    return float(v[-2] / v[1]) if v[1] > 0 else float("inf")


def cv(values, ddof: int = 1) -> float:
    """Coefficient of variation in percent: 100 * SD / mean (sample SD, ddof=1 by default)."""
    v = _finite_sorted(values)
    if len(v) < 2:
        return float("nan")
    return float(100.0 * np.std(v, ddof=ddof) / np.mean(v))


def atlas_statistics(rates, observed=None, expected=None) -> pd.DataFrame:
    """The health atlases' variation statistics across units as a tidy frame (statistic, value).

    rates: (standardised) unit rates -> EQ, EQ2, CV (%); observed/expected counts -> SCV (%).
    An annotated result of statistics (hipfrac.results.statistics): summaries across units, no count of
    persons. min and max are single units' rates: pass the rates of the published (protected) units, NaN
    for a withheld one (ignored), so that they never reveal a withheld rate.
    """
    rows = [("k", float(len(_finite_sorted(rates)))), ("min", float(np.nanmin(rates))),
            ("max", float(np.nanmax(rates))), ("eq", eq(rates)), ("eq2", eq2(rates)), ("cv", cv(rates))]
    if observed is not None and expected is not None:
        rows.append(("scv", scv(observed, expected)))
    from hipfrac import results

    return results.statistics(pd.DataFrame(rows, columns=["statistic", "value"]), labels=["statistic"])


# --------------------------------------------------------------------------------------------------
# funnel plots (Spiegelhalter, Stat Med 2005) and overdispersion (Spiegelhalter, QSHC 2005)
# --------------------------------------------------------------------------------------------------
def _level_name(level: float) -> str:
    return f"{100 * level:.10g}"


def funnel_limits(n, target: float, levels: Sequence[float] = (0.95, 0.998),
                  method: str = "quantile") -> pd.DataFrame:
    """Exact binomial control limits for a proportion around `target`, one row per n.

    n: denominators (scalar or array). target: the proportion the limits are drawn around (a guideline
      target or the national value), in (0, 1).
    levels: two-sided coverage levels; each gives columns lower_<100*level>, upper_<100*level>
      (e.g. lower_95, upper_95, lower_99.8, upper_99.8), as proportions.
    method: "quantile" (default): limits are the binomial quantiles divided by n,
      lower = qbinom(a/2, n, target)/n and upper = qbinom(1 - a/2, n, target)/n with a = 1 - level
      (R's qbinom: smallest r with P(X <= r) >= p). A unit with r events is outside when
      r/n < lower or r/n > upper. "interpolated": Spiegelhalter's (2005, appendix) smoothing of the
      step function, r_p - alpha with alpha = (F(r_p) - p) / (F(r_p) - F(r_p - 1)), divided by n.
    """
    if not 0 < target < 1:
        raise ValueError(f"funnel_limits: target must be a proportion in (0, 1), got {target}")
    if method not in ("quantile", "interpolated"):
        raise ValueError(f"funnel_limits: method must be 'quantile' or 'interpolated', got {method!r}")
    nn = np.atleast_1d(np.asarray(n, dtype=float))
    if np.any(nn <= 0) or np.any(nn != np.round(nn)):
        raise ValueError("funnel_limits: n must be positive integers")
    out = pd.DataFrame({"n": nn.astype(int), "target": float(target)})
    for level in levels:
        if not 0 < level < 1:
            raise ValueError(f"funnel_limits: level must be in (0, 1), got {level}")
        a = 1 - level
        name = _level_name(level)
        for side, p in (("lower", a / 2), ("upper", 1 - a / 2)):
            r = stats.binom.ppf(p, nn, target)
            if method == "interpolated":
                f_r = stats.binom.cdf(r, nn, target)
                f_rm1 = stats.binom.cdf(r - 1, nn, target)
                with np.errstate(divide="ignore", invalid="ignore"):
                    alpha = np.where(f_r > f_rm1, (f_r - p) / (f_r - f_rm1), 0.0)
                r = np.clip(r - alpha, 0, nn)
            out[f"{side}_{name}"] = r / nn
    return out


def overdispersion(events, n, target: float, winsor: float = 0.1) -> dict:
    """Overdispersion of unit proportions around `target` (Spiegelhalter, QSHC 2005;14:347-51).

    z_i = (y_i - t) / s_i with y_i = events/n, s_i = sqrt(t(1-t)/n_i); z Winsorised at the `winsor`
    and 1-`winsor` quantiles of z (default 10 % each side); phi = mean(z_w^2).
    Additive random-effects: tau2 = (k phi - (k - 1)) / (sum w - sum w^2 / sum w), w = 1/s^2, set to 0
    when k phi <= k - 1. The test of no overdispersion compares k phi with chi2(k - 1).
    Returns dict: k, phi, tau2, chi2, df, p_value, z (array), z_winsorised (array).
    """
    y = np.asarray(events, dtype=float)
    m = np.asarray(n, dtype=float)
    keep = m > 0
    y, m = y[keep], m[keep]
    k = len(m)
    if k < 2:
        raise ValueError("overdispersion needs at least two units with n > 0")
    s = np.sqrt(target * (1 - target) / m)
    z = (y / m - target) / s
    lo, hi = np.quantile(z, [winsor, 1 - winsor])
    zw = np.clip(z, lo, hi)
    phi = float(np.mean(zw**2))
    w = 1 / s**2
    tau2 = max(0.0, (k * phi - (k - 1)) / (w.sum() - (w**2).sum() / w.sum()))
    chi2 = k * phi
    return {"k": k, "phi": phi, "tau2": float(tau2), "chi2": float(chi2), "df": k - 1,
            "p_value": float(stats.chi2.sf(chi2, k - 1)), "z": z, "z_winsorised": zw}


def overdispersed_limits(n, target: float, phi: float = 1.0, tau2: float = 0.0,
                         levels: Sequence[float] = (0.95, 0.998), model: str = "multiplicative") -> pd.DataFrame:
    """Normal-approximation funnel limits inflated for overdispersion, one row per n.

    model "multiplicative": t +- z_a sqrt(phi t(1-t)/n) (phi < 1 is not used to narrow: max(phi, 1));
    model "additive": t +- z_a sqrt(t(1-t)/n + tau2). Columns as in `funnel_limits`, clipped to [0, 1].
    """
    nn = np.atleast_1d(np.asarray(n, dtype=float))
    s2 = target * (1 - target) / nn
    if model == "multiplicative":
        var = max(phi, 1.0) * s2
    elif model == "additive":
        var = s2 + tau2
    else:
        raise ValueError(f"model must be 'multiplicative' or 'additive', got {model!r}")
    out = pd.DataFrame({"n": nn.astype(int), "target": float(target)})
    for level in levels:
        zq = stats.norm.ppf(0.5 + level / 2)
        name = _level_name(level)
        out[f"lower_{name}"] = np.clip(target - zq * np.sqrt(var), 0, 1)
        out[f"upper_{name}"] = np.clip(target + zq * np.sqrt(var), 0, 1)
    return out


def funnel_table(data: pd.DataFrame, unit: str | Sequence[str], events: str, n: str | None = None,
                 target: float | None = None, levels: Sequence[float] = (0.95, 0.998),
                 winsor: float = 0.1, method: str = "quantile") -> tuple[pd.DataFrame, dict]:
    """Per-unit funnel statistics for a 0/1 outcome (person rows, n=None) or counts (events, n).

    target: the centre line (guideline target or national value); None = the pooled proportion.
    Returns (frame, info). frame, one row per unit (sorted): unit column(s), events, n, prop, z,
    for each level: outside_<L> ("high", "low" or "" against the exact binomial limits) and, for the
    overdispersion-adjusted limits, z_mult (= z / sqrt(phi)), z_add (= (prop - t)/sqrt(s^2 + tau2)),
    outside_mult_<L>, outside_add_<L>. info: target, phi, tau2, p_value of overdispersion, k.
    """
    units = _as_list(unit)
    g = _aggregate(data, units, events, n)
    if target is None:
        target = float(g["events"].sum() / g["n"].sum())
    g = g[g["n"] > 0].reset_index(drop=True)
    od = overdispersion(g["events"], g["n"], target, winsor=winsor)
    lim = funnel_limits(g["n"].round().astype(int), target, levels, method=method)
    g["prop"] = g["events"] / g["n"]
    s = np.sqrt(target * (1 - target) / g["n"])
    g["z"] = (g["prop"] - target) / s
    g["z_mult"] = g["z"] / np.sqrt(max(od["phi"], 1.0))
    g["z_add"] = (g["prop"] - target) / np.sqrt(s**2 + od["tau2"])
    for level in levels:
        name = _level_name(level)
        lo, hi = lim[f"lower_{name}"].to_numpy(), lim[f"upper_{name}"].to_numpy()
        g[f"lower_{name}"], g[f"upper_{name}"] = lo, hi
        g[f"outside_{name}"] = np.where(g["prop"] > hi, "high", np.where(g["prop"] < lo, "low", ""))
        zq = stats.norm.ppf(0.5 + level / 2)
        for col in ("mult", "add"):
            zc = g[f"z_{col}"]
            g[f"outside_{col}_{name}"] = np.where(zc > zq, "high", np.where(zc < -zq, "low", ""))
    info = {"target": float(target), "phi": od["phi"], "tau2": od["tau2"], "p_value": od["p_value"],
            "k": od["k"]}
    return g, info


# --------------------------------------------------------------------------------------------------
# random-intercept logistic regression (maximum likelihood, Laplace / adaptive Gauss-Hermite)
# --------------------------------------------------------------------------------------------------
Z75 = stats.norm.ppf(0.75)


def mor_from_sigma2(sigma2):
    """Median odds ratio (Larsen & Merlo, Am J Epidemiol 2005): exp(sqrt(2 sigma2) * Phi^-1(0.75))."""
    return np.exp(np.sqrt(2 * np.asarray(sigma2, dtype=float)) * Z75)


def design_matrix(data: pd.DataFrame, covariates: Sequence[str]) -> pd.DataFrame:
    """Fixed-effects design: an `Intercept` column, numeric/bool covariates as they are, string or
    categorical covariates dummy-coded against their first level (the first category of a pandas
    Categorical, otherwise the first in sorted order), named like `asa_group[3]`."""
    cols = {"Intercept": np.ones(len(data))}
    for c in covariates:
        s = data[c]
        if isinstance(s.dtype, pd.CategoricalDtype):
            levels = [lv for lv in s.cat.categories if (s == lv).any()]
        elif pd.api.types.is_bool_dtype(s) or pd.api.types.is_numeric_dtype(s):
            cols[c] = s.to_numpy(dtype=float)
            continue
        else:
            levels = sorted(s.dropna().astype(str).unique())
        sv = s.astype(str)
        for lv in levels[1:]:
            cols[f"{c}[{lv}]"] = (sv == str(lv)).to_numpy(dtype=float)
    return pd.DataFrame(cols, index=data.index)


class RandomInterceptFit:
    """Result of `random_intercept_logit` (lifelines-like: attributes plus a tidy `summary`).

    sigma2: between-unit variance of the random intercept (log-odds scale); sigma = sqrt(sigma2).
    mor, mor_ci: median odds ratio and its CI (from the profile-likelihood or Wald CI of sigma).
    sigma2_ci: CI of sigma2. params: fixed effects (log-odds) with se, z, p, lower, upper, or_.
    unit_effects: per unit: group, n, events, effect (conditional mode of the intercept deviation,
      log-odds), se (conditional SD), lower, upper, odds_ratio, or_lower, or_upper, rank.
    loglik, aic, n_obs, n_groups, n_dropped (rows dropped for missing values), nagq, converged.
    """

    def __init__(self, **kw):
        self.__dict__.update(kw)

    @property
    def summary(self) -> pd.DataFrame:
        """Fixed effects and variance component in one tidy frame (term, estimate, se, lower, upper)."""
        p = self.params[["term", "estimate", "se", "lower", "upper"]].copy()
        extra = pd.DataFrame([
            {"term": "sigma2[" + self.group + "]", "estimate": self.sigma2, "se": np.nan,
             "lower": self.sigma2_ci[0], "upper": self.sigma2_ci[1]},
            {"term": "mor[" + self.group + "]", "estimate": self.mor, "se": np.nan,
             "lower": self.mor_ci[0], "upper": self.mor_ci[1]},
        ])
        return pd.concat([p, extra], ignore_index=True)

    def __repr__(self) -> str:
        return (f"<RandomInterceptFit {self.outcome} ~ {' + '.join(self.covariates) or '1'} + (1|{self.group}): "
                f"sigma2={self.sigma2:.4g}, MOR={self.mor:.4g}, n={self.n_obs}, groups={self.n_groups}>")


class _RILogitLik:
    """Marginal log-likelihood of a random-intercept logit on aggregated binomial rows."""

    def __init__(self, X: np.ndarray, y: np.ndarray, m: np.ndarray, g: np.ndarray, n_groups: int, nagq: int,
                 off: np.ndarray | None = None):
        self.X, self.y, self.m, self.g, self.G = X, y, m, g, n_groups
        self.off = np.zeros(len(y)) if off is None else off
        if np.any(np.diff(g) < 0) or len(np.unique(g)) != n_groups:
            raise ValueError("rows must be sorted by group and every group present")
        self.starts = np.searchsorted(g, np.arange(n_groups))
        self.nagq = nagq
        self.b = np.zeros(n_groups)
        if nagq > 1:
            x, w = np.polynomial.hermite.hermgauss(nagq)
            self.gh_x, self.gh_logw = x, np.log(w)

    def _modes(self, eta0: np.ndarray, s2: float, b: np.ndarray):
        """Conditional modes of the unit intercepts (vectorised Newton), and -g'' at the mode."""
        for _ in range(100):
            p = _expit(eta0 + b[self.g])
            grad = np.bincount(self.g, self.y - self.m * p, self.G) - b / s2
            h = np.bincount(self.g, self.m * p * (1 - p), self.G) + 1 / s2
            step = grad / h
            step = np.clip(step, -5, 5)
            b = b + step
            if np.max(np.abs(step)) < 1e-10:
                break
        p = _expit(eta0 + b[self.g])
        h = np.bincount(self.g, self.m * p * (1 - p), self.G) + 1 / s2
        return b, p, h

    def _cond_loglik(self, eta: np.ndarray) -> np.ndarray:
        """Sum over rows of each group of y*eta - m*log(1 + e^eta) (binomial coefficient omitted)."""
        return np.bincount(self.g, self.y * eta - self.m * np.logaddexp(0, eta), self.G)

    def loglik(self, beta: np.ndarray, tau: float, grad: bool = False):
        """Log-likelihood at fixed effects beta and tau = log(sigma); with its gradient if grad."""
        s2 = np.exp(2 * tau)
        eta0 = self.X @ beta + self.off
        b, p, h = self._modes(eta0, s2, self.b.copy())
        self.b = b
        if self.nagq <= 1:
            ll_g = self._cond_loglik(eta0 + b[self.g]) - b**2 / (2 * s2) - 0.5 * np.log(s2 * h)
        else:
            sd = np.sqrt(2 / h)
            ll_k = []
            for xk, lwk in zip(self.gh_x, self.gh_logw):
                bk = b + sd * xk
                ll_k.append(lwk + xk**2 + self._cond_loglik(eta0 + bk[self.g]) - bk**2 / (2 * s2))
            ll_g = (np.logaddexp.reduce(np.vstack(ll_k), axis=0) + np.log(sd)
                    - 0.5 * np.log(2 * np.pi * s2))
        ll = float(ll_g.sum())
        if not grad:
            return ll
        if self.nagq > 1:
            raise ValueError("analytic gradient only for the Laplace approximation")
        # exact gradient of the Laplace approximation (envelope theorem at the mode + d log h)
        X, m = self.X, self.m
        w = m * p * (1 - p)
        w3 = w * (1 - 2 * p)
        # group sums of w x and w3 x (rows are sorted by group: one reduceat each)
        sx = np.add.reduceat(w[:, None] * X, self.starts, axis=0)
        db_dbeta = -sx / h[:, None]                                   # G x p
        s3 = np.add.reduceat(w3, self.starts)
        s3x = np.add.reduceat(w3[:, None] * X, self.starts, axis=0)
        dh_dbeta = s3x + s3[:, None] * db_dbeta
        gbeta = X.T @ (self.y - m * p) - 0.5 * (dh_dbeta / h[:, None]).sum(axis=0)
        db_dtau = 2 * b / (s2 * h)
        dh_dtau = -2 / s2 + s3 * db_dtau
        gtau = float(np.sum(b**2 / s2 - 1 - 0.5 * dh_dtau / h))
        return ll, np.append(gbeta, gtau)


def _expit(x):
    return 0.5 * (1 + np.tanh(0.5 * x))


def random_intercept_logit(
    data: pd.DataFrame,
    outcome: str,
    group: str,
    covariates: Sequence[str] = (),
    nagq: int = 1,
    level: float = 0.95,
    ci: str = "profile",
    offset: str | None = None,
) -> RandomInterceptFit:
    """Random-intercept logistic regression by maximum likelihood: logit P(y=1) = x'beta + u_group,
    u ~ N(0, sigma2).

    data: one row per patient; outcome a 0/1 column; group the unit column (e.g. "hospital");
    covariates: column names (numeric used as is, strings dummy-coded against their first level).
    Rows with a missing outcome, group or covariate are dropped and counted (`n_dropped`).
    nagq: 1 = Laplace approximation (as lme4::glmer nAGQ=1, with an exact analytic gradient);
      > 1 = adaptive Gauss-Hermite quadrature with nagq nodes per unit (numerical gradient).
    ci: "profile" (profile-likelihood interval for sigma, chi2(1) cut-off; the lower limit is 0 when
      the cut-off is not reached before sigma = 0) or "wald" (Wald on log sigma).
    offset: optional column of fixed per-patient log-odds (e.g. the linear predictor of a case-mix
      model, for a fast two-stage fit); added to x'beta.
    Rows are aggregated to unit x covariate pattern (binomial counts) before fitting.
    Returns a `RandomInterceptFit` (sigma2, mor, mor_ci, params, unit_effects, summary).
    """
    from scipy import optimize

    covariates = list(covariates)
    _require(data, [outcome, group] + covariates, "random_intercept_logit")
    if offset is not None:
        _require(data, [offset], "random_intercept_logit offset")
    d = data[[outcome, group] + covariates + ([offset] if offset else [])]
    keep = d.notna().all(axis=1)
    n_dropped = int((~keep).sum())
    d = d[keep]
    y_raw = pd.to_numeric(d[outcome], errors="coerce")
    if not y_raw.isin([0, 1]).all():
        raise ValueError(f"outcome {outcome!r} must be 0/1")
    if len(d) == 0:
        raise ValueError("random_intercept_logit: no complete rows")
    X = design_matrix(d, covariates)
    const = [c for c in X.columns[1:] if X[c].nunique() <= 1]
    if const:
        raise ValueError(f"covariate term(s) {const} are constant among the complete rows")
    terms = list(X.columns)
    # aggregate to group x covariate pattern
    agg = X.copy()
    agg["_g"] = d[group].astype(str).to_numpy()
    agg["_y"] = y_raw.to_numpy(float)
    agg["_off"] = d[offset].to_numpy(float) if offset else 0.0
    agg = agg.groupby(["_g"] + terms + ["_off"], sort=True).agg(_y=("_y", "sum"), _m=("_y", "size")).reset_index()
    groups = sorted(agg["_g"].unique())
    gcode = pd.Categorical(agg["_g"], categories=groups).codes.astype(np.int64)
    Xa = agg[terms].to_numpy(float)
    ya = agg["_y"].to_numpy(float)
    ma = agg["_m"].to_numpy(float)
    off = agg["_off"].to_numpy(float)
    lik = _RILogitLik(Xa, ya, ma, gcode, len(groups), nagq, off)

    # start: ordinary logistic regression (few Newton steps), sigma = 0.3
    beta0 = np.zeros(len(terms))
    pbar = ya.sum() / ma.sum()
    beta0[0] = np.log(pbar / (1 - pbar)) if 0 < pbar < 1 else 0.0
    for _ in range(25):
        pr = _expit(Xa @ beta0 + off)
        H = (Xa * (ma * pr * (1 - pr))[:, None]).T @ Xa
        step = np.linalg.lstsq(H, Xa.T @ (ya - ma * pr), rcond=None)[0]
        beta0 = beta0 + step
        if np.max(np.abs(step)) < 1e-8:
            break
    tau_lo = np.log(1e-4)
    theta0 = np.append(beta0, np.log(0.3))
    k = len(terms)

    if nagq <= 1:
        def fun(th):
            ll, gr = lik.loglik(th[:k], th[k], grad=True)
            return -ll, -gr
        jac = True
    else:
        def fun(th):
            return -lik.loglik(th[:k], th[k])
        jac = None
    bounds = [(None, None)] * k + [(tau_lo, np.log(20.0))]
    res = optimize.minimize(fun, theta0, jac=jac, method="L-BFGS-B", bounds=bounds,
                            options={"maxiter": 2000, "ftol": 1e-14, "gtol": 1e-7})
    theta = res.x
    beta, tau = theta[:k], float(theta[k])
    ll_max = lik.loglik(beta, tau)

    # covariance of (beta, tau) from the numerical Hessian of the log-likelihood (central differences
    # of the analytic gradient for Laplace; second differences of the log-likelihood otherwise)
    if nagq <= 1:
        hess = _num_hessian_grad(lambda th: lik.loglik(th[:k], th[k], grad=True)[1], theta)
    else:
        hess = _num_hessian(lambda th: lik.loglik(th[:k], th[k]), theta)
    at_boundary = tau <= tau_lo + 1e-6
    try:
        if at_boundary:
            cov_b = np.linalg.inv(-hess[:k, :k])
            cov = np.full((k + 1, k + 1), np.nan)
            cov[:k, :k] = cov_b
        else:
            cov = np.linalg.inv(-hess)
    except np.linalg.LinAlgError:
        cov = np.full((k + 1, k + 1), np.nan)
    se = np.sqrt(np.clip(np.diag(cov), 0, None))
    zq = stats.norm.ppf(0.5 + level / 2)
    params = pd.DataFrame({"term": terms, "estimate": beta, "se": se[:k]})
    params["z"] = params["estimate"] / params["se"]
    params["p"] = 2 * stats.norm.sf(np.abs(params["z"]))
    params["lower"] = params["estimate"] - zq * params["se"]
    params["upper"] = params["estimate"] + zq * params["se"]
    with np.errstate(over="ignore"):   # a diverging (separated) coefficient has odds ratio inf
        params["or_"] = np.exp(params["estimate"])

    sigma = float(np.exp(tau)) if not at_boundary else 0.0
    # CI of sigma
    if ci == "wald":
        if at_boundary or not np.isfinite(se[k]):
            sig_ci = (0.0, np.nan)
        else:
            sig_ci = (float(np.exp(tau - zq * se[k])), float(np.exp(tau + zq * se[k])))
    elif ci == "profile":
        sig_ci = _profile_sigma(lik, beta, tau, ll_max, k, level, tau_lo)
    else:
        raise ValueError(f"ci must be 'profile' or 'wald', got {ci!r}")
    sigma2 = sigma**2
    # conditional modes and SDs at the estimate
    b, _, h = lik._modes(Xa @ beta + off, max(sigma2, np.exp(2 * tau_lo)), np.zeros(len(groups)))
    if at_boundary:
        b = np.zeros_like(b)
    csd = 1 / np.sqrt(h)
    gsum = agg.groupby("_g", sort=True).agg(n=("_m", "sum"), events=("_y", "sum"))
    ue = pd.DataFrame({"group": groups, "n": gsum["n"].to_numpy(int), "events": gsum["events"].to_numpy(int),
                       "effect": b, "se": csd})
    ue["lower"] = ue["effect"] - zq * ue["se"]
    ue["upper"] = ue["effect"] + zq * ue["se"]
    with np.errstate(over="ignore"):
        ue["odds_ratio"] = np.exp(ue["effect"])
        ue["or_lower"] = np.exp(ue["lower"])
        ue["or_upper"] = np.exp(ue["upper"])
    ue["rank"] = ue["effect"].rank(method="first").astype(int)
    ue["outside"] = np.where(ue["lower"] > 0, "high", np.where(ue["upper"] < 0, "low", ""))
    return RandomInterceptFit(
        outcome=outcome, group=group, covariates=covariates, nagq=nagq,
        sigma2=sigma2, sigma=sigma, sigma2_ci=(sig_ci[0] ** 2, sig_ci[1] ** 2),
        mor=float(mor_from_sigma2(sigma2)), mor_ci=(float(mor_from_sigma2(sig_ci[0] ** 2)),
                                                     float(mor_from_sigma2(sig_ci[1] ** 2))),
        params=params, unit_effects=ue, loglik=ll_max, aic=-2 * ll_max + 2 * (k + 1),
        n_obs=int(ma.sum()), n_groups=len(groups), n_dropped=n_dropped,
        converged=bool(res.success), cov=cov, terms=terms,
    )


def _num_hessian(f, x: np.ndarray, eps: float = 1e-4) -> np.ndarray:
    n = len(x)
    H = np.zeros((n, n))
    for i in range(n):
        for j in range(i, n):
            ei = np.zeros(n)
            ej = np.zeros(n)
            ei[i] = eps
            ej[j] = eps
            H[i, j] = H[j, i] = (f(x + ei + ej) - f(x + ei - ej) - f(x - ei + ej) + f(x - ei - ej)) / (4 * eps**2)
    return H


def _num_hessian_grad(grad, x: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    n = len(x)
    H = np.zeros((n, n))
    for i in range(n):
        e = np.zeros(n)
        e[i] = eps
        H[:, i] = (grad(x + e) - grad(x - e)) / (2 * eps)
    return (H + H.T) / 2


def _profile_sigma(lik: _RILogitLik, beta: np.ndarray, tau: float, ll_max: float, k: int,
                   level: float, tau_lo: float) -> tuple[float, float]:
    """Profile-likelihood CI of sigma: tau values where 2 (ll_max - max_beta ll(beta, tau)) = chi2_level(1)."""
    from scipy import optimize

    cut = stats.chi2.ppf(level, 1) / 2
    state = {"beta": beta.copy()}

    def prof(t):
        if lik.nagq <= 1:
            def fun(bb):
                ll, gr = lik.loglik(bb, t, grad=True)
                return -ll, -gr[:k]
            r = optimize.minimize(fun, state["beta"], jac=True, method="L-BFGS-B",
                                  options={"ftol": 1e-14, "gtol": 1e-8})
        else:
            r = optimize.minimize(lambda bb: -lik.loglik(bb, t), state["beta"], method="L-BFGS-B")
        state["beta"] = r.x
        return ll_max - (-r.fun) - cut

    # upper
    hi_t = tau + 0.5
    while prof(hi_t) < 0 and hi_t < np.log(50):
        hi_t += 0.5
    state["beta"] = beta.copy()
    upper = float(np.exp(optimize.brentq(prof, tau, hi_t, xtol=1e-6)))
    # lower
    state["beta"] = beta.copy()
    if tau <= tau_lo + 1e-6 or prof(tau_lo) < 0:
        lower = 0.0
    else:
        state["beta"] = beta.copy()
        lower = float(np.exp(optimize.brentq(prof, tau_lo, tau, xtol=1e-6)))
    return lower, upper


def variance_explained(null_fit: RandomInterceptFit, adjusted_fit: RandomInterceptFit) -> float:
    """Share of the between-unit variance explained by the adjustment: 1 - sigma2_adj / sigma2_null
    (latent log-odds scale; negative when adjustment increases the unit variance)."""
    if null_fit.sigma2 <= 0:
        return float("nan")
    return float(1 - adjusted_fit.sigma2 / null_fit.sigma2)
