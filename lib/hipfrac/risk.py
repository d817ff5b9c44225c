"""Risk factors for death after hip fracture and their relative importance (research question 3).

Cox proportional hazards models (lifelines `CoxPHFitter`, Efron ties) for death within a horizon
(30 days, 1 year) or over the whole follow-up, with factors from the cohort contract:

- **Factors** are named cohort columns with a kind (`FACTORS`): ``age`` as a restricted (natural) cubic
  spline (Harrell's `rcs`, knots at fixed quantiles), numeric factors per unit (``charlson`` per point,
  ``income_quintile`` per quintile, ``hospital_volume`` per 100 operations a year), categorical factors as
  indicators ``col[level]`` against a reference level, and the derived factor ``nonguideline_implant``
  (1 = the guideline advises an implant and another was used; from ``guideline_implant``).
- **Hospital**: cluster-robust (sandwich) standard errors by treating hospital, or hospital as strata.
- **Horizon** h days: follow-up is censored at h (time = min(followup_days, h), event = death <= h).

Estimates are tidy frames (`CoxResult.summary`: factor, term, coef, se, hr, lower, upper, p). Relative
importance: `anova_importance` (Harrell's partial Wald chi-square minus df per factor, multi-df factors
jointly), `cindex_drop` (drop in Harrell's C when a factor is left out), `paf_gcomputation`
(population attributable fraction of 1-year death for a modifiable factor by g-computation).
Missing data: `impute_chained` (multiple imputation by chained equations) + `pool_rubin` (Rubin's rules),
`missingness_table`. PH diagnostics: `ph_test` (Grambsch–Therneau test from scaled Schoenfeld residuals,
as survival::cox.zph before version 3.0 and lifelines; see the function for the difference from the
exact score test of survival >= 3.0), `schoenfeld_smooth` (binned scaled residuals for plots),
`piecewise_cox` (time-specific hazard ratios by episode splitting at 30 days and 1 year).
Publication output: `regression_table`; `adjusted_survival` for typical patient profiles.

Times are in days; hazard ratios are per unit stated in `FACTORS` (age effects are shown per profile).

Disclosure metadata (hipfrac.results; every table function returns an annotated result):

* deaths by a horizon h are the atom ``dead@-inf-h`` of the complete-kinds follow-up variable
  ``#fu[dead,cens]`` (death or censoring at followup_days; the whole follow-up: ``dead@-inf-inf``), as in
  hipfrac.survival; patients alive at the start of an episode (a, b] are ``dead@a-inf|cens@a-inf``;
* complete cases of a set of columns are the population condition ``#complete:<col1>,<col2>,...`` =
  complete (the rest: dropped), added to the data's population; missing values of one column
  ``#complete:<column>`` = missing (recorded the rest), as notebook 00's completeness;
* a second hip fracture with death competing: ``#fx2[fx,dead,cens]`` (hipfrac.competing.OUTCOME_STATUS),
  the same variable as notebook 04's cumulative incidence of the outcome;
* model outputs (coefficients, hazard ratios, tests, C-indices, model-based curves, Rubin statistics) are
  statistics. "Every patient" is always written without a condition (never as the full set of #fu atoms:
  one cell under two names would be published under one and withheld under the other).
Reference checks: tests/reference/cox.R (survival::coxph, cox.zph on `lung`), tests/test_risk.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from hipfrac import results, sdc
from hipfrac.competing import OUTCOME_STATUS, _gram

__all__ = [
    "BreslowCox",
    "FACTORS",
    "CoxResult",
    "Factor",
    "adjusted_survival",
    "anova_importance",
    "build_design",
    "cindex_drop",
    "competing_events",
    "fit_cox",
    "grambsch_therneau",
    "harrell_c",
    "impute_chained",
    "missingness_table",
    "model_overview",
    "outcome",
    "paf_gcomputation",
    "ph_test",
    "piecewise_cox",
    "pool_rubin",
    "prepare",
    "rcs_basis",
    "regression_table",
    "schoenfeld_smooth",
    "second_fracture_cif",
    "second_fracture_curves",
    "second_fracture_frame",
    "second_fracture_models",
    "stack_paf",
    "stack_summaries",
    "typical_profiles",
]


# --------------------------------------------------------------------------------------------------
# factors
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Factor:
    """A model factor: `column` of the analysis frame, `kind` spline | numeric | categorical,
    `reference` level (categorical), `scale` (numeric: the HR is per `scale` units), `label`."""

    name: str
    kind: str
    column: str
    reference: str | None = None
    scale: float = 1.0
    label: str = ""
    unit: str = ""


FACTORS: dict[str, Factor] = {f.name: f for f in [
    Factor("age", "spline", "age", label="Age", unit="years (restricted cubic spline)"),
    Factor("male", "numeric", "male", label="Male sex", unit="male vs female"),
    Factor("asa_group", "categorical", "asa_group", "1-2", label="ASA class"),
    Factor("cognitive", "categorical", "cognitive", "no", label="Cognitive impairment"),
    Factor("charlson", "numeric", "charlson", label="Charlson index", unit="per point"),
    Factor("fracture_type", "categorical", "fracture_type", "fn_undisplaced", label="Fracture type"),
    Factor("residence", "categorical", "residence", "home", label="Pre-fracture residence"),
    Factor("living_alone", "numeric", "living_alone", label="Living alone", unit="yes vs no"),
    Factor("education", "categorical", "education", "medium", label="Education"),
    Factor("income_quintile", "numeric", "income_quintile", label="Income quintile", unit="per quintile"),
    Factor("delay_band", "categorical", "delay_band", "<24h", label="Fracture to surgery"),
    Factor("operation_type", "categorical", "operation_type", "hemi", label="Operation"),
    Factor("nonguideline_implant", "numeric", "nonguideline_implant", label="Non-guideline implant",
           unit="guideline applies and was not followed vs otherwise"),
    Factor("hospital_volume", "numeric", "hospital_volume", scale=100.0, label="Hospital volume",
           unit="per 100 operations a year"),
    Factor("res_region", "categorical", "res_region", "Helse Sør-Øst", label="Health region"),
]}


FU = "#fu[dead,cens]"            # follow-up of death (complete kinds: no remainder)
FX2 = OUTCOME_STATUS["second_hip_fracture"]
#: NHFR form variables of notebook 00's completeness (not eligible there: NPR-only fractures)
_NHFR_FORM = frozenset({"fracture_datetime", "surgery_datetime", "asa", "cognitive", "fracture_type", "side",
                        "operation_type", "stem_fixation", "anaesthesia", "nerve_block"})


def dead_by(h: float | None) -> str:
    """Atom of #fu[dead,cens]: died on or before day h (None: at any time)."""
    return sdc.interval_atom("dead", -np.inf, np.inf if h is None else float(h))


def alive_after(a: float) -> str:
    """Atoms of #fu[dead,cens]: follow-up longer than a days (alive and followed on day a)."""
    return sdc.status_level(sdc.interval_atom("dead", float(a), np.inf), sdc.interval_atom("cens", float(a), np.inf))


def complete_var(columns) -> str:
    """Status variable of the complete cases of `columns` (atoms complete / dropped)."""
    return "#complete:" + ",".join(sorted(set(map(str, columns))))


def _population(data: pd.DataFrame, extra=()) -> tuple[str, list]:
    uni, pop = results.population(data)
    return uni, [*pop, *[tuple(c) for c in extra]]


def _stats_result(frame: pd.DataFrame, labels, source: pd.DataFrame | None = None) -> pd.DataFrame:
    """A result without counts: `labels` label columns, every other column a statistic."""
    labels = [c for c in labels if c in frame.columns]
    return results.annotate(frame, counts={}, labels=labels, stats=[c for c in frame.columns if c not in labels],
                            source=source)


def _factor(name: str) -> Factor:
    if name not in FACTORS:
        raise KeyError(f"unknown risk factor {name!r}; known factors: {', '.join(FACTORS)}")
    return FACTORS[name]


def prepare(cohort: pd.DataFrame) -> pd.DataFrame:
    """Analysis frame: the cohort plus the derived factor `nonguideline_implant` (1 = the guideline
    advises an implant for this fracture and another was used, i.e. guideline_implant == 0; 0 when it
    was followed or the guideline is silent, so the factor is not collinear with fracture type).
    Never modifies the cohort."""
    out = cohort.copy()
    if "guideline_implant" in out.columns:
        g = pd.to_numeric(out["guideline_implant"], errors="coerce")
        out["nonguideline_implant"] = (g == 0).astype(float)
    return out


