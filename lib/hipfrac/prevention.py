"""Secondary prevention after hip fracture: osteoporosis medication, second fractures, prevention potential.

Every function takes the analysis cohort (one row per index fracture, see cohort_dictionary.yaml) or
tidy frames made from it, and returns tidy DataFrames of aggregates (never person-level rows).

Units: times in days unless a name says years (`years` = days / 365.25); proportions as shares 0-1;
money in NOK after conversion (`BudgetParams.nok_per_unit`).

Contents
- budget model of a fracture liaison service, shaped like seed 001's tables 2-4: `budget_impact`,
  `participation_table`, `budget_for_cohort`;
- prevention potential: `prevention_scenarios` (every region reaches the best region / a target share);
- medication uptake: `medication_uptake`, `uptake_adjusted`, `treatment_model`, `who_is_treated`;
- persistence among starters: `persistence`;
- new fractures with death as competing risk: `new_fracture_cif` (Aalen-Johansen via hipfrac.competing);
- treatment and second fracture (observational): `split_at_exposure`, `TimeVaryingCox`,
  `treatment_effect`, `landmark_effect`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from hipfrac import results, sdc
from hipfrac.variation import observed_expected, wilson_ci

DAYS_PER_YEAR = 365.25

#: Medication indicators of the cohort: label -> (column, window in days after the fracture; None = before)
MED_INDICATORS = {
    "before": ("osteo_med_before", None),
    "3m": ("osteo_med_3m", 91),
    "6m": ("osteo_med_6m", 182),
    "12m": ("osteo_med_12m", 365),
}

OUTCOMES = {
    "second_hip_fracture": ("second_hip_fracture", "days_to_second_fracture"),
    "any_new_fracture": ("any_new_fracture", "new_fracture_date"),
}


def _need(df: pd.DataFrame, cols, what: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise KeyError(f"{what}: the data lack column(s) {', '.join(missing)}")


def round_half_up(x: float) -> int:
    """Round to the nearest integer, halves up (as spreadsheets do: 484.5 -> 485, 3447.5 -> 3448)."""
    return int(math.floor(x + 0.5 + 1e-9))


# ==============================================================================================
# Disclosure metadata (hipfrac.results): what every count of the results below counts
# ==============================================================================================
# Status variables (one per outcome definition; the same name and atoms wherever the same outcome is
# counted in the same population, so that the run-level audit sees differences between tables):
#   #treated_<indicator>  medication indicator of MED_INDICATORS: atoms "treated" / "untreated" among the
#                         patients eligible for its window; the remainder = not eligible (died or
#                         censored before the window ends). "#treated_before": everyone is eligible.
#   #start<days>          persistence: "started" = first dispensing within <days> after the fracture.
#   #persist              persistence horizons: atoms "r<k>s<j>" = at risk at the first k horizons,
#                         still dispensed at the first j of them (j <= k; k = 0: at risk at none).
#   #fx2[fx,dead,cens]    new fracture outcome (OUTCOMES) over time since the fracture (hipfrac.competing.
#   #newfx[fx,dead,cens]  OUTCOME_STATUS: second hip fracture / any new fracture), complete kinds with interval
#                         atoms in days (hipfrac.sdc): "fx@-inf-365" = a new fracture by day 365,
#                         "fx@365-inf|dead@365-inf|cens@365-inf" = still followed after day 365; the same
#                         variable as notebook 03's cumulative incidence (hipfrac.risk), so the audit links
#                         the two notebooks' counts of the outcome. Horizons in years are day
#                         floor(years * 365.25) when every time is a whole number of days (the same cells).
# Counts an attacker could compute from a row (non-events, steps between horizons, patients leaving the
# risk set) are private columns (leading "_", never written) so the audit protects them when small (the
# engine also cuts the intervals at every break point, so the steps are cells anyway).
TREATED, UNTREATED = "treated", "untreated"


def _status(indicator: str) -> str:
    return f"#treated_{indicator}"


def _uptake_meta(frame: pd.DataFrame, source: pd.DataFrame, dims, complete: bool = True) -> pd.DataFrame:
    """Metadata of a frame of n (eligible), events (treated) and _n_pop (every patient of the row) for a
    medication indicator (column `indicator`). complete=False for a result stacking several classifying
    variables (unit levels of hosp and res, or several factors): their national margins are then not summed
    from the rows (hipfrac.protection at first added every variable's finest rows into one margin, an
    infeasible system; the margins are published in the national tables anyway)."""
    st = "#treated_{indicator}"
    counts = {"n": {st: f"{TREATED}|{UNTREATED}"}, "events": {st: TREATED}, "_n_pop": {}}
    ce = ["n", "events"]
    derived = {c: ce for c in ("prop", "lower", "upper", "oe", "oe_lower", "oe_upper", "std_rate", "std_lower",
                               "std_upper") if c in frame.columns}
    if "expected" in frame.columns:  # a sum of model probabilities, not a count of persons
        derived["expected"] = ["n"]
    labels = [c for c in ("indicator", "window_days", "unit_level") if c in frame.columns]
    return results.annotate(frame, counts=counts, dims=dims, derived=derived, labels=labels, private=["_n_pop"],
                            source=source, complete=complete)


def _group_sizes(cohort: pd.DataFrame, by: list[str], frame: pd.DataFrame) -> np.ndarray:
    """Every patient of the cohort in each row's group (the population before eligibility)."""
    if not by:
        return np.full(len(frame), len(cohort), dtype=int)
    size = cohort.groupby(by, observed=True, sort=True).size().rename("_size").reset_index()
    return frame[by].merge(size, on=by, how="left")["_size"].fillna(0).astype(int).to_numpy()


def _model_meta(res: pd.DataFrame, source: pd.DataFrame, indicator: str, used) -> pd.DataFrame:
    """Metadata of a logistic model of an indicator: n = the eligible patients with every used column
    present (#complete:<columns> = complete), n_dropped = the others; the coefficients are statistics."""
    st, cc = _status(indicator), "#complete:" + ",".join(used)
    return results.annotate(res, counts={"n": {st: f"{TREATED}|{UNTREATED}", cc: "complete"},
                                         "n_dropped": {st: f"{TREATED}|{UNTREATED}", cc: "dropped"}},
                            stats=[c for c in res.columns if c not in ("term", "n", "n_dropped")], labels=["term"],
                            source=source)


def outcome_cuts(params) -> tuple[float, ...]:
    """Horizons (years since the fracture) at which notebook 04 counts new fractures: the CIF horizons, the
    scenario horizon and the landmark. (The interval atoms of the status variables are cut at every break
    point any cell uses by the disclosure engine; these are kept for callers and checks.)"""
    p = params.prevention
    cuts = {float(y) for y in p.cif_years} | {float(p.scenario_horizon_years), p.landmark_days / DAYS_PER_YEAR}
    return tuple(sorted(cuts))


def _status_var(outcome: str) -> str:
    from hipfrac.competing import OUTCOME_STATUS

    return OUTCOME_STATUS[outcome]


class _Atoms:
    """Atoms of a new-fracture status variable (complete kinds fx, dead, cens; days since the fracture)."""

    KINDS = ("fx", "dead", "cens")

    def __init__(self, integral: bool = True):
        self.integral = integral

    def day(self, years: float) -> float:
        """Day of a horizon in years (-inf and inf kept): with whole-day times, t / 365.25 <= y is
        t <= floor(365.25 y), so the cell is the one of notebook 03's table at that day."""
        if math.isinf(years):
            return years
        d = float(years) * DAYS_PER_YEAR
        return float(math.floor(d + 1e-6)) if self.integral else d

    def level(self, kinds, start: float = -math.inf, stop: float = math.inf) -> str:
        """Atoms of `kinds` with the event in (start, stop] (years)."""
        a, b = self.day(start), self.day(stop)
        return sdc.status_level(*(sdc.interval_atom(k, a, b) for k in kinds))


def _whole_days(source: pd.DataFrame, outcomes) -> bool:
    """Every follow-up and event time of the outcomes a whole number of days."""
    for o in outcomes:
        t = fracture_competing_data(source, o)["time"].to_numpy(float)
        if not np.all(t == np.floor(t)):
            return False
    return True


