"""Quality indicators as data: the catalogue (lib/hipfrac/data/indicators.yaml) and its evaluation.

    from hipfrac import indicators
    cat = indicators.load_catalogue()                  # {id: Indicator}, validated
    res = indicators.evaluate(cohort, cat["surgery_48h"], unit="hospital")   # per unit, pooled period
    res = indicators.evaluate(cohort, cat["surgery_48h"], unit="hosp_region", by_year=True)
    nat = indicators.evaluate(cohort, cat["surgery_48h"], unit=None)          # national
    oe = indicators.case_mix(cohort, cat["surgery_48h"], unit="hospital", adjustment=[...])

Proportions are fractions in [0, 1]. Every unit is returned, including those with few patients
(flagged `low_n_flag`) and with low register coverage (flagged `low_coverage`); nothing is dropped.
Adding an indicator is adding a catalogue entry; no code.
"""

from __future__ import annotations

import ast
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from . import expr, results, variation

UNIT_LEVELS = ("hospital", "hosp_trust", "hosp_region", "referral_area")
TYPES = ("process", "outcome", "data_quality")
REQUIRED = ("title", "type", "eligible", "numerator", "direction", "green", "yellow", "source", "min_n")
OPTIONAL = ("requires",)
KNOWN_REQUIRES = ("include_npr_only",)
NATIONAL = "Norway"


class CatalogueError(ValueError):
    """The indicator catalogue is malformed (message names the indicator and the key)."""


@dataclass(frozen=True)
class Indicator:
    """One catalogue entry (see the header of indicators.yaml for the meaning of each field)."""

    id: str
    title: dict
    type: str
    eligible: str
    numerator: str
    direction: str
    green: float | None
    yellow: float | None
    source: str
    min_n: int
    requires: tuple = field(default_factory=tuple)

    def title_in(self, lang: str = "en") -> str:
        return self.title[lang]

    def level(self, prop) -> np.ndarray:
        """Target achievement of proportions: "green", "yellow", "red"; "none" without a target or
        when prop is missing."""
        p = np.asarray(prop, dtype=float)
        if self.green is None:
            return np.full(p.shape, "none", dtype=object)
        sign = 1.0 if self.direction == "higher" else -1.0
        g, y = sign * self.green, sign * (self.yellow if self.yellow is not None else self.green)
        q = sign * p
        out = np.where(q >= g - 1e-12, "green", np.where(q >= y - 1e-12, "yellow", "red")).astype(object)
        out[~np.isfinite(p)] = "none"
        return out


def _cohort_columns() -> set[str]:
    text = resources.files("hipfrac").joinpath("data/cohort_dictionary.yaml").read_text(encoding="utf-8")
    return set(yaml.safe_load(text)["columns"])


def _names(text: str) -> set[str]:
    """Column names an expression refers to (attribute calls such as x.notna() count x); SyntaxError when
    it does not parse, hipfrac.expr.ExprError when it leaves the expression language."""
    ast.parse(text, mode="eval")
    return expr.names(text) - {"True", "False", "None"}