def outcome(data: pd.DataFrame, horizon_days: float | None = None, *, time: str = "followup_days",
            event: str = "dead") -> tuple[np.ndarray, np.ndarray]:
    """(time in days, event 0/1) for death, censored at `horizon_days` if given."""
    t = pd.to_numeric(data[time]).to_numpy(float)
    e = pd.to_numeric(data[event]).to_numpy(float).astype(int)
    if horizon_days is not None:
        e = np.where(t <= horizon_days, e, 0)
        t = np.minimum(t, horizon_days)
    return t, e


def competing_events(data: pd.DataFrame) -> pd.DataFrame:
    """Second hip fracture with death as competing event: columns `cr_time` (days) and `cr_event`
    (0 = censored alive, 1 = second hip fracture, 2 = death without a second hip fracture)."""
    second = pd.to_numeric(data["second_hip_fracture"]).fillna(0).to_numpy(int) == 1
    t2 = pd.to_numeric(data["days_to_second_fracture"], errors="coerce").to_numpy(float)
    if np.isnan(t2[second]).any():
        raise ValueError(f"{int(np.isnan(t2[second]).sum())} second hip fractures lack days_to_second_fracture")
    t = np.where(second, t2, pd.to_numeric(data["followup_days"]).to_numpy(float))
    dead = pd.to_numeric(data["dead"]).to_numpy(int) == 1
    ev = np.where(second, 1, np.where(dead, 2, 0))
    return pd.DataFrame({"cr_time": t, "cr_event": ev}, index=data.index)


# --------------------------------------------------------------------------------------------------
# design
# --------------------------------------------------------------------------------------------------
def rcs_basis(x: np.ndarray, knots) -> np.ndarray:
    """Restricted cubic spline basis (Harrell's rcs; linear beyond the outer knots): columns
    x, and one nonlinear term per inner knot, scaled by (t_k - t_1)^2 as Hmisc::rcspline.eval."""
    x = np.asarray(x, float)
    t = np.asarray(knots, float)
    k = len(t)
    if k < 3:
        return x[:, None]
    norm = (t[-1] - t[0]) ** 2
    cols = [x]
    for j in range(k - 2):
        c = (np.maximum(x - t[j], 0) ** 3
             - np.maximum(x - t[k - 2], 0) ** 3 * (t[k - 1] - t[j]) / (t[k - 1] - t[k - 2])
             + np.maximum(x - t[k - 1], 0) ** 3 * (t[k - 2] - t[j]) / (t[k - 1] - t[k - 2]))
        cols.append(c / norm)
    return np.column_stack(cols)


_KNOT_QUANTILES = {3: [0.10, 0.5, 0.90], 4: [0.05, 0.35, 0.65, 0.95], 5: [0.05, 0.275, 0.5, 0.725, 0.95]}


@dataclass
class DesignInfo:
    """What is needed to build the same design on new rows: factors, knots, levels."""

    factors: list[str]
    knots: dict[str, list[float]] = field(default_factory=dict)
    levels: dict[str, list[str]] = field(default_factory=dict)
    assign: dict[str, list[str]] = field(default_factory=dict)


def build_design(data: pd.DataFrame, factors, *, info: DesignInfo | None = None,
                 age_knots: int = 4) -> tuple[pd.DataFrame, DesignInfo]:
    """Numeric design matrix (one column per term) for the factors; rows must be complete.
    With `info` from an earlier call, the same knots and levels are used (for prediction)."""
    factors = list(factors)
    new = info is None
    if new:
        info = DesignInfo(factors=factors)
    cols: dict[str, np.ndarray] = {}
    for name in factors:
        f = _factor(name)
        if f.column not in data.columns:
            raise KeyError(f"factor {name!r} needs column {f.column!r}, which the data lack")
        s = data[f.column]
        if f.kind == "spline":
            x = pd.to_numeric(s).to_numpy(float)
            if new:
                if age_knots not in _KNOT_QUANTILES:
                    raise ValueError(f"age_knots must be 3, 4 or 5, got {age_knots}")
                info.knots[name] = [float(v) for v in np.quantile(x, _KNOT_QUANTILES[age_knots])]
            b = rcs_basis(x, info.knots[name])
            names = [name] + [f"{name}'{j}" for j in range(1, b.shape[1])]
            for j, nm in enumerate(names):
                cols[nm] = b[:, j]
        elif f.kind == "numeric":
            names = [name]
            cols[name] = pd.to_numeric(s).to_numpy(float) / f.scale
        else:
            uniq = pd.unique(s)
            as_str = {u: str(u) for u in uniq}
            if new:
                observed = sorted(set(as_str.values()))
                if f.reference not in observed:
                    raise ValueError(f"reference level {f.reference!r} of {name!r} is not observed "
                                     f"(levels: {observed})")
                info.levels[name] = [f.reference] + [v for v in observed if v != f.reference]
            # integer codes of the levels (one pass over the rows), then one indicator per level
            pos = {lv: j for j, lv in enumerate(info.levels[name])}
            codes = pd.Series(pd.factorize(s)[0]).to_numpy()
            lut = np.array([pos.get(as_str[u], -1) for u in pd.factorize(s)[1]] + [-1])
            codes = lut[codes]
            names = []
            for j, lv in enumerate(info.levels[name][1:], start=1):
                nm = f"{name}[{lv}]"
                cols[nm] = (codes == j).astype(float)
                names.append(nm)
        if new:
            info.assign[name] = names
    X = pd.DataFrame(cols, index=data.index)
    if new:
        const = [c for c in X.columns if X[c].nunique() < 2]
        if const:
            raise ValueError(f"constant design column(s) {const}: a level is empty or a factor does not vary")
    return X, info


# --------------------------------------------------------------------------------------------------
# Cox fits
# --------------------------------------------------------------------------------------------------
@dataclass
class CoxResult:
    """A fitted (or pooled) Cox model: coefficients `params` and covariance `vcov` (robust when
    clustered, Rubin's total variance when pooled), the design info, counts and a tidy `summary`."""

    params: pd.Series
    vcov: pd.DataFrame
    info: DesignInfo
    n: int
    events: int
    horizon_days: float | None
    n_dropped: int = 0
    concordance: float = np.nan
    cph: object = None
    baseline_cumhaz: pd.DataFrame | None = None   # Breslow H0(t) at x = 0, index = days
    df: pd.Series | None = None                    # Rubin's degrees of freedom when pooled
    fmi: pd.Series | None = None
    m: int = 1
    label: str = ""
    universe: str = "patients"                     # what the model's rows count (hipfrac.results)
    population: list = field(default_factory=list)  # their population: the data's and the complete cases
    cases_var: str = ""                            # #complete:<columns> of the complete cases

    @property
    def summary(self) -> pd.DataFrame:
        se = np.sqrt(np.diag(self.vcov.to_numpy()))
        b = self.params.to_numpy()
        z = b / se
        if self.df is not None:
            q = stats.t.ppf(0.975, self.df.to_numpy())
            p = 2 * stats.t.sf(np.abs(z), self.df.to_numpy())
        else:
            q, p = stats.norm.ppf(0.975), 2 * stats.norm.sf(np.abs(z))
        term_factor = {t: f for f, ts in self.info.assign.items() for t in ts}
        out = pd.DataFrame({
            "factor": [term_factor[t] for t in self.params.index], "term": list(self.params.index),
            "coef": b, "se": se, "hr": np.exp(b), "lower": np.exp(b - q * se), "upper": np.exp(b + q * se),
            "z": z, "p": p,
        })
        if self.fmi is not None:
            out["fmi"] = self.fmi.to_numpy()
        return _stats_result(out, ["factor", "term"])