# ==============================================================================================
# Budget impact of a fracture liaison service (seed 001, tables 2-4)
# ==============================================================================================
@dataclass(frozen=True)
class BudgetResult:
    """Budget impact in NOK per year.

    savings: table 2 - per fracture type: fractures (per year), avoided (fractures avoided per year =
      fractures / NNT, rounded), cost_per_fracture, savings (= avoided x cost_per_fracture).
    costs: table 3 - per item (staff, dxa, drugs, total): annual_cost.
    participation: table 4 - per participation share: savings, costs, net_saving (= savings - costs).
    """

    savings: pd.DataFrame
    costs: pd.DataFrame
    participation: pd.DataFrame
    currency: str = "NOK"


def participation_table(savings_total: float, cost_total: float, participation, conversion: float = 1.0
                        ) -> pd.DataFrame:
    """Seed 001's table 4: savings and costs scaled linearly by the share of patients taking part.

    Each cell = total x participation x conversion, rounded half up to a whole currency unit.
    """
    rows = []
    for p in participation:
        s = round_half_up(savings_total * p * conversion)
        c = round_half_up(cost_total * p * conversion)
        rows.append({"participation": float(p), "savings": s, "costs": c, "net_saving": s - c})
    return pd.DataFrame(rows)


def budget_impact(budget, *, nnt_fracture: float = 20, counts: dict[str, float] | None = None,
                  n_units: float | None = None, treated_share_usual: float | None = None) -> BudgetResult:
    """Budget impact of a fracture liaison service (FLS) with seed 001's arithmetic, results in NOK.

    budget: `BudgetParams` (unit costs in `budget.currency`, converted with `budget.nok_per_unit`).
    nnt_fracture: patients enrolled per fracture avoided (seed 001: 20).
    counts: fractures per year by type, replacing `budget.fractures[*].count` (types must exist there).
    n_units: number of FLS units (may be fractional: staff scaled to volume), replacing `budget.n_units`.
    treated_share_usual: share treated without FLS, replacing `budget.treated_share_usual` (e.g. the
      observed national share).

    Arithmetic (as seed 001): avoided_k = round(count_k / NNT); cost_k = round(surgery_k x share_operated_k
    + other_k); savings_k = avoided_k x cost_k; staff = n_units x staff_cost_per_unit; dxa = N x
    (dxa_share_fls - dxa_share_usual) x dxa_cost; drugs = N x (treated_share_fls - treated_share_usual)
    x drug_cost_per_treated, with N = sum of counts; every line rounded to a whole unit; table 4 =
    totals x participation. Money is converted at the end (x nok_per_unit, rounded to whole NOK), so
    with nok_per_unit = 1 the numbers are those of the input currency.
    """
    counts = dict(counts) if counts is not None else {k: f.count for k, f in budget.fractures.items()}
    unknown = sorted(set(counts) - set(budget.fractures))
    if unknown:
        raise KeyError(f"budget_impact: no costs for fracture type(s) {unknown}; "
                       f"known types: {sorted(budget.fractures)}")
    conv = budget.nok_per_unit
    rows = []
    for ftype in budget.fractures:  # keep params order (as table 2)
        if ftype not in counts:
            continue
        f = budget.fractures[ftype]
        n = float(counts[ftype])
        avoided = round_half_up(n / nnt_fracture)
        cost = round_half_up(f.surgery_cost * f.share_operated + f.other_cost)
        rows.append({"fracture_type": ftype, "fractures": n, "avoided": avoided,
                     "cost_per_fracture": cost, "savings": avoided * cost})
    sav = pd.DataFrame(rows)
    total = {"fracture_type": "total", "fractures": sav["fractures"].sum(), "avoided": sav["avoided"].sum(),
             "cost_per_fracture": np.nan, "savings": sav["savings"].sum()}
    sav = pd.concat([sav, pd.DataFrame([total])], ignore_index=True)

    n_all = float(sum(counts.values()))
    units = budget.n_units if n_units is None else n_units
    usual = budget.treated_share_usual if treated_share_usual is None else treated_share_usual
    lines = {
        "staff": round_half_up(units * budget.staff_cost_per_unit),
        "dxa": round_half_up(n_all * (budget.dxa_share_fls - budget.dxa_share_usual) * budget.dxa_cost),
        "drugs": round_half_up(n_all * max(budget.treated_share_fls - usual, 0.0) * budget.drug_cost_per_treated),
    }
    lines["total"] = sum(lines.values())
    costs = pd.DataFrame({"item": list(lines), "annual_cost": list(lines.values())})

    part = participation_table(float(sav["savings"].iloc[-1]), float(lines["total"]), budget.participation, conv)
    if conv != 1.0:
        for col in ("cost_per_fracture", "savings"):
            sav[col] = [np.nan if pd.isna(v) else round_half_up(v * conv) for v in sav[col]]
        costs["annual_cost"] = [round_half_up(v * conv) for v in costs["annual_cost"]]
    # from params only (no patient data): every number is a statistic
    for f, lab in ((sav, "fracture_type"), (costs, "item"), (part, "participation")):
        results.annotate(f, counts={}, stats=[c for c in f.columns if c != lab], labels=[lab], universe="params")
    return BudgetResult(savings=sav, costs=costs, participation=part)


def budget_for_cohort(cohort: pd.DataFrame, params) -> BudgetResult:
    """Seed 001's FLS budget model applied to Norway's hip fracture patients (NOK per year).

    Enrolled patients = mean annual number of index hip fractures in the cohort (all of type "hip", so
    avoided fractures are costed as hip fractures, as seed 001 distributes avoided fractures like the
    enrolled ones); FLS units = annual patients / budget.patients_per_unit (seed 001's patients per unit;
    0 = one unit per hospital treating hip fractures in the cohort); treated share without FLS =
    the cohort's observed share for `scenario_indicator` (eligible patients). Unit costs:
    params.prevention.budget.
    """
    p = params.prevention
    _need(cohort, ["year", "hospital"], "budget_for_cohort")
    if "hip" not in p.budget.fractures:
        raise KeyError("budget_for_cohort needs a 'hip' entry in prevention.budget.fractures")
    annual = len(cohort) / cohort["year"].nunique()
    usual = float(medication_uptake(cohort, indicators=[p.scenario_indicator])["prop"].iloc[0])
    b = p.budget
    units = annual / b.patients_per_unit if b.patients_per_unit > 0 else cohort["hospital"].nunique()
    res = budget_impact(b, nnt_fracture=p.nnt_fracture, counts={"hip": annual}, n_units=units,
                        treated_share_usual=usual)
    # every number follows from the cohort's national size (and its national treated share): derived from
    # the private count of every patient, so a tiny cohort could never publish it
    frames = {}
    for name in ("savings", "costs", "participation"):
        f = getattr(res, name).copy()
        f["_n_pop"] = len(cohort)
        lab = [c for c in f.columns if c in ("fracture_type", "item", "participation")]
        frames[name] = results.annotate(f, counts={"_n_pop": {}}, derived={c: ["_n_pop"] for c in f.columns
                                                                            if c not in (*lab, "_n_pop")},
                                        labels=lab, private=["_n_pop"], source=cohort)
    return BudgetResult(**frames, currency=res.currency)


def budget_table4_wide(result: BudgetResult) -> pd.DataFrame:
    """Table 4 laid out as in seed 001: rows savings / costs / net saving, one column per participation."""
    part = result.participation
    t = part.set_index("participation")[["savings", "costs", "net_saving"]].T
    t.columns = [f"{round(100 * c)} %" for c in t.columns]
    t = t.reset_index(names="item")
    vals = [c for c in t.columns if c != "item"]
    m = part.attrs.get(results.KEY)
    if m is not None and "_n_pop" in m["private"]:  # from a cohort: derived from its size, as the long table
        t["_n_pop"] = int(part["_n_pop"].iloc[0])
        return results.annotate(t, counts={"_n_pop": {}}, derived={c: ["_n_pop"] for c in vals}, labels=["item"],
                                private=["_n_pop"], universe=m["universe"],
                                population_conds=[tuple(c) for c in m["population"]])
    return results.annotate(t, counts={}, stats=vals, labels=["item"], universe="params")


