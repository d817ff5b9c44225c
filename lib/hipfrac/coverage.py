"""Data quality of the cohort: register coverage against NPR, completeness, registrations, self-sufficiency.

All functions take the cohort (or its companion tables from `hipfrac.cohort.load_companion`) and return
tidy aggregate DataFrames (no person-level rows) that carry their disclosure metadata (hipfrac.results);
proportions are fractions in [0, 1].

Disclosure metadata:

* coverage: universe ``records:coverage`` (operated hip fractures found in NHFR and/or NPR, not patients of
  the cohort); status ``#linked`` with atoms both, nhfr_only, npr_only (n_total: every record); the years
  kept are the population condition ``#period = <first>-<last>``; coverage and level derived from all.
* completeness: patients of the cohort; per variable the status ``#complete:<variable>`` with atoms
  recorded and missing (n = eligible = recorded|missing; the rest of the unit's patients, private
  ``_n_pop``, are not eligible); complete derived from n and n_missing.
* registrations: patients of the cohort per unit (and year).
* self-sufficiency: patients of the cohort; ``#own_trust`` and ``#own_region`` = yes (n - n_own_* are the
  patients treated elsewhere: protected when small); shares derived from their counts.

Coverage (degree of coverage of a medical quality register against NPR, linked per person, as the national
registries compute it): coverage = (only register + both) / (only NPR + only register + both), over the
operated hip fractures of a hospital (and year). Portal display rules: coverage under 60 % is shown as
"low coverage"; targets are 80 % (moderate) and 90 % (high).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from hipfrac import results

from . import expr

__all__ = ["COVERAGE_LEVELS", "COMPLETENESS_BANDS", "COMPLETENESS_VARIABLES", "completeness", "completeness_band",
           "coverage_level", "coverage_table",
           "registrations", "self_sufficiency"]

LOW_COVERAGE = 0.60
TARGETS = (0.80, 0.90)
COVERAGE_LEVELS = ("low coverage (<60%)", "60-80%", "80-90%", ">=90%")

# variable -> condition (hipfrac.expr expression on the cohort) restricting who should have a value
COMPLETENESS_VARIABLES: dict[str, str | None] = {
    "fracture_datetime": None, "surgery_datetime": None, "asa": None, "cognitive": None,
    "fracture_type": None, "side": None, "operation_type": None,
    "stem_fixation": "arthroplasty == 1", "anaesthesia": None, "nerve_block": None,
    "education": None, "income_quintile": None, "living_alone": None, "birth_country": None,
}


def coverage_level(coverage) -> pd.Series:
    """Coverage band: low coverage (<60 %), 60-80 %, 80-90 %, >=90 % (target levels of the portal)."""
    c = pd.Series(coverage, dtype=float)
    out = pd.Series(np.select([c < LOW_COVERAGE, c < TARGETS[0], c < TARGETS[1], c >= TARGETS[1]],
                              list(COVERAGE_LEVELS), default=""), index=c.index)
    return out.replace("", pd.NA).astype("string")


def coverage_table(coverage: pd.DataFrame, by: Sequence[str] = ("hospital", "year"),
                   years: tuple[int, int] | None = None, names: pd.DataFrame | None = None) -> pd.DataFrame:
    """NHFR coverage against NPR aggregated over `by` (e.g. ["hospital"], ["year"], ["hospital", "year"]).

    coverage: the `coverage` companion of the cohort (hospital, year, n_both, n_nhfr_only, n_npr_only).
    years: (first, last) calendar years to keep (inclusive), e.g. the study period.
    names: optional hospital table (hospital, hospital_name, trust, region) joined on.
    Returns by-columns, n_both, n_nhfr_only, n_npr_only, n_total, coverage, level; sorted by `by`.
    """
    df = coverage
    if years is not None:
        df = df[(df["year"] >= years[0]) & (df["year"] <= years[1])]
    by = list(by)
    cols = ["n_both", "n_nhfr_only", "n_npr_only"]
    if by:
        g = df.groupby(by, sort=True)[cols].sum().reset_index()
    else:
        g = df[cols].sum().to_frame().T
    g["n_total"] = g[cols].sum(axis=1)
    g["coverage"] = (g["n_both"] + g["n_nhfr_only"]) / g["n_total"].where(g["n_total"] > 0)
    g["level"] = coverage_level(g["coverage"])
    if names is not None and "hospital" in by:
        g = g.merge(names, on="hospital", how="left")
    g = g.reset_index(drop=True)
    linked = "#linked"
    return results.annotate(
        # a fracture in one register only is a registration missing from the other (export.protect_missing)
        g, counts={"n_both": {linked: "both"}, "n_nhfr_only": {linked: "missing:npr"},
                   "n_npr_only": {linked: "missing:nhfr"}, "n_total": {}},
        dims={c: c for c in by}, derived={"coverage": "*", "level": "*"},
        labels=[c for c in g.columns if c not in by + cols + ["n_total", "coverage", "level"]],
        universe="records:coverage", atoms={linked: ["both", "missing:npr", "missing:nhfr"]},
        population_conds=[("#period", f"{years[0]}-{years[1]}")] if years is not None else [])


def completeness(cohort: pd.DataFrame, by: str | Sequence[str] = "hospital",
                 variables: dict[str, str | None] | None = None) -> pd.DataFrame:
    """Share of patients with a recorded value, per variable and unit.

    variables: variable -> eligibility condition (a hipfrac.expr expression, e.g. stem fixation only for arthroplasty);
      default COMPLETENESS_VARIABLES. NPR-only fractures have no NHFR form: they are left out for the
      NHFR variables (those recorded on the form).
    Returns long format: by-columns, variable, n (eligible patients), n_missing, complete (fraction), and
    the private _n_pop (every patient of the unit; never published).
    """
    by = [by] if isinstance(by, str) else list(by)
    variables = COMPLETENESS_VARIABLES if variables is None else variables
    nhfr_vars = {"fracture_datetime", "surgery_datetime", "asa", "cognitive", "fracture_type", "side",
                 "operation_type", "stem_fixation", "anaesthesia", "nerve_block"}
    rows = []
    n_pop = cohort.groupby(by, sort=True).size().rename("_n_pop").reset_index()
    for var, cond in variables.items():
        d = cohort
        if var in nhfr_vars and "source" in d.columns:
            d = d[d["source"] != "npr_only"]
        if cond:
            d = d[expr.mask(d, cond)]   # hipfrac.expr: parsed, never evaluated as Python
        g = d.assign(_miss=d[var].isna()).groupby(by, sort=True)["_miss"].agg(["size", "sum"]).reset_index()
        g = g.rename(columns={"size": "n", "sum": "n_missing"})
        g.insert(len(by), "variable", var)
        rows.append(g)
    out = pd.concat(rows, ignore_index=True)
    out["n"] = out["n"].astype("int64")
    out["n_missing"] = out["n_missing"].astype("int64")
    out["complete"] = 1.0 - out["n_missing"] / out["n"]
    order = {v: i for i, v in enumerate(variables)}
    out["_o"] = out["variable"].map(order)
    out = out.sort_values(by + ["_o"]).drop(columns="_o").reset_index(drop=True)
    out = out.merge(n_pop, on=by, how="left")
    st = "#complete:{variable}"
    return results.annotate(out, counts={"n": {st: "missing|recorded"}, "n_missing": {st: "missing"}, "_n_pop": {}},
                            dims={c: c for c in by}, derived={"complete": ["n", "n_missing"]}, labels=["variable"],
                            private=["_n_pop"], source=cohort)


COMPLETENESS_BANDS = ("<80%", "80-90%", "90-95%", "95-99%", ">=99%")


def completeness_band(complete) -> pd.Series:
    """Completeness in bands (<80 %, 80-90 %, 90-95 %, 95-99 %, >=99 %): a band gives a range of missing
    counts (narrow for large units: draw bands only of published shares, as figures.cohort does)."""
    c = pd.Series(complete, dtype=float)
    bins = [-np.inf, 0.80, 0.90, 0.95, 0.99, np.inf]
    out = pd.cut(c, bins, right=False, labels=list(COMPLETENESS_BANDS)).astype("string")
    return out


def registrations(cohort: pd.DataFrame, by: Sequence[str] = ("hospital", "year"),
                  names: pd.DataFrame | None = None) -> pd.DataFrame:
    """Number of index fractures (registrations) per unit and year: by-columns, n (and the label columns of
    `names`, e.g. hospital_name, joined on its first column)."""
    by = list(by)
    g = cohort.groupby(by, sort=True).size().rename("n").reset_index()
    g = results.annotate(g, counts={"n": {}}, dims={c: c for c in by}, source=cohort)
    if names is not None:
        g = results.merge_labels(g, names, on=names.columns[0])
    return g


def self_sufficiency(cohort: pd.DataFrame, by: str = "referral_area") -> pd.DataFrame:
    """Share of patients treated at a hospital of their own region and of their own trust.

    by: residence unit (referral_area, res_trust or res_region). Own region: hosp_region == res_region;
    own trust: hosp_trust == res_trust. Returns by, n, n_own_trust, own_trust, n_own_region, own_region,
    sorted by `by`, plus a national row (by = "Norway").
    """
    d = cohort.assign(_trust=(cohort["hosp_trust"] == cohort["res_trust"]).astype(int),
                      _region=(cohort["hosp_region"] == cohort["res_region"]).astype(int))
    g = d.groupby(by, sort=True).agg(n=("_trust", "size"), n_own_trust=("_trust", "sum"),
                                     n_own_region=("_region", "sum")).reset_index()
    tot = pd.DataFrame({by: ["Norway"], "n": [len(d)], "n_own_trust": [d["_trust"].sum()],
                        "n_own_region": [d["_region"].sum()]})
    g = pd.concat([g, tot], ignore_index=True)
    g["own_trust"] = g["n_own_trust"] / g["n"]
    g["own_region"] = g["n_own_region"] / g["n"]
    g = g[[by, "n", "n_own_trust", "own_trust", "n_own_region", "own_region"]].astype(
        {"n": "int64", "n_own_trust": "int64", "n_own_region": "int64"})
    return results.annotate(g, counts={"n": {}, "n_own_trust": {"#own_trust": "yes"},
                                       "n_own_region": {"#own_region": "yes"}},
                            dims={by: by}, derived={"own_trust": ["n", "n_own_trust"], "own_region": ["n", "n_own_region"]},
                            source=cohort)