class BreslowCox:
    """Cox partial likelihood with Breslow ties, fitted by Newton–Raphson with risk-set sums from
    cumulative sums over sorted times (the Fine–Gray engine of `hipfrac.competing` without competing
    events), optionally stratified. Fast at national scale (100k rows, 30 terms: about a second).

    After `fit`: params (coef), vcov_naive (inverse information), vcov (cluster-robust sandwich
    D'D with D the per-cluster sums of dfbeta residuals, as survival::coxph(cluster=); the naive one
    without clusters), loglik, score_residuals (n x p), and per stratum the Breslow baseline cumulative
    hazard at x = 0. Agrees with survival::coxph(ties = "breslow") (tests/test_risk.py).
    """

    def fit(self, t, e, X, *, strata=None, cluster=None, init=None, tol: float = 1e-9, max_iter: int = 50):
        from hipfrac.competing import blas_threads

        with blas_threads(1):
            return self._fit(t, e, X, strata=strata, cluster=cluster, init=init, tol=tol, max_iter=max_iter)

    def _fit(self, t, e, X, *, strata, cluster, init, tol, max_iter):
        from hipfrac.competing import _FGData

        t = np.asarray(t, float)
        e = np.asarray(e, int)
        X = np.asarray(X, float)
        n, p = X.shape
        strata = np.zeros(n, int) if strata is None else pd.factorize(np.asarray(strata), sort=True)[0]
        self._parts = []
        for k in np.unique(strata):
            idx = np.flatnonzero(strata == k)
            if e[idx].sum() == 0:
                continue
            self._parts.append((idx, _FGData(t[idx], e[idx], X[idx])))
        if not self._parts:
            raise ValueError("no events: cannot fit a Cox model")
        beta = np.zeros(p) if init is None else np.asarray(init, float).copy()
        ll, score, info, caches = self._derivs(beta)
        for _ in range(max_iter):
            try:
                step = np.linalg.solve(info, score)
            except np.linalg.LinAlgError as exc:
                raise ValueError("Cox information matrix is singular: collinear or constant terms?") from exc
            new = beta + step
            ll_new = self._loglik(new)
            h = 0
            while (not np.isfinite(ll_new) or ll_new < ll - 1e-10) and h < 30:
                step /= 2
                new = beta + step
                ll_new = self._loglik(new)
                h += 1
            beta = new
            ll_old = ll
            ll, score, info, caches = self._derivs(beta)
            # converged: tiny step, or (as survival::coxph) no relative change in the log-likelihood,
            # which also ends a monotone likelihood (a level without events: coefficient -> infinity)
            if np.max(np.abs(step)) < tol or abs(1 - ll_old / ll) < 1e-12:
                break
        else:
            raise RuntimeError(f"Cox Newton-Raphson did not converge in {max_iter} iterations")
        # coxph's check for infinite coefficients: the next Newton step is still large
        nxt = np.abs(np.linalg.solve(info, score))
        self.infinite = (nxt > 1e-6) & (nxt > np.sqrt(1e-6) * np.abs(beta)) | (np.abs(beta) > 15)
        self.params = beta
        self.loglik = ll
        self.vcov_naive = np.linalg.inv(info)
        resid = np.zeros((n, p))
        self.baseline = []
        for (idx, fg), cache in zip(self._parts, caches):
            ee, s0, xbar = cache
            a, b = fg._subject_weights(ee, s0, xbar)
            r = -(a[:, None] * fg.x - b)
            ev = fg.type1
            r[ev] += fg.x[ev] - xbar[fg.event_m[ev]]
            resid[idx[fg.order]] = r
            self.baseline.append((fg.tau, np.cumsum(fg.d / s0)))
        self.score_residuals = resid
        if cluster is not None:
            dfb = resid @ self.vcov_naive
            codes = pd.factorize(np.asarray(cluster), sort=True)[0]
            D = np.zeros((codes.max() + 1, p))
            np.add.at(D, codes, dfb)
            self.vcov = D.T @ D
        else:
            self.vcov = self.vcov_naive
        return self

    def _loglik(self, beta):
        return sum(fg.loglik(beta) for _, fg in self._parts)

    def _derivs(self, beta):
        ll, score, info, caches = 0.0, 0.0, 0.0, []
        for _, fg in self._parts:
            a, b, c, cache = fg.derivatives(beta)
            ll, score, info = ll + a, score + b, info + c
            caches.append(cache)
        return ll, score, info, caches

    def zph(self, time, event, *, transform: str = "km") -> pd.DataFrame:
        """Proportional-hazards score test of survival::cox.zph (survival >= 3.0, terms = FALSE) for
        this Breslow fit: for each term j the score test of adding x_j * g(t) (g the centred
        transformed time: km = 1 - KM(t-), identity, rank over all times, log), using the full
        information matrix of the expanded model at (beta, 0); GLOBAL adds all p interactions.
        `time`, `event`: the model's follow-up (as passed to `fit`). Matches cox.zph(ties = "breslow")."""
        t = np.asarray(time, float)
        ev = np.asarray(event, int)
        if transform == "km":
            tt = _transform_times(t, ev, t, "km")
        elif transform == "identity":
            tt = t
        elif transform == "rank":
            tt = stats.rankdata(t, method="average")
        elif transform == "log":
            tt = np.log(t)
        else:
            raise ValueError(f"transform must be km, identity, rank or log, got {transform!r}")
        gbar = tt[ev == 1].mean()
        order_t, order_g = np.unique(t, return_index=True)
        g_of = dict(zip(order_t.tolist(), (tt[order_g] - gbar).tolist()))
        p = len(self.params)
        imat = np.zeros((2 * p, 2 * p))
        u2 = np.zeros(p)
        for _, fg in self._parts:
            e, _, s0, s1 = fg.risk_sums(self.params)
            xbar = s1 / s0[:, None]
            g = np.array([g_of[v] for v in fg.tau.tolist()])
            k = fg.n_tau_le
            blocks = []
            for c in (np.ones_like(g), g, g * g):
                r0 = fg.d * c / s0
                a = e * np.concatenate([[0.0], np.cumsum(r0)])[k]
                blocks.append(_gram(fg.x * a[:, None], fg.x) - _gram(xbar * (fg.d * c)[:, None], xbar))
            imat[:p, :p] += blocks[0]
            imat[:p, p:] += blocks[1]
            imat[p:, :p] += blocks[1]
            imat[p:, p:] += blocks[2]
            sum_x = np.add.reduceat(np.where(fg.type1[:, None], fg.x, 0.0), fg.first, axis=0)[fg.tau_u]
            u2 += ((sum_x - fg.d[:, None] * xbar) * g[:, None]).sum(axis=0)
        rows = []
        for j in range(p):
            kk = list(range(p)) + [p + j]
            u = np.zeros(p + 1)
            u[-1] = u2[j]
            rows.append((float(u @ np.linalg.solve(imat[np.ix_(kk, kk)], u)), 1))
        u = np.concatenate([np.zeros(p), u2])
        rows.append((float(u @ np.linalg.solve(imat, u)), p))
        out = pd.DataFrame(rows, columns=["chisq", "df"])
        out["p"] = stats.chi2.sf(out.chisq, out.df)
        return out

    def schoenfeld(self):
        """Schoenfeld residuals x_i - xbar(t_i) of the deaths (sorted by time) and their times."""
        rows, times = [], []
        for _, fg in self._parts:
            _, _, s0, s1 = fg.risk_sums(self.params)
            xbar = s1 / s0[:, None]
            ev = fg.type1
            rows.append(fg.x[ev] - xbar[fg.event_m[ev]])
            times.append(fg.t[ev])
        r, tt = np.vstack(rows), np.concatenate(times)
        o = np.argsort(tt, kind="mergesort")
        return r[o], tt[o]


def _cc_columns(data: pd.DataFrame, factors, cluster=None, strata=None) -> list[str]:
    cols = sorted({_factor(f).column for f in factors})
    extra = [c for c in ("followup_days", "dead", cluster, strata) if c and c in data.columns and data[c].isna().any()]
    return cols + extra


def _cases_var(data: pd.DataFrame, factors, cluster=None, strata=None) -> str:
    """#complete:<columns> of a model's complete cases: the factor columns, and the outcome / cluster /
    strata columns if any of them has a missing value."""
    return complete_var(_cc_columns(data, factors, cluster, strata))


def _cases(data: pd.DataFrame, factors, cluster=None, strata=None) -> list[tuple[str, str]]:
    """Population condition of the complete cases of a model (none when no row is dropped)."""
    cols = _cc_columns(data, factors, cluster, strata)
    if not data[cols].isna().any(axis=1).any():
        return []
    return [(complete_var(cols), "complete")]


def _model_frame(data: pd.DataFrame, factors, cluster, strata):
    cols = sorted({_factor(f).column for f in factors} | {"followup_days", "dead"}
                  | ({cluster} if cluster else set()) | ({strata} if strata else set()))
    missing = [c for c in cols if c not in data.columns]
    if missing:
        raise KeyError(f"data lack column(s) {missing} needed by the model")
    keep = ~data[cols].isna().any(axis=1)
    return data.loc[keep], int((~keep).sum())