# ==============================================================================================
# Prevention potential
# ==============================================================================================
def prevention_scenarios(rates: pd.DataFrame, *, unit: str, target_share: float, nnt_fracture: float,
                         nnt_death: float, n_years: float = 1.0, risk_reduction: float | None = None
                         ) -> pd.DataFrame:
    """Expected gains if every unit reached (a) the best unit's treatment share, (b) a target share.

    rates: one row per unit with columns `unit`, `n` (eligible patients) and `events` (treated).
    n_years: years the counts cover; results are per year (counts / n_years).
    nnt_fracture, nnt_death: additionally treated patients per new fracture / death avoided.
    risk_reduction: if given, fractures avoided = additional treated x risk_reduction (absolute risk
      reduction of a new fracture per treated patient, e.g. CIF_untreated x (1 - HR)) instead of 1 / NNT.
    Units already above a scenario's share keep their own share (nobody is treated less).
    Returns one row per scenario and unit, plus unit "total": n_per_year, treated_per_year, share,
    scenario_share, additional_treated, avoided_fractures, avoided_deaths (all per year).
    """
    _need(rates, [unit, "n", "events"], "prevention_scenarios")
    r = rates[[unit, "n", "events"]].copy()
    r = r[r["n"] > 0].sort_values(unit).reset_index(drop=True)
    r["share"] = r["events"] / r["n"]
    best = float(r["share"].max())
    out = []
    for name, share in (("best_unit", best), ("target", target_share)):
        s = r.copy()
        s["scenario"] = name
        s["scenario_share"] = np.maximum(s["share"], share)
        s["additional_treated"] = (s["scenario_share"] - s["share"]) * s["n"] / n_years
        out.append(s)
    res = pd.concat(out, ignore_index=True)
    res["n_per_year"] = res["n"] / n_years
    res["treated_per_year"] = res["events"] / n_years
    tot = (res.groupby("scenario", sort=False)
              .agg(n_per_year=("n_per_year", "sum"), treated_per_year=("treated_per_year", "sum"),
                   additional_treated=("additional_treated", "sum")).reset_index())
    tot[unit] = "total"
    tot["share"] = tot["treated_per_year"] / tot["n_per_year"]
    tot["scenario_share"] = (tot["treated_per_year"] + tot["additional_treated"]) / tot["n_per_year"]
    res = pd.concat([res, tot], ignore_index=True)
    arr = (1.0 / nnt_fracture) if risk_reduction is None else float(risk_reduction)
    res["avoided_fractures"] = res["additional_treated"] * arr
    res["avoided_deaths"] = res["additional_treated"] / nnt_death
    cols = ["scenario", unit, "n_per_year", "treated_per_year", "share", "scenario_share",
            "additional_treated", "avoided_fractures", "avoided_deaths"]
    return res[cols].reset_index(drop=True)


# ==============================================================================================
# Medication uptake
# ==============================================================================================
def eligible_for_window(cohort: pd.DataFrame, window_days: float | None) -> pd.Series:
    """Patients who can be counted for a "started within window_days" indicator.

    Alive and under follow-up for the whole window (followup_days >= window_days): a patient who dies
    (or is censored) before the window ends cannot complete it. None (use before the fracture): everyone.
    """
    if window_days is None:
        return pd.Series(True, index=cohort.index)
    return cohort["followup_days"] >= window_days


def medication_uptake(cohort: pd.DataFrame, by: str | list[str] | None = None,
                      indicators=tuple(MED_INDICATORS)) -> pd.DataFrame:
    """Share given osteoporosis medication before and within 3/6/12 months, crude, with Wilson 95 % CI.

    by: grouping column(s) (e.g. "res_region", "hospital", "year") or None for the nation.
    indicators: labels of MED_INDICATORS. Denominators: see `eligible_for_window`.
    Returns tidy rows: [by...], indicator, window_days, n, events, prop, lower, upper (and the private
    _n_pop, every patient of the group), an annotated result (status variable #treated_<indicator>).
    """
    by = [by] if isinstance(by, str) else list(by or [])
    _need(cohort, by + ["followup_days"] + [MED_INDICATORS[i][0] for i in indicators], "medication_uptake")
    out = []
    for ind in indicators:
        col, window = MED_INDICATORS[ind]
        d = cohort.loc[eligible_for_window(cohort, window), by + [col]]
        if by:
            g = d.groupby(by, observed=True, sort=True)[col].agg(n="size", events="sum").reset_index()
        else:
            g = pd.DataFrame({"n": [len(d)], "events": [int(d[col].sum())]})
        g.insert(len(by), "indicator", ind)
        g.insert(len(by) + 1, "window_days", np.nan if window is None else float(window))
        out.append(g)
    res = _with_proportion(pd.concat(out, ignore_index=True))
    res["_n_pop"] = _group_sizes(cohort, by, res)
    return _uptake_meta(res, cohort, {c: c for c in by})


def _with_proportion(res: pd.DataFrame) -> pd.DataFrame:
    """Add prop = events / n and its Wilson 95 % CI (lower, upper) to a frame of counts."""
    res["events"] = res["events"].astype(int)
    res["prop"] = res["events"] / res["n"]
    res["lower"], res["upper"] = wilson_ci(res["events"], res["n"])
    return res


def expected_treated(cohort: pd.DataFrame, indicator: str, casemix) -> pd.Series:
    """Expected probability of treatment for each eligible patient from a national logistic model.

    indicator: a MED_INDICATORS label; casemix: categorical cohort columns, dummy-coded against their
    first (sorted) level; missing values form the level "missing" (counted, not dropped). Returns
    probabilities indexed like the eligible rows.
    """
    import statsmodels.api as sm

    col, window = MED_INDICATORS[indicator]
    elig = eligible_for_window(cohort, window)
    y = cohort.loc[elig, col].to_numpy(float)
    cols = [np.ones(len(y))]
    for c in casemix:
        lev = with_missing_level(cohort.loc[elig], [c])[c]
        codes, uniques = pd.factorize(lev, sort=True)
        if len(uniques) > 1:
            cols.append(np.eye(len(uniques))[codes][:, 1:])
    X = np.column_stack(cols)
    fit = sm.GLM(y, X, family=sm.families.Binomial()).fit()
    return pd.Series(fit.predict(X), index=cohort.index[elig], name="expected")


def uptake_adjusted(cohort: pd.DataFrame, unit: str, indicator: str = "12m", casemix=(),
                    expected: pd.Series | None = None) -> pd.DataFrame:
    """Case-mix adjusted (indirectly standardised) treatment share per unit.

    Expected counts come from a national logistic model on `casemix` (`expected_treated`); O/E, its
    exact Poisson CI and the standardised share (O/E x national share) from
    hipfrac.variation.observed_expected. Eligible patients as `eligible_for_window`.
    expected: per-patient probabilities from `expected_treated` (computed here when None; pass them to
    reuse one national model for several unit levels).
    Returns: unit, indicator, observed, expected, n, oe, oe_lower, oe_upper, crude, std_rate, lower, upper.
    """
    col, window = MED_INDICATORS[indicator]
    _need(cohort, [unit, col, "followup_days", *casemix], "uptake_adjusted")
    exp_p = expected_treated(cohort, indicator, list(casemix)) if expected is None else expected
    d = cohort.loc[exp_p.index, [unit, col]]
    res = observed_expected(d, unit, col, exp_p.to_numpy())
    res.insert(1, "indicator", indicator)
    return res


def who_is_treated(cohort: pd.DataFrame, indicator: str = "12m",
                   factors=("age_band", "sex", "cognitive", "residence", "charlson_group", "osteo_med_before")
                   ) -> pd.DataFrame:
    """Treatment share by patient characteristic (one row per factor level; missing shown as "missing").

    Returns: factor, level, n, events, prop, lower, upper (Wilson 95 % CI), private _n_pop; annotated
    (each factor's levels are a classifying variable named by the factor).
    """
    col, window = MED_INDICATORS[indicator]
    _need(cohort, [col, "followup_days", *factors], "who_is_treated")
    d = cohort.loc[eligible_for_window(cohort, window)]
    out = []
    for f in factors:
        lev = d[f].astype("object").where(d[f].notna(), "missing").astype(str)
        g = d.groupby(lev, sort=True)[col].agg(n="size", events="sum").reset_index(names="level")
        g.insert(0, "factor", f)
        pop = cohort[f].astype("object").where(cohort[f].notna(), "missing").astype(str).value_counts()
        g["_n_pop"] = g["level"].map(pop).fillna(0).astype(int).to_numpy()
        out.append(g)
    res = _with_proportion(pd.concat(out, ignore_index=True))
    st = _status(indicator)
    return results.annotate(res, counts={"n": {st: f"{TREATED}|{UNTREATED}"}, "events": {st: TREATED}, "_n_pop": {}},
                            dims={"level": "{factor}"}, derived={c: ["n", "events"] for c in ("prop", "lower", "upper")},
                            labels=["factor"], private=["_n_pop"], source=cohort, complete=len(factors) == 1)


