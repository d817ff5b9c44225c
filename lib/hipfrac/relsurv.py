"""Relative survival: expected survival, net survival, SMRs, excess hazard models, duration of excess mortality.

Hip fracture patients are old, so crude survival mixes the fracture's effect with background mortality.
These methods (from cancer registries; R package relsurv, Stata strs) separate the two by comparing each
patient with the general population of the same age, sex and calendar year (a life table).

Units (everywhere in this module)
  time        days since the fracture (follow-up time)
  age         years (float) at the fracture
  year        decimal calendar year at the fracture (e.g. 2015.5)
  lifetable   DataFrame `year, age, sex, rate`: deaths per person-year by single year of age and single
              calendar year; ages and years outside the table use its nearest (first / last) row
  rates       excess hazards are reported per person-year; person-time in years
  DAYS_PER_YEAR = 365.241 days (the convention of R's survival/relsurv rate tables), used to advance age
  and calendar year during follow-up and to convert rates per person-year to per day.

Exact integration of the population hazard
  During follow-up the attained age and calendar year advance together; the population hazard is constant
  within each age x year cell of the life table. `_Segments` cuts each patient's follow-up at every
  crossing of an age or year boundary (cell-crossing arithmetic, vectorised over patients), so each
  patient's cumulative expected hazard Lambda_i(t) is piecewise linear and exact.

Net survival (Pohar Perme, Stare & Esteve 2012; relsurv::rs.surv conventions)
  At the distinct follow-up times t_j (events and censorings; at risk at t_j means follow-up >= t_j):
    dLambda_E(t_j) = sum_i dN_i(t_j)/S_i(t_j) / sum_i Y_i(t_j)/S_i(t_j)  -  dLambda_P,w(t_j)
  with S_i the patient's expected (population) survival. relsurv integrates the weighted population
  hazard dLambda_P,w numerically (daily steps); here it is integrated exactly: within (t_{j-1}, t_j] the
  risk set R_j is fixed and Y_i lambda_i / S_i = d(1/S_i)/dt, so
    dLambda_P,w(t_j) = log( sum_{R_j} 1/S_i(t_j) ) - log( sum_{R_j} 1/S_i(t_{j-1}) ).
  Net survival is the product integral of dLambda_E: the observed part jumps at event times, the population
  part is continuous, so NS(t) = prod_{t_j <= t} (1 - sum_i dN_i/S_i / sum_i Y_i/S_i) x exp(Lambda_P,w(t)),
  exact at any t (requested times are added to the grid; the population part is integrated up to them) and
  the same whatever times are added. Var(log) = sum_j [sum_i dN_i/S_i^2] / [sum_i Y_i/S_i]^2.
  Ederer II: jumps d_j/n_j, continuous part the mean population hazard of the risk set, integrated
  (sum_{R_j} [Lambda_i(t_j) - Lambda_i(t_{j-1})] / n_j); Var(log) = sum d_j/n_j^2.
  relsurv::rs.surv (2.2-9) computes cumprod(1 - (jump - population part)) over its evaluation times instead,
  which depends on the grid (adding times changes later estimates): on colrec's patients over 80 at 10 years
  0.2658 with the requested times only, 0.2636 / 0.2634 / 0.2633 on 1 / 0.5 / 0.25-day grids, converging to
  the product integral, 0.2632 (tests/test_relsurv.py; fixtures by tests/reference/relsurv.R). On the whole
  colrec cohort (dense event times) the two agree within 1e-4.
  std_err is on the survival scale (surv x SE(log surv)); CIs are log-transformed: surv x exp(+-1.96 SE).
  The sums over patients at every t_j are accumulated without a patients x times matrix: within each
  (patient, cell, follow-up year) piece exp(Lambda_i(t)) = c exp(lambda (t - g)), expanded in powers of
  (t - g) (all terms positive; truncation < 1e-15 relative), and the coefficients are summed with
  difference arrays over the sorted times.
"""

from __future__ import annotations

import math
import time as _time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from hipfrac import curves, results

DAYS_PER_YEAR = 365.241
Z95 = float(stats.norm.ppf(0.975))

#: time-since-fracture bands for SMRs (days): 0-30 d, 30-90 d, 90 d-1 y, 1-2 y, 2-5 y, 5-10 y
SMR_BANDS_DAYS = (0.0, 30.0, 90.0, 365.25, 730.5, 1826.25, 3652.5)
SMR_BAND_LABELS = ("0-30 d", "30-90 d", "90 d-1 y", "1-2 y", "2-5 y", "5-10 y")

__all__ = [
    "DAYS_PER_YEAR",
    "LifeTable",
    "cumulative_expected_hazard",
    "expected_survival",
    "net_survival",
    "net_survival_by",
    "split_followup",
    "life_years_lost",
    "crude_probability",
    "FlexibleExcessHazardFitter",
    "life_years_lost_groups",
    "crude_probability_groups",
    "flexible_excess_by_groups",
    "FLEXIBLE_DURATION_DEFINITION",
    "duration_paragraph",
    "smr_by_band",
    "poisson_ci",
    "ExcessHazardFitter",
    "excess_hazard_curve",
    "net_excess_hazard",
    "DURATION_DEFINITION",
    "duration_of_excess",
    "bootstrap_duration",
    "benchmark_colrec",
    "benchmark_national",
]


# ------------------------------------------------------------------------------------------------
# life table
# ------------------------------------------------------------------------------------------------
class LifeTable:
    """A population life table prepared for lookups.

    table: DataFrame with columns `year` (int calendar year), `age` (int single year), `sex` (any codes,
      e.g. "female"/"male", matched exactly against the data), `rate` (deaths per person-year, >= 0).
      Every (year, age, sex) combination between the smallest and largest year and age must be present.
    Ages and years outside the table use its nearest row (e.g. age 107 uses the oldest age).
    """

    def __init__(self, table: pd.DataFrame):
        if isinstance(table, LifeTable):
            table = table.table
        missing = {"year", "age", "sex", "rate"} - set(table.columns)
        if missing:
            raise ValueError(f"life table lacks column(s) {sorted(missing)}; needs year, age, sex, rate "
                             "(rate = deaths per person-year)")
        t = table[["year", "age", "sex", "rate"]].copy()
        if t[["year", "age", "rate"]].isna().any().any() or t["sex"].isna().any():
            raise ValueError("life table has missing values in year, age, sex or rate")
        if (t["rate"] < 0).any():
            raise ValueError("life table has negative rates")
        t["year"] = t["year"].astype(int)
        t["age"] = t["age"].astype(int)
        if t.duplicated(["year", "age", "sex"]).any():
            raise ValueError("life table has duplicate (year, age, sex) rows")
        self.table = t
        self.sexes = tuple(sorted(t["sex"].unique(), key=str))
        self.year0, self.year1 = int(t["year"].min()), int(t["year"].max())
        self.age0, self.age1 = int(t["age"].min()), int(t["age"].max())
        ny, na, ns = self.year1 - self.year0 + 1, self.age1 - self.age0 + 1, len(self.sexes)
        if len(t) != ny * na * ns:
            raise ValueError(f"life table is not complete: {len(t)} rows, expected {ny} years x {na} ages x "
                             f"{ns} sexes = {ny * na * ns} (single years and ages without gaps)")
        arr = np.full((ns, ny, na), np.nan)
        s_idx = t["sex"].map({s: i for i, s in enumerate(self.sexes)}).to_numpy()
        arr[s_idx, t["year"].to_numpy() - self.year0, t["age"].to_numpy() - self.age0] = t["rate"].to_numpy()
        self.rate_per_day = arr / DAYS_PER_YEAR
        self.ny, self.na = ny, na

    def sex_index(self, sex) -> np.ndarray:
        sex = pd.Series(np.asarray(sex))
        idx = sex.map({s: i for i, s in enumerate(self.sexes)})
        if idx.isna().any():
            bad = sorted(map(str, sex[idx.isna()].unique()))[:5]
            raise ValueError(f"sex value(s) {bad} not in the life table (which has {list(self.sexes)})")
        return idx.to_numpy(dtype=np.int64)

    def rate(self, sex_idx, age, year) -> np.ndarray:
        """Rate per day at attained age (years) and calendar year (decimal), nearest row outside the table."""
        a = np.clip(np.floor(age).astype(np.int64) - self.age0, 0, self.na - 1)
        y = np.clip(np.floor(year).astype(np.int64) - self.year0, 0, self.ny - 1)
        return self.rate_per_day[sex_idx, y, a]


def _as_lifetable(lifetable) -> LifeTable:
    return lifetable if isinstance(lifetable, LifeTable) else LifeTable(lifetable)


# ------------------------------------------------------------------------------------------------
# follow-up pieces with constant population hazard
# ------------------------------------------------------------------------------------------------
@dataclass
class _Segments:
    """Every patient's follow-up [0, fu_i) cut at age/year boundaries (and optionally extra cut times).

    Arrays over pieces, sorted by patient then start: ind, start, stop (days), lam (per day),
    cum0 (Lambda_i at start). `cum_end[i]` = Lambda_i(fu_i).
    """

    ind: np.ndarray
    start: np.ndarray
    stop: np.ndarray
    lam: np.ndarray
    cum0: np.ndarray
    cum_end: np.ndarray = field(default_factory=lambda: np.zeros(0))


def _segments(fu, age, year, sex_idx, lt: LifeTable, cut_every: float | None = None) -> _Segments:
    fu = np.asarray(fu, float)
    age = np.asarray(age, float)
    year = np.asarray(year, float)
    n = len(fu)
    nyrs = np.floor(fu / DAYS_PER_YEAR).astype(np.int64) + 2
    # candidate cut times: age and year boundaries (k = 0..nyrs-1), plus regular cuts
    per = 2 * nyrs
    if cut_every:
        ncut = np.floor(fu / cut_every).astype(np.int64) + 1
        per = per + ncut
    ind = np.repeat(np.arange(n), per)
    # position within each patient's block
    offs = np.arange(per.sum()) - np.repeat(np.cumsum(per) - per, per)
    k_age = offs
    is_age = offs < nyrs[ind]
    is_year = (~is_age) & (offs < 2 * nyrs[ind])
    t = np.empty(len(ind))
    a_first = (np.ceil(age) - age) * DAYS_PER_YEAR
    y_first = (np.ceil(year) - year) * DAYS_PER_YEAR
    t[is_age] = a_first[ind[is_age]] + k_age[is_age] * DAYS_PER_YEAR
    t[is_year] = y_first[ind[is_year]] + (offs[is_year] - nyrs[ind[is_year]]) * DAYS_PER_YEAR
    if cut_every:
        is_cut = ~(is_age | is_year)
        t[is_cut] = (offs[is_cut] - 2 * nyrs[ind[is_cut]] + 1) * cut_every
    keep = (t > 0) & (t < fu[ind])
    ind, t = ind[keep], t[keep]
    # add the start (0) of every patient, sort by patient then time
    ind = np.concatenate([np.arange(n), ind])
    t = np.concatenate([np.zeros(n), t])
    order = np.argsort(t)                                   # by patient, then time (two stable passes:
    order = order[np.argsort(ind[order].astype(np.int32), kind="stable")]   # faster than lexsort)
    ind, start = ind[order], t[order]
    last = np.r_[ind[1:] != ind[:-1], True]
    stop = np.r_[start[1:], 0.0]
    stop[last] = fu[ind[last]]
    mid = 0.5 * (start + stop)
    lam = lt.rate(sex_idx[ind], age[ind] + mid / DAYS_PER_YEAR, year[ind] + mid / DAYS_PER_YEAR)
    inc = lam * (stop - start)
    csum = np.cumsum(inc)
    first = np.r_[True, ind[1:] != ind[:-1]]
    base = np.repeat(csum[first] - inc[first], np.diff(np.r_[np.flatnonzero(first), len(ind)]))
    cum_end_all = csum - base
    cum0 = cum_end_all - inc
    cum_end = np.zeros(n)
    cum_end[ind[last]] = cum_end_all[last]
    return _Segments(ind, start, stop, lam, cum0, cum_end)


def _prepare(data, time, event, age, sex, year, lifetable):
    lt = _as_lifetable(lifetable)
    cols = [c for c in (time, event, age, sex, year) if c is not None]
    missing = [c for c in cols if c not in data.columns]
    if missing:
        raise KeyError(f"column(s) {missing} not in the data")
    d = data[cols]
    if d.isna().any().any():
        bad = d.columns[d.isna().any()].tolist()
        raise ValueError(f"missing values in column(s) {bad}; drop or impute them first")
    fu = d[time].to_numpy(float)
    if (fu < 0).any():
        raise ValueError(f"negative follow-up time in column {time!r}")
    ev = d[event].to_numpy(float) if event is not None else np.zeros(len(d))
    if event is not None and not np.isin(ev, (0, 1)).all():
        raise ValueError(f"event column {event!r} must be 0/1")
    return lt, fu, ev, d[age].to_numpy(float), lt.sex_index(d[sex]), d[year].to_numpy(float)


def cumulative_expected_hazard(data: pd.DataFrame, *, at, age="age", sex="sex", year="year",
                               lifetable) -> np.ndarray:
    """Each patient's cumulative population hazard Lambda_i(t) at `at` (days; scalar or column name or array).

    Exact integration over the life-table cells crossed. Expected survival S_i(t) = exp(-Lambda_i(t)).
    """
    lt = _as_lifetable(lifetable)
    t = data[at].to_numpy(float) if isinstance(at, str) else np.broadcast_to(np.asarray(at, float), (len(data),))
    seg = _segments(t, data[age].to_numpy(float), data[year].to_numpy(float), lt.sex_index(data[sex]), lt)
    return seg.cum_end