def harrell_c(time, event, risk, *, block: int = 512) -> float:
    """Harrell's concordance index: among comparable pairs (the shorter time is a death; a death and a
    censoring at the same time are comparable, the censored one outliving; two deaths at the same time
    are not), the share where the death had the higher `risk` (ties in risk count 1/2) — the
    convention of survival::concordance and lifelines. Exact, O(n log n) in numpy blocks."""
    t = np.asarray(time, float)
    e = np.asarray(event, int)
    r = np.asarray(risk, float)
    order = np.lexsort((-e, t))[::-1]          # descending time; within a time censored first
    t, e, r = t[order], e[order], r[order]
    n = len(t)
    # blocks never split a group of equal times (pairs within a time group are handled in-block)
    change = np.flatnonzero(np.diff(t) != 0) + 1
    cuts, last = [0], 0
    for c in change:
        if c - last >= block:
            cuts.append(c)
            last = c
    cuts.append(n)
    conc = ties = comp = 0.0
    later = np.empty(0)
    for start, stop in zip(cuts[:-1], cuts[1:]):
        sl = slice(start, stop)
        tb, eb, rb = t[sl], e[sl], r[sl]
        ev = np.flatnonzero(eb == 1)
        if len(ev):
            ri = rb[ev]
            lo = np.searchsorted(later, ri, side="left")
            hi = np.searchsorted(later, ri, side="right")
            conc += lo.sum()
            ties += (hi - lo).sum()
            comp += len(later) * len(ev)
            # pairs within the block: j later than death i, or censored at the same time
            later_mask = (tb[None, :] > tb[ev][:, None]) | ((tb[None, :] == tb[ev][:, None]) & (eb[None, :] == 0))
            rj = rb[None, :]
            conc += ((rj < ri[:, None]) & later_mask).sum()
            ties += ((rj == ri[:, None]) & later_mask).sum()
            comp += later_mask.sum()
        later = np.sort(np.concatenate([later, rb]))
    return float((conc + 0.5 * ties) / comp) if comp else np.nan


def fit_cox(data: pd.DataFrame, factors, *, horizon_days: float | None = None, cluster: str | None = "hospital",
            strata: str | None = None, age_knots: int = 4, info: DesignInfo | None = None,
            concordance: bool = True, init: pd.Series | None = None, label: str = "") -> CoxResult:
    """Cox model for death (days from fracture) on complete cases of the factors (Breslow ties,
    `BreslowCox`; with daily times and national risk sets the Efron correction is negligible).

    horizon_days: censor follow-up at this many days (30, 365; None = whole follow-up).
    cluster: column for cluster-robust (sandwich) standard errors (default the treating hospital);
    strata: column giving separate baseline hazards (e.g. "hospital"); use one or the other.
    Rows with a missing factor are dropped and counted in `n_dropped`. init: starting coefficients
    (by term name; terms not given start at 0), e.g. from the complete-case fit for imputed data.
    """
    d, n_dropped = _model_frame(data, factors, cluster, strata)
    X, info = build_design(d, factors, info=info, age_knots=age_knots)
    t, e = outcome(d, horizon_days)
    if e.sum() == 0:
        raise ValueError(f"no deaths within {horizon_days} days among {len(d)} complete cases")
    b0 = None if init is None else pd.Series(init).reindex(X.columns).fillna(0.0).to_numpy(float)
    fit = BreslowCox().fit(t, e, X.to_numpy(float), strata=None if strata is None else d[strata].astype(str).to_numpy(),
                           cluster=None if cluster is None else d[cluster].astype(str).to_numpy(), init=b0)
    cols = list(X.columns)
    if fit.infinite.any():
        import warnings

        warnings.warn(f"Cox model{' ' + label if label else ''}: coefficient(s) of "
                      f"{[c for c, f in zip(cols, fit.infinite) if f]} may be infinite (a level without deaths?)",
                      stacklevel=2)
    c_index = np.nan
    if concordance:
        c_index = harrell_c(t, e, np.einsum("ij,j->i", X.to_numpy(float), fit.params))
    base = None
    if strata is None:
        tau, ch = fit.baseline[0]
        base = pd.DataFrame({"cumhaz": ch}, index=pd.Index(tau, name="day"))
    cases = _cases(data, factors, cluster, strata)
    uni, pop = _population(data, cases)
    return CoxResult(params=pd.Series(fit.params, index=cols), vcov=pd.DataFrame(fit.vcov, index=cols, columns=cols),
                     info=info, n=len(d), events=int(e.sum()), horizon_days=horizon_days, n_dropped=n_dropped,
                     concordance=c_index, cph=fit, baseline_cumhaz=base, label=label, universe=uni, population=pop,
                     cases_var=_cases_var(data, factors, cluster, strata))


def linear_predictor(res: CoxResult, data: pd.DataFrame, params=None) -> np.ndarray:
    """x'b for rows of `data` (design built with the fit's knots and levels)."""
    X, _ = build_design(data, res.info.factors, info=res.info)
    b = res.params if params is None else params
    return X[list(res.params.index)].to_numpy(float) @ np.asarray(b, float)


# --------------------------------------------------------------------------------------------------
# relative importance
# --------------------------------------------------------------------------------------------------
def anova_importance(res: CoxResult) -> pd.DataFrame:
    """Harrell's anova: for each factor the Wald chi-square of all its terms jointly (b_J' V_JJ^-1 b_J,
    with the model's covariance: robust/pooled as fitted), its df, p, and chi-square minus df
    (the importance measure), ranked from most to least important."""
    rows = []
    for f, terms in res.info.assign.items():
        b = res.params[terms].to_numpy()
        v = res.vcov.loc[terms, terms].to_numpy()
        chi2 = float(b @ np.linalg.solve(v, b))
        rows.append({"factor": f, "chi2": chi2, "df": len(terms), "p": float(stats.chi2.sf(chi2, len(terms))),
                     "chi2_minus_df": chi2 - len(terms)})
    out = pd.DataFrame(rows)
    out["share"] = out.chi2_minus_df.clip(lower=0) / out.chi2_minus_df.clip(lower=0).sum()
    out = out.sort_values(["chi2_minus_df", "factor"], ascending=[False, True], kind="mergesort").reset_index(drop=True)
    return _stats_result(out, ["factor"])


def cindex_drop(data: pd.DataFrame, factors, *, horizon_days: float | None = None, age_knots: int = 4) -> pd.DataFrame:
    """Harrell's C of the full model and the drop in C when each factor is left out (refitted without
    it, same complete cases, no clustering needed for point estimates). Larger drop = more important."""
    d, _ = _model_frame(data, factors, None, None)
    full = fit_cox(d, factors, horizon_days=horizon_days, cluster=None, age_knots=age_knots)
    rows = []
    for f in factors:
        rest = [g for g in factors if g != f]
        r = fit_cox(d, rest, horizon_days=horizon_days, cluster=None, age_knots=age_knots, init=full.params)
        rows.append({"factor": f, "c_full": full.concordance, "c_without": r.concordance,
                     "c_drop": full.concordance - r.concordance})
    out = pd.DataFrame(rows)
    out = out.sort_values(["c_drop", "factor"], ascending=[False, True], kind="mergesort").reset_index(drop=True)
    return _stats_result(out, ["factor"])


def _risk_at(res: CoxResult, X: np.ndarray, params: np.ndarray, day: float) -> np.ndarray:
    bh = res.baseline_cumhaz
    pos = np.searchsorted(bh.index.to_numpy(float), day, side="right") - 1
    h0 = float(bh["cumhaz"].to_numpy()[pos]) if pos >= 0 else 0.0
    lp = X @ params
    return 1 - np.exp(-h0 * np.exp(lp))


def paf_gcomputation(res: CoxResult, data: pd.DataFrame, *, factor: str, set_from, set_to: str,
                     day: float = 365.0, draws: int = 200, seed: int = 1) -> pd.DataFrame:
    """Population attributable fraction of death by `day` for a modifiable factor, by g-computation:
    PAF = (mean risk as observed - mean risk had every patient with `factor` in `set_from` had
    `set_to` instead) / mean risk as observed. Risks from the Cox model (1 - S0(day)^exp(x'b)).
    95 % interval by drawing coefficients from their (robust/pooled) normal distribution `draws` times,
    baseline hazard held at its estimate. Needs a model without strata.
    Returns one row: factor, set_from, set_to, day, n, n_exposed, risk_observed, risk_counterfactual,
    paf, lower, upper, prevented_per_1000 (deaths by `day` prevented per 1,000 patients).
    Annotated: n = the patients of the model's rows of `data` (a count); n_exposed = those with `factor` in
    `set_from` in `data` (imputed values included: status #imputed:<column>, not linked to observed
    counts); the PAF and its interval are withheld with n_exposed; the risks are statistics."""
    if res.baseline_cumhaz is None:
        raise ValueError("paf_gcomputation needs a model without strata (fit with cluster=..., strata=None)")
    set_from = [set_from] if isinstance(set_from, str) else list(set_from)
    col = _factor(factor).column
    d, _ = _model_frame(data, res.info.factors, None, None)
    X, _ = build_design(d, res.info.factors, info=res.info)
    exposed = d[col].astype(str).isin(set_from).to_numpy()
    d_cf = d.copy()
    d_cf.loc[exposed, col] = set_to
    Xcf, _ = build_design(d_cf, res.info.factors, info=res.info)
    cols = list(res.params.index)
    X, Xcf = X[cols].to_numpy(float), Xcf[cols].to_numpy(float)
    b = res.params.to_numpy()

    def paf(beta):
        r_obs = _risk_at(res, X, beta, day).mean()
        r_cf = _risk_at(res, Xcf, beta, day).mean()
        return r_obs, r_cf, (r_obs - r_cf) / r_obs

    r_obs, r_cf, p = paf(b)
    rng = np.random.default_rng(seed)
    sims = rng.multivariate_normal(b, res.vcov.to_numpy(), size=draws, method="eigh")  # robust V may be singular
    ps = np.array([paf(s)[2] for s in sims])
    out = pd.DataFrame([{
        "factor": factor, "set_from": "|".join(set_from), "set_to": set_to, "day": day, "n": len(d),
        "n_exposed": int(exposed.sum()), "risk_observed": r_obs, "risk_counterfactual": r_cf, "paf": p,
        "lower": float(np.quantile(ps, 0.025)), "upper": float(np.quantile(ps, 0.975)),
        "prevented_per_1000": 1000 * (r_obs - r_cf),
    }])
    return _paf_meta(out, data, res, col)


