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


def suppress(df: pd.DataFrame, min_cell: int, counts=None, derived=None, *, by=None,
             row_totals="auto", complementary: bool = True) -> Suppression:
    """Withhold small counts, their complements and values derived from them (one table on its own).

    df: a result with disclosure metadata (hipfrac.results), or a plain tidy/wide table of aggregates.
    min_cell: counts 1..min_cell-1 are withheld (primary suppression).
    counts / derived / row_totals: for a plain frame, its count columns (None: found by name), the
        columns computed from each count (None: every other number of the row) and counts adding up
        within a row ({total: [parts]}, "auto" to detect).
    by: for a plain frame, columns of subtotals published elsewhere (e.g. the region of a hospital):
        they classify rows too (every coarser margin of the classifying columns is protected anyway).
    complementary: False withholds only the small counts and their derived values.
    The engine is hipfrac.protection.protect (see hipfrac.sdc). Returns a Suppression.
    """
    from hipfrac import protection, results

    if min_cell <= 1:
        out = df.copy()
        return Suppression(out, mask=pd.DataFrame(False, index=df.index, columns=df.columns))
    frame = df if (results.is_result(df) and counts is None and derived is None) else \
        protection.infer(df, counts, derived, row_totals, universe="table", by=by)
    if not complementary:
        return _primary_only(frame, min_cell)
    prot = protection.protect(frame, min_cell)
    mask = prot.mask.copy()
    mask.index = df.index
    return Suppression(prot.frame.set_axis(df.index), list(prot.primary_at), list(prot.secondary_at), prot.derived,
                       mask, [e for e in prot.exposed])


def _primary_only(frame: pd.DataFrame, min_cell: int) -> Suppression:
    """Withhold only the small counts (no complements) and what is derived from them."""
    from hipfrac import results

    meta = results.Meta(frame)
    mask = pd.DataFrame(False, index=range(len(frame)), columns=[str(c) for c in frame.columns])
    prim = []
    for c in meta.published_counts:
        m = _small(_numeric(frame[c]).reset_index(drop=True), min_cell).to_numpy()
        mask[c] = m
        prim += [(int(i), c) for i in np.flatnonzero(m)]
    n_der = 0
    for d, srcs in meta.derived.items():
        if d in meta.counts:
            continue
        m = np.zeros(len(frame), dtype=bool)
        for s in srcs:
            if s in mask:
                m |= mask[s].to_numpy()
        mask[d] = mask[d].to_numpy() | m
        n_der += int(m.sum())
    out = frame.reset_index(drop=True).copy()
    for c in out.columns:
        m = mask[c].to_numpy()
        if c in meta.counts:
            v = _numeric(out[c]).to_numpy()
            if np.all(np.isnan(v) | (v == np.floor(v))):
                out[c] = pd.array(np.where(m, np.nan, v), dtype="Float64").astype("Int64")
                continue
        if m.any():
            col = out[c] if pd.api.types.is_float_dtype(out[c]) else out[c].astype(object)
            out[c] = col.mask(pd.Series(m, index=out.index))
    out.index = frame.index
    mask.index = frame.index
    return Suppression(out, prim, [], n_der, mask, [])


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