def load_catalogue(path: str | Path | None = None) -> dict[str, Indicator]:
    """Read and validate the indicator catalogue; returns {id: Indicator} in file order.

    Raises CatalogueError naming the indicator and key for: unknown or missing keys, a wrong type,
    a bad direction or target order, expressions that do not parse or that use columns missing from
    the cohort dictionary.
    """
    if path is None:
        text = resources.files("hipfrac").joinpath("data/indicators.yaml").read_text(encoding="utf-8")
        where = "indicators.yaml"
    else:
        text = Path(path).read_text(encoding="utf-8")
        where = str(path)
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise CatalogueError(f"{where}: not valid YAML: {exc}") from exc
    entries = raw.get("indicators") if isinstance(raw, dict) else None
    if not isinstance(entries, dict) or not entries:
        raise CatalogueError(f"{where}: expected a mapping 'indicators: {{id: entry}}'")
    columns = _cohort_columns()
    out: dict[str, Indicator] = {}
    for iid, e in entries.items():
        ctx = f"{where}: indicator {iid!r}"
        if not isinstance(iid, str) or not re.fullmatch(r"[a-z][a-z0-9_]*", iid):
            raise CatalogueError(f"{ctx}: id must be lower case letters, digits and underscores")
        if not isinstance(e, dict):
            raise CatalogueError(f"{ctx}: entry must be a mapping")
        missing = [k for k in REQUIRED if k not in e]
        unknown = [k for k in e if k not in REQUIRED + OPTIONAL]
        if missing:
            raise CatalogueError(f"{ctx}: missing key(s) {missing}")
        if unknown:
            raise CatalogueError(f"{ctx}: unknown key(s) {unknown}; allowed: {list(REQUIRED + OPTIONAL)}")
        if not isinstance(e["title"], dict) or set(e["title"]) != {"en", "no"}:
            raise CatalogueError(f"{ctx}: title must have exactly the languages en and no")
        if e["type"] not in TYPES:
            raise CatalogueError(f"{ctx}: type must be one of {TYPES}, got {e['type']!r}")
        if e["direction"] not in ("higher", "lower"):
            raise CatalogueError(f"{ctx}: direction must be 'higher' or 'lower', got {e['direction']!r}")
        for k in ("green", "yellow"):
            v = e[k]
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1):
                raise CatalogueError(f"{ctx}: {k} must be a proportion in [0, 1] or null, got {v!r}")
        g, y = e["green"], e["yellow"]
        if (g is None) != (y is None):
            raise CatalogueError(f"{ctx}: give both green and yellow, or neither")
        if g is not None and ((e["direction"] == "higher" and y > g) or (e["direction"] == "lower" and y < g)):
            raise CatalogueError(f"{ctx}: yellow {y} is beyond green {g} for direction {e['direction']}")
        if not isinstance(e["min_n"], int) or isinstance(e["min_n"], bool) or e["min_n"] < 0:
            raise CatalogueError(f"{ctx}: min_n must be a non-negative integer, got {e['min_n']!r}")
        for k in ("eligible", "numerator"):
            if not isinstance(e[k], str) or not e[k].strip():
                raise CatalogueError(f"{ctx}: {k} must be a non-empty expression string")
            try:
                names = _names(e[k])
            except SyntaxError as exc:
                raise CatalogueError(f"{ctx}: {k} expression does not parse: {e[k]!r} ({exc.msg})") from None
            except expr.ExprError as exc:
                raise CatalogueError(f"{ctx}: {k}: {exc}") from None
            bad = sorted(names - columns)
            if bad:
                raise CatalogueError(f"{ctx}: {k} uses column(s) {bad} not in the cohort dictionary")
        req = tuple(e.get("requires") or ())
        if any(r not in KNOWN_REQUIRES for r in req):
            raise CatalogueError(f"{ctx}: requires must be among {KNOWN_REQUIRES}, got {list(req)}")
        out[iid] = Indicator(id=iid, title=dict(e["title"]), type=e["type"], eligible=e["eligible"],
                             numerator=e["numerator"], direction=e["direction"],
                             green=None if g is None else float(g), yellow=None if y is None else float(y),
                             source=str(e["source"]), min_n=int(e["min_n"]), requires=req)
    return out


def select(catalogue: dict[str, Indicator], ids: Sequence[str] = ()) -> list[Indicator]:
    """The indicators named in ids (all when empty), in catalogue order; unknown ids are an error."""
    unknown = [i for i in ids if i not in catalogue]
    if unknown:
        raise KeyError(f"unknown indicator id(s) {unknown}; the catalogue has {list(catalogue)}")
    return [ind for iid, ind in catalogue.items() if not ids or iid in ids]


def _mask(cohort: pd.DataFrame, text: str, what: str) -> pd.Series:
    # hipfrac.expr interprets the parsed expression (a whitelist of nodes): the text is never evaluated
    try:
        m = expr.evaluate(cohort, text)
    except Exception as exc:  # noqa: BLE001 - re-raised with the expression named
        raise ValueError(f"cannot evaluate {what} expression {text!r}: {exc}") from exc
    if np.isscalar(m):
        m = pd.Series(bool(m), index=cohort.index)
    return pd.Series(m, index=cohort.index)


def masks(cohort: pd.DataFrame, ind: Indicator) -> tuple[np.ndarray, np.ndarray]:
    """(eligible, y) over all cohort rows: eligible is a bool array (missing counts as not
    eligible); y is 1.0 / 0.0 where the numerator is met / not met and NaN where it is missing
    (a numerator on a missing value, e.g. surgery_48h null, is missing, not 0)."""
    el = _mask(cohort, ind.eligible, f"{ind.id} eligibility").astype("boolean").fillna(False).to_numpy(bool)
    num = _mask(cohort, ind.numerator, f"{ind.id} numerator").astype("boolean")
    y = num.astype("Float64").to_numpy(dtype=float, na_value=np.nan)
    names = [n for n in _names(ind.numerator) if n in cohort.columns]
    if names:
        y[cohort[names].isna().any(axis=1).to_numpy()] = np.nan
    return el, y


def eligible(cohort: pd.DataFrame, ind: Indicator) -> tuple[pd.DataFrame, dict]:
    """The indicator's eligible patients with a 0/1 column `y` (numerator met), and counts.

    Returns (frame, counts) where counts = {"eligible": patients meeting the eligibility
    expression, "missing": of them with a missing numerator (left out), "analysed": the rest}.
    """
    el, y = masks(cohort, ind)
    ok = el & ~np.isnan(y)
    out = cohort.loc[ok].copy()
    out["y"] = y[ok].astype(int)
    return out, {"eligible": int(el.sum()), "missing": int((el & np.isnan(y)).sum()), "analysed": len(out)}