# ------------------------------------------------------------------------------------------------
# sums over the risk set at every distinct time
# ------------------------------------------------------------------------------------------------
_ORDER = 18


class _NetSurvivalPrep:
    """Everything about a cohort that does not depend on patient weights: the distinct times, each
    patient's pieces of constant population hazard, their time-index ranges and Taylor coefficients.
    `estimate(w, method)` then costs a few weighted bincounts (used for bootstrap replicates: w = the
    patients' resampling counts)."""

    def __init__(self, fu, ev, age, sex_idx, yr, lt: LifeTable, block: float = DAYS_PER_YEAR, extra_times=None):
        self.fu, self.ev = fu, ev
        # the distinct follow-up times, plus any requested time up to the last follow-up (no event, no
        # censoring there: the weighted population hazard is integrated up to it, so the estimate at a
        # time between events is exact, not the value at the previous event)
        extra = np.asarray([] if extra_times is None else extra_times, float).ravel()
        extra = extra[(extra > 0) & (extra <= (fu.max() if len(fu) else 0.0))]
        self.times = np.unique(np.concatenate([fu, extra]))
        self.inv = np.searchsorted(self.times, fu)
        nt = self.nt = len(self.times)
        seg = _segments(fu, age, yr, sex_idx, lt, cut_every=block)
        i0 = np.searchsorted(self.times, seg.start, "left")
        i1 = np.searchsorted(self.times, seg.stop, "left")
        live = i1 > i0
        self.i0, self.i1, self.pid = i0[live], i1[live], seg.ind[live]
        lam, start, cum0 = seg.lam[live], seg.start[live], seg.cum0[live]
        self.cum_end = seg.cum_end
        # linear accumulator: Lambda_i(t) = (cum0 - lam*start) + lam*t
        self.lin_a, self.lin_b = cum0 - lam * start, lam
        g = np.floor(start / block + 1e-9) * block
        self.c = np.exp(cum0 + lam * (g - start))     # exp(Lambda) extrapolated to the block origin g
        self.x = lam * block                           # exp(lam (t - g)) = exp(x u), u = (t - g)/block in [0, 1)
        self.u = self.times / block - np.floor(self.times / block + 1e-9)
        self._nt1 = nt + 1

    def _range_sum(self, vals):
        """sum over pieces active at each t_j (start <= t_j < stop) of vals, via a difference array."""
        n1 = self._nt1
        return (np.bincount(self.i0, vals, n1) - np.bincount(self.i1, vals, n1)).cumsum()[: self.nt]

    def counts(self, w=None):
        """(n_risk, n_event) at every distinct time (at risk at t_j: follow-up >= t_j), weights w."""
        w = np.ones(len(self.fu)) if w is None else np.asarray(w, float)
        return np.bincount(self.inv, w, self.nt)[::-1].cumsum()[::-1], np.bincount(self.inv, w * self.ev, self.nt)

    def mean_population_hazard(self, w=None, n_risk=None):
        """The risk set's mean population hazard integrated over (t_{j-1}, t_j] at every distinct time:
        sum_{R_j} [Lambda_i(t_j) - Lambda_i(t_{j-1})] / n_j (exact; the risk set is fixed in between)."""
        nt, inv = self.nt, self.inv
        w = np.ones(len(self.fu)) if w is None else np.asarray(w, float)
        if n_risk is None:
            n_risk = self.counts(w)[0]
        wp = w[self.pid]
        out_l = np.bincount(inv, w * self.cum_end, nt)
        L = self._range_sum(wp * self.lin_a) + self.times * self._range_sum(wp * self.lin_b) + out_l
        Lprev = np.r_[0.0, L[:-1] - out_l[:-1]]
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(n_risk > 0, (L - Lprev) / n_risk, 0.0)

    def estimate(self, w=None, method="pohar-perme"):
        """Net survival at every distinct time: (times, surv, se_log, n_risk, n_event), weights w."""
        method = method.lower().replace("_", "-")
        if method not in ("pohar-perme", "ederer2"):
            raise ValueError(f"method must be 'pohar-perme' or 'ederer2', got {method!r}")
        nt, inv, ev = self.nt, self.inv, self.ev
        w = np.ones(len(self.fu)) if w is None else np.asarray(w, float)
        n_event = np.bincount(inv, w * ev, nt)
        n_risk = np.bincount(inv, w, nt)[::-1].cumsum()[::-1]
        wp = w[self.pid]
        if method == "ederer2":
            pop = self.mean_population_hazard(w, n_risk)
            with np.errstate(divide="ignore", invalid="ignore"):
                ok = n_risk > 0
                jump = np.where(ok, n_event / n_risk, 0.0)
                var = np.cumsum(np.where(ok, n_event / n_risk ** 2, 0.0))
        else:
            term = wp * self.c
            acc = None
            coefs = []
            for m in range(_ORDER + 1):
                if m > 0:
                    term = term * self.x / m
                coefs.append(self._range_sum(term))
            acc = coefs[_ORDER].copy()
            for m in range(_ORDER - 1, -1, -1):          # Horner in u
                acc = acc * self.u + coefs[m]
            w_end = np.exp(self.cum_end)
            A = acc + np.bincount(inv, w * w_end, nt)      # sum_{R_j} 1/S_i(t_j)
            out_w = np.bincount(inv, w * w_end, nt)
            B = np.r_[n_risk[0], A[:-1] - out_w[:-1]]      # sum_{R_j} 1/S_i(t_{j-1})
            dn_w = np.bincount(inv, w * ev * w_end, nt)
            dn_w2 = np.bincount(inv, w * ev * w_end ** 2, nt)
            with np.errstate(divide="ignore", invalid="ignore"):
                ok = A > 0
                jump = np.where(ok, dn_w / A, 0.0)
                pop = np.where(ok, np.log(A / B), 0.0)        # weighted population hazard on (t_{j-1}, t_j]
                var = np.cumsum(np.where(ok, dn_w2 / A ** 2, 0.0))
        # product integral of dLambda_E = dN_w / Y_w - dLambda_P,w: the observed part jumps at the event
        # times, the population part is continuous, so prod (1 - jump) x exp(integral of the population
        # part). Exact at every time and the same whatever times are added (relsurv's cumprod(1 - haz)
        # treats the population part of each interval as a jump: it depends on the time grid)
        surv = np.maximum(np.cumprod(1.0 - np.nan_to_num(jump)), 0.0) * np.exp(np.cumsum(np.nan_to_num(pop)))
        return self.times, surv, np.sqrt(var), n_risk, n_event


def _net_survival_core(fu, ev, age, sex_idx, yr, lt: LifeTable, method: str, extra_times=None):
    """Net survival at every distinct time (and at `extra_times` up to the last follow-up).
    Returns times, surv, se_log, n_risk, n_event."""
    return _NetSurvivalPrep(fu, ev, age, sex_idx, yr, lt, extra_times=extra_times).estimate(None, method)


def _at_times(times, values: dict, at, last: float | None = None) -> dict:
    """Values at `at` from estimates at `times` (which hold every `at` up to the last follow-up time:
    exact there); before the first time: the given start value; after `last` (the last follow-up):
    NaN (no one is followed: nothing is estimated)."""
    at = np.asarray(at, float)
    k = np.searchsorted(times, at, "right") - 1
    out = {}
    for name, (v, before) in values.items():
        vv = np.where(k >= 0, v[np.clip(k, 0, None)], before).astype(float)
        if last is not None:
            vv = np.where(at > last, np.nan, vv)
        out[name] = vv
    return out


def net_survival(data: pd.DataFrame, *, time: str, event: str, age: str, sex: str, year: str, lifetable,
                 method: str = "pohar-perme", times=None) -> pd.DataFrame:
    """Net survival by Pohar Perme (default) or Ederer II.

    data: one row per patient. time: follow-up in days; event: 1 = died, 0 = censored; age: years (float)
    at the start; sex: codes as in the life table; year: decimal calendar year at the start.
    lifetable: DataFrame `year, age, sex, rate` (deaths per person-year) or a LifeTable.
    times: days at which to report, exact at any time: the weighted population hazard is integrated up to
      the time itself, so net survival changes between events too (relsurv::rs.surv's `add.times`); NaN
      after the last follow-up time. None = every distinct follow-up time.
    Returns DataFrame `time, surv, std_err, lower, upper` (std_err on the survival scale; 95 % CI
    log-transformed). Agrees with relsurv::rs.surv where its time grid is fine, and with its limit on
    finer grids elsewhere (see the module doc and tests/reference/relsurv.R). net_survival_by adds, at
    requested times, n_eff (effective number of the weights) and tail_flag (see tail_flags).
    """
    lt, fu, ev, a, s, y = _prepare(data, time, event, age, sex, year, lifetable)
    res = _net_survival_frame(fu, ev, a, s, y, lt, method, times)
    return res[["time", "surv", "std_err", "lower", "upper"]]


def _net_survival_frame(fu, ev, a, s, y, lt, method, times) -> pd.DataFrame:
    t, surv, se, n_risk, n_event = _net_survival_core(fu, ev, a, s, y, lt, method, extra_times=times)
    if times is None:
        at = t
        vals = {"surv": surv, "se": se, "n_risk": n_risk}
    else:
        at = np.asarray(times, float)
        n_risk_at = (len(fu) - np.searchsorted(np.sort(fu), at, "left")).astype(float)
        cum_ev = np.cumsum(n_event)
        k = np.searchsorted(t, at, "right") - 1
        v = _at_times(t, {"surv": (surv, 1.0), "se": (se, 0.0)}, at, last=fu.max() if len(fu) else None)
        vals = {"surv": v["surv"], "se": v["se"], "n_risk": n_risk_at}
        n_ev = np.where(k >= 0, cum_ev[np.clip(k, 0, None)], 0.0)
    res = pd.DataFrame({"time": at, "surv": vals["surv"]})
    res["std_err"] = res["surv"] * vals["se"]
    res["lower"] = res["surv"] * np.exp(-Z95 * vals["se"])
    res["upper"] = res["surv"] * np.exp(Z95 * vals["se"])
    res["n_risk"] = vals["n_risk"]
    res["n_events"] = np.cumsum(n_event) if times is None else n_ev
    if times is not None:
        res["n_eff"] = _effective_n(fu, a, s, y, lt, at)
        res["tail_flag"] = tail_flags(res["n_risk"], res["n_eff"], res["surv"])
    return res


#: below this number at risk (or effective number, Pohar Perme weights) an estimate is flagged as a tail
TAIL_MIN_AT_RISK = 10


def _effective_n(fu, a, s, y, lt, at) -> np.ndarray:
    """Kish's effective number of the Pohar Perme weights 1/S_i(t) over the risk set at each time:
    (sum w)^2 / sum w^2 (= the number at risk when the weights are equal). NaN where no one is at risk."""
    out = np.full(len(at), np.nan)
    for k, t in enumerate(np.asarray(at, float)):
        r = fu >= t
        if not r.any():
            continue
        w = np.exp(_segments(np.full(int(r.sum()), t), a[r], y[r], s[r], lt).cum_end)
        out[k] = w.sum() ** 2 / (w ** 2).sum()
    return out


def tail_flags(n_risk, n_eff, surv, minimum: int = TAIL_MIN_AT_RISK) -> np.ndarray:
    """Flag of each net survival estimate: "few at risk" (number at risk or effective number of the
    weights below `minimum`: the estimate rests on a few heavily weighted patients), "above 1" (net
    survival over 1: fewer deaths than the population rates predict, not a survival), both, or ""."""
    nr, ne, sv = (np.asarray(x, float) for x in (n_risk, n_eff, surv))
    few = (nr < minimum) | (ne < minimum)
    above = sv > 1
    return np.where(few & above, "few at risk; above 1", np.where(few, "few at risk", np.where(above, "above 1", "")))


def net_survival_by(data: pd.DataFrame, by, *, time: str, event: str, age: str, sex: str, year: str,
                    lifetable, method: str = "pohar-perme", times=None) -> pd.DataFrame:
    """Net survival per group: the columns of `by` then `time, surv, std_err, lower, upper, n_risk, n_events`
    (n_risk at the time, n_events cumulative up to it). `by` None or [] = one overall group.

    An annotated result (hipfrac.results) when `times` are given: n_events is the atom dead of ``#fu<t>``,
    n_risk the Kaplan-Meier number at risk (hipfrac.curves.risk_var), the estimates derived from them."""
    lt = _as_lifetable(lifetable)
    by = [by] if isinstance(by, str) else list(by or [])
    frames = []
    groups = data.groupby(by, sort=True, observed=True) if by else [((), data)]
    for key, g in groups:
        _, fu, ev, a, s, y = _prepare(g, time, event, age, sex, year, lt)
        r = _net_survival_frame(fu, ev, a, s, y, lt, method, times)
        curves.fu_labels(r, "time", fu, ev)
        key = key if isinstance(key, tuple) else (key,)
        for col, val in zip(by, key):
            r.insert(by.index(col), col, val)
        frames.append(r)
    out = pd.concat(frames, ignore_index=True)
    return results.annotate(out, counts={"n_risk": {"{_rv}": "{_rl}"}, "n_events": {"{_fu}": "dead"}},
                            dims={c: c for c in by},
                            derived={c: ["n_risk", "n_events"] for c in ("surv", "std_err", "lower", "upper", "n_eff",
                                                                         "tail_flag") if c in out.columns},
                            labels=["time", "_fu", "_rv", "_rl"], source=data)