def _paf_meta(out: pd.DataFrame, data: pd.DataFrame, res: CoxResult, col: str) -> pd.DataFrame:
    uni, pop = _population(data, _cases(data, res.info.factors))
    out["_ev"] = f"#imputed:{col}"
    return results.annotate(out, counts={"n": {}, "n_exposed": {"{_ev}": "{set_from}"}},
                            derived={c: ["n_exposed"] for c in ("paf", "lower", "upper", "prevented_per_1000")},
                            labels=["factor", "set_from", "set_to", "day", "_ev"],
                            stats=["risk_observed", "risk_counterfactual"], universe=uni, population_conds=pop)


def stack_paf(frames) -> pd.DataFrame:
    """Attributable fractions of several factors (paf_gcomputation) in one table."""
    return results.concat(list(frames))


# --------------------------------------------------------------------------------------------------
# missing data
# --------------------------------------------------------------------------------------------------
def missingness_table(data: pd.DataFrame, factors) -> pd.DataFrame:
    """Per factor column: n, number and per cent missing, and the share of rows complete on all.

    Annotated: n = every patient of `data`; n_missing = the atom missing of ``#complete:<column>`` (as
    notebook 00's completeness; for an NHFR form variable of NPR-only fractures, which are not eligible
    there, their remainder atom is added when they all lack the value, and a variable of its own is used
    when only some do); "all factors" = the atom dropped of ``#complete:<columns>``, the complete cases
    of the models."""
    cols = [_factor(f).column for f in factors]
    npr = (data["source"] == "npr_only").to_numpy() if "source" in data.columns else np.zeros(len(data), bool)
    rows = []
    for f, c in zip(factors, cols):
        miss = data[c].isna().to_numpy()
        var, lv = f"#complete:{c}", "missing"
        if c in _NHFR_FORM and npr.any():
            if miss[npr].all():
                lv = f"missing|{sdc.REMAINDER}"
            elif miss[npr].any():
                var = f"#complete:{c}(all sources)"
        rows.append({"factor": f, "column": c, "n": len(data), "n_missing": int(miss.sum()),
                     "pct_missing": 100 * float(miss.mean()), "_mv": var, "_ml": lv})
    complete = ~data[cols].isna().any(axis=1)
    rows.append({"factor": "all factors", "column": "", "n": len(data), "n_missing": int((~complete).sum()),
                 "pct_missing": 100 * float((~complete).mean()), "_mv": complete_var(cols), "_ml": "dropped"})
    out = pd.DataFrame(rows)
    return results.annotate(out, counts={"n": {}, "n_missing": {"{_mv}": "{_ml}"}},
                            derived={"pct_missing": ["n", "n_missing"]}, labels=["factor", "column", "_mv", "_ml"],
                            source=data)


def _onehot(values: np.ndarray, levels) -> np.ndarray:
    return (values[:, None] == np.asarray(levels, dtype=object)[None, :]).astype(float)


def impute_chained(data: pd.DataFrame, factors, *, m: int = 10, iterations: int = 5, seed: int = 1,
                   auxiliary: dict | None = None) -> list[pd.DataFrame]:
    """Multiple imputation by chained equations of the incomplete factor columns; returns `m`
    completed copies of `data` (other columns untouched).

    Every incomplete factor column is treated as categorical over its observed values (the cohort's
    incomplete factors are categorical, binary or ordinal with a few levels). In each iteration each
    incomplete column is drawn, given the current values of all other factors, from a multinomial
    linear-probability model (least squares on level indicators; fitted probabilities clipped at 0.001
    and renormalised) fitted on a bootstrap sample of the rows where the column is observed (Poisson(1)
    frequency weights, so the parameter uncertainty is carried into the imputations).
    Predictors: all other factors (age as its spline, categorical as indicators), plus
    `auxiliary` columns — by default the death indicator and the Nelson–Aalen cumulative hazard at the
    follow-up time (White & Royston, Stat Med 2009), so that the imputation model is compatible with
    the survival analysis. Starting values are draws from the observed distribution.
    """
    from hipfrac.competing import blas_threads

    rng = np.random.default_rng(seed)
    factors = list(factors)
    cols = [_factor(f).column for f in factors]
    incomplete = [c for c in cols if data[c].isna().any()]
    if auxiliary is None:
        t, e = outcome(data)
        order = np.argsort(t, kind="mergesort")
        ts, es = t[order], e[order]
        na = np.cumsum(es / (len(t) - np.arange(len(t))))
        idx = np.searchsorted(ts, t, side="right") - 1     # value after all deaths at that time
        auxiliary = {"_dead": e.astype(float), "_nelson_aalen": na[idx]}
    aux = [np.asarray(v, float)[:, None] for v in auxiliary.values()]
    # fixed blocks of the complete factors; codes of the incomplete ones
    fixed = [np.ones((len(data), 1)), *aux]
    for f, c in zip(factors, cols):
        if c not in incomplete:
            fixed.append(_design_loose(data, [f])[0])
    fixed = np.column_stack(fixed)
    levels, codes0, miss = {}, {}, {}
    for c in incomplete:
        lv = sorted(data[c].dropna().unique().tolist())
        levels[c] = lv
        miss[c] = data[c].isna().to_numpy()
        codes0[c] = np.where(miss[c], -1, pd.Categorical(data[c], categories=lv).codes)
    out = []
    for _ in range(m):
        codes = {c: v.copy() for c, v in codes0.items()}
        for c in incomplete:
            obs = codes[c][~miss[c]]
            codes[c][miss[c]] = rng.choice(obs, size=int(miss[c].sum()), replace=True)
        for _it in range(iterations):
            for c in incomplete:
                others = [np.eye(len(levels[o]))[codes[o]][:, 1:] for o in incomplete if o != c]
                X = np.column_stack([fixed, *others]) if others else fixed
                y = np.eye(len(levels[c]))[codes[c]]
                # bootstrap of the observed rows as Poisson(1) frequency weights (no copies of X)
                w = np.where(miss[c], 0.0, rng.poisson(1.0, size=len(X)).astype(float))
                xw = X * w[:, None]
                with blas_threads(1):
                    xtx = xw.T @ X
                    coef = np.linalg.lstsq(xtx + 1e-8 * np.eye(xtx.shape[0]), xw.T @ y, rcond=None)[0]
                    p = np.clip(X[miss[c]] @ coef, 0.001, None)
                p /= p.sum(axis=1, keepdims=True)
                u = rng.uniform(size=len(p))
                k = np.minimum((np.cumsum(p, axis=1) < u[:, None]).sum(axis=1), len(levels[c]) - 1)
                codes[c][miss[c]] = k
        done = data.copy()
        for c in incomplete:
            vals = np.asarray(levels[c], dtype=object)[codes[c]]
            done[c] = pd.to_numeric(vals).astype(float) if pd.api.types.is_numeric_dtype(data[c]) else vals.astype(str)
        out.append(done)
    return out


def _design_loose(frame: pd.DataFrame, factors):
    """Design for imputation models: like build_design but tolerant of constant columns."""
    parts = []
    for name in factors:
        f = _factor(name)
        s = frame[f.column]
        if f.kind == "spline":
            x = pd.to_numeric(s).to_numpy(float)
            parts.append(rcs_basis(x, np.quantile(x, _KNOT_QUANTILES[4])))
        elif f.kind == "numeric":
            parts.append(pd.to_numeric(s).to_numpy(float)[:, None] / f.scale)
        else:
            v = s.astype(str).to_numpy(object)
            lv = sorted(set(v.tolist()))
            parts.append(_onehot(v, lv[1:]))
    X = np.column_stack(parts) if parts else np.zeros((len(frame), 0))
    return X, None