def unit_coverage(cohort: pd.DataFrame, unit: str | None, by_year: bool = False) -> pd.DataFrame | None:
    """Register coverage per unit: (both + nhfr_only) / all fractures; None if the cohort holds no
    NPR-only fractures (built without include_npr_only), where coverage cannot be computed."""
    if "source" not in cohort.columns or not (cohort["source"] == "npr_only").any():
        return None
    keys = ([unit] if unit else []) + (["year"] if by_year else [])
    d = cohort[keys].copy()
    d["_reg"] = (cohort["source"] != "npr_only").to_numpy(int)
    if not keys:
        return pd.DataFrame({"coverage": [d["_reg"].mean()]})
    g = d.groupby(keys, sort=True)["_reg"].agg(["sum", "size"]).reset_index()
    g["coverage"] = g["sum"] / g["size"]
    return g[keys + ["coverage"]]


def evaluate(cohort: pd.DataFrame, ind: Indicator, unit: str | None = "hospital", by_year: bool = False,
             min_n: int | None = None, low_coverage: float = 0.6, level: float = 0.95) -> pd.DataFrame:
    """Indicator per unit (and year): n, events, prop with Wilson CI, target level and flags.

    unit: a cohort unit column (hospital, hosp_trust, hosp_region, referral_area) or None (national).
    min_n: override of the indicator's minimum n (None or 0 = the catalogue's).
    Returns one row per unit (x year), sorted: indicator, unit_level, unit, [year], n (analysed
    denominator), events, prop, lower, upper, level (green/yellow/red/none), low_n_flag ("low n": n < min n),
    coverage (register coverage of the unit, NaN when not computable), low_coverage, n_missing
    (eligible with a missing numerator). Units with no eligible patient do not appear.
    """
    if unit is not None and unit not in cohort.columns:
        raise KeyError(f"unit column {unit!r} not in the cohort")
    el, y = masks(cohort, ind)
    ucol = "_unit"
    d = pd.DataFrame({ucol: cohort[unit].astype(str).to_numpy() if unit else NATIONAL,
                      "y": y, "_el": el.astype(int)}, index=np.arange(len(cohort)))
    if by_year:
        d["year"] = cohort["year"].to_numpy()
    d["_ok"] = ((~np.isnan(d["y"])) & el).astype(int)
    d["_ev"] = np.where(el, d["y"].fillna(0), 0)
    d["_miss"] = (el & np.isnan(d["y"])).astype(int)
    keys = [ucol] + (["year"] if by_year else [])
    g = d.groupby(keys, sort=True).agg(n=("_ok", "sum"), events=("_ev", "sum"), n_missing=("_miss", "sum"),
                                       n_eligible=("_el", "sum"), _n_pop=("_el", "size"))
    g = g[g["n_eligible"] > 0].reset_index()
    g[["n", "events", "n_missing", "_n_pop"]] = g[["n", "events", "n_missing", "_n_pop"]].astype(int)
    g = g.drop(columns="n_eligible")
    with np.errstate(divide="ignore", invalid="ignore"):
        g["prop"] = np.where(g["n"] > 0, g["events"] / g["n"], np.nan)
    g["lower"], g["upper"] = variation.wilson_ci(g["events"], g["n"], level)
    g["level"] = ind.level(g["prop"])
    mn = ind.min_n if not min_n else int(min_n)
    g["low_n_flag"] = g["n"] < mn
    cov = unit_coverage(cohort, unit, by_year)
    if cov is None:
        g["coverage"] = np.nan
    else:
        cov = cov.rename(columns={unit: ucol}) if unit else cov.assign(_unit=NATIONAL)
        cov[ucol] = cov[ucol].astype(str)
        g = g.merge(cov, on=keys, how="left")
    g["low_coverage"] = g["coverage"] < low_coverage
    g.insert(0, "indicator", ind.id)
    g.insert(1, "unit_level", unit or "national")
    g = g.rename(columns={ucol: "unit"})
    cols = ["indicator", "unit_level", "unit"] + (["year"] if by_year else []) + [
        "n", "events", "prop", "lower", "upper", "level", "low_n_flag", "coverage", "low_coverage", "n_missing",
        "_n_pop"]
    return annotate_indicator_frame(g[cols].reset_index(drop=True), cohort)