def net_survival_curves(data: pd.DataFrame, by, *, time: str, event: str, age: str, sex: str, year: str,
                        lifetable, min_events: int, at_risk_times, method: str = "pohar-perme") -> pd.DataFrame:
    """Net survival curves per group for plotting, steps merged for disclosure control (hipfrac.curves):
    the estimate is given at time 0 and where the deaths since the previous given step reach `min_events`
    (params export.min_cell), n_risk only at `at_risk_times` (days). Columns: `by`, time, surv, std_err,
    lower, upper, n_risk, step. An annotated result."""
    lt = _as_lifetable(lifetable)
    by = [by] if isinstance(by, str) else list(by or [])
    frames = []
    groups = data.groupby(by, sort=True, observed=True) if by else [((), data)]
    for key, g in groups:
        _, fu, ev, a, s, y = _prepare(g, time, event, age, sex, year, lt)
        t, surv, se, _, n_event = _net_survival_core(fu, ev, a, s, y, lt, method)
        srt = np.sort(fu)
        mc = curves.merge_steps(t, n_event, {"surv": surv, "std_err": surv * se, "lower": surv * np.exp(-Z95 * se),
                                             "upper": surv * np.exp(Z95 * se)},
                                {"surv": 1.0, "std_err": 0.0, "lower": 1.0, "upper": 1.0}, min_events=min_events,
                                at_risk_times=at_risk_times, last_time=fu.max(),
                                n_risk_at=lambda x, srt=srt: len(srt) - np.searchsorted(srt, x, "left"))
        r = mc.frame()
        r["step"] = mc.step
        curves.fu_labels(r, "time", fu, ev)
        key = key if isinstance(key, tuple) else (key,)
        for col, val in zip(by, key):
            r.insert(by.index(col), col, val)
        frames.append(r)
    out = pd.concat(frames, ignore_index=True)
    return results.annotate(out, counts={"n_risk": {"{_rv}": "{_rl}"}}, dims={c: c for c in by},
                            derived={c: ["n_risk"] for c in ("surv", "std_err", "lower", "upper")},
                            labels=["time", "step", "_fu", "_rv", "_rl"], source=data, kind="figure")


def expected_survival(data: pd.DataFrame, *, times, age: str, sex: str, year: str, lifetable,
                      by=None) -> pd.DataFrame:
    """Expected survival of the cohort by the Ederer I method: mean over patients of S_i(t) at each time
    (days), everyone followed to every time (no censoring). Returns `time, expected_surv` (plus `by` columns).
    """
    lt = _as_lifetable(lifetable)
    by = [by] if isinstance(by, str) else list(by or [])
    times = np.asarray(times, float)
    frames = []
    groups = data.groupby(by, sort=True, observed=True) if by else [((), data)]
    for key, g in groups:
        # one cell-crossing pass to the last time, then Lambda_i(t) for every t from the pieces
        n = len(g)
        seg = _segments(np.full(n, times.max() if len(times) else 0.0), g[age].to_numpy(float),
                        g[year].to_numpy(float), lt.sex_index(g[sex]), lt)
        rows = []
        for t in times:
            on = (seg.start <= t) & ((t < seg.stop) | (seg.stop == times.max()))
            lam_t = np.zeros(n)
            lam_t[seg.ind[on]] = seg.cum0[on] + seg.lam[on] * (min(t, times.max()) - seg.start[on])
            rows.append(float(np.mean(np.exp(-lam_t))))
        r = pd.DataFrame({"time": times, "expected_surv": rows})
        key = key if isinstance(key, tuple) else (key,)
        for i, (col, val) in enumerate(zip(by, key)):
            r.insert(i, col, val)
        frames.append(r)
    # life-table expectation of the cohort, no count of patients: a statistic
    return results.annotate(pd.concat(frames, ignore_index=True), counts={}, dims={c: c for c in by},
                            labels=["time"], stats=["expected_surv"], source=data)


def _expected_restricted_mean(g: pd.DataFrame, tau: float, age, sex, year, lt: LifeTable) -> np.ndarray:
    """Each patient's expected restricted mean (days), integral_0^tau exp(-Lambda_i(t)) dt, exact (Lambda_i is
    linear within each life-table cell crossed); their mean is the Ederer I restricted mean."""
    n = len(g)
    if n == 0 or tau <= 0:
        return np.zeros(n)
    seg = _segments(np.full(n, float(tau)), g[age].to_numpy(float), g[year].to_numpy(float),
                    lt.sex_index(g[sex]), lt)
    dt = seg.stop - seg.start
    x = seg.lam * dt
    with np.errstate(divide="ignore", invalid="ignore"):
        piece = np.where(x > 1e-12, -np.expm1(-x) / np.where(seg.lam > 0, seg.lam, 1.0), dt * (1 - x / 2))
    return np.bincount(seg.ind, np.exp(-seg.cum0) * piece, n)


def _km_parts(fu, ev):
    """Kaplan-Meier at the distinct follow-up times: times, surv (after the jump), n_risk, n_event."""
    t, inv = np.unique(fu, return_inverse=True)
    n_event = np.bincount(inv, ev, len(t))
    n_risk = np.bincount(inv, minlength=len(t))[::-1].cumsum()[::-1].astype(float)
    return t, np.cumprod(1.0 - n_event / n_risk), n_risk, n_event


def _rmst_greenwood(fu, ev, tau: float) -> tuple[float, float]:
    """Kaplan-Meier restricted mean to tau (days) and its Greenwood-type standard error (days):
    Var = sum_{t_k <= tau} (A(tau) - A(t_k))^2 d_k / (n_k (n_k - d_k)), A(t) = integral_0^t S (terms with
    n_k = d_k are 0, as relsurv::years and survival's rmean). NaN after the last follow-up time unless the
    curve has reached 0."""
    t, S, n, d = _km_parts(fu, ev)
    if len(t) == 0 or (tau > t[-1] and S[-1] > 0):
        return math.nan, math.nan
    A = np.cumsum(np.r_[1.0, S[:-1]] * np.diff(np.r_[0.0, t]))     # A(t_k)
    k = np.searchsorted(t, tau, "right")                           # t_0..t_{k-1} <= tau
    a_tau = float(A[k - 1] + S[k - 1] * (tau - t[k - 1])) if k else float(tau)
    with np.errstate(divide="ignore", invalid="ignore"):
        term = np.where(n[:k] > d[:k], d[:k] / (n[:k] * (n[:k] - d[:k])), 0.0)
    return a_tau, math.sqrt(float(np.sum((a_tau - A[:k]) ** 2 * term)))


def _rmst_influence(fu, ev, tau: float) -> np.ndarray:
    """Influence function (days) of each patient on the Kaplan-Meier restricted mean to tau:
    IF_i = -sum_{u <= min(T_i, tau)} (A(tau) - A(u)) [dN_i(u) - dLambda(u)] / y(u), y = n_risk / n,
    A(u) = integral_0^u S (sum_i IF_i^2 / n^2 is the Greenwood-type variance, asymptotically)."""
    t, S, nr, d = _km_parts(fu, ev)
    nn = len(fu)
    A = np.cumsum(np.r_[1.0, S[:-1]] * np.diff(np.r_[0.0, t]))
    k = np.searchsorted(t, tau, "right")
    a_tau = float(A[k - 1] + S[k - 1] * (tau - t[k - 1])) if k else float(tau)
    w = np.zeros(len(t))
    w[:k] = (a_tau - A[:k]) / (nr[:k] / nn)                      # (A(tau) - A(u)) / y(u) at u <= tau
    comp = np.cumsum(w * d / nr)                                 # sum_{u <= s} w(u) dLambda(u)
    i = np.searchsorted(t, fu)                                   # index of each patient's own time
    jump = np.where(ev == 1, w[i], 0.0)
    return -(jump - comp[i])


def life_years_lost(data: pd.DataFrame, *, time: str, event: str, age: str, sex: str, year: str, lifetable,
                    tau_days, by=None, level: float = 0.95) -> pd.DataFrame:
    """Restricted mean life years lost to the fracture within tau: expected minus observed restricted mean
    survival (relsurv::years, measure "yd").

    expected_years = integral_0^tau S_E(t) dt with S_E the cohort's expected survival, everyone followed
    (Ederer I, exact integration of the life table); observed_years = integral_0^tau S_O(t) dt with S_O the
    Kaplan-Meier estimate; years_lost = expected_years - observed_years (years of 365.241 days).
    std_err: from the influence functions of both parts (the Kaplan-Meier restricted mean and the mean of
    the patients' expected restricted means), so it includes the expected part's sampling variation and
    its covariance with the observed part (the cohort as a sample of patients); lower, upper: normal CI at
    `level` from it. std_err_observed: the Greenwood-type standard error of the observed part alone, the
    expected part taken as fixed, as relsurv::years' var.estimator "greenwood": conservative for the
    years lost, since the two parts are positively correlated (coverage of 95 % intervals on patients
    from the generator's model: 98-99 % at 5 and 10 years; tests/test_relsurv_recovery.py).
    tau_days: one or more horizons (days); NaN where tau is after the last follow-up time.
    by: grouping column(s); their levels lead the columns. Returns `by..., tau_days, expected_years,
    observed_years, years_lost, std_err, std_err_observed, lower, upper, n_risk, n_events`: an annotated result (n_risk the
    number followed to tau, n_events the deaths by tau, as net_survival_by; the years derived from them).
    Agrees with relsurv::years within 1e-4 years on colrec (tests/test_relsurv.py): relsurv integrates the
    expected survival on a 30-day grid, hipfrac exactly.
    """
    lt = _as_lifetable(lifetable)
    by = [by] if isinstance(by, str) else list(by or [])
    taus = np.atleast_1d(np.asarray(tau_days, float))
    if (taus <= 0).any():
        raise ValueError(f"tau_days must be positive, got {taus.tolist()}")
    z = float(stats.norm.ppf(0.5 + level / 2))
    frames = []
    groups = data.groupby(by, sort=True, observed=True) if by else [((), data)]
    for key, g in groups:
        _, fu, ev, a, s, y = _prepare(g, time, event, age, sex, year, lt)
        rows = []
        nn = len(fu)
        for tau in taus:
            obs, se_obs = _rmst_greenwood(fu, ev, tau)
            e_i = _expected_restricted_mean(g, tau, age, sex, year, lt)
            exp_ = float(e_i.mean()) if nn else math.nan
            if np.isfinite(obs):
                infl = (e_i - exp_) - _rmst_influence(fu, ev, tau)
                se = math.sqrt(float(np.sum(infl ** 2)) / nn ** 2)
            else:
                se = math.nan
            rows.append((tau, exp_ / DAYS_PER_YEAR, obs / DAYS_PER_YEAR, (exp_ - obs) / DAYS_PER_YEAR,
                         se / DAYS_PER_YEAR, se_obs / DAYS_PER_YEAR))
        r = pd.DataFrame(rows, columns=["tau_days", "expected_years", "observed_years", "years_lost", "std_err",
                                        "std_err_observed"])
        r["lower"] = r["years_lost"] - z * r["std_err"]
        r["upper"] = r["years_lost"] + z * r["std_err"]
        srt = np.sort(fu)
        r["n_risk"] = (len(fu) - np.searchsorted(srt, taus, "left")).astype(float)
        r["n_events"] = [float(((fu <= t) & (ev == 1)).sum()) for t in taus]
        curves.fu_labels(r, "tau_days", fu, ev)
        key = key if isinstance(key, tuple) else (key,)
        for i, (col, val) in enumerate(zip(by, key)):
            r.insert(i, col, val)
        frames.append(r)
    out = pd.concat(frames, ignore_index=True)
    est = ["observed_years", "years_lost", "std_err", "std_err_observed", "lower", "upper"]
    return results.annotate(out, counts={"n_risk": {"{_rv}": "{_rl}"}, "n_events": {"{_fu}": "dead"}},
                            dims={c: c for c in by}, derived={c: ["n_risk", "n_events"] for c in est},
                            stats=["expected_years"], labels=["tau_days", "_fu", "_rv", "_rl"], source=data)