def pool_rubin(results: list[CoxResult], label: str = "") -> CoxResult:
    """Rubin's rules: pooled coefficients (mean), total covariance T = W + (1 + 1/m) B, per-term
    degrees of freedom (Barnard & Rubin 1999 small-sample form, with the complete-data df taken as
    n - p) and fraction of missing information."""
    m = len(results)
    if m < 2:
        raise ValueError("pool_rubin needs at least 2 imputed-data fits")
    terms = list(results[0].params.index)
    B_ = np.array([r.params[terms].to_numpy() for r in results])
    qbar = B_.mean(axis=0)
    W = np.mean([r.vcov.loc[terms, terms].to_numpy() for r in results], axis=0)
    B = np.cov(B_, rowvar=False, ddof=1).reshape(len(terms), len(terms))
    T = W + (1 + 1 / m) * B
    b, tt = np.diag(B), np.diag(T)
    lam = np.where(tt > 0, (1 + 1 / m) * b / tt, 0.0)
    with np.errstate(divide="ignore"):
        df_old = np.where(lam > 0, (m - 1) / lam ** 2, np.inf)
    dfcom = results[0].n - len(terms)
    df_obs = (dfcom + 1) / (dfcom + 3) * dfcom * (1 - lam)
    with np.errstate(invalid="ignore"):
        df = np.where(np.isinf(df_old), df_obs, df_old * df_obs / (df_old + df_obs))
    fmi = (lam + 2 / (df + 3)) / (1 + 2 / (df + 3)) if m > 1 else np.zeros(len(terms))
    r0 = results[0]
    base = None
    if all(r.baseline_cumhaz is not None for r in results):
        idx = r0.baseline_cumhaz.index
        base = pd.DataFrame({"cumhaz": np.mean([r.baseline_cumhaz["cumhaz"].reindex(idx).ffill().fillna(0).to_numpy()
                                                for r in results], axis=0)}, index=idx)
    return CoxResult(params=pd.Series(qbar, index=terms), vcov=pd.DataFrame(T, index=terms, columns=terms),
                     info=r0.info, n=r0.n, events=r0.events, horizon_days=r0.horizon_days, n_dropped=0,
                     concordance=float(np.mean([r.concordance for r in results])), baseline_cumhaz=base,
                     df=pd.Series(df, index=terms), fmi=pd.Series(fmi, index=terms), m=m,
                     label=label, universe=r0.universe, population=list(r0.population), cases_var=r0.cases_var)


# --------------------------------------------------------------------------------------------------
# proportional hazards diagnostics and time-specific effects
# --------------------------------------------------------------------------------------------------
def _transform_times(t_model: np.ndarray, e_model: np.ndarray, ev_times: np.ndarray, transform: str) -> np.ndarray:
    if transform == "identity":
        return ev_times
    if transform == "log":
        return np.log(ev_times)
    if transform == "rank":
        return stats.rankdata(ev_times, method="average")
    if transform == "km":   # 1 - KM(t-), left-continuous as survival::cox.zph
        u, first, counts = np.unique(t_model[np.argsort(t_model, kind="mergesort")], return_index=True,
                                     return_counts=True)
        srt = np.sort(t_model)
        y = len(srt) - first
        d = np.add.reduceat(e_model[np.argsort(t_model, kind="mergesort")].astype(float), first)
        s = np.cumprod(1 - d / y)
        pos = np.searchsorted(u, ev_times, side="left") - 1          # last time strictly before
        return 1 - np.where(pos >= 0, s[np.maximum(pos, 0)], 1.0)
    raise ValueError(f"transform must be km, identity, rank or log, got {transform!r}")


def grambsch_therneau(schoenfeld: np.ndarray, event_times: np.ndarray, variance: np.ndarray, time: np.ndarray,
                      event: np.ndarray, *, transform: str = "km") -> tuple[np.ndarray, float]:
    """Per-term and global Grambsch–Therneau chi-squares (1 df each; global df = number of terms)
    from unscaled Schoenfeld residuals (events x terms, sorted by `event_times`), the model-based
    covariance `variance`, and the model's (time, event) for the KM transform. See `ph_test`."""
    g = _transform_times(np.asarray(time, float), np.asarray(event, int), np.asarray(event_times, float), transform)
    gc = g - g.mean()
    d = len(gc)
    U = gc @ schoenfeld
    UV = U @ variance
    chi = d * UV ** 2 / (np.diag(variance) * (gc @ gc))
    return chi, float(d * UV @ U / (gc @ gc))


def _ph_fit(res: CoxResult, data: pd.DataFrame):
    """The fit behind PH diagnostics: the model's own BreslowCox when it is unstratified, else a
    plain refit on the same rows; with its design columns and (time, event)."""
    d, _ = _model_frame(data, res.info.factors, None, None)
    X, _ = build_design(d, res.info.factors, info=res.info)
    t, e = outcome(d, res.horizon_days)
    fit = res.cph if isinstance(res.cph, BreslowCox) and res.baseline_cumhaz is not None else \
        BreslowCox().fit(t, e, X.to_numpy(float))
    return fit, list(X.columns), t, e


def _schoenfeld(res: CoxResult, data: pd.DataFrame):
    """Unscaled Schoenfeld residuals (deaths x terms, by time), death times, the model-based
    (naive) covariance, coefficients, and the model's (time, event)."""
    fit, cols, t, e = _ph_fit(res, data)
    sch, ev_t = fit.schoenfeld()
    return pd.DataFrame(sch, columns=cols), ev_t, fit.vcov_naive, pd.Series(fit.params, index=cols), t, e


def ph_test(res: CoxResult, data: pd.DataFrame, *, transform: str = "km", method: str = "score") -> pd.DataFrame:
    """Test of proportional hazards for each term and globally (time transform km = 1 - KM(t-),
    identity, rank or log).

    method "score" (default): the score test of survival::cox.zph (survival >= 3.0): adding
    x_j * g(t) to the model, with the full information matrix (`BreslowCox.zph`; identical to
    cox.zph on a Breslow coxph fit, tests/test_risk.py). method "gt": the Grambsch–Therneau
    approximation from scaled Schoenfeld residuals, T_j = (sum_k g_k r*_kj)^2 / (d V_jj sum_k g_k^2),
    which cox.zph used before 3.0 and lifelines' proportional_hazard_test uses; it can differ
    noticeably when the covariate variance changes over time (lung: age 0.05 vs 0.22).
    Both use the model-based variance (a PH test does not use clustering).
    Returns term, factor, chisq, df, p, transform, method (global row: term "GLOBAL")."""
    fit, cols, t, e = _ph_fit(res, data)
    if method == "score":
        z = fit.zph(t, e, transform=transform)
        chi, glob = z.chisq.to_numpy()[:-1], float(z.chisq.iloc[-1])
    elif method == "gt":
        sch, ev_t = fit.schoenfeld()
        chi, glob = grambsch_therneau(sch, ev_t, fit.vcov_naive, t, e, transform=transform)
    else:
        raise ValueError(f"method must be 'score' or 'gt', got {method!r}")
    term_factor = {tt: f for f, ts in res.info.assign.items() for tt in ts}
    out = pd.DataFrame({"term": cols, "factor": [term_factor[c] for c in cols], "chisq": chi, "df": 1})
    out = pd.concat([out, pd.DataFrame([{"term": "GLOBAL", "factor": "GLOBAL", "chisq": glob, "df": len(chi)}])],
                    ignore_index=True)
    out["p"] = stats.chi2.sf(out.chisq, out.df)
    out["transform"], out["method"] = transform, method
    return _stats_result(out, ["term", "factor", "transform", "method"])


def schoenfeld_smooth(res: CoxResult, data: pd.DataFrame, *, bins: int = 10, transform: str = "km") -> pd.DataFrame:
    """Scaled Schoenfeld residuals (beta(t) estimates) averaged within `bins` groups of consecutive
    event times (equal numbers of events), with 95 % limits: a disclosure-safe version of the
    cox.zph plot (no individual residuals). Columns term, bin, time_days (median event time of the
    bin), g (mean transformed time), beta_t, lower, upper, events, coef (the model's constant beta).
    Annotated: events = the model's deaths in the bin (status #schoenfeld_bin, atoms bin<k>; the same
    cells for every term); the bin's times and residual averages are withheld with it; coef is a statistic."""
    sch, ev_t, V, params, t, e = _schoenfeld(res, data)
    d = len(ev_t)
    scaled = d * sch.to_numpy() @ V + params.to_numpy()
    g = _transform_times(t, e, ev_t, transform)
    edges = np.linspace(0, d, bins + 1).astype(int)
    rows = []
    for j, term in enumerate(sch.columns):
        for b in range(bins):
            sl = slice(edges[b], edges[b + 1])
            v = scaled[sl, j]
            if len(v) < 2:
                continue
            se = v.std(ddof=1) / np.sqrt(len(v))
            rows.append({"term": term, "bin": b + 1, "time_days": float(np.median(ev_t[sl])), "g": float(g[sl].mean()),
                         "beta_t": float(v.mean()), "lower": float(v.mean() - 1.96 * se),
                         "upper": float(v.mean() + 1.96 * se), "events": len(v), "coef": float(params[term])})
    out = pd.DataFrame(rows)
    out["_bin"] = [f"bin{b}" for b in out["bin"]]
    return results.annotate(out, counts={"events": {"#schoenfeld_bin": "{_bin}"}},
                            derived={c: ["events"] for c in ("time_days", "g", "beta_t", "lower", "upper")},
                            labels=["term", "bin", "_bin"], stats=["coef"], universe=res.universe,
                            population_conds=res.population, kind="figure")