def annotate_indicator_frame(frame: pd.DataFrame, source: pd.DataFrame) -> pd.DataFrame:
    """Disclosure metadata of an indicator frame (see hipfrac.results): per row, n = the analysed eligible
    patients of the unit (atoms event and nonevent of the status variable #<indicator>), events, n_missing
    (eligible, numerator missing) and the private _n_pop (every patient of the unit: the remainder is
    "not eligible")."""
    st = "#{indicator}"
    counts = {"n": {st: "event|nonevent"}, "events": {st: "event"}, "n_missing": {st: "missing"}, "_n_pop": {}}
    counts = {c: v for c, v in counts.items() if c in frame.columns}
    dims = {"unit": "{unit_level}"} | ({"year": "year"} if "year" in frame.columns else {})
    return results.annotate(frame, counts=counts, dims=dims, derived={"prop": ["n", "events"], "lower": ["n", "events"],
                            "upper": ["n", "events"], "level": ["n", "events"], "low_n_flag": ["n"],
                            "coverage": "*", "low_coverage": "*"},
                            labels=["indicator", "unit_level"], private=[c for c in ("_n_pop",) if c in frame.columns],
                            source=source, atoms={st: ["event", "nonevent", "missing"]})


CATEGORICAL = ("year",)


def _adjust_frame(d: pd.DataFrame, adjustment: Sequence[str]) -> tuple[pd.DataFrame, list[str]]:
    """Adjustment covariates with missing categories as a level 'missing'; constant ones left out;
    `year` (and other columns in CATEGORICAL) as categories (one level per calendar year)."""
    cov = []
    x = pd.DataFrame(index=d.index)
    for c in adjustment:
        if c not in d.columns:
            raise KeyError(f"adjustment column {c!r} not in the cohort")
        s = d[c]
        if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s) and c not in CATEGORICAL:
            s = pd.to_numeric(s, errors="coerce").astype(float)
            if s.isna().any():
                s = s.fillna(s.median())
        else:
            s = s.astype("string").fillna("missing").astype(str)
        if s.nunique() > 1:
            x[c] = s
            cov.append(c)
    return x, cov


def case_mix(cohort: pd.DataFrame, ind: Indicator, unit: str = "hospital",
             adjustment: Sequence[str] = ("age", "male", "asa_group", "cognitive", "fracture_type", "charlson",
                                          "residence"),
             level: float = 0.95) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Case-mix adjusted comparison: a logistic model of the indicator on patient factors (no unit
    term; statsmodels Logit) gives each patient's expected probability under national practice;
    summed per unit -> expected events, O/E (exact Poisson CI) and the indirectly standardised
    proportion (O/E x national proportion).

    Missing categorical factors are a level "missing" (numeric: the median); factors constant among
    the eligible patients are left out. Returns (per-unit frame, model coefficients frame with
    `converged`: False when the fit did not converge, typically separation in small data).
    The per-unit frame: indicator, unit_level, unit, n, observed, expected, oe, oe_lower, oe_upper,
    crude, std_prop, lower, upper, var_expected (sum of p(1-p), the variance of O under the model).
    """
    d, _ = eligible(cohort, ind)
    x, cov = _adjust_frame(d, adjustment)
    X = variation.design_matrix(x, cov)
    if d["y"].nunique() < 2:
        p = np.full(len(d), float(d["y"].mean()))
        coefs = pd.DataFrame(columns=["indicator", "term", "estimate", "se", "converged"])
    else:
        fit, converged = _logit(d["y"].to_numpy(float), X.to_numpy(float))
        p = fit.predict(X.to_numpy(float))
        coefs = pd.DataFrame({"indicator": ind.id, "term": X.columns, "estimate": fit.params,
                              "se": fit.bse, "converged": converged})
    dd = pd.DataFrame({"unit": d[unit].astype(str).to_numpy(), "y": d["y"].to_numpy(), "p": p})
    oe = variation.observed_expected(dd, "unit", "y", "p", level=level)
    oe["var_expected"] = (dd.assign(v=p * (1 - p)).groupby("unit", sort=True)["v"].sum()
                          .reindex(oe["unit"]).to_numpy())
    oe = oe.rename(columns={"std_rate": "std_prop"})
    oe.insert(0, "indicator", ind.id)
    oe.insert(1, "unit_level", unit)
    coefs = results.annotate(coefs.reset_index(drop=True), counts={}, labels=["indicator", "term", "converged"],
                             stats=["estimate", "se"], universe="models")
    return _annotate_units(oe, cohort, unit, events="observed", labels=("indicator", "unit_level")), coefs


def restrict(cohort: pd.DataFrame, period: tuple[int, int] | None = None, min_age: float = 0,
             max_age: float | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Cohort rows within the period (fracture years, inclusive) and age limits; returns
    (rows, counts of rows dropped by reason: reason, n)."""
    keep = pd.Series(True, index=cohort.index)
    reasons = []
    if period is not None:
        out = ~cohort["year"].between(period[0], period[1])
        reasons.append((f"fracture year outside {period[0]}-{period[1]}", int((out & keep).sum())))
        keep &= ~out
    young = cohort["age"] < min_age
    reasons.append((f"age below {min_age:g}", int((young & keep).sum())))
    keep &= ~young
    if max_age is not None:
        old = cohort["age"] > max_age
        reasons.append((f"age above {max_age:g}", int((old & keep).sum())))
        keep &= ~old
    scope = _scope_name(period, min_age, max_age)
    dropped = pd.DataFrame(reasons, columns=["reason", "n"])
    results.annotate(dropped, counts={"n": {f"#{scope}": "{reason}"}}, labels=["reason"], source=cohort)
    return results.subset(cohort, keep.to_numpy(), scope), dropped