def crude_probability(data: pd.DataFrame, *, time: str, event: str, age: str, sex: str, year: str, lifetable,
                      times, by=None, level: float = 0.95) -> pd.DataFrame:
    """Crude probability of death from the fracture (excess) and from other causes (population) by each
    time: the cumulative incidences of the two causes in the relative survival framework (relsurv::cmp.rel).

    With S_O the Kaplan-Meier estimate and, over (t_{j-1}, t_j], the risk set's mean population hazard
    dLambda_P(t_j) = sum_{R_j} [Lambda_i(t_j) - Lambda_i(t_{j-1})] / n_j (exact integration):
      prob_population(t) = sum_{t_j <= t} S_O(t_{j-1}) dLambda_P(t_j)
      prob_excess(t)     = sum_{t_j <= t} S_O(t_{j-1}) (d_j / n_j - dLambda_P(t_j))
    so prob_excess + prob_population = 1 - S_O. Requested times are added to the time grid (exact between
    events: the population part grows continuously); the estimate does not depend on the grid. Variances
    as cmp.rel (Pohar Perme, relsurv): Var_E(t_j) = sum_{k <= j} sigma_k (S_O(t_k) - CE(t_j) + CE(t_k))^2,
    Var_P(t_j) = sum_{k <= j} sigma_k (CP(t_j) - CP(t_k))^2, sigma_k = d_k / n_k^2. The excess
    probability can be negative where patients die less than the population (then it is no probability of
    anything; reported as estimated).

    times: days; NaN after the last follow-up time. by: grouping column(s). Returns `by..., time,
    prob_excess, prob_population, std_err_excess, std_err_population, lower_excess, upper_excess,
    n_risk, n_events` (normal CIs at `level`): an annotated result as net_survival_by.
    """
    lt = _as_lifetable(lifetable)
    by = [by] if isinstance(by, str) else list(by or [])
    at = np.atleast_1d(np.asarray(times, float))
    z = float(stats.norm.ppf(0.5 + level / 2))
    frames = []
    groups = data.groupby(by, sort=True, observed=True) if by else [((), data)]
    for key, g in groups:
        _, fu, ev, a, s, y = _prepare(g, time, event, age, sex, year, lt)
        prep = _NetSurvivalPrep(fu, ev, a, s, y, lt, extra_times=at)
        n_risk, n_event = prep.counts()
        pop = prep.mean_population_hazard(n_risk=n_risk)
        with np.errstate(divide="ignore", invalid="ignore"):
            ok = n_risk > 0
            haz = np.where(ok, n_event / n_risk, 0.0)
            sigma = np.where(ok, n_event / n_risk ** 2, 0.0)
        S = np.cumprod(1.0 - haz)
        Sprev = np.r_[1.0, S[:-1]]
        CE = np.cumsum(Sprev * (haz - pop))
        CP = np.cumsum(Sprev * pop)
        a_ = S + CE
        # the sums over k <= j expanded: cumulative sums, linear in the number of times
        s0, s1, s2 = np.cumsum(sigma), np.cumsum(sigma * a_), np.cumsum(sigma * a_ ** 2)
        p1, p2 = np.cumsum(sigma * CP), np.cumsum(sigma * CP ** 2)
        var_e = np.maximum(s2 - 2 * CE * s1 + CE ** 2 * s0, 0.0)
        var_p = np.maximum(p2 - 2 * CP * p1 + CP ** 2 * s0, 0.0)
        last = fu.max() if len(fu) else None
        v = _at_times(prep.times, {"pe": (CE, 0.0), "pp": (CP, 0.0), "ve": (var_e, 0.0), "vp": (var_p, 0.0)},
                      at, last=last)
        r = pd.DataFrame({"time": at, "prob_excess": v["pe"], "prob_population": v["pp"],
                          "std_err_excess": np.sqrt(v["ve"]), "std_err_population": np.sqrt(v["vp"])})
        r["lower_excess"] = r["prob_excess"] - z * r["std_err_excess"]
        r["upper_excess"] = r["prob_excess"] + z * r["std_err_excess"]
        srt = np.sort(fu)
        r["n_risk"] = (len(fu) - np.searchsorted(srt, at, "left")).astype(float)
        r["n_events"] = [float(((fu <= t) & (ev == 1)).sum()) for t in at]
        curves.fu_labels(r, "time", fu, ev)
        key = key if isinstance(key, tuple) else (key,)
        for i, (col, val) in enumerate(zip(by, key)):
            r.insert(i, col, val)
        frames.append(r)
    out = pd.concat(frames, ignore_index=True)
    est = ["prob_excess", "prob_population", "std_err_excess", "std_err_population", "lower_excess",
           "upper_excess"]
    return results.annotate(out, counts={"n_risk": {"{_rv}": "{_rl}"}, "n_events": {"{_fu}": "dead"}},
                            dims={c: c for c in by}, derived={c: ["n_risk", "n_events"] for c in est},
                            labels=["time", "_fu", "_rv", "_rl"], source=data)


# ------------------------------------------------------------------------------------------------
# Lexis splitting on time since fracture, SMRs
# ------------------------------------------------------------------------------------------------
def split_followup(data: pd.DataFrame, breaks, *, time: str, event: str, age: str, sex: str, year: str,
                   lifetable, keep=()) -> pd.DataFrame:
    """Split each patient's follow-up at `breaks` (days since fracture; Lexis on time since fracture).

    Returns one row per patient and interval entered: `keep` columns, `band` (interval index 0..),
    `start`, `stop` (days, interval bounds), `person_years` (time at risk in the interval, years),
    `observed` (0/1 death in the interval), `expected` (the patient's expected deaths in the interval:
    the exact integral of the population hazard over the time at risk). Follow-up beyond the last break is
    dropped. Person-level: aggregate before exporting.
    """
    lt, fu, ev, a, s, y = _prepare(data, time, event, age, sex, year, lifetable)
    breaks = np.asarray(breaks, float)
    if len(breaks) < 2 or np.any(np.diff(breaks) <= 0) or breaks[0] < 0:
        raise ValueError(f"breaks must be increasing and non-negative, got {breaks.tolist()}")
    nb = len(breaks) - 1
    cum = np.empty((len(breaks), len(fu)))
    for k, b in enumerate(breaks):
        cum[k] = _segments(np.minimum(fu, b), a, y, s, lt).cum_end
    frames = []
    keep = list(keep)
    for k in range(nb):
        lo, hi = breaks[k], breaks[k + 1]
        inside = fu > lo if lo > 0 else fu >= lo
        idx = np.flatnonzero(inside)
        stop_i = np.minimum(fu[idx], hi)
        f = pd.DataFrame({c: data[c].to_numpy()[idx] for c in keep})
        f["band"] = k
        f["start"] = lo
        f["stop"] = hi
        f["person_years"] = (stop_i - lo) / DAYS_PER_YEAR
        f["observed"] = ((ev[idx] == 1) & (fu[idx] <= hi)).astype(int)
        f["expected"] = cum[k + 1, idx] - cum[k, idx]
        frames.append(f)
    return pd.concat(frames, ignore_index=True)


def poisson_ci(observed, level: float = 0.95):
    """Exact (Garwood) Poisson CI for a count: (lower, upper) arrays."""
    o = np.asarray(observed, float)
    alpha = 1 - level
    lower = np.where(o > 0, stats.chi2.ppf(alpha / 2, 2 * o) / 2, 0.0)
    upper = stats.chi2.ppf(1 - alpha / 2, 2 * (o + 1)) / 2
    return lower, upper


def smr_by_band(data: pd.DataFrame, *, time: str, event: str, age: str, sex: str, year: str, lifetable,
                breaks=SMR_BANDS_DAYS, labels=SMR_BAND_LABELS, by=("sex",)) -> pd.DataFrame:
    """Standardised mortality ratios (observed / expected deaths) by time since fracture.

    Returns per `by` group and band: `band`, `start_days`, `stop_days`, `person_years`, `observed`,
    `expected`, `smr`, `lower`, `upper` (exact Poisson CI on the observed count, divided by expected),
    `excess_rate` (observed - expected per 1,000 person-years). An overall row per band has `by` = "all".
    """
    by = [by] if isinstance(by, str) else list(by or [])
    if len(labels) != len(breaks) - 1:
        raise ValueError("labels must have one entry per interval of breaks")
    sp = split_followup(data, breaks, time=time, event=event, age=age, sex=sex, year=year,
                        lifetable=lifetable, keep=by)
    parts = [sp.groupby(by + ["band"], observed=True)] if by else []
    rows = []
    for g in parts:
        rows.append(g[["person_years", "observed", "expected"]].sum().reset_index())
    tot = sp.groupby("band")[["person_years", "observed", "expected"]].sum().reset_index()
    for c in by:
        tot[c] = "all"
    rows.append(tot)
    out = pd.concat(rows, ignore_index=True)
    lo, hi = poisson_ci(out["observed"])
    out["smr"] = out["observed"] / out["expected"]
    out["lower"] = lo / out["expected"]
    out["upper"] = hi / out["expected"]
    out["excess_rate"] = 1000 * (out["observed"] - out["expected"]) / out["person_years"]
    out["start_days"] = np.asarray(breaks)[out["band"]]
    out["stop_days"] = np.asarray(breaks)[out["band"] + 1]
    out["band"] = np.asarray(labels, dtype=object)[out["band"]]
    out["observed"] = out["observed"].astype(int)
    cols = by + ["band", "start_days", "stop_days", "person_years", "observed", "expected", "smr", "lower",
                 "upper", "excess_rate"]
    out = out[cols].sort_values(by + ["start_days"], kind="stable").reset_index(drop=True)
    # observed deaths in the band [start, stop) of time since fracture: status #died<start>-<stop>
    out["_st"] = [f"#died{a:g}-{b:g}" for a, b in zip(out["start_days"], out["stop_days"])]
    return results.annotate(out, counts={"observed": {"{_st}": "yes"}}, dims={c: c for c in by},
                            derived={c: ["observed"] for c in ("smr", "lower", "upper", "excess_rate")},
                            labels=["band", "start_days", "stop_days", "_st"], stats=["person_years", "expected"],
                            source=data)


# ------------------------------------------------------------------------------------------------
# excess hazard regression (Dickman et al. 2004)
# ------------------------------------------------------------------------------------------------
class ExcessHazardFitter:
    """Poisson excess hazard regression on grouped person-time (Dickman, Sloggett, Hills, Hakulinen 2004).

    observed deaths d ~ Poisson(mu), mu = d* + y exp(x'beta): d* expected deaths from the life table,
    y person-years. Equivalent to a Poisson GLM with link log(mu - d*) and offset log(y), fitted here by
    Fisher scoring (maximum likelihood). exp(beta) are excess hazard ratios; with a band term the band
    coefficients are log excess hazards per person-year.

        f = ExcessHazardFitter().fit(agg, formula="C(band) + male", observed="observed",
                                     expected="expected", person_years="person_years")
        f.summary  # term, coef, se, z, p, exp_coef, lower, upper
    formula: a patsy right-hand side (an intercept is dropped when the first term is a full band factor:
    write "0 + C(band) + ..." for log excess hazards per band).
    """

    def __init__(self, max_iter: int = 200, tol: float = 1e-10):
        self.max_iter, self.tol = max_iter, tol

    def fit(self, data: pd.DataFrame, formula: str, *, observed="observed", expected="expected",
            person_years="person_years"):
        import patsy

        d = data[data[person_years] > 0]
        X = patsy.dmatrix(formula, d, return_type="dataframe")
        self.design_info_ = X.design_info
        empty = [c for c in X.columns if not X[c].any()]
        if empty:
            raise ValueError(f"excess hazard model: term(s) {empty} have no person-time in the data; "
                             "drop or merge those levels")
        self.terms_ = list(X.columns)
        Xv = X.to_numpy(float)
        obs = d[observed].to_numpy(float)
        dstar = d[expected].to_numpy(float)
        y = d[person_years].to_numpy(float)
        # start: excess rate from the crude excess per cell, least squares on the log scale
        crude = np.maximum(obs - dstar, 0.5) / y
        beta = np.linalg.lstsq(Xv, np.log(crude), rcond=None)[0]
        ll_old = -np.inf
        self.n_iter_ = 0
        for _ in range(self.max_iter):
            self.n_iter_ += 1
            ex = y * np.exp(Xv @ beta)
            mu = dstar + ex
            score = Xv.T @ ((obs / mu - 1.0) * ex)
            info = (Xv * (ex ** 2 / mu)[:, None]).T @ Xv
            step = np.linalg.lstsq(info, score, rcond=None)[0]    # least squares: robust when near-singular
            # step halving keeps the log-likelihood increasing
            ll = np.sum(obs * np.log(mu) - mu)
            for _ in range(30):
                nb = beta + step
                mu_n = dstar + y * np.exp(Xv @ nb)
                ll_n = np.sum(obs * np.log(mu_n) - mu_n)
                if np.isfinite(ll_n) and ll_n >= ll - 1e-12:
                    break
                step = step / 2
            beta = nb
            if abs(ll_n - ll_old) < self.tol and np.max(np.abs(step)) < 1e-8:
                break
            ll_old = ll_n
        ex = y * np.exp(Xv @ beta)
        mu = dstar + ex
        info = (Xv * (ex ** 2 / mu)[:, None]).T @ Xv
        cov = np.linalg.pinv(info)
        self.converged_ = bool(np.max(np.abs(step)) < 1e-6)
        self.params_ = pd.Series(beta, index=self.terms_)
        self.cov_ = pd.DataFrame(cov, index=self.terms_, columns=self.terms_)
        se = np.sqrt(np.diag(cov))
        with np.errstate(divide="ignore", invalid="ignore"):
            dev_terms = np.where(obs > 0, obs * np.log(obs / mu), 0.0) - (obs - mu)
        self.deviance_ = float(2 * dev_terms.sum())
        self.df_resid_ = int(len(obs) - len(beta))
        self.log_likelihood_ = float(np.sum(obs * np.log(mu) - mu - [math.lgamma(o + 1) for o in obs]))
        z = beta / se
        with np.errstate(over="ignore"):   # boundary terms (see below): an upper limit of inf is right
            exp_coef, lower, upper = np.exp(beta), np.exp(beta - Z95 * se), np.exp(beta + Z95 * se)
        self.summary = pd.DataFrame({
            "term": self.terms_, "coef": beta, "se": se, "z": z,
            "p": 2 * stats.norm.sf(np.abs(z)),
            "exp_coef": exp_coef, "lower": lower, "upper": upper,
            # |coef| > 15: the excess in that group is at the boundary (no detectable excess: d <= d*), the
            # estimate is not identified and should be read as "excess about 0"
            "boundary": np.abs(beta) > 15,
        })
        results.statistics(self.summary, labels=["term", "boundary"])
        return self

    def predict_log_excess(self, data: pd.DataFrame) -> pd.DataFrame:
        """Log excess hazard (per person-year) for rows of `data`, with its standard error (delta method)."""
        import patsy

        X = patsy.build_design_matrices([self.design_info_], data, return_type="dataframe")[0].to_numpy(float)
        eta = X @ self.params_.to_numpy()
        se = np.sqrt(np.einsum("ij,jk,ik->i", X, self.cov_.to_numpy(), X))
        return pd.DataFrame({"log_excess": eta, "se": se}, index=data.index)


