"""Results that carry their own disclosure metadata.

Every analysis function returns a pandas DataFrame whose ``attrs["hipfrac"]`` says what each column is, so
that the Exporter can protect it without anything declared in a notebook:

* **counts**: column -> conditions that, with the row's dimensions and the result's population, define the
  set of units the count is the size of. Conditions map a variable to a level; status variables (leading
  ``#``) take sets of atoms (see :mod:`hipfrac.sdc`). Templates ``{column}`` are filled from the row, e.g.
  ``{"n": {"#{indicator}": "event|nonevent"}, "events": {"#{indicator}": "event"}}``.
* **dims**: classifying column -> variable (template allowed: ``{"unit": "{unit_level}"}``); the row's
  value is the level. A variable that formats to "national" (or a value such as "Norway", "all",
  "Overall", "total") means no condition: the row is a total.
* **derived**: column -> the count columns it is computed from ("*" = every count of the row); withheld
  whenever one of them is withheld. Numeric columns without a role are treated as derived from every count
  of their row (conservative).
* **labels** (names and other functions of the dimensions) and **stats** (numbers not computed from the
  row's counts, e.g. a model's national coefficients): always published.
* **private**: count columns that are never written (e.g. the number of patients of the unit in the
  population, so that "not eligible" can be checked); **known**: private counts an attacker knows anyway
  (structural zeros such as "censored before 30 days" when every patient has a year of follow-up).
* **universe** (what is counted: "patients" = index fractures of the cohort, "fracture_events",
  "records:<source>"; a template such as "records:{source}" gives each row the universe of its value, so
  the records of different files are never added up), **population** (conditions shared by every count, propagated from the input frame
  by :func:`population` / :func:`subset`), **complete** (the rows are every non-empty combination of the
  dimensions: an absent combination is a known zero).

pandas keeps ``attrs`` through selection, filtering, sorting, assign, rename (column keys are not renamed:
rename through :func:`rename`) and concat of results with equal metadata; a merge drops them (use
:func:`merge_labels` to add label columns). A frame without metadata is protected by inference from its
column names, and refused in a real-data run.
"""

from __future__ import annotations

import copy
import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from hipfrac import sdc

KEY = "hipfrac"
POP_KEY = "hipfrac_population"
TOTAL_VALUES = frozenset({"norway", "national", "all", "overall", "total", "totalt", "alle", "hele landet", "norge"})
TOTAL_VARS = frozenset({"national", "all", "total", "overall"})
_TMPL = re.compile(r"\{([^{}]+)\}")

__all__ = ["annotate", "statistics", "is_result", "population", "subset", "with_population", "rename", "merge_labels",
           "concat", "Meta", "row_cells", "TOTAL_VALUES"]


# --------------------------------------------------------------------------------------------------
# populations: conditions that travel with a frame of units
# --------------------------------------------------------------------------------------------------
def with_population(frame: pd.DataFrame, conds: Sequence[tuple[str, str]] = (), universe: str = "patients") -> pd.DataFrame:
    """Mark `frame` (one row per unit) as the population `conds` of `universe`; returns the frame."""
    frame.attrs[POP_KEY] = {"universe": universe, "conds": [list(c) for c in conds], "n": int(len(frame)),
                            "fingerprint": _fingerprint(frame)}
    return frame


def _fingerprint(frame: pd.DataFrame) -> str:
    idx = frame.index
    h = hashlib.sha256()
    h.update(str(len(idx)).encode())
    if len(idx):
        h.update(np.asarray(pd.util.hash_pandas_object(pd.Series(idx), index=False)).tobytes())
    return h.hexdigest()[:16]


def population(frame: pd.DataFrame, *, strict: bool = False) -> tuple[str, list[tuple[str, str]]]:
    """(universe, conditions) of a frame of units.

    A frame that was filtered after its population was declared (its rows differ from the declared
    ones) gets an opaque condition naming its row set, so its counts are never confused with the whole
    population's; strict=True raises instead (filter with :func:`subset` to name the condition).
    """
    info = frame.attrs.get(POP_KEY)
    if info is None:
        if strict:
            raise ValueError("frame has no declared population (load it with hipfrac.cohort.load, or declare it "
                             "with hipfrac.results.with_population / subset)")
        return "patients", [("#rows", f"subset {_fingerprint(frame)}")]
    conds = [tuple(c) for c in info["conds"]]
    if info["n"] != len(frame) or info["fingerprint"] != _fingerprint(frame):
        if strict:
            raise ValueError(f"frame was filtered after its population was declared ({info['n']} -> {len(frame)} "
                             "rows): filter with hipfrac.results.subset(frame, mask, name) so that the audit knows "
                             "which units it holds")
        conds = conds + [("#rows", f"subset {_fingerprint(frame)}")]
    return info["universe"], conds