def treatment_model(cohort: pd.DataFrame, indicator: str = "12m", terms=("C(age_band)", "C(sex)"),
                    ) -> pd.DataFrame:
    """Logistic model of being treated (statsmodels GLM, binomial, logit link) on patient factors.

    terms: model terms in the language of hipfrac.terms (column names, C(x), log(x), spline(x, df),
    interactions a:b; e.g. "C(age_band)", "charlson"), parsed and checked against the cohort's columns,
    never evaluated as text. Rows with a missing value in a used column are
    dropped and counted (column `n_dropped` in the result). Returns: term, coef (log odds), se, or,
    lower, upper (95 % CI of the OR), p, n, n_dropped.
    """
    import statsmodels.api as sm

    from hipfrac import terms as model_terms

    col, window = MED_INDICATORS[indicator]
    parsed = model_terms.parse(terms, "treatment_model terms")
    model_terms.check_columns(parsed, cohort.columns)
    used = sorted(model_terms.columns(parsed))
    _need(cohort, [col, "followup_days"], "treatment_model")
    d = cohort.loc[eligible_for_window(cohort, window), [col, *used]]
    complete = d.dropna()
    X = model_terms.design(complete, parsed)
    fit = sm.GLM(complete[col].astype(float), X, family=sm.families.Binomial()).fit()
    ci = fit.conf_int()
    res = pd.DataFrame({"term": fit.params.index, "coef": fit.params.values, "se": fit.bse.values,
                        "or": np.exp(fit.params.values), "lower": np.exp(ci[0].values),
                        "upper": np.exp(ci[1].values), "p": fit.pvalues.values})
    res["n"] = len(complete)
    res["n_dropped"] = len(d) - len(complete)
    return _model_meta(res, cohort, indicator, used)


# ==============================================================================================
# Persistence
# ==============================================================================================
def persistence(cohort: pd.DataFrame, years=(1, 3), grace_days: float = 180, by: str | None = None,
                start_within_days: float = 365) -> pd.DataFrame:
    """Share of starters still dispensed t years after their first dispensing.

    Starters: first dispensing after the fracture within `start_within_days` (days_to_osteo_med).
    At risk at t: alive and under follow-up t years after the first dispensing.
    Still treated at t: last dispensing on or after (first dispensing + t x 365.25 - grace_days).
    Uses only the first and last dispensing dates (cohort), so a pause followed by a restart counts as
    persistent. Returns: [by], years, n (at risk), events (still treated), prop, lower, upper.
    """
    cols = ["days_to_osteo_med", "osteo_med_last_date", "fracture_date", "followup_days"]
    _need(cohort, cols + ([by] if by else []), "persistence")
    d = cohort[cohort["days_to_osteo_med"].notna() & (cohort["days_to_osteo_med"] <= start_within_days)]
    start = pd.to_datetime(d["fracture_date"]) + pd.to_timedelta(d["days_to_osteo_med"], unit="D")
    span = (pd.to_datetime(d["osteo_med_last_date"]) - start).dt.days.astype(float)
    span = span.fillna(0.0)
    remaining = d["followup_days"] - d["days_to_osteo_med"]
    out = []
    for t in years:
        horizon = t * DAYS_PER_YEAR
        at_risk = remaining >= horizon
        still = at_risk & (span >= horizon - grace_days)
        frame = pd.DataFrame({"at_risk": at_risk, "still": still})
        if by:
            frame[by] = d[by]
            g = frame[frame["at_risk"]].groupby(by, sort=True)["still"].agg(n="size", events="sum").reset_index()
        else:
            g = pd.DataFrame({"n": [int(at_risk.sum())], "events": [int(still.sum())]})
        g.insert(1 if by else 0, "years", float(t))
        out.append(g)
    res = _with_proportion(pd.concat(out, ignore_index=True))
    return _persistence_meta(res, cohort, d, list(years), by, start_within_days)


def _persistence_meta(res: pd.DataFrame, cohort: pd.DataFrame, starters: pd.DataFrame, years: list, by,
                      start_within_days: float) -> pd.DataFrame:
    """Metadata of a persistence frame: population = starters (#start<days> = started), status #persist
    (see the module's status variables); private: starters of the row (_n_pop), the non-events
    (_n_stopped) and the patients leaving the risk set since the previous horizon (_n_left)."""
    hz = sorted(float(t) for t in years)
    k = {t: i + 1 for i, t in enumerate(hz)}
    K = len(hz)

    def atoms(m_risk: int, m_still: int, still: bool) -> str:
        # at risk at horizons >= m_risk; still dispensed at >= m_still (still) / not (not still)
        a = [f"r{kk}s{j}" for kk in range(m_risk, K + 1) for j in range(0, kk + 1)
             if (j >= m_still if still else j < m_still)]
        return "|".join(sorted(a))

    keys = [by] if by else []
    sizes = starters.groupby(keys, sort=True).size() if by else None
    res["_n_pop"] = (res[by].map(sizes).fillna(0).astype(int).to_numpy() if by else len(starters))
    res = res.sort_values([*keys, "years"], kind="stable")
    prev_n = res.groupby(keys, sort=False)["n"].shift(1) if by else res["n"].shift(1)
    res["_n_left"] = np.where(prev_n.isna(), res["_n_pop"], prev_n) - res["n"]
    res["_n_stopped"] = res["n"] - res["events"]
    m = res["years"].map(k)
    prev_m = m - 1
    res["_lv_n"] = [atoms(i, 0, True) for i in m]
    res["_lv_ev"] = [atoms(i, i, True) for i in m]
    res["_lv_stop"] = [atoms(i, i, False) for i in m]
    res["_lv_left"] = ["|".join(sorted(f"r{kk}s{j}" for kk in range(pm, i) for j in range(0, kk + 1)))
                       for i, pm in zip(m, prev_m)]
    res = res.sort_index()
    st, ps = f"#start{start_within_days:g}", "#persist"
    counts = {"n": {st: "started", ps: "{_lv_n}"}, "events": {st: "started", ps: "{_lv_ev}"},
              "_n_pop": {st: "started"}, "_n_stopped": {st: "started", ps: "{_lv_stop}"},
              "_n_left": {st: "started", ps: "{_lv_left}"}}
    return results.annotate(res, counts=counts, dims={by: by} if by else {},
                            derived={c: ["n", "events"] for c in ("prop", "lower", "upper")},
                            labels=["years", "_lv_n", "_lv_ev", "_lv_stop", "_lv_left"],
                            private=["_n_pop", "_n_stopped", "_n_left"], source=cohort)


# ==============================================================================================
# New fractures with death as a competing risk
# ==============================================================================================
def fracture_competing_data(cohort: pd.DataFrame, outcome: str = "second_hip_fracture") -> pd.DataFrame:
    """Per patient: time (days from the index fracture) and event (0 censored, 1 new fracture, 2 death).

    outcome: "second_hip_fracture" or "any_new_fracture". A new fracture on the day of death counts as the
    fracture. Keeps the columns sex and res_region for grouping.
    """
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome must be one of {sorted(OUTCOMES)}, got {outcome!r}")
    flag, tcol = OUTCOMES[outcome]
    _need(cohort, [flag, tcol, "dead", "followup_days", "fracture_date"], "fracture_competing_data")
    if tcol.endswith("_date"):
        t_event = (pd.to_datetime(cohort[tcol]) - pd.to_datetime(cohort["fracture_date"])).dt.days.astype(float)
    else:
        t_event = cohort[tcol].astype(float)
    has = cohort[flag].astype(int) == 1
    if (has & t_event.isna()).any():
        raise ValueError(f"{int((has & t_event.isna()).sum())} patients have {flag} = 1 but no {tcol}")
    time = np.where(has, t_event, cohort["followup_days"].astype(float))
    event = np.where(has, 1, np.where(cohort["dead"].astype(int) == 1, 2, 0))
    out = pd.DataFrame({"time": time, "event": event.astype(int)}, index=cohort.index)
    for c in ("sex", "res_region"):
        if c in cohort.columns:
            out[c] = cohort[c].values
    return out