def aggregate_split(split: pd.DataFrame, by) -> pd.DataFrame:
    """Sum person_years, observed, expected of a `split_followup` frame over `by` columns (and band)."""
    by = [by] if isinstance(by, str) else list(by)
    cols = ["band", "start", "stop"] + [c for c in by if c not in ("band", "start", "stop")]
    return (split.groupby(cols, observed=True, sort=True)[["person_years", "observed", "expected"]]
            .sum().reset_index())


#: Definition used throughout the project (code, notebook and report).
DURATION_DEFINITION = (
    "Duration of excess mortality: the start of the earliest interval of time since fracture from which on "
    "the marginal net excess hazard (from Pohar Perme net survival: -log(NS(b)/NS(a))/(b-a) per "
    "person-year on each interval [a, b)) is no longer distinguishable from zero, i.e. the lower limit of "
    "its 95 % confidence interval is at or below 0 in that and every later interval. When excess is still "
    "detectable in the last interval, the duration is censored at the end of that interval (flag "
    "`censored`). The CI of the duration is a percentile bootstrap over patients."
)


def _interval_excess(times, surv, se, breaks) -> pd.DataFrame:
    """Net excess hazard per interval from a net survival step function (times in days)."""
    breaks = np.asarray(breaks, float)
    k = np.searchsorted(times, breaks, "right") - 1
    S = np.where(k >= 0, surv[np.clip(k, 0, None)], 1.0)
    V = np.where(k >= 0, se[np.clip(k, 0, None)] ** 2, 0.0)
    width_y = np.diff(breaks) / DAYS_PER_YEAR
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = np.log(S[:-1] / S[1:]) / width_y
        sd = np.sqrt(np.maximum(V[1:] - V[:-1], 0.0)) / width_y
    return pd.DataFrame({"start": breaks[:-1], "stop": breaks[1:], "excess_rate": rate, "se": sd,
                         "lower": rate - Z95 * sd, "upper": rate + Z95 * sd})


def net_excess_hazard(data: pd.DataFrame, *, time: str, event: str, age: str, sex: str, year: str, lifetable,
                      breaks, method: str = "pohar-perme") -> pd.DataFrame:
    """Marginal net excess hazard per interval of time since fracture (per person-year).

    From the net survival curve NS (Pohar Perme by default): on [a, b) days, excess_rate =
    log(NS(a)/NS(b)) / (b - a) with b - a in years; se from the increment of Var(log NS) (independent
    martingale increments); 95 % CI rate +- 1.96 se. Columns: start, stop (days), start_years,
    excess_rate, se, lower, upper, n_risk (at the interval start), n_events (deaths in the interval).
    Intervals beyond the last follow-up time are dropped.
    """
    lt, fu, ev, a, s, y = _prepare(data, time, event, age, sex, year, lifetable)
    t, surv, se, n_risk, n_event = _NetSurvivalPrep(fu, ev, a, s, y, lt, extra_times=breaks).estimate(None, method)
    out = _interval_excess(t, surv, se, breaks)
    out["start_years"] = out["start"] / DAYS_PER_YEAR
    srt = np.sort(fu)
    out["n_risk"] = len(fu) - np.searchsorted(srt, out["start"].to_numpy(), "left")
    cum = np.r_[0.0, np.cumsum(n_event)]
    k = lambda x: np.searchsorted(t, x, "left")  # noqa: E731
    out["n_events"] = (cum[k(out["stop"].to_numpy())] - cum[k(out["start"].to_numpy())]).astype(int)
    out = out[out["start"] < fu.max()].reset_index(drop=True)
    out = out[["start", "stop", "start_years", "n_risk", "n_events", "excess_rate", "se", "lower", "upper"]]
    curves.fu_labels(out, "start", fu, ev)
    out["_st"] = [f"#died{a:g}-{b:g}" for a, b in zip(out["start"], out["stop"])]
    return results.annotate(out, counts={"n_risk": {"{_rv}": "{_rl}"}, "n_events": {"{_st}": "yes"}},
                            derived={c: ["n_events", "n_risk"] for c in ("excess_rate", "se", "lower", "upper")},
                            labels=["start", "stop", "start_years", "_fu", "_rv", "_rl", "_st"], source=data)


def excess_hazard_curve(data: pd.DataFrame, *, time: str, event: str, age: str, sex: str, year: str,
                        lifetable, breaks) -> pd.DataFrame:
    """Crude excess hazard among those still alive, by interval of time since fracture (per person-year):
    Dickman's interval-specific Poisson model without covariates, excess_rate = (d - d*)/y.

    Columns: band, start, stop (days), person_years, observed, expected, excess_rate, se (sqrt(d)/y),
    lower, upper (normal), exact_lower, exact_upper (exact Poisson CI on d, minus d*, over y).
    Differs from `net_excess_hazard` (the marginal net hazard of everyone at baseline) when patients'
    relative risks differ: survivors are selected towards lower risk.
    """
    sp = split_followup(data, breaks, time=time, event=event, age=age, sex=sex, year=year,
                        lifetable=lifetable)
    agg = sp.groupby(["band", "start", "stop"])[["person_years", "observed", "expected"]].sum().reset_index()
    y = agg["person_years"]
    agg["excess_rate"] = (agg["observed"] - agg["expected"]) / y
    se = np.sqrt(agg["observed"]) / y
    agg["se"] = se
    agg["lower"] = agg["excess_rate"] - Z95 * se
    agg["upper"] = agg["excess_rate"] + Z95 * se
    lo, hi = poisson_ci(agg["observed"])
    agg["exact_lower"] = (lo - agg["expected"]) / y
    agg["exact_upper"] = (hi - agg["expected"]) / y
    agg["observed"] = agg["observed"].astype(int)
    return agg


def duration_of_excess(curve: pd.DataFrame, lower: str = "lower") -> tuple[float, bool]:
    """Duration (years) of excess mortality from an interval excess-hazard frame (columns start, stop in
    days and `lower`), by DURATION_DEFINITION: the start of the earliest interval from which on every
    interval's lower 95 % limit is <= 0. Returns (duration_years, censored)."""
    c = curve.sort_values("start").reset_index(drop=True)
    c = c[np.isfinite(c[lower])]
    if c.empty:
        return float("nan"), True
    null = (c[lower] <= 0).to_numpy()
    tail_ok = np.flip(np.cumprod(np.flip(null)).astype(bool))
    if not tail_ok.any():
        return float(c["stop"].iloc[-1] / DAYS_PER_YEAR), True
    k = int(np.argmax(tail_ok))
    return float(c["start"].iloc[k] / DAYS_PER_YEAR), False


def bootstrap_duration(data: pd.DataFrame, *, time: str, event: str, age: str, sex: str, year: str,
                       lifetable, breaks, n_boot: int = 200, seed: int = 1, level: float = 0.95,
                       by=None, method: str = "pohar-perme") -> pd.DataFrame:
    """Duration of excess mortality (DURATION_DEFINITION) with a percentile bootstrap CI.

    Patients are resampled with replacement; a replicate re-weights the patients by their resampling
    counts (the life-table integration is done once), recomputes net survival, the interval net excess
    hazards with their CIs, and the duration. Returns per `by` group: n, duration_years, censored,
    lower, upper, boot_replicates, share_censored (share of replicates where excess lasted to the last interval).
    Breaks beyond the group's last follow-up time are dropped.
    """
    lt = _as_lifetable(lifetable)
    by = [by] if isinstance(by, str) else list(by or [])
    rows = []
    groups = data.groupby(by, sort=True, observed=True) if by else [((), data)]
    rng = np.random.default_rng(seed)
    for key, g in groups:
        _, fu, ev, a, s, y = _prepare(g, time, event, age, sex, year, lt)
        br = np.asarray(breaks, float)
        br = br[br <= fu.max()] if (br > fu.max()).any() else br
        prep = _NetSurvivalPrep(fu, ev, a, s, y, lt, extra_times=br)
        t, surv, se, _, _ = prep.estimate(None, method)
        est, cens = duration_of_excess(_interval_excess(t, surv, se, br))
        n = len(fu)
        reps = np.empty(n_boot)
        rc = np.zeros(n_boot, bool)
        for b in range(n_boot):
            w = np.bincount(rng.integers(0, n, n), minlength=n).astype(float)
            t, surv, se, _, _ = prep.estimate(w, method)
            reps[b], rc[b] = duration_of_excess(_interval_excess(t, surv, se, br))
        al = (1 - level) / 2
        row = dict(zip(by, key if isinstance(key, tuple) else (key,)))
        row.update(n=n, duration_years=est, censored=cens,
                   lower=float(np.nanquantile(reps, al)) if n_boot else np.nan,
                   upper=float(np.nanquantile(reps, 1 - al)) if n_boot else np.nan,
                   boot_replicates=n_boot, share_censored=float(rc.mean()) if n_boot else np.nan)
        rows.append(row)
    return results.annotate(pd.DataFrame(rows), counts={"n": {}}, dims={c: c for c in by},
                            derived={c: ["n"] for c in ("duration_years", "censored", "lower", "upper", "share_censored")},
                            labels=["boot_replicates"], source=data)


# ------------------------------------------------------------------------------------------------
# benchmarks
# ------------------------------------------------------------------------------------------------
def _fixtures() -> Path:
    return Path(__file__).resolve().parents[2] / "tests" / "reference" / "fixtures"


def benchmark_colrec(repeats: int = 5) -> dict:
    """Time net_survival on relsurv's colrec data (both methods) vs relsurv::rs.surv's recorded timing.

    Returns {"method": {"seconds": median, "relsurv_seconds": ..., "speedup": relsurv / ours}}.
    The relsurv timing comes from tests/reference/fixtures/relsurv_timing.csv (written by relsurv.R on
    this machine class); rerun the R script to refresh it.
    """
    fx = _fixtures()
    d = pd.read_csv(fx / "relsurv_colrec.csv")
    lt = LifeTable(pd.read_csv(fx / "relsurv_slopop.csv"))
    rt = pd.read_csv(fx / "relsurv_timing.csv").set_index("method")["seconds"]
    out = {}
    for m in ("pohar-perme", "ederer2"):
        ts = []
        for _ in range(repeats):
            t0 = _time.perf_counter()
            net_survival(d, time="time", event="stat", age="age", sex="sex", year="year", lifetable=lt, method=m)
            ts.append(_time.perf_counter() - t0)
        sec = float(np.median(ts))
        out[m] = {"seconds": sec, "relsurv_seconds": float(rt[m]), "speedup": float(rt[m]) / sec}
    return out


def benchmark_national(n: int = 150_000, max_years: float = 17.0, seed: int = 1) -> dict:
    """Time Pohar Perme net survival on a simulated national-size cohort (n patients, up to max_years of
    follow-up, fractional-day follow-up times) with a Gompertz-like life table. Returns seconds."""
    rng = np.random.default_rng(seed)
    ages = np.arange(0, 111)
    years = np.arange(2000, 2031)
    rows = [(y, a, s, min(1.0, 5e-5 * np.exp(0.095 * a) * (1.3 if s == "male" else 1.0)
             * np.exp(-0.01 * (y - 2000)))) for y in years for a in ages for s in ("female", "male")]
    lt = LifeTable(pd.DataFrame(rows, columns=["year", "age", "sex", "rate"]))
    entry = rng.uniform(2008, 2008 + max_years, n)
    admin = (2008 + max_years - entry) * DAYS_PER_YEAR
    death = rng.exponential(4 * DAYS_PER_YEAR, n)
    d = pd.DataFrame({"time": np.maximum(np.minimum(death, admin), 0.5).round(1),
                      "event": (death <= admin).astype(int), "age": rng.normal(81, 9, n).clip(50, 105),
                      "sex": rng.choice(["female", "male"], n, p=[0.68, 0.32]), "year": entry})
    t0 = _time.perf_counter()
    net_survival(d, time="time", event="event", age="age", sex="sex", year="year", lifetable=lt)
    sec = _time.perf_counter() - t0
    return {"n": n, "max_years": max_years, "seconds": sec}


# ------------------------------------------------------------------------------------------------
# project glue
# ------------------------------------------------------------------------------------------------
def lifetable_from_params(params) -> LifeTable:
    """The run's SSB life table (source `ssb_lifetables`, contract columns year, sex, age, mortality_rate)
    as a LifeTable (rate = mortality_rate, deaths per person-year)."""
    from hipfrac import ingest, schema

    spec = schema.TABLES["ssb_lifetables"]
    types = {c.name: c.dtype for c in spec.columns}
    df = ingest.read_frame(params.source_file("ssb_lifetables"), types=types, name="ssb_lifetables")
    df = df.rename(columns={"mortality_rate": "rate"})
    return LifeTable(df[["year", "age", "sex", "rate"]])


#: cohort column names for the relsurv functions
COHORT_COLUMNS = dict(time="followup_days", event="dead", age="age", sex="sex", year="year_decimal")
#: the cohort columns of the expected (life-table) survival
EXPECTED_COLUMNS = dict(age="age", sex="sex", year="year_decimal")