def subset(frame: pd.DataFrame, mask, name: str, level: str = "in") -> pd.DataFrame:
    """Rows of `frame` where mask is true, as the population "frame and status variable #name = level"
    (the rest of the rows are the remainder of #name: e.g. index fractures left out by a notebook's
    period and age limits)."""
    universe, conds = population(frame)
    out = frame.loc[np.asarray(mask, dtype=bool)]
    return with_population(out, conds + [(f"#{name}", level)], universe)


# --------------------------------------------------------------------------------------------------
# result metadata
# --------------------------------------------------------------------------------------------------
def annotate(frame: pd.DataFrame, *, counts: Mapping[str, Mapping[str, str]] | Sequence[str],
             dims: Mapping[str, str] | Sequence[str] = (), derived: Mapping[str, object] | None = None,
             labels: Iterable[str] = (), stats: Iterable[str] = (), private: Iterable[str] = (),
             known: Iterable[str] = (), universe: str | None = None,
             population_conds: Sequence[tuple[str, str]] | None = None, source: pd.DataFrame | None = None,
             complete: bool = True, kind: str = "table",
             atoms: Mapping[str, Sequence[str]] | None = None) -> pd.DataFrame:
    """Attach disclosure metadata to `frame` (in place; returns it).

    counts: count columns with their conditions ({col: {var: level}}; a list of names = no condition:
        each counts every unit of its row).
    dims: classifying columns ({col: variable template}; a list of names = each its own variable).
    derived: {col: [count cols] or "*"}; numeric columns left without a role count as "*".
    source: the frame of units the result was computed from: its population (universe, conditions) is
        taken from it (see :func:`population`); population_conds add to (or, without source, give) them.
    private / known: see the module doc.
    atoms: {status variable (template): every atom it has besides the remainder}, e.g.
        {"#{indicator}": ["event", "nonevent", "missing"]}: a frame that does not publish one of them (a
        by-year table without n_missing) still knows it exists, so its remainder ("not eligible") is the
        same set of units as in every other table of the variable.
    """
    if isinstance(counts, Mapping):
        cnt = {str(c): [[str(k), str(v)] for k, v in (conds or {}).items()] for c, conds in counts.items()}
    else:
        cnt = {str(c): [] for c in counts}
    dm = {str(c): str(v) for c, v in dims.items()} if isinstance(dims, Mapping) else {str(c): str(c) for c in dims}
    uni, pop = ("patients", [])
    if source is not None:
        uni, pop = population(source)
    if population_conds:
        pop = list(pop) + [tuple(c) for c in population_conds]
    m = {"counts": cnt, "dims": dm,
         "derived": {str(k): (v if v == "*" else [str(x) for x in v]) for k, v in (derived or {}).items()},
         "labels": [str(c) for c in labels], "stats": [str(c) for c in stats],
         "private": [str(c) for c in private], "known": [str(c) for c in known],
         "universe": universe or uni, "population": [list(c) for c in pop], "complete": bool(complete),
         "kind": kind, "atoms": {str(k): [str(a) for a in v] for k, v in (atoms or {}).items()}}
    missing = [c for c in list(cnt) + list(dm) + list(m["derived"]) + m["labels"] + m["stats"] + m["private"]
               if c not in frame.columns]
    if missing:
        raise KeyError(f"annotated column(s) {missing} not in the result (columns: {list(frame.columns)})")
    frame.attrs[KEY] = m
    return frame


def statistics(frame: pd.DataFrame, labels: Iterable[str] = ()) -> pd.DataFrame:
    """Annotate a frame of model or summary statistics (coefficients, hazard ratios, standardised
    estimates, variation statistics over many units): no count of persons, so nothing in it is withheld.
    `labels` name its label columns (terms, levels, flags); every other column is a statistic. In place;
    returns the frame."""
    labels = [str(c) for c in labels]
    return annotate(frame, counts={}, labels=labels, stats=[str(c) for c in frame.columns if str(c) not in labels],
                    complete=False, kind="statistics")


