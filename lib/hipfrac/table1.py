"""Table 1 (patient characteristics) as an annotated numeric result, its SMDs and its formatted display.

    from hipfrac import table1
    t1 = table1.table_one(cohort, groupby="res_region")      # long numeric result (hipfrac.results)
    out.table(t1, "table1_by_region", title=...)              # protected by the Exporter, like any result
    safe = out.protect(t1)                                    # what was published
    smd = table1.smd_table(safe)                              # SMDs from published numbers only
    wide = table1.display(safe, smd)                          # "n (%)" layout, withheld cells "s"
    out.table(wide, "table1_by_region_formatted", title=...); out.show(wide)

**The result** has one row per variable, level and group: columns variable, level, group, n, pct (of the
group, in %), mean, sd, median, q1, q3 (continuous variables: on the recorded values). Rows:

* ``variable = "n"``: the group's size (level empty);
* categorical variables: one row per level, every level in every group (zeros included), missing values
  as the level ``"missing"``;
* continuous variables: a row with empty level (n = the group's size, and the statistics of the recorded
  values) and, when any value is missing, rows ``level = "recorded"`` and ``"missing"``.

The groups are the levels of `groupby` plus ``"Overall"`` (the total).

**Disclosure metadata** (:mod:`hipfrac.results`): n is a count of the patients (source: the cohort) in the
cell (group, variable = level). Dimensions are templates, so the audit knows the hierarchies and margins:
the group is a level of `groupby` (``res_region`` is the residence hierarchy; "Overall" is the total), the
level a level of the row's variable (``age_band5`` lies in 10-year ``age_band``, ``fracture_type`` in its
``fracture_group``: both are the variable "fracture", so the groups are the sums of their types; the
``"missing"`` level is shared). The levels of a variable are the whole group (complete: a level absent is a
zero); a continuous variable is the variable ``"<name>:value"`` with levels recorded and missing. pct is
derived from n; the continuous statistics from their row's n, the group's size (withheld with it).
Limitation: pct is n / group size, and the group size is a count of another row, which the metadata cannot
name as a source; a group size is withheld only when it is small (then its levels are withheld too) or when
every variable of the group has a withheld level (it then follows from none of them): the display and the
SMDs are computed from the published n and group sizes only.

SMDs (Yang & Dalton 2012 for categorical variables, Cohen's d for continuous ones; tableone's functions)
are computed by :func:`smd_table` from the *protected* result: an SMD whose counts are not all published
is missing, so it never reveals a withheld cell. :func:`display` formats the protected result; a withheld
cell is printed as the Exporter's mark ("s"), never as "<5".
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from hipfrac import results
from hipfrac.tableformat import SUPPRESSED

__all__ = ["DEFAULT_CATEGORICAL", "DEFAULT_CONTINUOUS", "DEFAULT_NONNORMAL", "OVERALL", "display", "smd_table",
           "table_one"]

DEFAULT_CONTINUOUS = ["age", "charlson", "hours_fracture_to_surgery"]
DEFAULT_NONNORMAL = ["charlson", "hours_fracture_to_surgery"]
DEFAULT_CATEGORICAL = ["age_band", "sex", "asa_group", "cognitive", "charlson_group", "residence", "living_alone",
                       "education", "income_quintile", "birth_country", "fracture_group", "fracture_type",
                       "operation_type", "source"]
OVERALL = "Overall"
MISSING = "missing"
RECORDED = "recorded"
VALUE_SUFFIX = ":value"
STATS = ["mean", "sd", "median", "q1", "q3"]
COLUMNS = ["variable", "level", "group", "n", "pct"] + STATS


def _levels(s: pd.Series) -> pd.Series:
    """Category labels as strings, missing values as "missing" (whole floats without ".0")."""
    if pd.api.types.is_float_dtype(s):
        s = s.map(lambda x: pd.NA if pd.isna(x) else (str(int(x)) if float(x).is_integer() else str(x)))
    return s.astype("string").fillna(MISSING).astype(str)


def _groups(data: pd.DataFrame, groupby: str | None) -> list[tuple[str, pd.DataFrame]]:
    out = [(OVERALL, data)]
    if groupby:
        g = _levels(data[groupby])
        out += [(str(k), data[g == k]) for k in sorted(g.unique())]
    return out


def table_one(cohort: pd.DataFrame, groupby: str | None = None, categorical: list[str] | None = None,
              continuous: list[str] | None = None, nonnormal: list[str] | None = None) -> pd.DataFrame:
    """Table 1 as a long numeric annotated result (see the module doc), overall and by `groupby`.

    cohort: the analysis cohort (its declared population is the result's population).
    nonnormal: not used (kept for the call signature): every continuous variable has all five statistics;
        :func:`display` chooses mean (SD) or median [Q1, Q3].
    """
    categorical = DEFAULT_CATEGORICAL if categorical is None else categorical
    continuous = DEFAULT_CONTINUOUS if continuous is None else continuous
    cat = [c for c in categorical if c in cohort.columns and c != groupby]
    cont = [c for c in continuous if c in cohort.columns and c != groupby]
    groups = _groups(cohort, groupby)
    gvar = groupby or "all"
    rows: list[dict] = []

    def add(var, level, group, n, size, lvar, lev, **stats):
        if results._is_total(lvar, lev):
            # a level of a unit variable named like a total ("Norway"): not the total row. A level of any
            # other variable keeps its name (a total hip replacement is operation_type=total, the same
            # cell as in every other table: renamed, it was a second name for those patients, and the
            # listed levels of Table 1 left no room for the other name's patients: the audit's interval
            # programme was infeasible)
            lev = f"{lev} (level)"
        rows.append({"variable": var, "level": level, "group": group, "n": int(n),
                     "pct": 100.0 * n / size if size else np.nan, **{s: stats.get(s, np.nan) for s in STATS},
                     "_gvar": gvar if group != OVERALL else "all", "_lvar": lvar, "_lev": lev})

    for g, d in groups:
        add("n", "", g, len(d), len(d), "all", "")
    for var in cont:
        any_missing = bool(cohort[var].isna().any())
        for g, d in groups:
            x = pd.to_numeric(d[var], errors="coerce").astype(float)
            v = x.dropna().to_numpy()
            st = {}
            if len(v):
                st = {"mean": float(np.mean(v)), "sd": float(np.std(v, ddof=1)) if len(v) > 1 else 0.0,
                      "median": float(np.median(v)), "q1": float(np.percentile(v, 25)),
                      "q3": float(np.percentile(v, 75))}
            # the statistics row counts the group (its n is the group's size): withheld with it
            add(var, "", g, len(d), len(d), "all", "", **st)
            rows[-1]["pct"] = np.nan
            if any_missing:
                add(var, RECORDED, g, len(v), len(d), var + VALUE_SUFFIX, RECORDED)
                add(var, MISSING, g, int(x.isna().sum()), len(d), var + VALUE_SUFFIX, MISSING)
    for var in cat:
        lev_all = _levels(cohort[var])
        levels = sorted(lev_all.unique())
        for g, d in groups:
            counts = lev_all.loc[d.index].value_counts()
            for lev in levels:
                add(var, lev, g, int(counts.get(lev, 0)), len(d), var, lev)
    t = pd.DataFrame(rows)
    # variable-major order (n, continuous, categorical as given), then level, then group
    vorder = {v: i for i, v in enumerate(["n"] + cont + cat)}
    gorder = {g: i for i, (g, _) in enumerate(groups)}
    t = t.assign(_v=t["variable"].map(vorder), _g=t["group"].map(gorder))
    t = t.sort_values(["_v", "level", "_g"], kind="stable").drop(columns=["_v", "_g"]).reset_index(drop=True)
    t = t[COLUMNS + ["_gvar", "_lvar", "_lev"]]
    return results.annotate(
        t, counts={"n": {}}, dims={"group": "{_gvar}", "_lev": "{_lvar}"},
        derived={"pct": ["n"], **{s: ["n"] for s in STATS}},
        labels=["variable", "level", "_gvar", "_lvar"], source=cohort)


def _stats():
    from tableone.statistics import Statistics

    return Statistics()


def smd_table(safe: pd.DataFrame) -> pd.DataFrame:
    """SMD of every variable between every pair of groups (not "Overall"), from the *published* values of a
    protected Table 1 (``out.protect(table_one(...))``): categorical variables from the level counts and
    group sizes (Yang & Dalton, tableone's ``_cat_smd``; missing is a level), continuous ones from the
    published means and SDs (tableone's ``_cont_smd``: (mean_b - mean_a) / pooled SD). An SMD needing a
    withheld value is missing. Returns variable, group_a, group_b, smd (an annotated result: the SMD is a
    function of published numbers only, a statistic)."""
    st = _stats()
    d = safe[safe["variable"] != "n"]
    n_of = safe[safe["variable"] == "n"].set_index("group")["n"]
    groups = [g for g in dict.fromkeys(safe["group"]) if g != OVERALL]
    rows = []
    for var in dict.fromkeys(d["variable"]):
        v = d[d["variable"] == var]
        cont = (v["level"] == "").any()
        for a, b in itertools.combinations(sorted(groups), 2):
            smd = np.nan
            if cont:
                ra = v[(v["group"] == a) & (v["level"] == "")]
                rb = v[(v["group"] == b) & (v["level"] == "")]
                vals = [ra["mean"].iloc[0], rb["mean"].iloc[0], ra["sd"].iloc[0], rb["sd"].iloc[0]]
                if len(ra) and len(rb) and not any(pd.isna(x) for x in vals):
                    smd = float(st._cont_smd(mean1=float(vals[0]), mean2=float(vals[1]), sd1=float(vals[2]),
                                             sd2=float(vals[3]), n1=1, n2=1)[0])
            else:
                na, nb = n_of.get(a), n_of.get(b)
                ca = v[v["group"] == a]["n"]
                cb = v[v["group"] == b]["n"]
                if not (pd.isna(na) or pd.isna(nb) or ca.isna().any() or cb.isna().any()) and na and nb:
                    smd = float(st._cat_smd(prop1=ca.to_numpy(float) / float(na), prop2=cb.to_numpy(float) / float(nb),
                                            n1=int(na), n2=int(nb))[0])
            rows.append({"variable": var, "group_a": a, "group_b": b, "smd": smd})
    out = pd.DataFrame(rows, columns=["variable", "group_a", "group_b", "smd"])
    return results.annotate(out, counts={}, labels=["variable", "group_a", "group_b"], stats=["smd"],
                            universe=safe.attrs.get(results.KEY, {}).get("universe", "patients"))


def _fmt_smd(x) -> str:
    """tableone's SMD format: three decimals, "<0.001" for a difference under 0.0005."""
    if pd.isna(x):
        return ""
    return "<0.001" if abs(float(x)) < 0.0005 else f"{float(x):.3f}"


def _fmt_num(x, decimals: int) -> str:
    return f"{float(x):.{decimals}f}"


def display(safe: pd.DataFrame, smd: pd.DataFrame | None = None, nonnormal: list[str] | None = None,
            decimals: int = 1) -> pd.DataFrame:
    """The wide "n (%)" layout of a protected Table 1 (tableone's layout): variable, level, Overall,
    <groups>, SMD (a,b)... Categorical cells "n (pct)"; continuous "mean (SD)" or "median [Q1,Q3]"; a
    withheld value is the Exporter's mark "s" (never a "<5" that may be false). Every cell is formatted from
    published values, so the result only has labels (an annotated result without counts).
    nonnormal: continuous variables shown as median [Q1,Q3] (default DEFAULT_NONNORMAL)."""
    nonnormal = DEFAULT_NONNORMAL if nonnormal is None else nonnormal
    groups = list(dict.fromkeys(safe["group"]))
    continuous = set(safe.loc[(safe["level"] == "") & (safe["variable"] != "n"), "variable"])
    rows = []
    for (var, level), r in safe.groupby(["variable", "level"], sort=False):
        r = r.set_index("group")
        kind = "median" if var in nonnormal else "mean"
        if var == "n":
            label, cells = "n", {g: (SUPPRESSED if pd.isna(r.at[g, "n"]) else str(int(r.at[g, "n"])))
                                 for g in groups}
        elif level == RECORDED and var in continuous:
            continue  # the complement of "missing" (in the long result; not a line of the display)
        elif level == "":
            label = f"{var}, median [Q1,Q3]" if kind == "median" else f"{var}, mean (SD)"
            cells = {}
            for g in groups:
                x = r.loc[g]
                keys = ["median", "q1", "q3"] if kind == "median" else ["mean", "sd"]
                if any(pd.isna(x[k]) for k in keys):
                    cells[g] = SUPPRESSED
                elif kind == "median":
                    cells[g] = (f"{_fmt_num(x['median'], decimals)} [{_fmt_num(x['q1'], decimals)},"
                                f"{_fmt_num(x['q3'], decimals)}]")
                else:
                    cells[g] = f"{_fmt_num(x['mean'], decimals)} ({_fmt_num(x['sd'], decimals)})"
        else:
            label = f"{var}, n (%)" if var not in continuous else (f"{var}, median [Q1,Q3]" if kind == "median"
                                                      else f"{var}, mean (SD)")
            cells = {}
            for g in groups:
                n, p = r.at[g, "n"], r.at[g, "pct"]
                cells[g] = SUPPRESSED if pd.isna(n) or pd.isna(p) else f"{int(n)} ({_fmt_num(p, decimals)})"
        rows.append({"variable": label, "level": level, **cells})
    wide = pd.DataFrame(rows, columns=["variable", "level"] + groups)
    smd_cols = []
    if smd is not None and len(smd):
        first = {}
        for r in smd.itertuples(index=False):
            col = f"SMD ({r.group_a},{r.group_b})"
            if col not in smd_cols:
                smd_cols.append(col)
            first[(r.variable, col)] = _fmt_smd(r.smd)
        seen = set()
        for col in smd_cols:
            wide[col] = ""
        for i, var in enumerate(wide["variable"]):
            base = var.split(",")[0]
            if base == "n" or base in seen:
                continue
            seen.add(base)
            for col in smd_cols:
                wide.at[i, col] = first.get((base, col), "")
    return results.annotate(wide, counts={}, labels=list(wide.columns),
                            universe=safe.attrs.get(results.KEY, {}).get("universe", "patients"))