# ------------------------------------------------------------------------------------------------
# notebook-level results (annotated): relative survival, by-group stacks, excess hazard models
# ------------------------------------------------------------------------------------------------
def relative_survival(data: pd.DataFrame, *, time: str, event: str, age: str, sex: str, year: str, lifetable,
                      times) -> pd.DataFrame:
    """Observed (Kaplan-Meier), expected (Ederer I) and net survival (Pohar Perme, Ederer II, with 95 %
    CIs) of the whole cohort at `times` (days). Columns: time, n_risk, observed, expected_ederer1,
    net_pohar_perme, pp_lower, pp_upper, net_ederer2, e2_lower, e2_upper.

    An annotated result: n_risk as in net_survival_by; the deaths by each time (private `_deaths`, atom
    dead of ``#fu<t>``) are not published, but every survival estimate is withheld with them or with
    n_risk; the expected survival is a life-table statistic."""
    from hipfrac import survival

    times = np.asarray(times, float)
    kw = dict(time=time, event=event, age=age, sex=sex, year=year, lifetable=lifetable)
    pp = net_survival_by(data, None, **kw, times=times)
    e2 = net_survival_by(data, None, **kw, times=times, method="ederer2")
    exp1 = expected_survival(data, times=times, age=age, sex=sex, year=year, lifetable=lifetable)
    obs = survival.km_table(data, None, times=times, time=time, event=event)
    out = pd.DataFrame({"time": times, "n_risk": pp["n_risk"].to_numpy(), "observed": obs["surv"].to_numpy(),
                        "expected_ederer1": exp1["expected_surv"].to_numpy(),
                        "net_pohar_perme": pp["surv"].to_numpy(), "pp_lower": pp["lower"].to_numpy(),
                        "pp_upper": pp["upper"].to_numpy(), "net_ederer2": e2["surv"].to_numpy(),
                        "e2_lower": e2["lower"].to_numpy(), "e2_upper": e2["upper"].to_numpy(),
                        "_deaths": pp["n_events"].to_numpy(), "_fu": pp["_fu"].to_numpy(),
                        "_rv": pp["_rv"].to_numpy(), "_rl": pp["_rl"].to_numpy()})
    est = ["observed", "net_pohar_perme", "pp_lower", "pp_upper", "net_ederer2", "e2_lower", "e2_upper"]
    return results.annotate(out, counts={"n_risk": {"{_rv}": "{_rl}"}, "_deaths": {"{_fu}": "dead"}},
                            derived={c: ["n_risk", "_deaths"] for c in est}, stats=["expected_ederer1"],
                            labels=["time", "_fu", "_rv", "_rl"], private=["_deaths"], source=data)


def _stack_groups(frames: dict) -> pd.DataFrame:
    from hipfrac import survival

    return survival.stack_units(frames, type_col="group_type", value_col="group")


def net_survival_groups(data: pd.DataFrame, groups, *, time: str, event: str, age: str, sex: str, year: str,
                        lifetable, times, method: str = "pohar-perme") -> pd.DataFrame:
    """net_survival_by for each grouping column in `groups`, stacked: group_type (the column), group (its
    level), then the columns of net_survival_by. An annotated result."""
    kw = dict(time=time, event=event, age=age, sex=sex, year=year, lifetable=lifetable, times=times, method=method)
    return _stack_groups({g: net_survival_by(data, g, **kw) for g in groups})


def duration_by_groups(data: pd.DataFrame, groups, *, time: str, event: str, age: str, sex: str, year: str,
                       lifetable, breaks, n_boot: int, seed: int, method: str = "pohar-perme") -> pd.DataFrame:
    """bootstrap_duration overall (group_type "all") and for each grouping column in `groups`, stacked
    (group_type, group, then its columns). An annotated result."""
    kw = dict(time=time, event=event, age=age, sex=sex, year=year, lifetable=lifetable, breaks=breaks,
              n_boot=n_boot, seed=seed, method=method)
    frames = {"all": bootstrap_duration(data, **kw)}
    frames.update({g: bootstrap_duration(data, **kw, by=g) for g in groups})
    return _stack_groups(frames)


def _check_fit(fitter: ExcessHazardFitter, what: str) -> ExcessHazardFitter:
    if not fitter.converged_:
        raise RuntimeError(f"{what}: the excess hazard model did not converge in {fitter.n_iter_} iterations")
    return fitter


def _treatment(column: str, reference) -> str:
    return f"C({column}, Treatment({reference!r}))"


def excess_hazard_regression(data: pd.DataFrame, *, breaks, unit: str, reference_unit: str,
                             reference_age_band: str, late_from_days: float = 365.0, time: str, event: str,
                             age: str, sex: str, year: str, lifetable) -> ExcessHazardFitter:
    """Excess hazard (Poisson) regression of the cohort's follow-up split at `breaks` (days): log excess
    hazard per band, `unit` (reference `reference_unit`), sex (reference female), age band (reference
    `reference_age_band`), and the change of the sex and age effects from `late_from_days` on (terms
    male_x_late and age<band>_x_late: non-proportional excess hazards). The fit must converge (else an
    error). Its `summary` is an annotated result of statistics."""
    for c in (unit, "sex", "age_band"):
        if c not in data.columns:
            raise KeyError(f"excess hazard regression: column {c!r} not in the cohort")
    split = split_followup(data, breaks, time=time, event=event, age=age, sex=sex, year=year,
                           lifetable=lifetable, keep=[unit, "sex", "age_band"])
    agg = aggregate_split(split, [unit, "sex", "age_band"])
    agg["late"] = (agg["start"] >= late_from_days).astype(float)
    agg["male_x_late"] = (agg["sex"] == "male") * agg["late"]
    late = []
    for b in sorted(agg["age_band"].unique()):
        if b == reference_age_band:
            continue
        name = "age" + "".join(ch if ch.isalnum() else "_" for ch in str(b).replace("+", "plus")) + "_x_late"
        agg[name] = (agg["age_band"] == b) * agg["late"]
        late.append(name)
    for col, ref in ((unit, reference_unit), ("age_band", reference_age_band)):
        if ref not in set(agg[col]):
            raise ValueError(f"excess hazard regression: reference level {ref!r} of {col!r} not in the cohort "
                             f"(levels: {sorted(map(str, set(agg[col])))})")
    formula = " + ".join(["0 + C(band)", _treatment(unit, reference_unit), _treatment("sex", "female"),
                          _treatment("age_band", reference_age_band), "male_x_late"] + late)
    return _check_fit(ExcessHazardFitter().fit(agg, formula), "excess hazard regression")


def excess_hr_by(data: pd.DataFrame, unit: str, *, breaks, reference_age_band: str, time: str, event: str,
                 age: str, sex: str, year: str, lifetable, reference: str | None = None) -> pd.DataFrame:
    """Excess hazard ratio of each level of `unit` (e.g. referral area) against `reference` (default the
    level with most patients), adjusted for band, sex and age band. Columns: unit, n (patients), excess_hr,
    lower, upper (95 %); the reference has 1. An annotated result: the ratios are withheld with n."""
    split = split_followup(data, breaks, time=time, event=event, age=age, sex=sex, year=year,
                           lifetable=lifetable, keep=[unit, "sex", "age_band"])
    agg = aggregate_split(split, [unit, "sex", "age_band"])
    n = data.groupby(unit, observed=True).size().sort_index()
    ref = str(n.idxmax()) if reference is None else reference
    if ref not in set(map(str, n.index)):
        raise ValueError(f"excess hazard ratios by {unit}: reference level {ref!r} not in the cohort "
                         f"(levels: {sorted(map(str, n.index))})")
    formula = " + ".join(["0 + C(band)", _treatment("sex", "female"), _treatment("age_band", reference_age_band),
                          _treatment(unit, ref)])
    fit = _check_fit(ExcessHazardFitter().fit(agg, formula), f"excess hazard ratios by {unit}")
    prefix = _treatment(unit, ref) + "[T."
    s = fit.summary
    s = s[s["term"].str.startswith(prefix, na=False)]
    est = pd.DataFrame({unit: s["term"].str[len(prefix):-1].to_numpy(), "excess_hr": s["exp_coef"].to_numpy(),
                        "lower": s["lower"].to_numpy(), "upper": s["upper"].to_numpy()})
    est = pd.concat([est, pd.DataFrame({unit: [ref], "excess_hr": [1.0], "lower": [1.0], "upper": [1.0]})])
    out = n.rename("n").reset_index()
    out[unit] = out[unit].astype(str)
    out = out.merge(est, on=unit, how="left").sort_values(unit).reset_index(drop=True)
    out.attrs = {}
    return results.annotate(out, counts={"n": {}}, dims={unit: unit},
                            derived={c: ["n"] for c in ("excess_hr", "lower", "upper")}, source=data)


# ------------------------------------------------------------------------------------------------
# flexible parametric relative survival (Royston-Parmar on the log cumulative excess hazard)
# ------------------------------------------------------------------------------------------------
def _rcs_basis(x, knots):
    """Restricted cubic spline basis (Royston & Parmar 2002, as Stata's rcsgen / rstpm2::nsx without
    orthogonalisation) of x at `knots` (boundary knots first and last) and its derivative in x:
    z_1 = x, z_j = (x - k_j)_+^3 - l_j (x - k_min)_+^3 - (1 - l_j)(x - k_max)_+^3, l_j = (k_max - k_j)/(k_max - k_min)."""
    x = np.asarray(x, float)
    k = np.asarray(knots, float)
    kmin, kmax = k[0], k[-1]
    B = [x]
    dB = [np.ones_like(x)]
    for kj in k[1:-1]:
        lam = (kmax - kj) / (kmax - kmin)
        p = lambda c: np.maximum(x - c, 0.0)  # noqa: E731
        B.append(p(kj) ** 3 - lam * p(kmin) ** 3 - (1 - lam) * p(kmax) ** 3)
        dB.append(3 * (p(kj) ** 2 - lam * p(kmin) ** 2 - (1 - lam) * p(kmax) ** 2))
    return np.column_stack(B), np.column_stack(dB)