def piecewise_cox(data: pd.DataFrame, factors, *, cuts=(30, 365), cluster: str | None = "hospital",
                  age_knots: int = 4) -> pd.DataFrame:
    """Time-specific hazard ratios by episode splitting at `cuts` (days): follow-up is split into
    [0, c1), [c1, c2), ..., [c_last, end). A Cox model with every factor interacted with the episode
    (one baseline hazard over time) has a partial likelihood that factorises over episodes, so it
    equals a separate Cox model per episode on the patients alive at its start (entry at the start,
    censored at its end), which is what is fitted. Same knots and levels in every episode.
    Returns the tidy summary with `period` ("0-30d", ...), `start_day`, `end_day`, n, events.
    Annotated: n = the complete cases alive at the start a of the period (dead@a-inf|cens@a-inf of
    #fu[dead,cens]), events = their deaths in (a, b] (dead@a-b); the estimates are withheld with events."""
    d, _ = _model_frame(data, factors, cluster, None)
    X, info = build_design(d, factors, age_knots=age_knots)
    t, e = outcome(d)
    bounds = [0.0, *[float(c) for c in cuts], np.inf]
    frames = []
    for a, b in zip(bounds[:-1], bounds[1:]):
        at = t > a
        tt = np.minimum(t[at], b)
        ee = np.where(t[at] <= b, e[at], 0)
        fit = BreslowCox().fit(tt, ee, X.to_numpy(float)[at],
                               cluster=None if cluster is None else d.loc[at, cluster].astype(str).to_numpy())
        cols = list(X.columns)
        res = CoxResult(params=pd.Series(fit.params, index=cols), vcov=pd.DataFrame(fit.vcov, index=cols, columns=cols),
                        info=info, n=int(at.sum()), events=int(ee.sum()), horizon_days=None)
        s = pd.DataFrame(res.summary)
        period = f"{int(a)}-{int(b)}d" if np.isfinite(b) else f"{int(a)}d+"
        s.insert(0, "period", period)
        s["start_day"], s["end_day"], s["n"], s["events"] = a, b, res.n, res.events
        s["_lv_n"], s["_lv_ev"] = alive_after(a), sdc.interval_atom("dead", a, b)
        frames.append(s)
    out = pd.concat(frames, ignore_index=True)
    uni, pop = _population(data, _cases(data, factors, cluster, None))
    est = [c for c in ("coef", "se", "hr", "lower", "upper", "z", "p") if c in out.columns]
    return results.annotate(out, counts={"n": {FU: "{_lv_n}"}, "events": {FU: "{_lv_ev}"}},
                            derived={c: ["events"] for c in est},
                            labels=["period", "factor", "term", "start_day", "end_day", "_lv_n", "_lv_ev"],
                            universe=uni, population_conds=pop)


# --------------------------------------------------------------------------------------------------
# publication output
# --------------------------------------------------------------------------------------------------
def regression_table(res: CoxResult, data: pd.DataFrame | None = None) -> pd.DataFrame:
    """Publication table: one row per factor level (reference levels shown with HR 1, `ref` True), HR with
    95 % CI, p. With `data` (the model's data) also the patients and deaths (within the horizon) behind each
    row: a first row with those of the whole model, the patients and deaths in each level of a categorical
    factor, and for a numeric or spline factor those of the whole model (n, deaths). Without `data` (e.g. a
    model pooled over imputed data sets, whose levels hold imputed values) only the estimates.

    Annotated: n and deaths are cells of the model's population (its complete cases) by the factor's
    column (a dimension); deaths the atom dead@-inf-h of #fu[dead,cens]; HRs, CIs and p are withheld with
    the row's deaths (statistics in a table without counts)."""
    s = res.summary.set_index("term")
    h = res.horizon_days
    counted = data is not None
    rows = []
    if counted:
        d, _ = _model_frame(data, res.info.factors, None, None)
        t, e = outcome(d, h)
        rows.append({"factor": "Patients in the model", "level": "all", "hr": np.nan, "lower": np.nan,
                     "upper": np.nan, "p": np.nan, "ref": False, "n": res.n, "deaths": res.events, "_dim": "all"})
    total = {"n": res.n, "deaths": res.events, "_dim": "all"}
    for f, terms in res.info.assign.items():
        fac = _factor(f)
        label = fac.label or f
        if fac.kind == "categorical":
            lvls = res.info.levels[f]
            for lv in lvls:
                r = {"factor": label, "level": lv}
                if lv == lvls[0]:
                    r.update(hr=1.0, lower=np.nan, upper=np.nan, p=np.nan, ref=True)
                else:
                    x = s.loc[f"{f}[{lv}]"]
                    r.update(hr=x.hr, lower=x.lower, upper=x.upper, p=x.p, ref=False)
                if counted:
                    inlv = (d[fac.column].astype(str) == lv).to_numpy()
                    r.update(n=int(inlv.sum()), deaths=int(e[inlv].sum()), _dim=fac.column)
                rows.append(r)
        elif fac.kind == "spline":
            b = res.params[terms].to_numpy()
            v = res.vcov.loc[terms, terms].to_numpy()
            chi2 = float(b @ np.linalg.solve(v, b))
            rows.append({"factor": label, "level": f"spline, {len(terms)} df (see adjusted curves)",
                         "hr": np.nan, "lower": np.nan, "upper": np.nan,
                         "p": float(stats.chi2.sf(chi2, len(terms))), "ref": False, **(total if counted else {})})
        else:
            x = s.loc[terms[0]]
            rows.append({"factor": label, "level": fac.unit or "per unit", "hr": x.hr, "lower": x.lower,
                         "upper": x.upper, "p": x.p, "ref": False, **(total if counted else {})})
    out = pd.DataFrame(rows)
    est = ["hr", "lower", "upper", "p"]
    if not counted:
        return results.annotate(out[["factor", "level", *est, "ref"]], counts={}, labels=["factor", "level", "ref"],
                                stats=est, universe=res.universe, population_conds=res.population)
    out["n"], out["deaths"] = out["n"].astype("int64"), out["deaths"].astype("int64")
    out["_dead"] = dead_by(h)
    # a level's estimates are withheld with its deaths (the width of a CI tells roughly how many there are)
    return results.annotate(out, counts={"n": {}, "deaths": {FU: "{_dead}"}}, dims={"level": "{_dim}"},
                            derived={c: ["deaths"] for c in est}, labels=["factor", "ref", "_dim", "_dead"],
                            universe=res.universe, population_conds=res.population, complete=False)


def model_overview(models: dict, names: dict | None = None) -> pd.DataFrame:
    """One row per model ({key: CoxResult} fitted on the same data): model (names[key] or the model's
    label), n (patients in the model: its complete cases), deaths (within its horizon), n_dropped (left out
    for a missing value) and the C-index (a statistic). Annotated: #complete:<columns> = complete / dropped
    and deaths dead@-inf-h of #fu[dead,cens]."""
    rs = list(models.values())
    if len({r.cases_var for r in rs}) != 1 or not rs[0].cases_var:
        raise ValueError("model_overview: the models must share their complete-case columns")
    cv = rs[0].cases_var
    base = {tuple(c for c in r.population if c[0] != cv) for r in rs}
    if len(base) != 1 or len({r.universe for r in rs}) != 1:
        raise ValueError("model_overview: the models come from data of different populations")
    out = pd.DataFrame([{"model": (names or {}).get(k, r.label or str(k)), "n": r.n, "deaths": r.events,
                         "n_dropped": r.n_dropped, "c_index": r.concordance, "_dead": dead_by(r.horizon_days)}
                        for k, r in models.items()])
    return results.annotate(out, counts={"n": {cv: "complete"}, "deaths": {cv: "complete", FU: "{_dead}"},
                                         "n_dropped": {cv: "dropped"}},
                            labels=["model", "_dead"], stats=["c_index"], universe=rs[0].universe,
                            population_conds=list(base.pop()))


def stack_summaries(models: dict, col: str = "model") -> pd.DataFrame:
    """The coefficient summaries of several models ({name: CoxResult}) stacked, with the name in `col`
    first (a result of statistics: e.g. for a forest plot)."""
    out = pd.concat([pd.DataFrame(r.summary).assign(**{col: name}) for name, r in models.items()], ignore_index=True)
    out = out[[col, *[c for c in out.columns if c != col]]]
    return _stats_result(out, [col, "factor", "term"])


