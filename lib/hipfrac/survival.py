"""Observed (all-cause) survival after hip fracture by unit: Kaplan-Meier, mortality at fixed horizons,
risk-adjusted mortality (O/E) with funnel limits, Cox regression and standardised survival curves.

Units: time in days since the fracture; mortality as proportions (0-1); hazard ratios unitless.
Every function takes the cohort (one row per patient; columns per lib/hipfrac/data/cohort_dictionary.yaml)
and returns tidy, aggregate DataFrames (no person-level rows), sorted deterministically.

    km = km_table(cohort, "res_region", times=[30, 90, 365])        # survival, CI, numbers at risk
    mort = mortality_at(cohort, "res_region", horizons=(30, 90, 365, 1826))
    adj = risk_adjusted_mortality(cohort, "hospital", horizon=30, casemix=CASEMIX)
    cox = CoxModel().fit(cohort, "res_region", casemix=CASEMIX)     # .summary: hazard ratios
    std = standardised_survival(cohort, "res_region", casemix=CASEMIX, times=[...], n_boot=50)

Kaplan-Meier curves and Cox models use lifelines (validated against R's survival package in
tests/test_survival.py with fixtures from tests/reference/survival.R).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from hipfrac import curves, results, variation

DAYS_PER_YEAR = 365.25

Z95 = float(stats.norm.ppf(0.975))

#: default case-mix for adjusted mortality and Cox models (cohort column names)
CASEMIX = ("age", "male", "asa_group", "charlson", "cognitive", "residence", "fracture_group")

__all__ = [
    "CASEMIX",
    "km_table",
    "km_curves",
    "mortality_at",
    "complete_followup",
    "casemix_frame",
    "risk_adjusted_mortality",
    "CoxModel",
    "standardised_survival",
    "design",
]


def _units(unit) -> list[str]:
    if unit is None:
        return []
    return [unit] if isinstance(unit, str) else list(unit)


def _groups(data: pd.DataFrame, unit):
    u = _units(unit)
    if not u:
        return [((), data)]
    return [((k if isinstance(k, tuple) else (k,)), g) for k, g in data.groupby(u, sort=True, observed=True)]


def _check(data, cols):
    miss = [c for c in cols if c not in data.columns]
    if miss:
        raise KeyError(f"column(s) {miss} not in the data")


# ------------------------------------------------------------------------------------------------
# Kaplan-Meier
# ------------------------------------------------------------------------------------------------
def _km(g: pd.DataFrame, time: str, event: str):
    from lifelines import KaplanMeierFitter

    return KaplanMeierFitter().fit(g[time].to_numpy(float), g[event].to_numpy(int))


def _fu_labels(f: pd.DataFrame, tcol: str, fu: np.ndarray, dead: np.ndarray) -> pd.DataFrame:
    return curves.fu_labels(f, tcol, fu, dead)


def _unit_dims(unit) -> dict:
    return {u: u for u in _units(unit)}


def km_table(data: pd.DataFrame, unit=None, *, times: Sequence[float], time: str = "followup_days",
             event: str = "dead") -> pd.DataFrame:
    """Kaplan-Meier survival at `times` (days) per unit.

    Returns unit column(s), `time`, `n` (patients in the unit), `n_risk` (still at risk at the time),
    `n_events` (deaths up to and including the time), `surv`, `lower`, `upper` (95 % CI, log(-log)
    transformed Greenwood, as lifelines and R survfit(conf.type = "log-log")).

    An annotated result (hipfrac.results): n, n_events and the private censored-before-t `_cens` are the
    atoms of the status variable ``#fu<t>`` (hipfrac.curves.fu_status); n_risk its atom ``alive`` (or its
    own variable when a patient died on day t exactly); surv and its CI derived from the counts.
    """
    _check(data, [time, event] + _units(unit))
    times = np.asarray(times, float)
    rows = []
    for key, g in _groups(data, unit):
        kmf = _km(g, time, event)
        s = kmf.survival_function_at_times(times).to_numpy()
        ci = kmf.confidence_interval_survival_function_
        # CI as a step function: value at the last event time <= t
        idx = np.searchsorted(ci.index.to_numpy(float), times, "right") - 1
        lo = np.where(idx >= 0, ci.iloc[np.clip(idx, 0, None), 0].to_numpy(), 1.0)
        hi = np.where(idx >= 0, ci.iloc[np.clip(idx, 0, None), 1].to_numpy(), 1.0)
        fu = g[time].to_numpy(float)
        ev = g[event].to_numpy(int)
        srt = np.sort(fu)
        n_risk = len(fu) - np.searchsorted(srt, times, "left")
        dt = np.sort(fu[ev == 1])
        n_ev = np.searchsorted(dt, times, "right")
        # beyond the last follow-up time: no estimate
        beyond = times > fu.max()
        s = np.where(beyond, np.nan, s)
        lo, hi = np.where(beyond | (s == 0), np.nan, lo), np.where(beyond | (s == 0), np.nan, hi)
        f = pd.DataFrame({"time": times, "n": len(g), "n_risk": n_risk, "n_events": n_ev,
                          "surv": s, "lower": lo, "upper": hi,
                          "_cens": [curves.fu_status(fu, ev, t)["cens"] for t in times]})
        _fu_labels(f, "time", fu, ev)
        for i, (c, v) in enumerate(zip(_units(unit), key)):
            f.insert(i, c, v)
        rows.append(f)
    out = pd.concat(rows, ignore_index=True)
    return results.annotate(
        out, counts={"n": {"{_fu}": "alive|cens|dead"}, "n_events": {"{_fu}": "dead"},
                     "n_risk": {"{_rv}": "{_rl}"}, "_cens": {"{_fu}": "cens"}},
        dims=_unit_dims(unit), derived={c: ["n", "n_events", "n_risk"] for c in ("surv", "lower", "upper")},
        labels=["time", "_fu", "_rv", "_rl"], private=["_cens"],
        known=["_cens"] if (out["_cens"] == 0).all() else [], source=data)


def km_curves(data: pd.DataFrame, unit=None, *, min_events: int, at_risk_times: Sequence[float],
              time: str = "followup_days", event: str = "dead") -> pd.DataFrame:
    """Kaplan-Meier curves per unit for plotting, with steps merged for disclosure control.

    The survival (and its 95 % CI, as km_table) is given at time 0 and at the times where the deaths
    since the previous given step reach `min_events` (params.disclosure.min_cell; the curve is flat in
    between and ends at its last merged step); n_risk only at `at_risk_times` (days; NaN elsewhere, and
    NaN where it differs from the previous published number at risk by less than `min_events`). See
    hipfrac.curves. Returns unit column(s), time, surv, lower, upper, n_risk, `step` (True at a merged
    step), an annotated result (n_risk as in km_table).
    """
    _check(data, [time, event] + _units(unit))
    rows = []
    for key, g in _groups(data, unit):
        kmf = _km(g, time, event)
        fu = g[time].to_numpy(float)
        ev = g[event].to_numpy(int)
        tab = kmf.event_table
        ut = tab.index.to_numpy(float)
        d = tab["observed"].to_numpy(float)
        sf = kmf.survival_function_.iloc[:, 0].reindex(tab.index).to_numpy(float)
        ci = kmf.confidence_interval_survival_function_.reindex(tab.index)
        srt = np.sort(fu)
        mc = curves.merge_steps(ut, d, {"surv": sf, "lower": ci.iloc[:, 0].to_numpy(float),
                                        "upper": ci.iloc[:, 1].to_numpy(float)},
                                {"surv": 1.0, "lower": 1.0, "upper": 1.0}, min_events=min_events,
                                at_risk_times=at_risk_times, last_time=fu.max(),
                                n_risk_at=lambda t, srt=srt: len(srt) - np.searchsorted(srt, t, "left"))
        f = mc.frame()
        f["step"] = mc.step
        _fu_labels(f, "time", fu, ev)
        for i, (c, v) in enumerate(zip(_units(unit), key)):
            f.insert(i, c, v)
        rows.append(f)
    out = pd.concat(rows, ignore_index=True)
    return results.annotate(out, counts={"n_risk": {"{_rv}": "{_rl}"}}, dims=_unit_dims(unit),
                            derived={c: ["n_risk"] for c in ("surv", "lower", "upper")},
                            labels=["time", "step", "_fu", "_rv", "_rl"], source=data, kind="figure")


def horizon_label(days: float) -> str:
    """Readable name of a horizon in days: "30-day", "90-day", "1-year", "5-year"."""
    years = {365: 1, 366: 1, 730: 2, 731: 2, 1095: 3, 1096: 3, 1461: 4, 1826: 5, 1827: 5, 3652: 10, 3653: 10}
    d = int(round(float(days)))
    return f"{years[d]}-year" if d in years else f"{d:g}-day"


def plot_grid(data: pd.DataFrame, step_days: float = 182.625, time: str = "followup_days") -> np.ndarray:
    """Times (days) from 0 every `step_days` (default half a year) up to the longest follow-up, for
    drawing smooth functions of time such as the expected survival."""
    return np.arange(0.0, float(data[time].max()), step_days)


def cohort_overview(data: pd.DataFrame, *, time: str = "followup_days", event: str = "dead",
                    year: str = "year") -> pd.DataFrame:
    """One row describing the cohort and its follow-up: n, deaths (all deaths in follow-up),
    person_years, median_followup_years, first_year, last_year.

    An annotated result: n and deaths are the atoms alive|cens|dead and dead of ``#fuinf`` (follow-up
    status at the end of follow-up: dead, or censored alive), person-years and the median follow-up are
    statistics of the whole cohort."""
    _check(data, [time, event, year])
    fu = data[time].to_numpy(float)
    out = pd.DataFrame({"n": [len(data)], "deaths": [int(data[event].sum())],
                        "person_years": [fu.sum() / DAYS_PER_YEAR],
                        "median_followup_years": [float(np.median(fu)) / DAYS_PER_YEAR if len(fu) else np.nan],
                        "first_year": [int(data[year].min())], "last_year": [int(data[year].max())]})
    st = curves.fu_var(np.inf)
    return results.annotate(out, counts={"n": {st: "alive|cens|dead"}, "deaths": {st: "dead"}},
                            stats=["person_years", "median_followup_years"], labels=["first_year", "last_year"],
                            source=data)


def complete_followup(data: pd.DataFrame, horizon: float, *, date: str = "fracture_date",
                      end: str = "end_of_followup") -> pd.Series:
    """Boolean mask: patients whose potential follow-up reaches `horizon` days (fracture early enough)."""
    d = pd.to_datetime(data[date])
    e = pd.to_datetime(data[end])
    return ((e - d).dt.days >= horizon).to_numpy()


def mortality_at(data: pd.DataFrame, unit=None, *, horizons=(30, 90, 365, 1826), time: str = "followup_days",
                 event: str = "dead") -> pd.DataFrame:
    """All-cause mortality 1 - KM(h) at each horizon (days) per unit, with 95 % CI (from the KM CI).

    Returns unit column(s), `horizon_days`, `n`, `n_risk`, `deaths` (deaths by the horizon), `mortality`,
    `lower`, `upper` (proportions). Uses every patient (censored ones contribute until censoring).
    `n_risk` is the number alive and followed on day h (n - deaths by h - censored before h: a patient who
    died on day h is a death, not at risk), so that n, n_risk, deaths and the private censored `_cens` are
    the atoms alive, dead, cens of the status variable ``#fu<h>`` (hipfrac.curves.fu_status); `_cens` is
    a known zero when no patient can be censored before h. An annotated result.
    """
    km = km_table(data, unit, times=horizons, time=time, event=event)
    out = km.rename(columns={"time": "horizon_days", "n_events": "deaths"})
    out["horizon_days"] = [int(h) if float(h).is_integer() else float(h) for h in out["horizon_days"]]
    out["n_risk"] = out["n"] - out["deaths"] - out["_cens"]
    out["mortality"] = 1 - out["surv"]
    lo, hi = 1 - out["upper"], 1 - out["lower"]
    out["lower"], out["upper"] = lo, hi
    out = out[_units(unit) + ["horizon_days", "n", "n_risk", "deaths", "mortality", "lower", "upper", "_cens",
                              "_fu"]].reset_index(drop=True)
    st = "{_fu}"
    return results.annotate(
        out, counts={"n": {st: "alive|cens|dead"}, "n_risk": {st: "alive"}, "deaths": {st: "dead"},
                     "_cens": {st: "cens"}},
        dims=_unit_dims(unit), derived={c: ["n", "deaths", "n_risk"] for c in ("mortality", "lower", "upper")},
        labels=["horizon_days", "_fu"], private=["_cens"],
        known=["_cens"] if (out["_cens"] == 0).all() else [], source=data)


def stack_units(frames: dict, type_col: str = "unit_type", value_col: str = "unit") -> pd.DataFrame:
    """Results of one function for several unit columns ({unit column: result}) stacked as `unit_type`
    (the column name) and `unit` (its value), keeping their metadata (dims {"unit": "{unit_type}"})."""
    import copy

    out = []
    for u, f in frames.items():
        m = copy.deepcopy(f.attrs[results.KEY])
        g = f.rename(columns={u: value_col}) if u in f.columns else f.assign(**{value_col: "all"})
        g.insert(0, type_col, u)
        cols = [type_col, value_col] + [c for c in g.columns if c not in (type_col, value_col)]
        g = g[cols]
        m["dims"].pop(u, None)
        m["dims"][value_col] = "{" + type_col + "}"
        m["labels"] = [type_col] + [c for c in m["labels"] if c != type_col]
        g.attrs[results.KEY] = m
        out.append(g)
    res = results.concat(out)
    # margins are not summed over the stacked unit types (protection would add the national total of each)
    res.attrs[results.KEY]["complete"] = False
    return res


# ------------------------------------------------------------------------------------------------
# risk adjustment
# ------------------------------------------------------------------------------------------------
def casemix_frame(data: pd.DataFrame, casemix: Sequence[str]) -> tuple[pd.DataFrame, dict]:
    """Case-mix columns ready for modelling: missing categories become their own level "missing",
    missing numbers are an error. Returns (frame, info) with info["n_missing"] per column."""
    out = pd.DataFrame(index=data.index)
    info = {"n_missing": {}}
    for c in casemix:
        col = data[c]
        n_miss = int(col.isna().sum())
        info["n_missing"][c] = n_miss
        if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
            if n_miss:
                raise ValueError(f"case-mix column {c!r} has {n_miss} missing values")
            out[c] = col.astype(float)
        else:
            out[c] = col.astype("object").where(col.notna(), "missing").astype(str)
    return out, info


def _formula(casemix, frame) -> str:
    terms = []
    for c in casemix:
        if frame[c].dtype == object:
            levels = sorted(frame[c].unique())
            terms.append(f"C({c}, Treatment({levels[0]!r}))")
        else:
            terms.append(c)
    return " + ".join(terms) if terms else "1"


def risk_adjusted_mortality(data: pd.DataFrame, unit, *, horizon: int = 30,
                            casemix: Sequence[str] = CASEMIX, outcome: str | None = None,
                            levels=(0.95, 0.998)) -> tuple[pd.DataFrame, dict]:
    """Risk-adjusted mortality per unit: observed / expected deaths within `horizon` days.

    Patients with complete potential follow-up to the horizon are used. Expected deaths per patient come
    from a logistic case-mix model (statsmodels GLM binomial on `casemix`, missing categories as their own
    level) fitted once on all units together. Per unit (via `hipfrac.variation.observed_expected`):
    observed, expected, n, oe with exact Poisson CI, crude, std_rate (O/E x national mortality, the
    indirectly standardised mortality) with lower/upper; exact binomial funnel limits around the national
    mortality at the unit's n (`hipfrac.variation.funnel_limits`): funnel_lower_<L>, funnel_upper_<L>, and
    outside_<L> ("high" / "low" / "") when std_rate lies outside them.
    unit: a column name (output keeps it as the unit column) or a list of columns (output stacked with
    `unit_type` = column name and `unit` = its value).
    Returns (frame, info): info has n, national mortality, n_excluded_incomplete, the model coefficients.
    """
    import statsmodels.api as sm
    import statsmodels.formula.api as smf

    outcome = outcome or {30: "dead_30d", 90: "dead_90d", 365: "dead_1y"}.get(int(horizon))
    if outcome is None:
        raise ValueError(f"no 0/1 outcome column for horizon {horizon}; pass outcome=")
    unit_list = _units(unit)
    _check(data, unit_list + [outcome] + list(casemix))
    keep = complete_followup(data, horizon)
    d = data.loc[keep]
    X, info = casemix_frame(d, casemix)
    X[outcome] = d[outcome].astype(float).to_numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = smf.glm(f"{outcome} ~ {_formula(casemix, X)}", X, family=sm.families.Binomial()).fit()
    p = model.predict(X).to_numpy()
    national = float(X[outcome].mean())
    frames = []
    for u in unit_list:
        dd = pd.DataFrame({u: d[u].to_numpy(), outcome: X[outcome].to_numpy(), "_p": p})
        oe = variation.observed_expected(dd, u, outcome, "_p")
        lim = variation.funnel_limits(oe["n"].round().astype(int), national, levels=levels)
        for lv in levels:
            name = f"{100 * lv:.10g}"
            lo, hi = lim[f"lower_{name}"].to_numpy(), lim[f"upper_{name}"].to_numpy()
            oe[f"funnel_lower_{name}"], oe[f"funnel_upper_{name}"] = lo, hi
            oe[f"outside_{name}"] = np.where(oe["std_rate"] > hi, "high",
                                             np.where(oe["std_rate"] < lo, "low", ""))
        oe.insert(1, "horizon_days", int(horizon))
        if not isinstance(unit, str):
            oe = oe.rename(columns={u: "unit"})
            oe.insert(0, "unit_type", u)
        frames.append(oe)
    info.update(n=int(len(d)), national=national, n_excluded_incomplete=int((~keep).sum()),
                coefficients=model.params.rename("coef").reset_index().rename(columns={"index": "term"}))
    out = pd.concat(frames, ignore_index=True)
    # disclosure metadata: among the patients with complete potential follow-up to h, observed deaths and n
    # are the atoms dead and alive|cens|dead of #fu<h> (censoring before h impossible: a known zero)
    out["national"] = national
    out["_fu"] = curves.fu_var(horizon)
    out["_cens"] = 0
    # the patients with complete potential follow-up: a condition of each count (not of the population),
    # so that results of several horizons concatenate (results.concat) into one table
    out["_cf"] = f"#complete_followup_{int(horizon)}d"
    lv = [f"{100 * lv:.10g}" for lv in levels]
    rates = ["oe", "oe_lower", "oe_upper", "crude", "std_rate", "lower", "upper"]
    derived = {c: ["observed", "n"] for c in rates if c in out.columns}
    derived |= {f"funnel_{a}_{x}": ["n"] for x in lv for a in ("lower", "upper")}
    derived |= {f"outside_{x}": ["observed", "n"] for x in lv}
    st = "{_fu}"
    dims = {"unit": "{unit_type}"} if not isinstance(unit, str) else {unit: unit}
    cf = {"{_cf}": "in"}
    res = results.annotate(out, counts={"n": {**cf, st: "alive|cens|dead"}, "observed": {**cf, st: "dead"},
                                        "_cens": {**cf, st: "cens"}},
                           dims=dims, derived=derived, stats=["expected", "national"],
                           labels=["horizon_days", "_fu", "_cf"] + (["unit_type"] if "unit_type" in out.columns else []),
                           private=["_cens"], known=["_cens"], source=data,
                           complete=isinstance(unit, str) or len(unit_list) == 1)
    return res, info


# ------------------------------------------------------------------------------------------------
# Cox regression and standardised survival (g-computation)
# ------------------------------------------------------------------------------------------------
class CoxModel:
    """Cox proportional hazards model of all-cause death with a unit (e.g. region) plus case-mix.

        m = CoxModel().fit(cohort, "res_region", casemix=CASEMIX, reference="Helse Sør-Øst")
        m.summary        # term, coef, se, hr, lower, upper, p
        m.standardised_survival(times=[30, 365])   # g-computation without CIs (lifelines engine)
    engine "lifelines" (default): lifelines CoxPHFitter, Efron ties. engine "breslow": the fast Breslow
    Newton-Raphson of `hipfrac.risk.BreslowCox` (national scale in about a second), terms named
    `col[level]` against the most frequent level (or `reference` for the unit). Both agree with
    survival::coxph with the same ties (tests/test_survival.py).
    Times in days; hazard ratios per unit of numeric covariates (age: per year).
    """

    def __init__(self, penalizer: float = 0.0, engine: str = "lifelines"):
        if engine not in ("lifelines", "breslow"):
            raise ValueError(f"engine must be 'lifelines' or 'breslow', got {engine!r}")
        self.penalizer, self.engine = penalizer, engine

    def fit(self, data: pd.DataFrame, unit: str | None, *, casemix: Sequence[str] = CASEMIX,
            time: str = "followup_days", event: str = "dead", reference=None):
        from lifelines import CoxPHFitter

        if self.engine == "breslow":
            return self._fit_breslow(data, unit, casemix, time, event, reference)

        cols = ([unit] if unit else []) + list(casemix)
        _check(data, cols + [time, event])
        X, self.casemix_info = casemix_frame(data, cols)
        self.unit, self.casemix, self.time, self.event = unit, list(casemix), time, event
        terms = []
        for c in cols:
            if X[c].dtype == object:
                levels = sorted(X[c].unique())
                counts = X[c].value_counts()
                ref = reference if (c == unit and reference is not None) else \
                    sorted(counts[counts == counts.max()].index)[0]      # most frequent level
                if ref not in levels:
                    raise ValueError(f"reference {ref!r} is not a level of {c!r}: {levels}")
                terms.append(f"C({c}, Treatment({ref!r}))")
            else:
                terms.append(c)
        self.formula = " + ".join(terms)
        self.levels_ = sorted(X[unit].unique()) if unit else []
        X[time] = data[time].to_numpy(float)
        X[event] = data[event].to_numpy(int)
        self._X = X
        self.cph = CoxPHFitter(penalizer=self.penalizer).fit(X, duration_col=time, event_col=event,
                                                             formula=self.formula,
                                                             fit_options={"precision": 1e-10})
        s = self.cph.summary
        self.summary = pd.DataFrame({
            "term": s.index.astype(str), "coef": s["coef"].to_numpy(), "se": s["se(coef)"].to_numpy(),
            "hr": s["exp(coef)"].to_numpy(), "lower": s["exp(coef) lower 95%"].to_numpy(),
            "upper": s["exp(coef) upper 95%"].to_numpy(), "p": s["p"].to_numpy()}).reset_index(drop=True)
        results.statistics(self.summary, labels=["term"])
        return self

    def _fit_breslow(self, data, unit, casemix, time, event, reference):
        from hipfrac.risk import BreslowCox

        cols = ([unit] if unit else []) + list(casemix)
        _check(data, cols + [time, event])
        X, info = design(data, cols, references={unit: reference} if (unit and reference is not None) else None)
        self.unit, self.casemix, self.time, self.event, self.design_info = unit, list(casemix), time, event, info
        m = BreslowCox().fit(data[time].to_numpy(float), data[event].to_numpy(int), X.to_numpy(float))
        se = np.sqrt(np.diag(m.vcov_naive))
        z = m.params / se
        self.breslow_ = m
        self.log_likelihood_ = float(m.loglik)
        self.summary = pd.DataFrame({
            "term": list(X.columns), "coef": m.params, "se": se, "hr": np.exp(m.params),
            "lower": np.exp(m.params - Z95 * se), "upper": np.exp(m.params + Z95 * se),
            "p": 2 * stats.norm.sf(np.abs(z))})
        results.statistics(self.summary, labels=["term"])
        return self

    def _baseline_at(self, times) -> np.ndarray:
        b = self.cph.baseline_cumulative_hazard_
        t = b.index.to_numpy(float)
        k = np.searchsorted(t, np.asarray(times, float), "right") - 1
        return np.where(k >= 0, b.iloc[:, 0].to_numpy()[np.clip(k, 0, None)], 0.0)

    def standardised_survival(self, times: Sequence[float], data: pd.DataFrame | None = None) -> pd.DataFrame:
        """Mean predicted survival at `times` (days) with every patient set to each unit level in turn."""
        X = self._X if data is None else data
        times = np.asarray(times, float)
        rows = []
        for lv in self.levels_:
            Xl = X.copy()
            Xl[self.unit] = lv
            # Breslow baseline as a step function (lifelines' predict_* interpolate between event times)
            H = np.outer(self._baseline_at(times), self.cph.predict_partial_hazard(Xl).to_numpy())
            rows.append(pd.DataFrame({self.unit: lv, "time": times, "surv": np.exp(-H).mean(axis=1)}))
        return pd.concat(rows, ignore_index=True)


def design(data: pd.DataFrame, columns: Sequence[str], references: dict | None = None,
           levels: dict | None = None) -> tuple[pd.DataFrame, dict]:
    """Numeric design matrix (no intercept) for Cox models: numeric columns centred on their mean,
    categorical columns (missing = level "missing") as indicators `col[level]` against a reference level
    (given in `references`, else the most frequent level). Returns (X, info) with info["levels"],
    info["references"], info["means"] so the same coding can be applied to other data."""
    frame, _ = casemix_frame(data, columns)
    references = dict(references or {})
    lv_in = levels or {}
    cols, info = {}, {"levels": {}, "references": {}, "means": {}}
    for c in columns:
        if frame[c].dtype == object:
            lv = lv_in.get(c) or sorted(frame[c].unique())
            ref = references.get(c)
            if ref is None:
                counts = frame[c].value_counts()
                ref = sorted(counts[counts == counts.max()].index)[0]
            if ref not in lv:
                raise ValueError(f"reference {ref!r} is not a level of {c!r}: {lv}")
            info["levels"][c], info["references"][c] = lv, ref
            for level in lv:
                if level != ref:
                    cols[f"{c}[{level}]"] = (frame[c] == level).to_numpy(float)
        else:
            mean = (levels or {}).get(f"{c}__mean", float(frame[c].mean()))
            info["means"][c] = mean
            cols[c] = frame[c].to_numpy(float) - mean
    return pd.DataFrame(cols, index=data.index), info


def _breslow_fit(t, e, X):
    from hipfrac.risk import BreslowCox

    m = BreslowCox().fit(t, e, X)
    tau, H = m.baseline[0]
    return m.params, np.asarray(tau, float), np.asarray(H, float)


def _step(tau, H, times):
    k = np.searchsorted(tau, times, "right") - 1
    return np.where(k >= 0, H[np.clip(k, 0, None)], 0.0)


def _standardised(beta, tau, H, X: np.ndarray, unit_cols: dict, times) -> np.ndarray:
    """Mean survival at times for each unit level (rows: levels in unit_cols order, cols: times)."""
    H0 = _step(tau, H, times)
    all_unit = [j for js in unit_cols.values() for j in js]
    base = X.copy()
    base[:, all_unit] = 0.0
    lp0 = base @ beta
    out = []
    for _, js in unit_cols.items():
        lp = lp0 + (beta[js].sum() if js else 0.0)
        out.append(np.exp(-np.outer(np.exp(lp), H0)).mean(axis=0))
    return np.vstack(out)


def standardised_survival(data: pd.DataFrame, unit: str, *, times: Sequence[float],
                          casemix: Sequence[str] = CASEMIX, n_boot: int = 50, seed: int = 1,
                          time: str = "followup_days", event: str = "dead", level: float = 0.95,
                          reference=None) -> pd.DataFrame:
    """Survival curves standardised to the whole cohort's case-mix, per unit (g-computation).

    Fit a Cox model (Breslow ties, `hipfrac.risk.BreslowCox`) with the unit and case-mix; predict every
    patient's survival at `times` (days) with the unit set to each level in turn, S_i(t) =
    exp(-H0(t) exp(x_i'beta)) with the Breslow baseline H0; average over patients (the cohort is the
    standard population). CIs: percentile bootstrap (patients resampled with replacement, model refitted,
    predictions on the original cohort; `n_boot` replicates, `seed`). Returns unit, time, surv, lower,
    upper, mortality (= 1 - surv), n_boot. Agrees with averaging R's survfit(coxph(ties = "breslow"),
    newdata) (tests/reference/survival.R).
    """
    cols = [unit] + list(casemix)
    _check(data, cols + [time, event])
    X, info = design(data, cols, references={unit: reference} if reference is not None else None)
    levels = info["levels"][unit]
    ref = info["references"][unit]
    names = list(X.columns)
    unit_cols = {lv: ([] if lv == ref else [names.index(f"{unit}[{lv}]")]) for lv in levels}
    Xv = X.to_numpy(float)
    t = data[time].to_numpy(float)
    e = data[event].to_numpy(int)
    times = np.asarray(times, float)
    beta, tau, H = _breslow_fit(t, e, Xv)
    est = _standardised(beta, tau, H, Xv, unit_cols, times)
    reps = []
    if n_boot > 0:
        rng = np.random.default_rng(seed)
        n = len(t)
        for _ in range(n_boot):
            idx = rng.integers(0, n, n)
            Xb = Xv[idx]
            keep = Xb.std(axis=0) > 0
            if not keep.all():        # a rare level absent from the replicate: skipped, counted in boot_replicates
                continue
            try:
                bb, tb, Hb = _breslow_fit(t[idx], e[idx], Xb)
            except (ValueError, RuntimeError):
                continue
            reps.append(_standardised(bb, tb, Hb, Xv, unit_cols, times))
    a = (1 - level) / 2
    R = np.stack(reps) if reps else None
    rows = []
    for i, lv in enumerate(levels):
        for j, tt in enumerate(times):
            lo = float(np.quantile(R[:, i, j], a)) if R is not None else np.nan
            hi = float(np.quantile(R[:, i, j], 1 - a)) if R is not None else np.nan
            rows.append((lv, tt, est[i, j], lo, hi))
    out = pd.DataFrame(rows, columns=[unit, "time", "surv", "lower", "upper"])
    out["mortality"] = 1 - out["surv"]
    out["boot_replicates"] = len(reps)  # replicates used (not a count of patients)
    # g-computation over the whole cohort (every patient set to each level in turn): no count of the
    # level's patients is in it, a statistic
    return results.statistics(out, labels=[unit, "time", "boot_replicates"])