def _scope_name(period, min_age, max_age) -> str:
    """Status variable of a notebook's restriction (the same limits elsewhere are the same variable):
    atom "in" for the rows kept, one atom per reason for the rows left out."""
    p = f"{period[0]}-{period[1]}" if period is not None else "all"
    return f"scope({p};{min_age:g}-{'' if max_age is None else f'{max_age:g}'})"


# --------------------------------------------------------------------------------------------------
# orchestration used by notebook 01 (thin notebook: one call per table / figure)
# --------------------------------------------------------------------------------------------------
REGION_OF_UNIT = {"hospital": "hosp_region", "hosp_trust": "hosp_region", "hosp_region": "hosp_region",
                  "referral_area": "res_region"}


def usable(catalogue_selection: Sequence[Indicator], include_npr_only: bool) -> tuple[list[Indicator], list[str]]:
    """Indicators whose requirements the cohort meets, and notes on those left out (and why)."""
    keep, notes = [], []
    for ind in catalogue_selection:
        if "include_npr_only" in ind.requires and not include_npr_only:
            notes.append(f"{ind.id}: left out, needs a cohort built with include_npr_only (NPR-only fractures)")
            continue
        keep.append(ind)
    return keep, notes


def definitions(inds: Sequence[Indicator], lang: str = "en") -> pd.DataFrame:
    """The catalogue entries as a table (one row per indicator)."""
    d = pd.DataFrame([{"indicator": i.id, "title": i.title_in(lang), "type": i.type, "eligible": i.eligible,
                       "numerator": i.numerator, "direction": i.direction, "green": i.green,
                       "yellow": i.yellow, "min_n": i.min_n, "source": i.source} for i in inds])
    return results.annotate(d, counts={}, labels=list(d.columns), universe="catalogue")


def unit_regions(cohort: pd.DataFrame, unit: str) -> pd.DataFrame:
    """unit -> region (the treating hospital's region, or the residence region for referral areas);
    the most frequent region when a unit spans several."""
    rcol = REGION_OF_UNIT[unit]
    d = cohort[[unit, rcol]].dropna().astype(str)
    g = d.groupby([unit, rcol]).size().rename("k").reset_index().sort_values([unit, "k", rcol],
                                                                           ascending=[True, False, True])
    return g.drop_duplicates(unit)[[unit, rcol]].rename(columns={unit: "unit", rcol: "region"}).reset_index(drop=True)


def evaluate_many(cohort: pd.DataFrame, inds: Sequence[Indicator], unit: str | None, by_year: bool = False,
                  min_n: int | None = None, low_coverage: float = 0.6) -> pd.DataFrame:
    """`evaluate` for several indicators, stacked (indicator order kept)."""
    return results.concat([evaluate(cohort, i, unit, by_year, min_n, low_coverage) for i in inds])


def overview(national: pd.DataFrame, per_unit: pd.DataFrame, inds: Sequence[Indicator],
             lang: str = "en") -> pd.DataFrame:
    """One row per indicator: national n, events, prop (CI), target, and the number of units at each
    target level (low-n units counted separately, not in the levels).

    per_unit: the *published* (protected) per-unit frame (``out.protect(per_unit)``): a unit whose level
    is withheld is counted in `units_withheld`, never in a level, so the counts of units cannot reveal it.
    The unit counts are numbers of hospitals (or areas), not of patients (statistics).
    """
    rows = []
    for i in inds:
        nat = national[national["indicator"] == i.id].iloc[0]
        u = per_unit[per_unit["indicator"] == i.id]
        shown = u["level"].notna() & u["low_n_flag"].notna()
        low = shown & u["low_n_flag"].astype("boolean").fillna(False).astype(bool)
        ok = u[shown & ~low]
        rows.append({"indicator": i.id, "title": i.title_in(lang), "n": int(nat["n"]), "events": int(nat["events"]),
                     "prop": nat["prop"], "lower": nat["lower"], "upper": nat["upper"],
                     "green": i.green, "yellow": i.yellow, "level": nat["level"],
                     "units": len(u), "units_green": int((ok["level"] == "green").sum()),
                     "units_yellow": int((ok["level"] == "yellow").sum()),
                     "units_red": int((ok["level"] == "red").sum()), "units_below_min": int(low.sum()),
                     "units_withheld": int((~shown).sum()),
                     "units_low_coverage": int(u.loc[shown, "low_coverage"].astype("boolean").fillna(False).sum())})
    d = pd.DataFrame(rows)
    st = "#{indicator}"
    return results.annotate(d, counts={"n": {st: "event|nonevent"}, "events": {st: "event"}},
                            derived={"prop": ["n", "events"], "lower": ["n", "events"], "upper": ["n", "events"],
                                     "level": ["n", "events"]},
                            labels=["indicator", "title", "green", "yellow"],
                            stats=[c for c in d.columns if c.startswith("units")], population_conds=_pop(national),
                            universe=national.attrs[results.KEY]["universe"])