def age_effect(res: CoxResult, ages=(60, 70, 80, 90, 100), reference_age: float = 80.0) -> pd.DataFrame:
    """Hazard ratio of each age vs `reference_age` from the spline (delta-method 95 % CI)."""
    terms = res.info.assign["age"]
    B = rcs_basis(np.asarray(ages, float), res.info.knots["age"]) - rcs_basis(np.array([reference_age]), res.info.knots["age"])
    b = res.params[terms].to_numpy()
    V = res.vcov.loc[terms, terms].to_numpy()
    lp = B @ b
    se = np.sqrt(np.einsum("ij,jk,ik->i", B, V, B))
    out = pd.DataFrame({"age": list(ages), "reference_age": reference_age, "hr": np.exp(lp),
                        "lower": np.exp(lp - 1.96 * se), "upper": np.exp(lp + 1.96 * se)})
    return _stats_result(out, ["age", "reference_age"])


def adjusted_survival(res: CoxResult, profiles: dict[str, dict], *, days=None) -> pd.DataFrame:
    """Model-based survival S(t | profile) = exp(-H0(t) exp(x'b)) (Breslow H0) for named typical patient
    profiles (dicts of factor column -> value; every factor of the model must be given).
    days: time grid (default 0..365 by 5 and then yearly to the end of the baseline)."""
    if res.baseline_cumhaz is None:
        raise ValueError("adjusted_survival needs a model without strata")
    bh = res.baseline_cumhaz
    tmax = float(bh.index.max())
    if days is None:
        days = np.unique(np.concatenate([np.arange(0, 366, 5), np.arange(365, tmax + 1, 365.25 / 4)]))
    days = np.asarray(days, float)
    pos = np.searchsorted(bh.index.to_numpy(float), days, side="right") - 1
    h0 = np.where(pos >= 0, bh["cumhaz"].to_numpy()[np.maximum(pos, 0)], 0.0)
    cols = sorted({_factor(f).column for f in res.info.factors})
    rows = []
    for name, prof in profiles.items():
        miss = [c for c in cols if c not in prof]
        if miss:
            raise KeyError(f"profile {name!r} lacks {miss}")
        X, _ = build_design(pd.DataFrame([prof]), res.info.factors, info=res.info)
        x = X[list(res.params.index)].to_numpy(float)[0]
        lp = float(x @ res.params.to_numpy())
        rows.append(pd.DataFrame({"profile": name, "day": days, "survival": np.exp(-h0 * np.exp(lp))}))
    return _stats_result(pd.concat(rows, ignore_index=True), ["profile", "day"])


def typical_profiles(data: pd.DataFrame, factors) -> dict[str, dict]:
    """Typical patient profiles for adjusted survival curves: a 'typical' patient (the most common
    level of every categorical factor, the median of numeric ones, age 85, woman) and variations of it
    (age 75 and 92; man; ASA 4-5 with cognitive impairment; nursing-home resident; surgery after
    48 h) — each only if its factor is in the model and the level observed."""
    cols = {f: _factor(f).column for f in factors}
    base: dict = {}
    for f, c in cols.items():
        kind = _factor(f).kind
        s = data[c].dropna()
        if kind == "categorical":
            base[c] = s.astype(str).value_counts().sort_index().idxmax()
        else:
            base[c] = float(np.median(pd.to_numeric(s)))
    if "age" in cols:
        base["age"] = 85.0
    if "male" in cols:
        base["male"] = 0.0
    if "nonguideline_implant" in cols:
        base["nonguideline_implant"] = 0.0
    profiles = {"typical (85, woman)": dict(base)}

    def variant(name, **kv):
        for c, v in kv.items():
            if c not in base:
                return
            if _factor(next(f for f, cc in cols.items() if cc == c)).kind == "categorical" and \
                    v not in set(data[c].dropna().astype(str)):
                return
        profiles[name] = {**base, **kv}

    variant("age 75", age=75.0)
    variant("age 92", age=92.0)
    variant("man", male=1.0)
    variant("ASA 4-5 + cognitive impairment", asa_group="4-5", cognitive="yes")
    variant("nursing home", residence="nursing_home")
    variant("surgery > 48 h", delay_band=">48h")
    return profiles


COMPETING_REFERENCE = {f.column: f.reference for f in FACTORS.values() if f.kind == "categorical"}


def second_fracture_frame(data: pd.DataFrame, covariates) -> tuple[pd.DataFrame, int]:
    """Competing-risk analysis frame: cr_time (days), cr_event (0 censored, 1 second hip fracture,
    2 death first), sex, res_region and the covariates ("age10" = age / 10), complete cases; returns
    (frame, number of rows dropped for a missing covariate)."""
    d = data.copy()
    d["age10"] = pd.to_numeric(d["age"]) / 10.0
    ce = competing_events(d)
    d["cr_time"], d["cr_event"] = ce.cr_time, ce.cr_event
    keep_cols = list(dict.fromkeys(["cr_time", "cr_event", "sex", "res_region", *covariates]))
    missing = [c for c in keep_cols if c not in d.columns]
    if missing:
        raise KeyError(f"data lack column(s) {missing} for the second-fracture models")
    complete = ~d[keep_cols].isna().any(axis=1)
    # the complete cases are a population of their own (#complete:<cohort columns>), so that the audit
    # knows them for a subset of the cohort (e.g. notebook 04 counts the same outcome over every patient)
    src = sorted({"age" if c == "age10" else c for c in keep_cols if c not in ("cr_time", "cr_event")})
    if complete.all():
        return d[keep_cols], 0
    return results.subset(d[keep_cols], complete.to_numpy(), complete_var(src)[1:], "complete"), int((~complete).sum())


def second_fracture_models(data: pd.DataFrame, covariates, *, cluster: str | None = None) -> pd.DataFrame:
    """Second hip fracture with death as competing event: cause-specific Cox (deaths censored;
    lifelines, Efron ties) and Fine–Gray subdistribution hazard ratios (hipfrac.competing.fine_gray)
    for the same covariates on the same complete cases. Tidy: model, term, coef, se, hr, lower, upper,
    p, n, events."""
    from hipfrac.competing import cause_specific_cox, fine_gray

    d, _ = second_fracture_frame(data, covariates)
    ref = {c: COMPETING_REFERENCE[c] for c in covariates if c in COMPETING_REFERENCE}
    cs = cause_specific_cox(d, time="cr_time", event="cr_event", cause=1, covariates=covariates, reference=ref)
    fg = fine_gray(d, time="cr_time", event="cr_event", cause=1, covariates=covariates, reference=ref)
    cols = ["term", "coef", "se", "hr", "lower", "upper", "p", "n", "events"]
    out = pd.concat([cs[cols].assign(model="cause-specific Cox"), fg[cols].assign(model="Fine-Gray")],
                    ignore_index=True)[["model", *cols]]
    # n: the complete cases (the frame's population); events: their second hip fractures (#fx2 fx, any time)
    return results.annotate(out, counts={"n": {}, "events": {FX2: sdc.interval_atom("fx", -np.inf, np.inf)}},
                            labels=["model", "term"], stats=["coef", "se", "hr", "lower", "upper", "p"], source=d)


CR_CAUSES = {1: "second hip fracture", 2: "death first"}


def second_fracture_cif(cr: pd.DataFrame, *, times, group=None) -> pd.DataFrame:
    """Cumulative incidence of a second hip fracture and of death first (second_fracture_frame) at `times`
    (days), by `group`: [group], cause ("second hip fracture", "death first"), time, cif, lower, upper,
    n_risk, events. Annotated with the status #fx2[fx,dead,cens] (hipfrac.competing.cumulative_incidence):
    cumulative events and numbers at risk at several times are one variable, so the events between two
    times (of this table, another table or a curve of the same outcome, e.g. notebook 04's) are cells."""
    from hipfrac import competing

    ci = competing.cumulative_incidence(cr, time="cr_time", event="cr_event", times=times, group=group,
                                        status=FX2)
    tab = ci.drop(columns=["var", "se"])
    tab["cause"] = tab["cause"].map(CR_CAUSES)
    return tab


def second_fracture_curves(cr: pd.DataFrame, *, group=None, min_events: int, at_risk_times) -> pd.DataFrame:
    """Cumulative incidence curves of a second hip fracture (cause 1) for plotting, steps merged
    (hipfrac.competing.cif_curves); numbers at risk at `at_risk_times` are the cells of second_fracture_cif."""
    from hipfrac import competing

    return competing.cif_curves(cr, time="cr_time", event="cr_event", group=group, causes=(1,),
                                min_events=min_events, at_risk_times=at_risk_times, status=FX2)