def new_fracture_cif(cohort: pd.DataFrame, outcome: str = "second_hip_fracture", years=(1, 2, 5, 10),
                     by: str | None = None, cuts=None) -> pd.DataFrame:
    """Aalen-Johansen cumulative incidence of a new fracture, death as competing risk, at `years`.

    Uses hipfrac.competing.cumulative_incidence (Gray's variance, log(-log) 95 % limits). Horizons after
    the last follow-up of a group are missing. Returns: [by], outcome, years, n (patients in the group),
    events (new fractures observed by the horizon), n_risk (still followed), cif, lower, upper; annotated
    with the status variable #<outcome> cut at `cuts` (years; default `years`; pass `outcome_cuts(params)`
    so that every table of a run counting this outcome uses the same atoms).
    """
    from hipfrac import competing

    d = fracture_competing_data(cohort, outcome)
    d["time_years"] = d["time"] / DAYS_PER_YEAR
    cif = competing.cumulative_incidence(d, time="time_years", event="event", times=list(years),
                                         group=by, causes=[1])
    keys = [by] if by else []
    out = cif.rename(columns={"time": "years"})
    if by:
        out = out.merge(d.groupby(by, sort=True).size().rename("n").reset_index(), on=by, how="left")
    else:
        out = out.assign(n=len(d))
    out.insert(len(keys), "outcome", outcome)
    out = out[[*keys, "outcome", "years", "n", "events", "n_risk", "cif", "lower", "upper"]].reset_index(drop=True)
    return _cif_meta(out, cohort, keys, {by: by} if by else {}, years if cuts is None else cuts)


def _cif_meta(out: pd.DataFrame, source: pd.DataFrame, keys: list[str], dims: dict, cuts=None,
              complete: bool = True) -> pd.DataFrame:
    """Metadata of a CIF horizon frame (status #fx2[fx,dead,cens] / #newfx[...] of the row's outcome, atoms in
    days): n = the group's patients (no condition: the variable has no remainder), events = new fractures by
    the horizon h (fx@-inf-h), n_risk = every kind after h; private: the steps since the previous horizon
    (_fx_step new fractures, _exit_step deaths and censorings, _left_step everyone leaving the risk set),
    _exits (deaths and censorings by the horizon) and _nonev (n - events). `cuts` is not needed (kept for
    callers): the engine cuts the intervals at every horizon any cell uses."""
    at = _Atoms(_whole_days(source, sorted(set(out["outcome"]))))
    out = out.copy()
    order = out.sort_values([*keys, "outcome", "years"], kind="stable").index
    o = out.loc[order]
    grp = o.groupby([*keys, "outcome"], sort=False)
    prev_t = grp["years"].shift(1).fillna(-math.inf)
    prev_ev = grp["events"].shift(1).fillna(0.0)
    prev_risk = grp["n_risk"].shift(1)
    prev_risk = prev_risk.where(prev_t > -math.inf, o["n"])
    o["_fx_step"] = o["events"] - prev_ev
    o["_left_step"] = prev_risk - o["n_risk"]
    o["_exit_step"] = o["_left_step"] - o["_fx_step"]
    o["_exits"] = o["n"] - o["events"] - o["n_risk"]
    o["_nonev"] = o["n"] - o["events"]
    ts = list(zip(prev_t, o["years"].astype(float)))
    o["_st"] = [_status_var(x) for x in o["outcome"]]
    o["_lv_ev"] = [at.level(["fx"], -math.inf, t) for _, t in ts]
    o["_lv_risk"] = [at.level(at.KINDS, t) for _, t in ts]
    o["_lv_fx_step"] = [at.level(["fx"], a, t) for a, t in ts]
    o["_lv_left_step"] = [at.level(at.KINDS, a, t) for a, t in ts]
    o["_lv_exit_step"] = [at.level(["dead", "cens"], a, t) for a, t in ts]
    o["_lv_exits"] = [at.level(["dead", "cens"], -math.inf, t) for _, t in ts]
    o["_lv_nonev"] = [sdc.status_level(at.level(["fx"], t), at.level(["dead", "cens"])) for _, t in ts]
    out = o.loc[out.index]
    st = "{_st}"
    counts = {"n": {}, "events": {st: "{_lv_ev}"}, "n_risk": {st: "{_lv_risk}"}}
    private = {"_fx_step": "{_lv_fx_step}", "_left_step": "{_lv_left_step}", "_exit_step": "{_lv_exit_step}",
               "_exits": "{_lv_exits}", "_nonev": "{_lv_nonev}"}
    counts.update({c: {st: lv} for c, lv in private.items()})
    lvs = [c for c in out.columns if c.startswith("_lv_")] + ["_st"]
    return results.annotate(out, counts=counts, dims=dims,
                            derived={c: ["n", "events", "n_risk"] for c in ("cif", "lower", "upper")},
                            labels=["outcome", "years", *[c for c in ("by",) if c in out.columns], *lvs],
                            private=list(private), source=source, complete=complete)


def new_fracture_cifs(cohort: pd.DataFrame, params, outcomes=tuple(OUTCOMES), by=("sex", "res_region")
                      ) -> pd.DataFrame:
    """`new_fracture_cif` at params.prevention.cif_years for each outcome, overall and by each column of
    `by`, stacked: outcome, by ("all" or the column), group, years, n, events, n_risk, cif, lower, upper
    (annotated; one status variable per outcome, cut at `outcome_cuts(params)`)."""
    cuts = outcome_cuts(params)
    years = params.prevention.cif_years
    frames = []
    for o in outcomes:
        for b in (None, *by):
            f = new_fracture_cif(cohort, o, years, by=b, cuts=cuts)
            f = f.rename(columns={b: "group"}).assign(by=b) if b else f.assign(group="all", by="all")
            frames.append(pd.DataFrame(f))
    res = pd.concat(frames, ignore_index=True)
    hidden = [c for c in res.columns if c.startswith("_")]
    res = res[["outcome", "by", "group", "years", "n", "events", "n_risk", "cif", "lower", "upper", *hidden]]
    res["group"] = res["group"].astype(str)
    return _cif_meta(res[[c for c in res.columns if c not in hidden]], cohort, ["by", "group"],
                     {"group": "{by}"}, cuts, complete=len(by) <= 1)


# ==============================================================================================
# Treatment and second fracture: time-dependent exposure (observational)
# ==============================================================================================
def split_at_exposure(data: pd.DataFrame, *, id: str, time: str, event: str, exposure_time: str,
                      exposure_end: str | None = None, covariates=()) -> pd.DataFrame:
    """Episode splitting (counting-process data) at a time-dependent 0/1 exposure.

    Each person is followed over (0, time] and becomes exposed at `exposure_time` (NaN = never; <= 0 =
    exposed from the start; >= time = never within follow-up), optionally until `exposure_end` (after
    which unexposed again). Rows: id, start, stop, event (only on the last row), exposed, covariates.
    Equivalent to R's survival::tmerge(..., tdc(exposure_time)) for the exposure start.
    """
    _need(data, [id, time, event, exposure_time, *( [exposure_end] if exposure_end else []), *covariates],
          "split_at_exposure")
    t = data[time].to_numpy(float)
    if (t <= 0).any() or np.isnan(t).any():
        raise ValueError(f"split_at_exposure: {int(((t <= 0) | np.isnan(t)).sum())} rows have {time} <= 0 or missing")
    e = data[event].to_numpy(int)
    x0 = data[exposure_time].to_numpy(float)
    x0 = np.where(np.isnan(x0) | (x0 >= t), np.inf, np.maximum(x0, 0.0))
    x1 = data[exposure_end].to_numpy(float) if exposure_end else np.full(len(t), np.inf)
    x1 = np.where(np.isnan(x1), np.inf, x1)
    x1 = np.maximum(x1, x0)
    # cut points within (0, t): up to three pieces [0, x0), [x0, x1), [x1, t)
    bounds = np.stack([np.zeros_like(t), np.minimum(x0, t), np.minimum(x1, t), t], axis=1)
    flags = np.array([0, 1, 0])
    pieces = []
    for k in range(3):
        start, stop = bounds[:, k], bounds[:, k + 1]
        keep = stop > start
        idx = np.nonzero(keep)[0]
        pieces.append(pd.DataFrame({"_row": idx, "_k": k, "start": start[idx], "stop": stop[idx],
                                    "exposed": flags[k]}))
    long = pd.concat(pieces, ignore_index=True).sort_values(["_row", "_k"], kind="stable")
    last = long["stop"].to_numpy() == t[long["_row"].to_numpy()]
    long["event"] = np.where(last, e[long["_row"].to_numpy()], 0)
    base = data[[id, *covariates]].reset_index(drop=True)
    out = pd.concat([base.iloc[long["_row"].to_numpy()].reset_index(drop=True),
                     long[["start", "stop", "event", "exposed"]].reset_index(drop=True)], axis=1)
    return out[[id, "start", "stop", "event", "exposed", *covariates]]