class FlexibleExcessHazardFitter:
    """Flexible parametric relative survival model (Royston-Parmar; Nelson, Lambert et al. 2007; Stata
    stpm2 with bhazard, R rstpm2 / mexhaz): the log cumulative excess hazard is a restricted cubic spline
    of log time plus covariate effects, optionally time-varying:

        log H_E(t | x) = s(log t; gamma) + x'beta + sum_k x_k s_k(log t; delta_k)

    fitted by maximum likelihood on individual data with each patient's population hazard at the exit
    time (from the life table): log L = sum_i d_i log(h_P,i(t_i) + h_E(t_i | x_i)) - H_E(t_i | x_i), with
    h_E = H_E ds/dlog t / t. Time in years inside the model (days in and out).

    df: degrees of freedom of the baseline spline (df - 1 internal knots at equally spaced centiles of
    the log event times, boundary knots at the smallest and largest log event time, as stpm2); tvc:
    {covariate: df} time-varying effects (numeric columns or categorical indicators, knots likewise).
    The spline columns are centred and scaled at the event times (numerical stability; predictions are
    unchanged). Newton-Raphson with step halving on the analytic score and information; a fit that does
    not converge, or whose excess hazard is not positive at some death, raises.

        f = FlexibleExcessHazardFitter(df=4).fit(data, time="followup_days", event="dead", age="age",
                                                 sex="sex", year="year_decimal", lifetable=lt,
                                                 covariates=["sex"])
        f.summary                                           # term, coef, se, z, p, exp_coef, lower, upper
        f.predict_net_survival(data, times=[365, 1826])     # marginal over the rows of data, with CI
        f.predict_excess_hazard(data, times=[30, 365])      # hazard of the marginal net survival, per year
        f.predict_conditional_net_survival(data, given=[0, 365], horizon_days=365)
    Predictions are marginal (the mean net survival over the rows given, as Pohar Perme estimates it) with
    95 % CIs by the delta method (numerical gradient), on the log(-log) scale for survival and the log
    scale for hazards.
    """

    def __init__(self, df: int = 4, tvc: dict | None = None, max_iter: int = 100, tol: float = 1e-9):
        if int(df) < 1:
            raise ValueError(f"df must be at least 1, got {df}")
        self.df, self.tvc, self.max_iter, self.tol = int(df), dict(tvc or {}), max_iter, tol

    # -- design ------------------------------------------------------------------------------------
    def _knots(self, logt_events, df):
        qs = np.linspace(0, 100, df + 1)
        return np.percentile(logt_events, qs)

    def _spline(self, logt, which):
        knots, centre, scale = self._splines[which]
        B, dB = _rcs_basis(logt, knots)
        return (B - centre) / scale, dB / scale

    def _design(self, X: np.ndarray, logt: np.ndarray):
        """Columns [1, spline, X, tvc splines] of eta and their derivatives in log t."""
        B, dB = self._spline(logt, "baseline")
        n = len(logt)
        cols, dcols = [np.ones((n, 1)), B], [np.zeros((n, 1)), dB]
        cols.append(X)
        dcols.append(np.zeros_like(X))
        for name in self._tvc_cols:
            j = self.covariate_names_.index(name)
            Bk, dBk = self._spline(logt, name)
            cols.append(Bk * X[:, [j]])
            dcols.append(dBk * X[:, [j]])
        return np.hstack(cols), np.hstack(dcols)

    def _x(self, data):
        from hipfrac import survival

        if not self.covariates:
            return np.zeros((len(data), 0))
        lv = dict(self._design_info["levels"])
        lv.update({f"{c}__mean": m for c, m in self._design_info["means"].items()})
        X, _ = survival.design(data, self.covariates, references=self._design_info["references"], levels=lv)
        missing = [c for c in self.covariate_names_ if c not in X.columns]
        if missing:
            raise ValueError(f"cannot predict: column(s) {missing} of the fit are not in the data")
        return X[self.covariate_names_].to_numpy(float)

    # -- fit -----------------------------------------------------------------------------------------
    def fit(self, data: pd.DataFrame, *, time: str, event: str, age: str, sex: str, year: str, lifetable,
            covariates=(), references: dict | None = None):
        from hipfrac import survival

        lt = _as_lifetable(lifetable)
        self.covariates = list(covariates)
        _, fu, ev, a, s, y = _prepare(data, time, event, age, sex, year, lt)
        if (fu <= 0).any():
            raise ValueError(f"follow-up {time!r} must be positive for a model on log time "
                             f"({int((fu <= 0).sum())} rows <= 0)")
        if ev.sum() < self.df + 2:
            raise ValueError(f"only {int(ev.sum())} deaths: too few for a spline with df = {self.df}")
        if self.covariates:
            Xf, self._design_info = survival.design(data, self.covariates, references=references)
            self.covariate_names_ = list(Xf.columns)
            X = Xf.to_numpy(float)
        else:
            self._design_info, self.covariate_names_, X = {"levels": {}, "references": {}, "means": {}}, [], \
                np.zeros((len(fu), 0))
        unknown = [c for c in self.tvc if c not in self.covariate_names_]
        if unknown:
            raise ValueError(f"tvc {unknown} are not covariate columns of the model {self.covariate_names_}")
        self._tvc_cols = list(self.tvc)
        t_years = fu / DAYS_PER_YEAR
        logt = np.log(t_years)
        le = logt[ev == 1]
        self._splines = {}
        for which, df in [("baseline", self.df)] + [(c, int(d)) for c, d in self.tvc.items()]:
            knots = self._knots(le, df)
            B, _ = _rcs_basis(le, knots)
            self._splines[which] = (knots, B.mean(axis=0), B.std(axis=0) + (B.std(axis=0) == 0))
        # population hazard (per year) at each death
        hp = np.zeros(len(fu))
        d = ev == 1
        hp[d] = lt.rate(s[d], a[d] + t_years[d], y[d] + t_years[d]) * DAYS_PER_YEAR
        D, dD = self._design(X, logt)
        names = (["_cons"] + [f"_rcs{j + 1}" for j in range(self.df)] + self.covariate_names_
                 + [f"_rcs_{c}{j + 1}" for c in self._tvc_cols for j in range(int(self.tvc[c]))])
        theta = self._start(fu, ev, a, s, y, lt, D)
        ll, g, H = self._loglik(theta, D, dD, d, hp, t_years, derivs=True)
        if not np.isfinite(ll):
            raise RuntimeError("flexible excess hazard model: the starting values give no positive excess "
                               "hazard at some death; try a smaller df")
        self.n_iter_, self.converged_ = 0, False
        for it in range(self.max_iter):
            self.n_iter_ = it + 1
            step = np.linalg.solve(-H, g) if np.all(np.isfinite(H)) else g * 1e-3
            for _ in range(40):
                ll_n = self._loglik(theta + step, D, dD, d, hp, t_years)[0]
                if np.isfinite(ll_n) and ll_n >= ll - 1e-10:
                    break
                step = step / 2
            else:
                break
            theta = theta + step
            ll_old = ll
            ll, g, H = self._loglik(theta, D, dD, d, hp, t_years, derivs=True)
            if abs(ll - ll_old) < self.tol and np.max(np.abs(step)) < 1e-6:
                self.converged_ = True
                break
        if not self.converged_:
            raise RuntimeError(f"flexible excess hazard model (df={self.df}) did not converge in "
                               f"{self.n_iter_} Newton iterations (log-likelihood {ll:.4f})")
        try:
            cov = np.linalg.inv(-H)
        except np.linalg.LinAlgError:
            raise RuntimeError("flexible excess hazard model: the information matrix is singular (a covariate "
                               "level without deaths, or too many spline df)") from None
        if not np.all(np.diag(cov) > 0):
            raise RuntimeError("flexible excess hazard model: the information matrix is not positive definite")
        self.params_ = pd.Series(theta, index=names)
        self.cov_ = pd.DataFrame(cov, index=names, columns=names)
        self.log_likelihood_ = float(ll)
        self.n_obs_, self.n_events_ = int(len(fu)), int(ev.sum())
        se = np.sqrt(np.diag(cov))
        z = theta / se
        with np.errstate(over="ignore"):
            self.summary = pd.DataFrame({"term": names, "coef": theta, "se": se, "z": z,
                                         "p": 2 * stats.norm.sf(np.abs(z)), "exp_coef": np.exp(theta),
                                         "lower": np.exp(theta - Z95 * se), "upper": np.exp(theta + Z95 * se)})
        results.statistics(self.summary, labels=["term"])
        return self

    def _start(self, fu, ev, a, s, y, lt, D):
        """Least squares of log(Nelson-Aalen minus the patient's expected cumulative hazard) at the
        deaths on the model's columns (a crude excess, floored at a tenth of the observed)."""
        t, inv = np.unique(fu, return_inverse=True)
        n_ev = np.bincount(inv, ev, len(t))
        n_risk = np.bincount(inv, minlength=len(t))[::-1].cumsum()[::-1]
        na = np.cumsum(n_ev / n_risk)[inv]
        lam = _segments(fu, a, y, s, lt).cum_end
        d = ev == 1
        target = np.log(np.maximum(na[d] - lam[d], 0.1 * na[d]))
        # a Weibull-like start: the constant, the linear spline term and the covariates; the other spline
        # terms 0, so that the excess hazard is positive everywhere (slope of the linear term > 0)
        keep = np.r_[0, 1, 2 + self.df - 1 + np.arange(len(self.covariate_names_))]
        theta = np.zeros(D.shape[1])
        theta[keep] = np.linalg.lstsq(D[d][:, keep], target, rcond=None)[0]
        scale = self._splines["baseline"][2][0]
        if theta[1] <= 0.05 * scale:
            theta[1] = 0.5 * scale
        return theta

    @staticmethod
    def _loglik(theta, D, dD, d, hp, t, derivs=False):
        """Log-likelihood, score and Hessian. The excess hazard may be negative (fewer deaths than in the
        population), but the total hazard h_P + h_E must be positive at every death."""
        eta = D @ theta
        with np.errstate(over="ignore"):
            HE = np.exp(eta)
        slope = dD[d] @ theta
        he = HE[d] * slope / t[d]
        q = hp[d] + he
        if not np.all(np.isfinite(HE)) or np.any(q <= 0):
            return (-np.inf, None, None)
        ll = float(np.sum(np.log(q)) - np.sum(HE))
        if not derivs:
            return (ll, None, None)
        Dd, dDd, c = D[d], dD[d], HE[d] / t[d]
        u = Dd * he[:, None] + dDd * c[:, None]                  # d h_E / d theta at each death
        g = (u / q[:, None]).sum(axis=0) - D.T @ HE
        cross = (Dd * (c / q)[:, None]).T @ dDd
        H = ((Dd * (he / q)[:, None]).T @ Dd + cross + cross.T - (u / q[:, None]).T @ (u / q[:, None])
             - (D * HE[:, None]).T @ D)
        return ll, g, H

    # -- predictions ---------------------------------------------------------------------------------
    def predict_groups(self, data: pd.DataFrame, group_of, times, horizon_days: float = DAYS_PER_YEAR):
        """Marginal predictions for groups of rows, all in one pass with analytic gradients.

        group_of: labels per row of `data` (one grouping), or a dict {grouping name: labels per row} (the
        result then has a leading `group_type` column). Returns `[group_type,] group, time, net_survival,
        ns_lower, ns_upper, excess_hazard, eh_lower, eh_upper, conditional, cns_lower, cns_upper`:
        marginal net survival (mean over the group's rows), the hazard of the marginal net survival (per
        person-year) and the conditional net survival NS(t + horizon) / NS(t); 95 % CIs by the delta method
        (exact gradients) on the log(-log) scale for survival and the log scale for the hazard (NaN limits
        where the hazard is not positive)."""
        groupings = group_of if isinstance(group_of, dict) else {None: group_of}
        X = self._x(data)
        if X.shape[1]:
            U, pi = np.unique(X, axis=0, return_inverse=True)
            pi = pi.ravel()
        else:
            U, pi = np.zeros((1, 0)), np.zeros(len(data), int)
        rows, keys = [], []
        for name, lab in groupings.items():
            lab = np.asarray(lab, dtype=object).astype(str)
            labels, gi = np.unique(lab, return_inverse=True)
            Wk = np.zeros((len(labels), len(U)))
            np.add.at(Wk, (gi, pi), 1.0)
            rows.append(Wk)
            keys += [(name, lv) for lv in labels]
        W = np.vstack(rows)
        t = np.asarray(times, float)
        tt = np.unique(np.r_[t, t + horizon_days])
        i_t, i_h = np.searchsorted(tt, t), np.searchsorted(tt, t + horizon_days)
        ns, eh, gns, geh = self._group_curves_grad(U, W, tt)
        V = self.cov_.to_numpy()

        def ci(est, grad, kind):
            se = np.sqrt(np.maximum(np.einsum("gtj,jk,gtk->gt", grad, V, grad), 0.0))
            if kind == "surv":
                z = np.log(-np.log(np.clip(est, 1e-300, 1 - 1e-15)))
                return np.exp(-np.exp(z + Z95 * se)), np.exp(-np.exp(z - Z95 * se))
            with np.errstate(divide="ignore", invalid="ignore"):
                z = np.log(est)
                return np.exp(z - Z95 * se), np.exp(z + Z95 * se)

        with np.errstate(divide="ignore", invalid="ignore"):
            # d log(-log S) = dS / (S log S); d log h = dh / h
            g_ns = gns / (ns * np.log(ns))[..., None]
            g_eh = geh / eh[..., None]
            lc = np.log(ns[:, i_h]) - np.log(ns[:, i_t])
            g_lc = gns[:, i_h] / ns[:, i_h][..., None] - gns[:, i_t] / ns[:, i_t][..., None]
            g_cns = g_lc / lc[..., None]
        ns_lo, ns_hi = ci(ns[:, i_t], g_ns[:, i_t], "surv")
        eh_lo, eh_hi = ci(eh[:, i_t], g_eh[:, i_t], "haz")
        cns = np.exp(lc)
        cns_lo, cns_hi = ci(cns, g_cns, "surv")
        out = pd.DataFrame({"group_type": np.repeat([k[0] for k in keys], len(t)),
                            "group": np.repeat([k[1] for k in keys], len(t)), "time": np.tile(t, len(keys))})
        for name, arr in (("net_survival", ns[:, i_t]), ("ns_lower", ns_lo), ("ns_upper", ns_hi),
                          ("excess_hazard", eh[:, i_t]), ("eh_lower", eh_lo), ("eh_upper", eh_hi),
                          ("conditional", cns), ("cns_lower", cns_lo), ("cns_upper", cns_hi)):
            out[name] = np.asarray(arr).ravel()
        return out if isinstance(group_of, dict) else out.drop(columns="group_type")

    def _group_curves_grad(self, X, W, t_days):
        """Marginal net survival NS (G x T), hazard of the marginal net survival EH (G x T, per year) and
        their gradients in the parameters (G x T x n_params), exact: with S = exp(-H), H = exp(eta),
        h = H slope / t, d eta / d theta_j and d slope / d theta_j are products of a per-pattern factor
        (1 or a covariate) and a per-time factor (1, a spline column or its derivative), so every sum over
        patterns is one matrix product per factor."""
        th = self.params_.to_numpy()
        t = np.asarray(t_days, float)
        ty = t / DAYS_PER_YEAR
        k = 1 + self.df
        pc = len(self.covariate_names_)
        beta = th[k:k + pc]
        logt = np.log(np.maximum(t, 1e-9) / DAYS_PER_YEAR)
        B, dB = self._spline(logt, "baseline")
        eta = (th[0] + B @ th[1:k])[None, :] + (X @ beta)[:, None]
        slope = np.broadcast_to((dB @ th[1:k])[None, :], eta.shape).copy()
        j = k + pc
        tv = []
        for name in self._tvc_cols:
            Bk, dBk = self._spline(logt, name)
            m = Bk.shape[1]
            xj = X[:, self.covariate_names_.index(name)][:, None]
            eta += xj * (Bk @ th[j:j + m])[None, :]
            slope += xj * (dBk @ th[j:j + m])[None, :]
            tv.append((name, j, Bk, dBk))
            j += m
        with np.errstate(over="ignore"):
            H = np.exp(eta)
        S = np.exp(-H)
        h = H * slope / ty[None, :]
        wsum = W.sum(axis=1)[:, None]
        SH, A1, A2 = S * H, S * h * (1 - H), S * H / ty[None, :]
        # sums over patterns with a per-pattern factor: 1 and each covariate
        fac = {None: None, **{c: X[:, i] for i, c in enumerate(self.covariate_names_)}}

        def wsum_f(A, c):
            return W @ (A if fac[c] is None else A * fac[c][:, None])

        q = {c: (wsum_f(SH, c), wsum_f(A1, c), wsum_f(A2, c)) for c in fac}
        ns = (W @ S) / wsum
        num = W @ (S * h)
        den = W @ S
        with np.errstate(divide="ignore", invalid="ignore"):
            eh = num / den
        G, T, P = W.shape[0], len(t), len(th)
        gns, gnum, gden = np.zeros((G, T, P)), np.zeros((G, T, P)), np.zeros((G, T, P))

        def put(jj, c, deta_t, dslope_t):
            """parameter jj: d eta = fac[c] x deta_t(t), d slope = fac[c] x dslope_t(t)."""
            SHc, A1c, A2c = q[c]
            gden[:, :, jj] = -SHc * deta_t[None, :]
            gnum[:, :, jj] = A1c * deta_t[None, :] + A2c * dslope_t[None, :]

        one, zero = np.ones(T), np.zeros(T)
        put(0, None, one, zero)
        for b in range(self.df):
            put(1 + b, None, B[:, b], dB[:, b])
        for i, c in enumerate(self.covariate_names_):
            put(k + i, c, one, zero)
        for name, j0, Bk, dBk in tv:
            for b in range(Bk.shape[1]):
                put(j0 + b, name, Bk[:, b], dBk[:, b])
        gns = gden / wsum[..., None]
        with np.errstate(divide="ignore", invalid="ignore"):
            geh = gnum / den[..., None] - (num / den ** 2)[..., None] * gden
        return ns, eh, gns, geh

    def _one_group(self, data, times, horizon_days=DAYS_PER_YEAR):
        return self.predict_groups(data, np.full(len(data), "all", dtype=object), times, horizon_days=horizon_days)

    def predict_net_survival(self, data: pd.DataFrame, times) -> pd.DataFrame:
        """Marginal net survival over the rows of `data` at `times` (days): `time, surv, lower, upper`
        (CI on the log(-log) scale)."""
        p = self._one_group(data, times)
        return pd.DataFrame({"time": p["time"], "surv": p["net_survival"], "lower": p["ns_lower"],
                             "upper": p["ns_upper"]})

    def predict_excess_hazard(self, data: pd.DataFrame, times) -> pd.DataFrame:
        """Excess hazard (per person-year) of the marginal net survival over the rows of `data` at `times`
        (days): sum_i S_E,i h_E,i / sum_i S_E,i. Columns `time, excess_hazard, lower, upper` (CI on the log
        scale)."""
        p = self._one_group(data, times)
        return pd.DataFrame({"time": p["time"], "excess_hazard": p["excess_hazard"], "lower": p["eh_lower"],
                             "upper": p["eh_upper"]})

    def predict_conditional_net_survival(self, data: pd.DataFrame, given, horizon_days: float = DAYS_PER_YEAR):
        """Conditional net survival NS(s + horizon) / NS(s) of the marginal net survival, for each s in
        `given` (days, > 0): `given_days, horizon_days, surv, lower, upper` (CI on the log(-log) scale)."""
        p = self._one_group(data, given, horizon_days=horizon_days)
        return pd.DataFrame({"given_days": p["time"], "horizon_days": float(horizon_days), "surv": p["conditional"],
                             "lower": p["cns_lower"], "upper": p["cns_upper"]})