def is_result(frame) -> bool:
    return isinstance(frame, pd.DataFrame) and KEY in frame.attrs


def rename(frame: pd.DataFrame, columns: Mapping[str, str]) -> pd.DataFrame:
    """frame.rename(columns=...) that renames the metadata too."""
    out = frame.rename(columns=columns)
    if KEY in frame.attrs:
        m = copy.deepcopy(frame.attrs[KEY])
        r = lambda c: columns.get(c, c)  # noqa: E731
        m["counts"] = {r(c): v for c, v in m["counts"].items()}
        m["dims"] = {r(c): _rename_tmpl(v, columns) for c, v in m["dims"].items()}
        m["counts"] = {c: [[_rename_tmpl(a, columns), _rename_tmpl(b, columns)] for a, b in v]
                       for c, v in m["counts"].items()}
        m["derived"] = {r(c): (v if v == "*" else [r(x) for x in v]) for c, v in m["derived"].items()}
        for k in ("labels", "stats", "private", "known"):
            m[k] = [r(c) for c in m[k]]
        out.attrs[KEY] = m
    return out


def _rename_tmpl(text: str, columns: Mapping[str, str]) -> str:
    return _TMPL.sub(lambda mt: "{" + columns.get(mt.group(1), mt.group(1)) + "}", text)


def merge_labels(frame: pd.DataFrame, labels_frame: pd.DataFrame, on: str | list[str]) -> pd.DataFrame:
    """Left-merge label columns (e.g. hospital names, the region of a unit) onto a result, keeping its
    metadata and row order; the new columns are labels."""
    new = [c for c in labels_frame.columns if c not in (on if isinstance(on, list) else [on])]
    out = frame.merge(labels_frame, on=on, how="left")
    if len(out) != len(frame):
        raise ValueError("label frame is not unique on the merge keys")
    if KEY in frame.attrs:
        m = copy.deepcopy(frame.attrs[KEY])
        m["labels"] = m["labels"] + [c for c in new if c not in m["labels"]]
        out.attrs[KEY] = m
    if POP_KEY in frame.attrs:
        out.attrs[POP_KEY] = copy.deepcopy(frame.attrs[POP_KEY])
    return out


def concat(frames: Sequence[pd.DataFrame], **kwargs) -> pd.DataFrame:
    """pd.concat of results whose metadata agree except for their dims and counts, which are united
    (e.g. national and regional rows, or several indicators); every frame must be a result."""
    frames = list(frames)
    if not frames:
        raise ValueError("nothing to concatenate")
    metas = [f.attrs.get(KEY) for f in frames]
    if any(m is None for m in metas):
        raise ValueError("every frame passed to results.concat must carry metadata")
    out = pd.concat(frames, ignore_index=True, **kwargs)
    m = copy.deepcopy(metas[0])
    for other in metas[1:]:
        for k in ("universe", "population"):
            if other[k] != m[k]:
                raise ValueError(f"results.concat: frames differ in {k}: {m[k]!r} vs {other[k]!r}")
        m.setdefault("atoms", {})
        for c, v in other.get("atoms", {}).items():
            m["atoms"][c] = sorted(set(m["atoms"].get(c, [])) | set(v))
        for k in ("counts", "dims", "derived"):
            for c, v in other[k].items():
                if c in m[k] and m[k][c] != v:
                    raise ValueError(f"results.concat: column {c!r} has different {k} metadata")
                m[k].setdefault(c, v)
        for k in ("labels", "stats", "private", "known"):
            m[k] = m[k] + [c for c in other[k] if c not in m[k]]
        m["complete"] = m["complete"] and other["complete"]
    out.attrs[KEY] = m
    return out