class TimeVaryingCox:
    """Cox proportional hazards model on counting-process (start, stop] data: time-dependent covariates.

    fit(long, covariates, id="id", start="start", stop="stop", event="event") -> self
    summary: term, coef (log HR), se, hr, lower, upper (95 % Wald), p; also `loglik`, `loglik_null`,
    `n_subjects`, `n_events`, `n_iter`. Times in whatever unit the data use (days here).

    A row is at risk at an event time t when start < t <= stop (as R's survival::coxph). ties: "efron"
    (default, as coxph) or "breslow". method "vectorised" (default) computes the risk-set sums once per
    Newton step with binned reverse cumulative sums, O(rows x p^2 + event times x p^2), seconds at
    national scale; method "lifelines" uses lifelines' CoxTimeVaryingFitter (Efron only; O(event times x
    rows) per step: 14 s for 12,000 patients, minutes nationally). Both agree with coxph on R's jasa
    data (tests/test_prevention_tvcox.py).
    """

    def __init__(self, ties: str = "efron", method: str = "vectorised", tol: float = 1e-10, max_iter: int = 50):
        if ties not in ("efron", "breslow"):
            raise ValueError(f"ties must be 'efron' or 'breslow', got {ties!r}")
        if method not in ("vectorised", "lifelines"):
            raise ValueError(f"method must be 'vectorised' or 'lifelines', got {method!r}")
        if method == "lifelines" and ties != "efron":
            raise ValueError("lifelines' CoxTimeVaryingFitter implements Efron ties only")
        self.ties, self.method, self.tol, self.max_iter = ties, method, tol, max_iter
        self.summary: pd.DataFrame | None = None

    def fit(self, long: pd.DataFrame, covariates, *, id: str = "id", start: str = "start", stop: str = "stop",
            event: str = "event") -> TimeVaryingCox:
        covariates = list(covariates)
        _need(long, [id, start, stop, event, *covariates], "TimeVaryingCox.fit")
        d = long[[id, start, stop, event, *covariates]]
        if d.isna().any().any():
            raise ValueError("TimeVaryingCox.fit: missing values in " +
                             ", ".join(c for c in d.columns if d[c].isna().any()))
        if (d[stop] <= d[start]).any():
            raise ValueError(f"TimeVaryingCox.fit: {int((d[stop] <= d[start]).sum())} rows with stop <= start")
        if self.method == "lifelines":
            coef, cov, ll, ll0, n_iter = self._fit_lifelines(d, covariates, id, start, stop, event)
        else:
            x = d[covariates].to_numpy(float)
            coef, cov, ll, ll0, n_iter = self._fit_vectorised(
                d[start].to_numpy(float), d[stop].to_numpy(float), d[event].to_numpy(int), x)
        se = np.sqrt(np.diag(cov))
        z = stats.norm.ppf(0.975)
        self.summary = pd.DataFrame({
            "term": covariates, "coef": coef, "se": se, "hr": np.exp(coef), "lower": np.exp(coef - z * se),
            "upper": np.exp(coef + z * se), "p": 2 * stats.norm.sf(np.abs(coef / se))})
        self.loglik, self.loglik_null = float(ll), float(ll0)
        self.n_iter = None if n_iter is None else int(n_iter)
        self.n_subjects = int(d[id].nunique())
        self.n_events = int(d[event].sum())
        return self

    # --- lifelines (reference implementation, slow) ----------------------------------------------
    @staticmethod
    def _fit_lifelines(d, covariates, id, start, stop, event):
        from lifelines import CoxTimeVaryingFitter

        ctv = CoxTimeVaryingFitter()
        ctv.fit(d, id_col=id, event_col=event, start_col=start, stop_col=stop)
        pos = [list(ctv.params_.index).index(c) for c in covariates]
        coef = ctv.params_.to_numpy()[pos]
        cov = np.asarray(ctv.variance_matrix_)[np.ix_(pos, pos)]
        return coef, cov, ctv.log_likelihood_, np.nan, None

    # --- vectorised Newton-Raphson ---------------------------------------------------------------
    def _fit_vectorised(self, start, stop, event, x):
        n, p = x.shape
        ev_times = np.unique(stop[event == 1])
        if len(ev_times) == 0:
            raise ValueError("TimeVaryingCox.fit: no events")
        J = len(ev_times)
        # bin k of a row = index of the last event time <= stop (resp. <= start); -1 if none
        k_stop = np.searchsorted(ev_times, stop, side="right") - 1
        k_start = np.searchsorted(ev_times, start, side="right") - 1
        is_ev = event == 1
        j_ev = np.searchsorted(ev_times, stop[is_ev])           # exact event-time index of each event
        d_j = np.bincount(j_ev, minlength=J).astype(float)
        # one term per event for the Efron sum over l = 0 .. d_j - 1
        order = np.argsort(j_ev, kind="stable")
        j_term = j_ev[order]
        first = np.searchsorted(j_term, np.arange(J))
        l_term = np.arange(len(j_term)) - first[j_term]
        frac = l_term / d_j[j_term] if self.ties == "efron" else np.zeros(len(j_term))
        x_ev_sum = x[is_ev].sum(axis=0)
        iu = np.triu_indices(p)
        # constant design of the risk-set sums: [1, x, upper triangle of x x'] per row
        z = np.column_stack([np.ones(n), x, x[:, iu[0]] * x[:, iu[1]]])
        # sparse bin-membership matrices (event times x rows): "stop in bin j", "start in bin j", "event at j"
        from scipy import sparse

        def members(k, rows):
            ok = k >= 0
            return sparse.csr_matrix((np.ones(int(ok.sum())), (k[ok], rows[ok])), shape=(J, n))

        rows = np.arange(n)
        m_risk = members(k_stop, rows) - members(k_start, rows)
        m_ev = members(j_ev, rows[is_ev])

        def parts(beta):
            eta = x @ beta
            shift = eta.max()
            w = np.exp(eta - shift)  # common scale factor cancels in ratios; loglik corrected below
            vals = w[:, None] * z
            risk = np.cumsum(np.asarray(m_risk @ vals)[::-1], axis=0)[::-1]   # rows with start < t_j <= stop
            ev_vals = np.asarray(m_ev @ vals)
            R = risk[j_term] - frac[:, None] * ev_vals[j_term]   # per Efron term
            s0 = R[:, 0]
            s1 = R[:, 1:1 + p]
            s2u = R[:, 1 + p:]
            ll = float(eta[is_ev].sum() - np.sum(np.log(s0) + shift))
            grad = x_ev_sum - (s1 / s0[:, None]).sum(axis=0)
            s2 = np.zeros((p, p))
            s2[iu] = (s2u / s0[:, None]).sum(axis=0)
            s2 = s2 + s2.T - np.diag(np.diag(s2))
            xbar = s1 / s0[:, None]
            info = s2 - xbar.T @ xbar
            return ll, grad, info

        beta = np.zeros(p)
        ll, grad, info = parts(beta)
        ll0 = ll
        n_iter = 0
        for iteration in range(1, self.max_iter + 1):
            n_iter = iteration
            step = np.linalg.solve(info, grad)
            new = beta + step
            ll_new, g_new, i_new = parts(new)
            halvings = 0
            while ll_new < ll - 1e-12 and halvings < 30:
                step /= 2
                new = beta + step
                ll_new, g_new, i_new = parts(new)
                halvings += 1
            done = abs(ll_new - ll) <= self.tol * (abs(ll) + 1e-8) and np.max(np.abs(step)) < 1e-7
            beta, ll, grad, info = new, ll_new, g_new, i_new
            if done:
                break
        else:
            raise RuntimeError(f"TimeVaryingCox: no convergence in {self.max_iter} iterations")
        return beta, np.linalg.inv(info), ll, ll0, n_iter


def _model_matrix(cohort: pd.DataFrame, adjust) -> tuple[pd.DataFrame, list[str]]:
    """Numeric covariates for the Cox models: numeric columns as is, string columns dummy-coded against
    their first level (sorted); missing string values get their own level "missing"."""
    parts, names = [], []
    for c in adjust:
        s = cohort[c]
        if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
            if s.isna().any():
                raise ValueError(f"covariate {c} has {int(s.isna().sum())} missing values")
            parts.append(s.astype(float).rename(c))
            names.append(c)
        else:
            lev = s.astype("object").where(s.notna(), "missing").astype(str)
            levels = sorted(lev.unique())
            for lv in levels[1:]:
                name = f"{c}[{lv}]"
                parts.append((lev == lv).astype(float).rename(name))
                names.append(name)
    x = pd.concat(parts, axis=1) if parts else pd.DataFrame(index=cohort.index)
    return x, names


