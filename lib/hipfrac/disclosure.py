"""Statistical disclosure control for every exported table and every frame behind a figure.

Rules (the Exporter applies them; notebooks and figure functions may call `suppress` directly):

1. Primary suppression: a count from 1 to min_cell - 1 (params.export.min_cell, default 5: 1-4)
   is withheld. Zero is not a small cell (it reveals nobody) and is kept.
2. Complementary (secondary) suppression, so that a withheld count cannot be recovered by
   subtraction from a total:
   - column groups: within each count column, the rows of one group add up to a total that is
     printed in a total row or may be published elsewhere. Default: the whole table, and every line
     of it along each dimension (text or integer column), e.g. the hospitals of one indicator and
     the indicators of one hospital in a stacked table; `by` columns give the groups explicitly.
     When such a group holds exactly one withheld cell, the next smallest positive cell of the same
     column and group is withheld too (a total row is only chosen when no other cell is left).
   - row groups: count columns that add up to a total column within each row (`row_totals`,
     {total_col: [part cols]}; "auto" finds a count column equal to the sum of the others in every
     row). When such a row holds exactly one withheld cell, the next smallest positive part of the
     same row is withheld (the total when no part is left).
   Both rules are applied in turn until no group holds exactly one withheld cell. Then `audit`
   solves the linear system of published totals: a withheld cell that still follows exactly (e.g.
   a "bridge" between two blocks of withheld cells in a cross table) gets one more complement, and
   the rules run again, until no withheld cell can be recovered.
3. Derived values: proportions, rates, means and confidence limits computed from a withheld count
   are withheld with it. `derived` maps a count column to its derived columns; when it is None,
   every non-count numeric column of a row with a withheld count is withheld (conservative).
4. Person-level frames (id-like columns such as person_id / op_id, exact dates of birth or death,
   record-like shapes: many rows of cohort variables with no count column) are never exported:
   `check_person_level` raises DisclosureError naming the table and the column.
5. Strict mode (params.real_data: true): `check_no_small_cells` raises DisclosureError naming the
   table, the column and the row of any small count left unsuppressed (e.g. an undeclared count
   column, or a figure drawn from unsuppressed data). In non-strict mode the Exporter suppresses
   such cells too and records them in the manifest.

Figures: a plotting function must draw from the suppressed frame, so a unit below the threshold is
either absent or drawn without its value:

    safe = out.suppress(frame, counts=["n", "events"], derived={"events": ["prop", "lower", "upper"]})
    fig = figures.funnel.plot(safe[safe["prop"].notna()])  # withheld units are not drawn
    out.figure(fig, "funnel", data=safe)                    # checked again, saved beside the figure
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources

import numpy as np
import pandas as pd

COUNT_NAMES = frozenset({
    "n", "events", "deaths", "observed", "count", "n_patients", "cases", "numerator", "denominator",
    "total", "patients", "operations", "fractures", "frequency", "freq", "at_risk", "n_at_risk",
    "n_events", "n_deaths", "n_total", "obs", "expected_n",
})
TOTAL_LABELS = frozenset({"total", "all", "overall", "national", "norway", "totalt", "alle", "hele landet",
                          "norge", "sum"})

# Person-level markers -------------------------------------------------------------------------------
ID_NAMES = frozenset({
    "person_id", "patient_id", "pasient_id", "pid", "lnr", "lopenr", "løpenr", "fnr", "fodselsnummer",
    "fødselsnummer", "ssn", "nin", "personnummer", "op_id", "operation_id", "episode_id", "record_id",
    "case_id", "stay_id", "prescription_id", "dispensing_id", "contact_id", "personid", "patientid",
    "id",
})
_ID_RE = re.compile(r"(^|_)(person|patient|pasient|op|operation|episode|record|case|stay|contact|pers)_?(id|nr|no)$",
                    re.IGNORECASE)
_BIRTH_DEATH_RE = re.compile(r"(birth|death|dob|dod|fodsel|fødsel|født|fodt|død|dod_|dødsdato|dodsdato)",
                             re.IGNORECASE)
_DAY_DATE_RE = re.compile(r"^\s*\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}(:\d{2})?)?\s*$")
# Cohort variables that only exist per person (continuous or exact dates): a frame of many rows
# holding several cohort columns, at least one of these, and no count column is a person-level extract.
PERSON_LEVEL_COLUMNS = frozenset({
    "age", "year_decimal", "fracture_date", "fracture_datetime", "admission_datetime", "surgery_datetime",
    "death_date", "followup_days", "hours_fracture_to_surgery", "hours_admission_to_surgery",
    "second_fracture_date", "days_to_second_fracture", "new_fracture_date", "days_to_osteo_med",
    "osteo_med_last_date", "birth_year", "birth_month",
})
RECORD_MIN_ROWS = 10


class DisclosureError(ValueError):
    """An output would disclose person-level information or a small cell."""


@dataclass
class Suppression:
    """Result of `suppress`: the safe frame and what was withheld.

    frame: copy of the input with withheld cells set to missing (count columns as nullable Int64).
    primary / secondary: (row position, column) of withheld counts.
    derived: number of derived cells withheld with them.
    mask: boolean frame, True where a cell was withheld (counts and derived).
    exposed: withheld cells still recoverable from the totals (empty unless no cell was left to
        withhold; the Exporter refuses such a table in a real-data run).
    """

    frame: pd.DataFrame
    primary: list[tuple[int, str]] = field(default_factory=list)
    secondary: list[tuple[int, str]] = field(default_factory=list)
    derived: int = 0
    mask: pd.DataFrame | None = None
    exposed: list[tuple[int, str]] = field(default_factory=list)

    @property
    def n_cells(self) -> int:
        return len(self.primary) + len(self.secondary) + self.derived

    def summary(self) -> dict:
        return {"primary": len(self.primary), "secondary": len(self.secondary), "derived": self.derived}


def is_count_col(name) -> bool:
    """True if a column name looks like a count of persons or events (n, events, n_*, *_n, count*)."""
    low = str(name).lower()
    return (low in COUNT_NAMES or low.startswith("n_") or low.endswith("_n") or low.startswith("count")
            or low.startswith("num_") or low.endswith("_count") or low.startswith("deaths_")
            or low.startswith("events_"))


def detect_counts(df: pd.DataFrame) -> list[str]:
    """Count columns of df found by name (numeric columns only)."""
    return [c for c in df.columns if is_count_col(c) and not _is_flag(df[c]) and _numeric(df[c]).notna().any()]


def _is_flag(s: pd.Series) -> bool:
    """Boolean flags (e.g. low_n) are not counts, whatever their name."""
    if pd.api.types.is_bool_dtype(s):
        return True
    return s.dtype == object and s.dropna().map(lambda v: isinstance(v, (bool, np.bool_))).all() and s.notna().any()


def _numeric(s: pd.Series) -> pd.Series:
    if pd.api.types.is_bool_dtype(s):
        return s.astype(float)
    return pd.to_numeric(s, errors="coerce").astype(float)


def _small(vals: pd.Series, min_cell: int) -> pd.Series:
    """Whole numbers from 1 to min_cell - 1 (a model-based expected number such as 1.3 deaths is
    not a count of persons)."""
    return (vals >= 1) & (vals < min_cell) & (vals == np.floor(vals))


def total_rows(df: pd.DataFrame) -> list[int]:
    """Positions of rows labelled as totals ("Total", "All", "Norway", ...) in any text column."""
    pos = set()
    for c in df.columns:
        s = df[c]
        if s.dtype == object or pd.api.types.is_string_dtype(s):
            low = s.astype(str).str.strip().str.lower()
            pos.update(np.flatnonzero(low.isin(TOTAL_LABELS).to_numpy()))
    return sorted(int(p) for p in pos)


def _auto_row_totals(vals: pd.DataFrame) -> dict[str, list[str]]:
    """A count column equal to the sum of all other count columns in every row (no missing)."""
    cols = list(vals.columns)
    if len(cols) < 3 or vals.isna().any().any() or len(vals) == 0:
        return {}
    for t in cols:
        parts = [c for c in cols if c != t]
        if np.allclose(vals[parts].sum(axis=1).to_numpy(), vals[t].to_numpy()):
            return {t: parts}
    return {}


def _row_label(df: pd.DataFrame, pos: int) -> str:
    """Human description of a row for error messages: its text columns, else its position."""
    row = df.iloc[pos]
    parts = [f"{c}={row[c]}" for c in df.columns
             if (df[c].dtype == object or pd.api.types.is_string_dtype(df[c])) and pd.notna(row[c])][:3]
    return f"row {pos}" + (f" ({', '.join(parts)})" if parts else "")


def dimension_columns(df: pd.DataFrame, counts) -> list[str]:
    """Columns that classify rows (text, category, integer non-count), in column order, finest level
    only, until they identify every row: a column that is a function of another dimension
    (hospital_name, trust or region of a hospital) or comes after the key is complete (a target
    level) is an attribute, not a dimension (pass `by=` when such subtotals are published)."""
    cands = []
    for c in df.columns:
        s = df[c]
        if c in counts or pd.api.types.is_bool_dtype(s) or pd.api.types.is_float_dtype(s):
            continue
        if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_integer_dtype(s):
            continue
        cands.append(c)
    keys = {c: df[c].astype(str) for c in cands}

    def determines(a, b) -> bool:  # b is a function of a
        return bool(df.groupby(keys[a], sort=False)[b].nunique(dropna=False).max() == 1)

    dims: list[str] = []
    for c in cands:
        if dims and not df.duplicated(subset=dims).any():
            break  # the dimensions so far identify every row: later columns are attributes
        if any(determines(d, c) for d in dims):
            continue  # coarser than, or a relabelling of, a dimension already kept
        dims = [d for d in dims if not determines(c, d)] + [c]  # c is finer: it replaces them
    return [c for c in cands if c in dims]


def _partition(df: pd.DataFrame, cols: list[str]) -> list[np.ndarray]:
    if not cols:
        return [np.arange(len(df))]
    keys = df[cols].astype(str).reset_index(drop=True)
    return [np.asarray(v) for v in keys.groupby(cols, sort=False).indices.values()]


def column_groups(df: pd.DataFrame, counts, by=None, exclude=()) -> list[np.ndarray]:
    """Sets of rows whose counts add up to a (published or derivable) total, per count column.

    Always: the whole table, plus every line of the table along each dimension column (rows equal
    in all other dimensions), so that stacked tables (indicator x hospital, year x region x sex) get
    complements within each of their margins. by: further subtotals published elsewhere, as columns
    (["region", "year"]: the rows of one region and year) or a list of such lists.
    exclude: columns that are not dimensions though they look like one (derived labels such as a
    target level).
    """
    groups = {tuple(range(len(df))): np.arange(len(df))}
    if by:
        for cols in ([list(by)] if all(isinstance(b, str) for b in by) else [list(b) for b in by]):
            for g in _partition(df, cols):
                if len(g) > 1:
                    groups.setdefault(tuple(g), g)
    dims = [d for d in dimension_columns(df, counts) if d not in set(exclude)]
    if len(dims) >= 2:
        for k in dims:
            for g in _partition(df, [d for d in dims if d != k]):
                if len(g) > 1:
                    groups.setdefault(tuple(g), g)
    # finest lines first: their complements usually protect the coarser margins too
    return sorted(groups.values(), key=len)


def suppress(df: pd.DataFrame, min_cell: int, counts=None, derived=None, *, by=None,
             row_totals="auto", complementary: bool = True) -> Suppression:
    """Withhold small counts, their complements and values derived from them.

    df: a tidy or wide table of aggregates.
    min_cell: counts 1..min_cell-1 are withheld (primary suppression).
    counts: count columns (None: found by name, see `is_count_col`).
    derived: {count column: [columns computed from it]}; None: every non-count numeric column of a row
        with a withheld count.
    by: subtotals published elsewhere, as grouping columns (or a list of such lists), in addition to
        the whole table and every line along each dimension column (see `column_groups`).
    row_totals: {total column: [part columns]} adding up within a row, "auto" to detect, or None.
    complementary: False turns secondary suppression off (only for tables whose totals are not
        published anywhere; documented in the notebook).
    Returns a Suppression (frame, withheld cells, mask).
    """
    if min_cell <= 1:
        out = df.copy()
        return Suppression(out, mask=pd.DataFrame(False, index=df.index, columns=df.columns))
    counts = detect_counts(df) if counts is None else list(counts)
    missing = [c for c in counts if c not in df.columns]
    if missing:
        raise KeyError(f"count column(s) {missing} not in the table (columns: {list(df.columns)})")
    if derived is not None:
        bad = {k: [d for d in v if d not in df.columns] for k, v in derived.items()}
        bad = {k: v for k, v in bad.items() if v or k not in df.columns}
        if bad:
            raise KeyError(f"derived columns not in the table: {bad} (columns: {list(df.columns)})")
    n = len(df)
    vals = pd.DataFrame({c: _numeric(df[c]).to_numpy() for c in counts}, index=range(n))
    sup = pd.DataFrame({c: _small(vals[c], min_cell).to_numpy() for c in counts}, index=range(n))
    primary = [(int(i), c) for c in counts for i in np.flatnonzero(sup[c].to_numpy())]
    secondary: list[tuple[int, str]] = []
    exposed: list[tuple[int, str]] = []

    if complementary and counts and sup.to_numpy().any():
        tot_rows = set(total_rows(df))
        derived_cols = {d for v in (derived or {}).values() for d in v}
        groups = column_groups(df, counts, by, exclude=derived_cols)
        if row_totals == "auto":
            rt = _auto_row_totals(vals.drop(index=[r for r in tot_rows if r in vals.index]))
        else:
            rt = dict(row_totals or {})
        for _ in range(10 * n * max(1, len(counts)) + 10):
            _complement_groups(sup, vals, counts, groups, tot_rows, rt, secondary)
            exposed = audit(sup, counts, groups, tot_rows, rt)
            if not exposed:
                break
            # a withheld cell still follows from the published totals by linear algebra (e.g. a
            # "bridge" between two blocks): withhold one more cell beside it and check again
            if not _widen(sup, vals, groups, tot_rows, exposed, secondary):
                break

    out = df.copy()
    mask = pd.DataFrame(False, index=range(n), columns=list(df.columns))
    numeric_other = [c for c in df.columns if c not in counts and pd.api.types.is_numeric_dtype(df[c])
                     and not pd.api.types.is_bool_dtype(df[c])]
    for c in counts:
        m = sup[c].to_numpy()
        mask[c] = m
        targets = derived.get(c, []) if derived is not None else numeric_other
        for d in targets:
            mask[d] = mask[d].to_numpy() | m
    n_derived = int(mask[[c for c in df.columns if c not in counts]].to_numpy().sum()) if n else 0
    for c in df.columns:
        m = mask[c].to_numpy()
        if c in counts:
            v = vals[c]
            if v.dropna().apply(float.is_integer).all():
                out[c] = pd.array(np.where(m, np.nan, v.to_numpy()), dtype="Float64").astype("Int64")
                continue
        if m.any():
            col = out[c]
            if pd.api.types.is_integer_dtype(col):
                col = col.astype("Int64")
            elif not pd.api.types.is_float_dtype(col):
                col = col.astype(object)
            out[c] = col.mask(pd.Series(m, index=out.index))
    mask.index = df.index
    return Suppression(out, primary, secondary, n_derived, mask, exposed)


def _complement_groups(sup, vals, counts, groups, tot_rows, rt, secondary) -> None:
    """Greedy rule until stable: no column group or row group holds exactly one withheld cell."""
    n = len(vals)
    changed = True
    while changed:
        changed = False
        for c in counts:  # column groups
            col_sup = sup[c].to_numpy()
            col_val = vals[c].to_numpy()
            for g in groups:
                if col_sup[g].sum() != 1:
                    continue
                cand = [i for i in g if not col_sup[i] and i not in tot_rows
                        and np.isfinite(col_val[i]) and col_val[i] > 0]
                if not cand:
                    cand = [i for i in g if not col_sup[i] and i in tot_rows and np.isfinite(col_val[i])]
                if not cand:  # last resort: a zero (withholding it still leaves two unknowns)
                    cand = [i for i in g if not col_sup[i] and np.isfinite(col_val[i])]
                if cand:
                    pick = min(cand, key=lambda i: (col_val[i], i))
                    sup.loc[pick, c] = True
                    col_sup[pick] = True
                    secondary.append((int(pick), c))
                    changed = True
        for t, parts in rt.items():  # row groups
            cells = [*parts, t]
            for i in range(n):
                if sum(bool(sup.at[i, c]) for c in cells) != 1:
                    continue
                cand = [c for c in parts if not sup.at[i, c] and np.isfinite(vals.at[i, c]) and vals.at[i, c] > 0]
                if not cand and not sup.at[i, t] and np.isfinite(vals.at[i, t]):
                    cand = [t]
                if cand:
                    pick = min(cand, key=lambda c: (vals.at[i, c], cells.index(c)))
                    sup.at[i, pick] = True
                    secondary.append((i, pick))
                    changed = True


def _equations(sup, counts, groups, tot_rows, rt):
    """Linear equations linking withheld cells: one per column group and per row of a row total
    (sum of the parts = the total, known cells moved to the right-hand side)."""
    cells = [(int(i), c) for c in counts for i in np.flatnonzero(sup[c].to_numpy())]
    index = {cell: k for k, cell in enumerate(cells)}
    rows = []
    for c in counts:
        col_sup = sup[c].to_numpy()
        for g in groups:
            hit = [i for i in g if col_sup[i]]
            if not hit or len(g) == 1:  # a one-cell group says nothing beyond the cell itself
                continue
            has_total = any(i in tot_rows for i in g)
            rows.append({index[(int(i), c)]: (-1.0 if (has_total and i in tot_rows) else 1.0) for i in hit})
    for t, parts in rt.items():
        for i in range(len(sup)):
            eq = {index[(i, c)]: 1.0 for c in parts if sup.at[i, c]}
            if sup.at[i, t]:
                eq[index[(i, t)]] = -1.0
            if eq:
                rows.append(eq)
    return cells, rows


def audit(sup: pd.DataFrame, counts, groups, tot_rows=(), row_totals=None) -> list[tuple[int, str]]:
    """Withheld cells whose value follows exactly from the published cells and totals.

    sup: boolean frame (count columns) of withheld cells; groups: column groups whose sums are known
    (see `column_groups`); tot_rows: positions of total rows; row_totals: {total: [parts]}.
    A withheld cell x_k is determined when the unit vector e_k lies in the row space of the system
    A x = b linking withheld cells (A: one row per group / row total); equivalently when x_k is zero
    in every null-space vector of A. (Bounds such as x >= 0 can narrow intervals further; the
    interval a primary cell keeps is at least as wide as its complement's value.)
    """
    rt = dict(row_totals or {})
    # without row totals the count columns are independent systems: audit each on its own
    blocks = [list(counts)] if rt else [[c] for c in counts]
    exposed = []
    for cols in blocks:
        cells, eqs = _equations(sup, cols, groups, set(tot_rows), rt)
        if not cells or not eqs:
            continue
        a = np.zeros((len(eqs), len(cells)))
        for r, eq in enumerate(eqs):
            for k, v in eq.items():
                a[r, k] = v
        # e_k is in the row space of A iff k is a pivot column of the reduced row echelon form
        # and its row has no other non-zero entry
        r, pivots = _rref(a)
        exposed += [cells[k] for j, k in enumerate(pivots) if np.count_nonzero(np.abs(r[j]) > 1e-9) == 1]
    return exposed


def _rref(a: np.ndarray, tol: float = 1e-9) -> tuple[np.ndarray, list[int]]:
    """Reduced row echelon form (rows, pivot columns) by Gauss-Jordan elimination with partial
    pivoting; sparse row updates, no BLAS (the systems are small 0/+-1 matrices)."""
    a = a.astype(float).copy()
    m, n = a.shape
    pivots: list[int] = []
    r = 0
    for c in range(n):
        if r == m:
            break
        p = r + int(np.argmax(np.abs(a[r:, c])))
        if abs(a[p, c]) < tol:
            continue
        if p != r:
            a[[r, p]] = a[[p, r]]
        a[r] /= a[r, c]
        col = a[:, c].copy()
        col[r] = 0.0
        nz = np.flatnonzero(np.abs(col) > tol)
        if nz.size:
            sub = a[nz] - col[nz, None] * a[r][None, :]
            sub[np.abs(sub) < tol] = 0.0
            a[nz] = sub
        pivots.append(c)
        r += 1
    return a[:r], pivots


def _widen(sup, vals, groups, tot_rows, exposed, secondary) -> bool:
    """Withhold the smallest positive visible cell sharing a column group with an exposed cell."""
    for i, c in exposed:
        col_sup = sup[c].to_numpy()
        col_val = vals[c].to_numpy()
        near = {j for g in groups if i in g for j in g if not col_sup[j] and np.isfinite(col_val[j])}
        cand = sorted(near, key=lambda j: (not (col_val[j] > 0 and j not in tot_rows), j in tot_rows,
                                           col_val[j], j))
        if cand:
            sup.loc[cand[0], c] = True
            secondary.append((int(cand[0]), c))
            return True
    return False


def small_cells(df: pd.DataFrame, min_cell: int, counts=None) -> list[tuple[int, str, float]]:
    """Unsuppressed small counts left in df: (row position, column, value)."""
    counts = detect_counts(df) if counts is None else list(counts)
    found = []
    for c in counts:
        v = _numeric(df[c])
        for i in np.flatnonzero(_small(v, min_cell).to_numpy()):
            found.append((int(i), c, float(v.iloc[i])))
    return found


def check_no_small_cells(df: pd.DataFrame, name: str, min_cell: int, counts=None) -> None:
    """Raise DisclosureError naming the table, column and row of every small count left in df."""
    found = small_cells(df, min_cell, counts)
    if found:
        lines = [f"  - column '{c}', {_row_label(df, i)}: {v:g}" for i, c, v in found[:20]]
        more = f"\n  ... and {len(found) - 20} more" if len(found) > 20 else ""
        raise DisclosureError(
            f"{name}: {len(found)} unsuppressed small count(s) (1..{min_cell - 1}) in a real-data run:\n"
            + "\n".join(lines) + more
            + "\nDeclare the count columns (counts=[...]) so the Exporter suppresses them, or suppress "
              "the frame with out.suppress() before plotting.")


@lru_cache(maxsize=1)
def cohort_columns() -> frozenset[str]:
    """Column names of the cohort data dictionary."""
    import yaml

    text = resources.files("hipfrac").joinpath("data/cohort_dictionary.yaml").read_text(encoding="utf-8")
    return frozenset((yaml.safe_load(text) or {}).get("columns", {}))


def _looks_like_day_dates(s: pd.Series) -> bool:
    if pd.api.types.is_datetime64_any_dtype(s):
        return s.notna().any()
    if s.dtype == object or pd.api.types.is_string_dtype(s):
        nn = s.dropna()
        if len(nn) == 0:
            return False
        if all(hasattr(x, "year") and hasattr(x, "day") for x in nn.head(50)):
            return True
        return nn.astype(str).head(200).str.match(_DAY_DATE_RE).mean() > 0.8
    return False


def person_level_reasons(df: pd.DataFrame) -> list[str]:
    """Why df looks person-level (empty list: it looks like aggregates)."""
    reasons = []
    cols = [str(c) for c in df.columns]
    for c in cols:
        low = c.lower()
        if low in ID_NAMES or _ID_RE.search(low):
            reasons.append(f"column '{c}' is a person or record identifier")
    for c, orig in zip(cols, df.columns):
        if _BIRTH_DEATH_RE.search(c) and _looks_like_day_dates(df[orig]):
            reasons.append(f"column '{c}' holds exact dates of birth or death")
    if len(df) >= RECORD_MIN_ROWS and not detect_counts(df):
        cohort_cols = [c for c in cols if c in cohort_columns()]
        personal = [c for c in cols if c in PERSON_LEVEL_COLUMNS]
        if len(cohort_cols) >= 3 and personal:
            reasons.append(f"{len(df)} rows of cohort variables ({', '.join(cohort_cols[:6])}) with no count "
                           f"column: looks like one row per person")
        dated = [c for c, orig in zip(cols, df.columns) if _looks_like_day_dates(df[orig])
                 and df[orig].nunique() >= 0.9 * len(df)]
        if dated and not any(r.startswith(f"column '{dated[0]}'") for r in reasons):
            reasons.append(f"{len(df)} rows with distinct exact dates in '{dated[0]}' and no count column: "
                           f"looks like records")
    return reasons


def check_person_level(df: pd.DataFrame, name: str) -> None:
    """Raise DisclosureError if df looks like person-level data."""
    reasons = person_level_reasons(df)
    if reasons:
        raise DisclosureError(f"{name}: refusing to export a person-level frame:\n"
                              + "\n".join(f"  - {r}" for r in reasons)
                              + "\nExport aggregates only (counts per group, model summaries).")


def protect_flowchart(df: pd.DataFrame, min_cell: int, *, n_in: str = "n_in", excluded: str = "n_excluded",
                      n_out: str = "n_out") -> pd.DataFrame:
    """Suppress a flowchart's small exclusions so that they cannot be recovered along the chain.

    In a flowchart n_out of step k equals n_in of step k + 1 and n_in - n_excluded = n_out, so a withheld
    exclusion of 1..min_cell-1 follows from the running counts unless those are withheld too. Rule:
    withhold every small exclusion; add the smallest other non-zero exclusions until at least two are
    withheld and they sum to at least min_cell; then withhold the running counts between the first and
    the last withheld exclusion (they would reveal partial sums). The published start and end counts
    then reveal only the sum of the withheld exclusions. When no complement exists (a single non-zero
    exclusion), every running count after it is withheld as well. Returns a copy (withheld = missing).
    """
    out = df.reset_index(drop=True).copy()
    e = pd.to_numeric(out[excluded], errors="coerce").fillna(0).to_numpy()
    chosen = [i for i in range(len(e)) if 1 <= e[i] < min_cell]
    if not chosen:
        return out
    candidates = sorted((i for i in range(len(e)) if e[i] >= 1 and i not in chosen), key=lambda i: (e[i], i))
    while (len(chosen) < 2 or e[chosen].sum() < min_cell) and candidates:
        chosen.append(candidates.pop(0))
    for c in (n_in, excluded, n_out):
        out[c] = out[c].astype("object")
    out.loc[chosen, excluded] = np.nan
    first, last = min(chosen), max(chosen)
    if len(chosen) < 2 or e[chosen].sum() < min_cell:
        last = len(out)  # no complement: hide every running count from the first withheld step on
    for k in range(first, last):
        out.loc[k, n_out] = np.nan
        if k + 1 < len(out):
            out.loc[k + 1, n_in] = np.nan
    return out