class Meta:
    """The metadata of a result, restricted to the columns it still has."""

    def __init__(self, frame: pd.DataFrame, m: dict | None = None):
        m = frame.attrs.get(KEY) if m is None else m
        if m is None:
            raise ValueError("frame carries no hipfrac metadata")
        cols = set(map(str, frame.columns))
        self.frame = frame
        self.universe = m["universe"]
        self.population = [tuple(c) for c in m["population"]]
        self.counts = {c: [tuple(x) for x in v] for c, v in m["counts"].items() if c in cols}
        self.private = [c for c in m["private"] if c in cols]
        self.known = [c for c in m["known"] if c in cols]
        self.dims = {c: v for c, v in m["dims"].items() if c in cols}
        self.labels = [c for c in m["labels"] if c in cols]
        self.stats = [c for c in m["stats"] if c in cols]
        self.complete = bool(m.get("complete", True))
        self.atoms = {k: list(v) for k, v in m.get("atoms", {}).items()}
        self.kind = m.get("kind", "table")
        counted = set(self.counts)
        self.derived: dict[str, list[str]] = {}
        for c, v in m["derived"].items():
            if c in cols:
                self.derived[c] = sorted(counted) if v == "*" else [x for x in v if x in counted]
        roles = counted | set(self.dims) | set(self.labels) | set(self.stats) | set(self.derived)
        self.unassigned = [str(c) for c in frame.columns if str(c) not in roles]
        for c in self.unassigned:
            s = frame[c]
            if pd.api.types.is_numeric_dtype(s) or s.dtype == object or pd.api.types.is_bool_dtype(s):
                self.derived[c] = sorted(counted)  # conservative: withheld with any count of its row
        self.published_counts = [c for c in self.counts if c not in self.private]

    def roles(self) -> dict[str, str]:
        """column -> role, for the table's sidecar (and the scanner)."""
        out = {}
        for c in self.frame.columns:
            c = str(c)
            out[c] = ("private" if c in self.private or c.startswith("_") else "count" if c in self.counts else
                      "dimension" if c in self.dims else "label" if c in self.labels else
                      "statistic" if c in self.stats else "derived")
        return out


def _fmt(tmpl: str, row: Mapping) -> str:
    def sub(mt):
        v = row.get(mt.group(1))
        if v is None:
            raise KeyError(f"template {tmpl!r} needs column {mt.group(1)!r}, which the result no longer has")
        return str(v)

    return _TMPL.sub(sub, tmpl)


#: variables whose "Norway"/"all"/"total" value is the national total (units and geography); elsewhere
#: such a value is an ordinary level (birth country Norway, a total hip replacement)
UNIT_VARS = frozenset(set(sdc.DIM_VARIABLES) | set(sdc.DIM_VARIABLES.values()) | {"unit", "region", "group"})


def _is_total(var: str, value) -> bool:
    if var.lower() in TOTAL_VARS:
        return True
    return var in UNIT_VARS and isinstance(value, str) and value.strip().lower() in TOTAL_VALUES


def row_atoms(meta: Meta) -> list[dict[str, frozenset]]:
    """Per row position: status variable -> its declared atoms (annotate(atoms=...)), templates filled."""
    frame = meta.frame
    if not meta.atoms:
        return [{} for _ in range(len(frame))]
    needed = {m for k in meta.atoms for m in _TMPL.findall(k)}
    recs = frame[[c for c in frame.columns if str(c) in needed]].to_dict("records") if needed else [{}] * len(frame)
    return [{_fmt(k, {str(a): b for a, b in r.items()}): frozenset(v) for k, v in meta.atoms.items()} for r in recs]


def row_cells(meta: Meta, columns: Iterable[str] | None = None) -> dict[tuple[int, str], sdc.Cell]:
    """The cell of every (row position, count column) of a result."""
    frame = meta.frame
    cols = list(meta.counts) if columns is None else [c for c in columns if c in meta.counts]
    needed = set(meta.dims) | {m for c in cols for a, b in meta.counts[c] for m in _TMPL.findall(a + b)}
    needed |= {m for v in meta.dims.values() for m in _TMPL.findall(v)}
    needed |= set(_TMPL.findall(meta.universe))  # a universe per row: "records:{source}"
    recs = frame[[c for c in frame.columns if str(c) in needed]].to_dict("records") if needed else [{}] * len(frame)
    out = {}
    for i, row in enumerate(recs):
        row = {str(k): v for k, v in row.items()}
        base = list(meta.population)
        for col, vt in meta.dims.items():
            var = _fmt(vt, row)
            value = row.get(col)
            if _is_total(var, value):
                continue
            base.append(sdc.dim_level(var, value))
        universe = _fmt(meta.universe, row)
        for c in cols:
            conds = base + [(_fmt(a, row), _fmt(b, row)) for a, b in meta.counts[c]]
            out[(i, c)] = sdc.Cell.make(universe, conds)
    return out