def treatment_effect(cohort: pd.DataFrame, outcome: str = "second_hip_fracture",
                     adjust=("age", "male", "charlson", "cognitive", "residence"),
                     exposure: str = "started", grace_days: float = 180,
                     exclude_prior_users: bool = True) -> tuple[pd.DataFrame, dict]:
    """Observational association of osteoporosis treatment with a new fracture: Cox model with treatment
    as a time-dependent exposure (episode split at the first dispensing after the fracture).

    Time scale: days since the index fracture; death and end of follow-up censor (cause-specific hazard).
    exposure: "started" = exposed from the first dispensing on; "on_treatment" = until the last
      dispensing + grace_days.
    exclude_prior_users: drop patients treated in the 12 months before the fracture (new-user design).
    Returns (summary, info): summary as TimeVaryingCox.summary (term "exposed" = treatment HR);
    info: n_patients, n_events, n_excluded_prior_users, n_rows.
    """
    d = cohort
    n_prior = 0
    if exclude_prior_users:
        _need(cohort, ["osteo_med_before"], "treatment_effect")
        prior = cohort["osteo_med_before"].astype(int) == 1
        n_prior = int(prior.sum())
        d = cohort.loc[~prior]
    cr = fracture_competing_data(d, outcome)
    x, names = _model_matrix(d, adjust)
    persons = pd.DataFrame({"id": np.arange(len(d)), "time": cr["time"].to_numpy(),
                            "event": (cr["event"] == 1).astype(int).to_numpy(),
                            "exposure_time": d["days_to_osteo_med"].to_numpy(float)})
    if exposure == "on_treatment":
        last = (pd.to_datetime(d["osteo_med_last_date"]) - pd.to_datetime(d["fracture_date"])).dt.days
        persons["exposure_end"] = last.to_numpy(float) + grace_days
    elif exposure != "started":
        raise ValueError(f"exposure must be 'started' or 'on_treatment', got {exposure!r}")
    persons = pd.concat([persons, x.reset_index(drop=True)], axis=1)
    # same-day events (time 0) get half a day, as followup_days does for same-day deaths
    persons["time"] = persons["time"].clip(lower=0.5)
    long = split_at_exposure(persons, id="id", time="time", event="event", exposure_time="exposure_time",
                             exposure_end="exposure_end" if exposure == "on_treatment" else None,
                             covariates=names)
    fit = TimeVaryingCox().fit(long, ["exposed", *names])
    info = {"n_patients": fit.n_subjects, "n_events": fit.n_events, "n_excluded_prior_users": n_prior,
            "n_rows": len(long), "exposure": exposure, "outcome": outcome}
    return fit.summary, info


def landmark_effect(cohort: pd.DataFrame, outcome: str = "second_hip_fracture", landmark_days: float = 182,
                    adjust=("age", "male", "charlson", "cognitive", "residence"),
                    exclude_prior_users: bool = True) -> tuple[pd.DataFrame, dict]:
    """Landmark analysis: among patients alive, under follow-up and free of the outcome at the landmark,
    compare those treated by the landmark with the rest (Cox, Efron ties; `TimeVaryingCox` with one row
    per patient), follow-up from the landmark. Observational; treatment started after the landmark counts
    as untreated.
    Returns (summary, info) like `treatment_effect` (term "treated").
    """
    d = cohort
    n_prior = 0
    if exclude_prior_users:
        prior = cohort["osteo_med_before"].astype(int) == 1
        n_prior = int(prior.sum())
        d = cohort.loc[~prior]
    cr = fracture_competing_data(d, outcome)
    at_risk = (cr["time"] > landmark_days).to_numpy()
    d, cr = d.loc[at_risk], cr.loc[at_risk]
    x, names = _model_matrix(d, adjust)
    frame = pd.DataFrame({"id": np.arange(len(d)), "start": 0.0,
                          "stop": (cr["time"] - landmark_days).to_numpy(),
                          "event": (cr["event"] == 1).astype(int).to_numpy(),
                          "treated": (d["days_to_osteo_med"].fillna(np.inf) <= landmark_days).astype(int).to_numpy()})
    frame = pd.concat([frame, x.reset_index(drop=True)], axis=1)
    summary = TimeVaryingCox().fit(frame, ["treated", *names]).summary
    info = {"n_patients": len(frame), "n_events": int(frame["event"].sum()), "n_treated": int(frame["treated"].sum()),
            "n_excluded_prior_users": n_prior, "landmark_days": landmark_days, "outcome": outcome}
    return summary, info


# ==============================================================================================
# Orchestration helpers for notebook 04 (each returns tidy aggregates)
# ==============================================================================================
def with_missing_level(cohort: pd.DataFrame, columns) -> pd.DataFrame:
    """Copy of the given categorical columns with missing values as the level "missing" (counted, not
    dropped), for case-mix models."""
    out = pd.DataFrame(index=cohort.index)
    for c in columns:
        s = cohort[c]
        out[c] = s.astype("object").where(s.notna(), "missing").astype(str)
    return out


def uptake_by_units(cohort: pd.DataFrame, units, indicator: str = "12m", casemix=()) -> pd.DataFrame:
    """Crude and case-mix adjusted treatment shares for several unit levels, stacked.

    Returns: unit_level, unit, indicator, n, events, prop, lower, upper (crude, Wilson), expected, oe,
    oe_lower, oe_upper, std_rate, std_lower, std_upper (indirectly standardised, see `uptake_adjusted`),
    private _n_pop; annotated (expected, a sum of model probabilities, is withheld with n; O/E and the
    standardised shares with the counts).
    """
    frames = []
    exp_p = expected_treated(cohort, indicator, list(casemix))
    for level in units:
        crude = medication_uptake(cohort, by=level, indicators=[indicator])
        adj = uptake_adjusted(cohort, level, indicator, casemix, expected=exp_p)
        adj = adj.rename(columns={"lower": "std_lower", "upper": "std_upper"})
        m = crude.merge(adj[[level, "expected", "oe", "oe_lower", "oe_upper", "std_rate", "std_lower", "std_upper"]],
                        on=level, how="left")
        m = m.rename(columns={level: "unit"})
        m.insert(0, "unit_level", level)
        frames.append(m.drop(columns=["window_days"]))
    variables = {sdc.DIM_VARIABLES.get(u, u) for u in units}
    return _uptake_meta(pd.concat(frames, ignore_index=True), cohort, {"unit": "{unit_level}"},
                        complete=len(variables) == 1)


def unit_funnel(cohort: pd.DataFrame, unit: str, indicator: str = "12m", levels=(0.95, 0.998)):
    """Funnel statistics of the crude treatment share per unit around the national share.

    Returns (funnel, info, limits): hipfrac.variation.funnel_table frame (annotated, with the indicator
    and the private _n_pop) and info, and exact binomial limits over a grid of n for drawing.
    """
    from hipfrac import variation

    col, window = MED_INDICATORS[indicator]
    d = cohort.loc[eligible_for_window(cohort, window), [unit, col]]
    funnel, info = variation.funnel_table(d, unit, col, levels=levels)
    funnel["_n_pop"] = _group_sizes(cohort, [unit], funnel)
    funnel.insert(1, "indicator", indicator)
    lim_cols = [c for c in funnel.columns if c.startswith(("lower_", "upper_"))]
    other = [c for c in funnel.columns if c not in (unit, "indicator", "n", "events", "_n_pop", *lim_cols)]
    results.annotate(funnel, counts={"n": {"#treated_{indicator}": f"{TREATED}|{UNTREATED}"},
                                     "events": {"#treated_{indicator}": TREATED}, "_n_pop": {}},
                     dims={unit: unit}, derived={**{c: ["n", "events"] for c in other}, **{c: ["n"] for c in lim_cols}},
                     labels=["indicator"], private=["_n_pop"], source=cohort)
    n_max = int(max(funnel["n"].max(), 10))
    grid = np.unique(np.round(np.geomspace(5, n_max * 1.1, 120)).astype(int))
    limits = variation.funnel_limits(grid, info["target"], levels)
    return funnel, info, limits