# ------------------------------------------------------------------------------------------------
# notebook 02: life years lost, crude probabilities and the flexible model by group
# ------------------------------------------------------------------------------------------------
def life_years_lost_groups(data: pd.DataFrame, groups, *, time: str, event: str, age: str, sex: str, year: str,
                           lifetable, tau_days) -> pd.DataFrame:
    """life_years_lost overall (group_type "all") and for each grouping column in `groups`, stacked
    (group_type, group, then its columns). An annotated result."""
    kw = dict(time=time, event=event, age=age, sex=sex, year=year, lifetable=lifetable, tau_days=tau_days)
    frames = {"all": life_years_lost(data, **kw)}
    frames.update({g: life_years_lost(data, **kw, by=g) for g in groups})
    return _stack_groups(frames)


def crude_probability_groups(data: pd.DataFrame, groups, *, time: str, event: str, age: str, sex: str,
                             year: str, lifetable, times) -> pd.DataFrame:
    """crude_probability overall (group_type "all") and for each grouping column in `groups`, stacked.
    An annotated result."""
    kw = dict(time=time, event=event, age=age, sex=sex, year=year, lifetable=lifetable, times=times)
    frames = {"all": crude_probability(data, **kw)}
    frames.update({g: crude_probability(data, **kw, by=g) for g in groups})
    return _stack_groups(frames)


#: the size-based durations of excess mortality from the flexible model (notebook 02, truth.json's
#: mortality.duration holds the same definitions for the generator)
FLEXIBLE_DURATION_DEFINITION = (
    "Size-based durations from the flexible parametric relative survival model, on a monthly grid of time "
    "since the fracture: (1) 'time to cure' in the sense of Dal Maso et al. (2014): the earliest time from "
    "which the conditional one-year net survival NS(t + 1 y) / NS(t) stays at or above {cure:.2f} (an excess "
    "risk of death of at most {risk:.0%} in the next year); (2) the earliest time from which the marginal "
    "excess hazard stays below {exc:g} per person-year. Each with a 95 % CI from the pointwise 95 % limits "
    "of the curve (the earliest times from which the upper, respectively lower, limit stays on the right "
    "side of the threshold). A duration is censored (reported as at least the last time) when the "
    "criterion is not met within the follow-up."
)


def _stays_from(t: np.ndarray, ok: np.ndarray) -> tuple[float, bool]:
    """Earliest t[k] from which ok holds at every later point; (last t, True) when it fails at the end."""
    if not len(ok):
        return math.nan, True
    if not ok[-1]:
        return float(t[-1]), True
    bad = np.flatnonzero(~ok)
    return (float(t[bad[-1] + 1]) if len(bad) else float(t[0])), False


def flexible_excess_by_groups(data: pd.DataFrame, groups, *, time: str, event: str, age: str, sex: str,
                              year: str, lifetable, df: int, covariates, tvc, times, cure_threshold: float,
                              excess_threshold: float) -> dict:
    """One flexible parametric relative survival model (FlexibleExcessHazardFitter) on the whole cohort,
    and its marginal predictions overall (group "all") and within the levels of each column in `groups`
    (the mean over that group's patients; a group is described by its own covariate mix).

    Returns a dict of results: `model` (the summary), `net_survival` (group_type, group, time, surv,
    lower, upper at `times`), `curves` (the same, plus the excess hazard and the conditional one-year net
    survival, on a monthly grid up to the last follow-up time, for figures), `durations`
    (FLEXIBLE_DURATION_DEFINITION: group_type, group, definition, years, lower, upper, censored) and the
    fitted `fitter`. Model predictions are statistics (smooth functions of all patients' data, not counts).
    """
    C = dict(time=time, event=event, age=age, sex=sex, year=year)
    d = data[data[time] > 0]
    f = FlexibleExcessHazardFitter(df=df, tvc=tvc).fit(d, **C, lifetable=lifetable, covariates=covariates)
    last = float(d[time].max())
    step = DAYS_PER_YEAR / 12
    # the first month day by day (the acute excess), then monthly while s + 1 year is followed
    grid = np.r_[[1.0, 2.0, 3.0, 5.0, 7.0, 10.0, 14.0, 21.0],
                 np.arange(1, int((last - DAYS_PER_YEAR) / step) + 1) * step]
    times = np.asarray(times, float)
    times = times[times <= last]
    labels = {"all": np.full(len(d), "all", dtype=object), **{g: d[g].astype(str).to_numpy() for g in groups}}
    both = f.predict_groups(d, labels, np.r_[times, grid], horizon_days=DAYS_PER_YEAR)
    net = both[both["time"].isin(times)].reset_index(drop=True).rename(columns={"net_survival": "surv", "ns_lower": "lower",
                                                                "ns_upper": "upper"})
    net = net[["group_type", "group", "time", "surv", "lower", "upper"]].drop_duplicates(["group_type", "group", "time"])
    curves_ = both[both["time"].isin(grid)].reset_index(drop=True).rename(columns={"conditional": "conditional_1y"})
    curves_ = curves_.drop_duplicates(["group_type", "group", "time"]).reset_index(drop=True)
    dur_rows = []
    for (gt, lv), c in curves_.groupby(["group_type", "group"], sort=False):
        yrs = c["time"].to_numpy() / DAYS_PER_YEAR
        for name, est, lo_ok, hi_ok in (
                (f"cns1y_{cure_threshold:g}", c["conditional_1y"] >= cure_threshold,
                 c["cns_upper"] >= cure_threshold, c["cns_lower"] >= cure_threshold),
                (f"excess_below_{excess_threshold:g}", c["excess_hazard"] < excess_threshold,
                 c["eh_lower"].fillna(-np.inf) < excess_threshold, c["eh_upper"].fillna(np.inf) < excess_threshold)):
            y0, cens = _stays_from(yrs, est.to_numpy())
            ylo, _ = _stays_from(yrs, lo_ok.to_numpy())
            yhi, cens_hi = _stays_from(yrs, hi_ok.to_numpy())
            dur_rows.append({"group_type": gt, "group": lv, "definition": name, "years": y0, "lower": ylo,
                             "upper": yhi, "censored": cens, "upper_censored": cens_hi})
    dur = pd.DataFrame(dur_rows)
    results.statistics(net, labels=["group_type", "group", "time"])
    results.statistics(curves_, labels=["group_type", "group", "time"])
    results.statistics(dur, labels=["group_type", "group", "definition", "censored", "upper_censored"])
    return {"model": f.summary, "net_survival": net, "curves": curves_, "durations": dur, "fitter": f}


def _fmt_years(y: float) -> str:
    return "n/a" if y is None or not np.isfinite(y) else f"{y:.1f}"


def duration_paragraph(excess: pd.DataFrame, duration: pd.DataFrame, flexible_durations: pd.DataFrame,
                       life_years: pd.DataFrame, crude: pd.DataFrame) -> str:
    """The results paragraph of notebook 02 on excess mortality, generated from the (protected) results:
    where the excess was highest, how long it lasted by each definition (overall), the life years lost and
    the share of deaths due to the fracture. Withheld values read "withheld"."""
    def num(v, fmt):
        return "withheld" if v is None or not np.isfinite(v) else fmt.format(v)

    ok = excess["excess_rate"].notna()
    peak = excess.loc[excess.loc[ok, "excess_rate"].idxmax()] if ok.any() else excess.iloc[0]
    d = duration[duration["group_type"] == "all"].iloc[0]
    fd = flexible_durations[flexible_durations["group_type"] == "all"].set_index("definition")
    parts = [f"Excess mortality was highest {peak['start']:.0f}–{peak['stop']:.0f} days after the fracture "
             f"(net excess hazard {num(peak['excess_rate'], '{:.2f}')} per person-year, 95 % CI "
             f"{num(peak['lower'], '{:.2f}')}–{num(peak['upper'], '{:.2f}')}) and declined afterwards."]
    cens = " (censored: still detectable in the last interval with follow-up)" if bool(d.get("censored")) else ""
    if d["duration_years"] is None or not np.isfinite(d["duration_years"]):
        parts.append("By the significance-based definition (a), the duration is withheld (disclosure control).")
    else:
        parts.append(f"By the significance-based definition (a), excess mortality lasted "
                     f"{num(d['duration_years'], '{:.1f}')} years (95 % CI {num(d['lower'], '{:.1f}')}–"
                     f"{num(d['upper'], '{:.1f}')}){cens}.")
    for name, row in fd.iterrows():
        thr = name.split("_")[-1]
        what = (f"the conditional one-year net survival (flexible model) reached {thr} and stayed there"
                if name.startswith("cns") else f"the excess hazard (flexible model) fell below {thr} per "
                                               "person-year and stayed there")
        upper = _fmt_years(row["upper"]) + (" or later" if row["upper_censored"] else "")
        if row["censored"]:
            crit = (f"a conditional one-year net survival of at least {thr}" if name.startswith("cns")
                    else f"an excess hazard below {thr} per person-year")
            parts.append(f"By the size-based definition (b) with {crit} (flexible model), excess mortality had "
                         f"not ended by the end of follow-up ({_fmt_years(row['years'])} years; the earliest time "
                         f"compatible with the 95 % limits is {_fmt_years(row['lower'])} years).")
        else:
            parts.append(f"By the size-based definition (b), {what} from {_fmt_years(row['years'])} years "
                         f"(95 % CI {_fmt_years(row['lower'])} to {upper}).")
    ly = life_years[life_years["group_type"] == "all"]
    if len(ly):
        r = ly.iloc[-1]
        parts.append(f"Within {r['tau_days'] / DAYS_PER_YEAR:.0f} years the fracture cost "
                     f"{num(r['years_lost'], '{:.2f}')} life years per patient (95 % CI "
                     f"{num(r['lower'], '{:.2f}')}–{num(r['upper'], '{:.2f}')}) against the general population.")
    cr = crude[crude["group_type"] == "all"]
    if len(cr):
        r = cr.iloc[-1]
        share = r["prob_excess"] / (r["prob_excess"] + r["prob_population"])
        parts.append(f"Of the patients who died within {r['time'] / DAYS_PER_YEAR:.0f} years, "
                     f"{num(100 * share, '{:.0f}')} % died of the fracture's excess mortality (crude probability "
                     f"{num(r['prob_excess'], '{:.3f}')}) and the rest of other causes "
                     f"({num(r['prob_population'], '{:.3f}')}).")
    return " ".join(parts)