def _pop(result: pd.DataFrame) -> list[tuple[str, str]]:
    """The population conditions of a result (to annotate a frame computed from it)."""
    return [tuple(c) for c in result.attrs[results.KEY]["population"]]


def _annotate_units(frame: pd.DataFrame, source: pd.DataFrame, unit: str, n: str = "n", events: str = "events",
                    derived: dict | None = None, labels=("indicator",), stats=()) -> pd.DataFrame:
    """Metadata of a per-unit frame of one indicator (column `unit` holding values of the cohort column
    `unit`): n analysed and events are the cells of `evaluate` (status variable #<indicator>); every other
    numeric column is derived from them unless named in stats."""
    st = "#{indicator}"
    labels = [c for c in labels if c in frame]
    stats = [c for c in stats if c in frame]
    roles = {n, events, "unit", *labels, *stats}
    derived = {**{c: [n, events] for c in frame.columns if c not in roles}, **(derived or {})}
    return results.annotate(frame, counts={n: {st: "event|nonevent"}, events: {st: "event"}},
                            dims={"unit": unit}, derived=derived, labels=labels, stats=stats, source=source,
                            atoms={st: ["event", "nonevent", "missing"]})


def _derived_rest(frame: pd.DataFrame, meta: dict, labels=()) -> dict:
    """Every column of `frame` without a role in `meta` (or labels): derived from the row's counts."""
    roles = set(meta["counts"]) | set(meta["dims"]) | set(labels)
    return {c: list(meta["counts"]) for c in frame.columns if c not in roles}


def funnel(cohort: pd.DataFrame, ind: Indicator, unit: str, centre: str = "national",
           levels: Sequence[float] = (0.95, 0.998)) -> tuple[pd.DataFrame, dict]:
    """Crude funnel statistics of one indicator per unit (`variation.funnel_table`): centre
    "national" (pooled proportion) or "target" (the green level; national when there is none)."""
    d, _ = eligible(cohort, ind)
    d = d.assign(unit=d[unit].astype(str))
    target = ind.green if (centre == "target" and ind.green is not None) else None
    tab, info = variation.funnel_table(d, "unit", "y", target=target, levels=levels)
    tab.insert(0, "indicator", ind.id)
    info["indicator"] = ind.id
    return _annotate_units(tab, cohort, unit), info


def overdispersion_table(infos: Sequence[dict]) -> pd.DataFrame:
    """The `info` of several `funnel` calls as a table: indicator, target, k (units), phi, tau2, p_value
    (statistics of the whole set of units)."""
    d = pd.DataFrame([{k: i[k] for k in ("indicator", "target", "k", "phi", "tau2", "p_value")} for i in infos])
    return results.annotate(d, counts={}, labels=["indicator"], stats=["target", "k", "phi", "tau2", "p_value"],
                            universe="models")


def limit_flags(crude: pd.DataFrame, adjusted: pd.DataFrame, level_name: str) -> pd.DataFrame:
    """Per unit of one indicator: n, events and whether it lies outside the `level_name` % limits, crude
    (exact binomial), overdispersion-adjusted (multiplicative, additive) and case-mix adjusted
    (adj_outside_<L>); the flags are derived from the unit's counts (withheld with them)."""
    cols = ["indicator", "unit", "n", "events", f"outside_{level_name}", f"outside_mult_{level_name}",
            f"outside_add_{level_name}"]
    f = crude[cols].merge(adjusted[["unit", f"outside_{level_name}"]]
                          .rename(columns={f"outside_{level_name}": f"adj_outside_{level_name}"}), on="unit", how="left")
    f.attrs = {}
    m = dict(crude.attrs[results.KEY])
    m["counts"] = {k: v for k, v in m["counts"].items() if k in ("n", "events")}
    return results.annotate(f, counts={k: dict(v) for k, v in m["counts"].items()},
                            dims=m["dims"], labels=["indicator"], universe=m["universe"],
                            derived=_derived_rest(f, m, ["indicator"]),
                            population_conds=[tuple(c) for c in m["population"]])