def funnel_outside(funnel: pd.DataFrame, shown: pd.DataFrame, level: str = "99.8") -> pd.DataFrame:
    """The units of `funnel` (a `unit_funnel` result) outside its `level` limits, chosen on `shown` (its
    protected copy, e.g. Exporter.protect(funnel)): a unit whose flag is withheld is not listed, so the
    list itself never tells a withheld flag. Returns the rows of the result (metadata kept)."""
    col = f"outside_{level}"
    if len(shown) != len(funnel):
        raise ValueError("funnel_outside: `shown` must be the protected copy of `funnel` (same rows)")
    flag = shown[col].astype(object).where(shown[col].notna(), "")
    return funnel.loc[(flag != "").to_numpy()].reset_index(drop=True)


def unit_random_effect(cohort: pd.DataFrame, unit: str, indicator: str = "12m", casemix=()) -> pd.DataFrame:
    """Between-unit variation of treatment: random-intercept logistic models (hipfrac.variation) without
    and with case-mix adjustment. Returns one row per model: model, sigma2, sigma2_lower, sigma2_upper,
    mor, mor_lower, mor_upper, n_obs, n_groups."""
    from hipfrac import variation

    col, window = MED_INDICATORS[indicator]
    elig = eligible_for_window(cohort, window)
    d = pd.concat([cohort.loc[elig, [unit, col]], with_missing_level(cohort.loc[elig], casemix)], axis=1)
    rows = []
    for name, cov in (("crude", []), ("case-mix adjusted", list(casemix))):
        fit = variation.random_intercept_logit(d, col, unit, cov)
        rows.append({"model": name, "unit": unit, "indicator": indicator, "sigma2": fit.sigma2,
                     "sigma2_lower": fit.sigma2_ci[0], "sigma2_upper": fit.sigma2_ci[1], "mor": fit.mor,
                     "mor_lower": fit.mor_ci[0], "mor_upper": fit.mor_ci[1], "n_obs": fit.n_obs,
                     "n_groups": fit.n_groups})
    res = pd.DataFrame(rows)
    # n_obs: the eligible patients of the indicator (the same cell as medication_uptake's national n)
    return results.annotate(res, counts={"n_obs": {_status(indicator): f"{TREATED}|{UNTREATED}"}},
                            stats=["sigma2", "sigma2_lower", "sigma2_upper", "mor", "mor_lower", "mor_upper",
                                   "n_groups"], labels=["model", "unit", "indicator"], source=cohort)


def treatment_effects(cohort: pd.DataFrame, params, outcomes=("second_hip_fracture", "any_new_fracture"),
                      adjust=("age", "male", "charlson", "cognitive", "residence")) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Treatment HRs for new fractures from the time-varying Cox models ("started" and "on_treatment"
    exposure) and the landmark analysis. Returns (effects, models): effects has one row per outcome and
    analysis (outcome, analysis, hr, lower, upper, p, n_patients, n_events); models every coefficient."""
    p = params.prevention
    eff, models = [], []
    for outcome in outcomes:
        runs = [(f"time-varying, {ex}", *treatment_effect(cohort, outcome, adjust, exposure=ex,
                                                           grace_days=p.persistence_grace_days), "exposed")
                for ex in ("started", "on_treatment")]
        s, info = landmark_effect(cohort, outcome, p.landmark_days, adjust)
        runs.append((f"landmark {p.landmark_days:g} days", s, info, "treated"))
        for name, s, info, term in runs:
            r = s.set_index("term").loc[term]
            eff.append({"outcome": outcome, "analysis": name, "hr": r["hr"], "lower": r["lower"],
                        "upper": r["upper"], "p": r["p"], "n_patients": info["n_patients"],
                        "n_events": info["n_events"],
                        "_from": p.landmark_days / DAYS_PER_YEAR if "landmark_days" in info else 0.0})
            models.append(s.assign(outcome=outcome, analysis=name))
    models = pd.concat(models, ignore_index=True)
    models = models[["outcome", "analysis", *[c for c in models.columns if c not in ("outcome", "analysis")]]]
    stats_cols = [c for c in models.columns if c not in ("outcome", "analysis", "term")]
    results.annotate(models, counts={}, stats=stats_cols, labels=["outcome", "analysis", "term"], source=cohort)
    return _effects_meta(pd.DataFrame(eff), cohort, outcome_cuts(params)), models


def _effects_meta(eff: pd.DataFrame, source: pd.DataFrame, cuts) -> pd.DataFrame:
    """Metadata of the treatment-effect rows: patients = new users (#treated_before = untreated), for the
    landmark analysis those still followed and free of the outcome at the landmark; events = their new
    fractures (#<outcome>); private _n_nonev = patients - events."""
    # from the landmark (days as given: the models compare time > landmark_days), or everyone
    start = [-math.inf if a == 0 else round(a * DAYS_PER_YEAR, 6) for a in eff["_from"]]

    def after(kinds, a):
        return sdc.status_level(*(sdc.interval_atom(k, a, math.inf) for k in kinds))

    eff["_st"] = [_status_var(o) for o in eff["outcome"]]
    eff["_lv_pat"] = [after(_Atoms.KINDS, a) for a in start]
    eff["_lv_ev"] = [after(["fx"], a) for a in start]
    eff["_lv_nonev"] = [after(["dead", "cens"], a) for a in start]
    eff["_n_nonev"] = eff["n_patients"] - eff["n_events"]
    nu, st = {_status("before"): UNTREATED}, "{_st}"
    eff = eff.drop(columns="_from")
    return results.annotate(eff, counts={"n_patients": {**nu, st: "{_lv_pat}"}, "n_events": {**nu, st: "{_lv_ev}"},
                                         "_n_nonev": {**nu, st: "{_lv_nonev}"}},
                            stats=["hr", "lower", "upper", "p"],
                            labels=["outcome", "analysis", "_st", "_lv_pat", "_lv_ev", "_lv_nonev"], private=["_n_nonev"],
                            source=source)


def scenarios_for_cohort(cohort: pd.DataFrame, params, hr: float | None = None) -> pd.DataFrame:
    """Prevention-potential scenarios by the first unit level of params.prevention.units, per year.

    With NNTs from params (analysis "nnt"); if `hr` (treatment HR for second hip fracture) is given, also
    with the estimated absolute risk reduction CIF(horizon) x (1 - hr), CIF = the cohort's cumulative
    incidence of second hip fracture at params.prevention.scenario_horizon_years (analysis "estimated").
    Annotated: n and events (eligible and treated patients of the unit, status #treated_<indicator>) are
    counts; the per-year numbers, shares and gains are derived from them.
    """
    p = params.prevention
    unit = p.units[0]
    rates = medication_uptake(cohort, by=unit, indicators=[p.scenario_indicator])
    n_years = cohort["year"].nunique()
    kw = dict(unit=unit, target_share=p.target_share, nnt_fracture=p.nnt_fracture, nnt_death=p.nnt_death,
              n_years=n_years)
    out = [prevention_scenarios(rates, **kw).assign(effect="nnt")]
    if hr is not None:
        cif = new_fracture_cif(cohort, "second_hip_fracture", years=[p.scenario_horizon_years])["cif"].iloc[0]
        if np.isfinite(cif):
            arr = float(cif) * (1 - hr)
            out.append(prevention_scenarios(rates, **kw, risk_reduction=arr).assign(effect="estimated"))
    res = pd.concat(out, ignore_index=True)
    res = res[["effect", *[c for c in res.columns if c != "effect"]]]
    # the counts behind each row (the eligible and treated patients of the unit; the total: all of them)
    cnt = rates[[unit, "n", "events", "_n_pop"]].copy()
    cnt[unit] = cnt[unit].astype(str)
    tot = pd.DataFrame({unit: ["total"], "n": [cnt["n"].sum()], "events": [cnt["events"].sum()],
                        "_n_pop": [len(cohort)]})
    cnt = pd.concat([cnt, tot], ignore_index=True)
    res[unit] = res[unit].astype(str)
    res = res.merge(cnt, on=unit, how="left").assign(indicator=p.scenario_indicator)
    res = res[["effect", "scenario", unit, "indicator", "n", "events", *[c for c in res.columns if c not in (
        "effect", "scenario", unit, "indicator", "n", "events")]]]
    derived = {"n_per_year": ["n"], "treated_per_year": ["events"]}
    derived |= {c: ["n", "events"] for c in ("share", "scenario_share", "additional_treated", "avoided_fractures",
                                              "avoided_deaths")}
    return results.annotate(
        res, counts={"n": {"#treated_{indicator}": f"{TREATED}|{UNTREATED}"}, "events": {"#treated_{indicator}": TREATED},
                     "_n_pop": {}}, dims={unit: unit}, derived=derived, labels=["effect", "scenario", "indicator"],
        private=["_n_pop"], source=cohort)
