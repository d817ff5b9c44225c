"""Table 1 (patient characteristics) with the `tableone` package, flattened and disclosure-safe.

    from hipfrac import table1
    t = table1.table_one(cohort, groupby="res_region", min_cell=params.export.min_cell)
    out.table(t, "table1_by_region", counts=[])

Continuous variables: mean (SD), or median [Q1, Q3] for skewed ones; categorical: n (%) of the group, with
missing values shown as their own level "missing". Standardised mean differences (SMD) between every pair
of groups come from tableone (Yang & Dalton 2012 for categorical variables).

Small cells: tableone writes counts inside text ("3 (0.2)"), which the Exporter cannot see, so
`table_one` masks them itself: a categorical cell with n from 1 to min_cell - 1 becomes "<min_cell", and
so does the next smallest level of the same variable and group (complementary suppression, so the masked
count cannot be recovered from the group total). Group sizes ("n" row) under min_cell are masked too.
"""

from __future__ import annotations

import re

import pandas as pd

__all__ = ["DEFAULT_CATEGORICAL", "DEFAULT_CONTINUOUS", "DEFAULT_NONNORMAL", "table_one"]

DEFAULT_CONTINUOUS = ["age", "charlson", "hours_fracture_to_surgery"]
DEFAULT_NONNORMAL = ["charlson", "hours_fracture_to_surgery"]
DEFAULT_CATEGORICAL = ["age_band", "sex", "asa_group", "cognitive", "charlson_group", "residence", "living_alone",
                       "education", "income_quintile", "birth_country", "fracture_group", "fracture_type",
                       "operation_type", "source"]

_CELL = re.compile(r"^\s*(\d+)\s*\(")


def _n(cell) -> int | None:
    m = _CELL.match(str(cell))
    return int(m.group(1)) if m else None


def table_one(cohort: pd.DataFrame, groupby: str | None = None, categorical: list[str] | None = None,
              continuous: list[str] | None = None, nonnormal: list[str] | None = None, min_cell: int = 5,
              smd: bool = True, decimals: int = 1) -> pd.DataFrame:
    """Flat Table 1: columns variable, level, Overall, <groups...>, SMD (<a>,<b>)...

    Rows keep tableone's order; "n" is the first row. Returns strings (formatted cells).
    """
    import tableone

    categorical = DEFAULT_CATEGORICAL if categorical is None else categorical
    continuous = DEFAULT_CONTINUOUS if continuous is None else continuous
    nonnormal = DEFAULT_NONNORMAL if nonnormal is None else nonnormal
    cols = [c for c in continuous + categorical if c in cohort.columns and c != groupby]
    data = cohort[cols + ([groupby] if groupby else [])].copy()
    for c in categorical:
        if c in data.columns:
            data[c] = data[c].astype("string").fillna("missing").astype(str)
    for c in continuous:
        if c in data.columns:
            data[c] = pd.to_numeric(data[c]).astype(float)
    kw = dict(columns=cols, categorical=[c for c in categorical if c in cols],
              continuous=[c for c in continuous if c in cols], nonnormal=[c for c in nonnormal if c in cols],
              missing=False, overall=True, decimals=decimals, pval=False)
    if groupby:
        kw.update(groupby=groupby, smd=smd)
    t = tableone.TableOne(data, **kw).tableone
    t.columns = [c[-1] if isinstance(c, tuple) else c for c in t.columns]
    t = t.reset_index()
    t.columns = ["variable", "level"] + list(t.columns[2:])
    t["variable"] = t["variable"].astype(str)
    t["level"] = t["level"].astype(str)
    groups = [c for c in t.columns[2:] if not str(c).startswith("SMD")]
    masked = f"<{min_cell}"
    for g in groups:
        col = t[g].astype(str)
        # group sizes
        nrow = t["variable"] == "n"
        small_n = nrow & col.map(lambda v: v.strip().isdigit() and 0 < int(v) < min_cell)
        col[small_n] = masked
        for idx in t.groupby("variable", sort=False).groups.values():
            counts = {i: _n(col[i]) for i in idx}
            counts = {i: n for i, n in counts.items() if n is not None}
            small = [i for i, n in counts.items() if 0 < n < min_cell]
            if not small:
                continue
            for i in small:
                col[i] = masked
            if len(small) == 1:
                rest = sorted((n, i) for i, n in counts.items() if i not in small)
                if rest:
                    col[rest[0][1]] = masked
        t[g] = col
    return t