def adjusted_funnel(oe: pd.DataFrame, national: float, levels: Sequence[float] = (0.95, 0.998)) -> pd.DataFrame:
    """Case-mix adjusted funnel of one indicator (from `case_mix`): per unit the indirectly
    standardised proportion prop = O/E x national, and z = (O - E) / sqrt(sum p_i (1 - p_i)) with p_i
    the patients' expected probabilities (Spiegelhalter 2005, risk-adjusted; normal approximation).
    A unit is outside a level when |z| exceeds the normal quantile (outside_<L>: "high"/"low"/"").
    oe must carry `var_expected` (sum p(1-p)), as `case_mix` returns it."""
    from scipy import stats as _st

    d = oe[["indicator", "unit", "n", "observed", "expected", "oe", "std_prop"]].copy()
    with np.errstate(divide="ignore", invalid="ignore"):
        d["z"] = (oe["observed"] - oe["expected"]) / np.sqrt(oe["var_expected"])
    for level in levels:
        name = f"{100 * level:.10g}"
        zq = _st.norm.ppf(0.5 + level / 2)
        d[f"outside_{name}"] = np.where(d["z"] > zq, "high", np.where(d["z"] < -zq, "low", ""))
    d = d.rename(columns={"std_prop": "prop"})
    d.attrs = {}
    m = oe.attrs.get(results.KEY)
    if m is None:
        return d
    return results.annotate(d, counts={k: dict(v) for k, v in m["counts"].items()}, dims=m["dims"],
                            labels=["indicator"], universe=m["universe"], derived=_derived_rest(d, m, ["indicator"]),
                            population_conds=[tuple(c) for c in m["population"]])


def random_effects(cohort: pd.DataFrame, ind: Indicator, unit: str, adjustment: Sequence[str],
                   nagq: int = 1, ci: str = "wald", method: str = "joint") -> tuple[object, object]:
    """Random-intercept logits of one indicator: null (no patient factors) and case-mix adjusted
    (missing categories as a level, constant factors left out). Returns (null_fit, adjusted_fit).

    method "joint": the patient factors' coefficients are estimated with sigma2 by maximum likelihood.
    method "offset": two-stage, faster at national scale: an ordinary logistic case-mix model (as in
      `case_mix`) gives each patient's linear predictor, which enters the random-intercept model as a
      fixed offset (only the intercept and sigma2 are estimated). The adjusted fit's `params` then
      hold only the intercept.
    """
    d, _ = eligible(cohort, ind)
    x, cov = _adjust_frame(d, adjustment)
    x["y"] = d["y"].to_numpy()
    x["_unit"] = d[unit].astype(str).to_numpy()
    null = variation.random_intercept_logit(x, "y", "_unit", [], nagq=nagq, ci=ci)
    if method == "joint":
        adj = variation.random_intercept_logit(x, "y", "_unit", cov, nagq=nagq, ci=ci)
    elif method == "offset":
        X = variation.design_matrix(x, cov)
        beta = _logit_fit(d["y"].to_numpy(float), X.to_numpy(float))
        x["_offset"] = X.to_numpy(float)[:, 1:] @ beta[1:]
        adj = variation.random_intercept_logit(x, "y", "_unit", [], nagq=nagq, ci=ci, offset="_offset")
    else:
        raise ValueError(f"method must be 'joint' or 'offset', got {method!r}")
    return null, adj


def random_effects_tables(ind: Indicator, null, adj, cohort: pd.DataFrame, unit: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(summary, unit effects) of `random_effects`: summary one row (indicator, units, n, sigma2 and MOR
    before and after case-mix adjustment, MOR CI, share of the between-unit variance explained by case-mix);
    unit effects per unit (n, events, shrunken effect on the log-odds scale, se, CI, odds ratio, outside)."""
    row = pd.DataFrame([{"indicator": ind.id, "units": adj.n_groups, "n": adj.n_obs,
                         "sigma2_null": null.sigma2, "mor_null": null.mor, "sigma2": adj.sigma2, "mor": adj.mor,
                         "mor_lower": adj.mor_ci[0], "mor_upper": adj.mor_ci[1],
                         "share_explained_by_case_mix": variation.variance_explained(null, adj)}])
    st = "#{indicator}"
    row = results.annotate(row, counts={"n": {st: "event|nonevent"}}, labels=["indicator"],
                           stats=[c for c in row.columns if c not in ("indicator", "n")], source=cohort)
    ue = adj.unit_effects.rename(columns={"group": "unit"}).assign(indicator=ind.id)
    ue = ue[["indicator", "unit", "n", "events", "effect", "se", "lower", "upper", "odds_ratio", "or_lower",
             "or_upper", "outside"]].reset_index(drop=True)
    return row, _annotate_units(ue, cohort, unit)


def _logit(y: np.ndarray, X: np.ndarray):
    """Maximum-likelihood logistic regression (statsmodels Logit: Newton, BFGS if the Hessian is singular)
    and whether it converged. Small units or rare categories can separate the outcome: the fit then does not
    converge (coefficients drift towards +-infinity while the predicted probabilities stay usable); that is
    returned as converged = False instead of warnings in the middle of a notebook."""
    import statsmodels.api as sm
    from statsmodels.tools.sm_exceptions import ConvergenceWarning, HessianInversionWarning

    model = sm.Logit(y, X)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        warnings.simplefilter("always", HessianInversionWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        try:
            fit = model.fit(disp=0, method="newton", maxiter=100)
        except np.linalg.LinAlgError:
            fit = model.fit(disp=0, method="bfgs", maxiter=1000)
    converged = bool(fit.mle_retvals.get("converged", True)) and not any(
        issubclass(w.category, (ConvergenceWarning, HessianInversionWarning)) for w in caught)
    return fit, converged


def _logit_fit(y: np.ndarray, X: np.ndarray) -> np.ndarray:
    """Maximum-likelihood logistic regression coefficients (see _logit)."""
    return np.asarray(_logit(y, X)[0].params)


def area_variation(cohort: pd.DataFrame, ind: Indicator, area: str = "referral_area",
                   strata: Sequence[str] = ("sex", "age_band5")) -> tuple[pd.DataFrame, dict]:
    """Health-atlas view of one indicator across areas of residence: crude and directly
    age-sex-standardised proportions (standard = the indicator's national eligible population),
    indirectly standardised O/E, and the statistics EQ, EQ2, CV (on the directly standardised
    proportions) and SCV (observed vs indirectly expected counts). Returns (per-area frame, stats)."""
    d, _ = eligible(cohort, ind)
    d = d.assign(_area=d[area].astype(str))
    strata = list(strata)
    ds = variation.direct_standardise(d, "_area", strata, "y")
    ind_std = variation.indirect_standardise(d, "_area", strata, "y")
    res = ds.rename(columns={"_area": "unit", "crude_rate": "crude", "std_rate": "std_prop"})
    res = res.merge(ind_std[["_area", "expected", "oe"]].rename(columns={"_area": "unit"}), on="unit")
    res.insert(0, "indicator", ind.id)
    ok = res[res["expected"] > 0]
    stats_ = {"indicator": ind.id, "areas": len(res), "eq": variation.eq(res["std_prop"]),
              "eq2": variation.eq2(res["std_prop"]), "cv": variation.cv(res["std_prop"]),
              "scv": variation.scv(ok["events"], ok["expected"]) if len(ok) else np.nan}
    # strata_empty counts standard strata (not patients) without a patient in the area: withheld with n
    return _annotate_units(res, cohort, area, derived={"strata_empty": ["n"]}), stats_


def area_statistics(stats_: Sequence[dict]) -> pd.DataFrame:
    """The statistics of several `area_variation` calls as a table (EQ, EQ2, CV, SCV over all areas)."""
    d = pd.DataFrame(list(stats_))
    return results.annotate(d, counts={}, labels=["indicator"], stats=[c for c in d.columns if c != "indicator"],
                            universe="models")


def outside_summary(flags: pd.DataFrame, titles: dict, level_name: str = "99.8") -> str:
    """Markdown summary of units outside the `level_name` % limits, per indicator.

    flags: the published (protected) frame of `limit_flags`: indicator, unit, outside_<L> (crude, exact
    binomial), optionally outside_add_<L> (crude, overdispersion-adjusted, additive random effects) and
    adj_outside_<L> (case-mix adjusted); a withheld flag (missing) is counted as withheld, never as inside
    or outside.
    Per indicator: how many units fall outside each set of limits, and by name the units outside
    both the case-mix adjusted and the overdispersion-adjusted limits (beyond the usual spread between
    units even after case-mix: the strongest candidates for unjustified variation).
    """
    col, acol, ocol = f"outside_{level_name}", f"adj_outside_{level_name}", f"outside_add_{level_name}"

    def out_(s: pd.Series) -> pd.Series:
        return s.notna() & (s.astype(object).fillna("") != "")

    lines = []
    for iid in dict.fromkeys(flags["indicator"]):
        f = flags[flags["indicator"] == iid]
        k = len(f)
        hidden = int(f[col].isna().sum())
        parts = [f"{int(out_(f[col]).sum())} of {k} units outside the exact limits"
                 + (f" ({hidden} withheld)" if hidden else "")]
        if acol in f.columns:
            parts.append(f"{int(out_(f[acol]).sum())} after case-mix adjustment")
        if ocol in f.columns:
            parts.append(f"{int(out_(f[ocol]).sum())} outside the overdispersion-adjusted limits")
            strong = f[out_(f[ocol]) & (out_(f[acol]) if acol in f.columns else True)]
            named = ", ".join(f"{u} ({'above' if s == 'high' else 'below'})" for u, s in zip(strong["unit"], strong[ocol]))
            parts.append(f"beyond both case-mix and overdispersion-adjusted limits: {named or 'none'}")
        lines.append(f"- **{titles.get(iid, iid)}**: " + "; ".join(parts) + ".")
    return "\n".join(lines) + "\n"
