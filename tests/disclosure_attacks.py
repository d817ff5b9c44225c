"""An attacker's battery against the published outputs of a hipfrac run (issue 13).

The attacker works only from what a run publishes (``outputs/<run>/<notebook>/tables/*.csv``,
``figures/*.data.csv``, ``*.meta.json``, Markdown texts and the executed ``.ipynb``) plus public
knowledge shipped with the package: the geography (hospital -> trust -> region, referral area -> region),
the indicator catalogue (targets) and the cohort data dictionary (``fracture_group`` is an aggregate of
``fracture_type``).  It never imports the defence (``hipfrac.disclosure``, ``hipfrac.export``).

Every attack class is a function ``attack_<class>(run, min_cell) -> ClassResult`` returning the cells it
recovered: ``Recovery(file, row, column, lo, hi, how)`` with ``lo == hi`` for an exact value.
:func:`attack_run` runs them all and, given an answer key (the frames before suppression, same layout and
row order as the run), scores which recoveries are *correct and small*:

* exact: the recovered value equals the truth and lies in ``1 .. min_cell - 1``;
* interval: ``lo <= truth <= hi`` and the interval holds fewer than ``min_cell`` integers
  (``hi - lo + 1 < min_cell``; ``[0, 4]`` is no sharper than the "< 5" a primary suppression announces).

A recovered quantity that is not a cell of any file (a curve step's deaths, a visible ``n - events``)
is scored against the answer key where the key determines it (or the cohort, for curve steps and
Table 1), else it stays unscored; :meth:`AttackReport.leaks` lists what needs no answer key at all:
visible small non-events and exact recoveries of 1..4.

Matching rules of the differencing attack (which cells are the same population):

* cells are keyed by ``(notebook, context, measure, geography, year)``.  The *context* holds the other
  dimension columns of the row (``indicator``, ``outcome``, ``horizon_days``, ``sex`` ...; an indicator id
  or horizon named in the file name when the table has no such column; constant columns are dropped);
  the *measure* is the count column, with ``observed``/``deaths``/``n_events`` read as ``events``;
* geography comes from ``unit_level``/``unit_type`` + ``unit``, ``group_type``/``by`` + ``group``, or a
  ``hospital``/``referral_area``/``res_region``/``hosp_region`` column; ``Norway``/``national``/``all``/
  ``Overall``/``total`` are the national level; a table without geography is national;
* two tables publishing different values for the same key hold different populations: they are put in
  separate name spaces (never linked);
* hierarchies: hospital -> hospital trust -> hospital region -> national; referral area -> trust of
  residence -> region of residence -> national; pooled = sum of the years; a total row of a stacked
  ``group_type`` table = sum of its groups; cells no file publishes are free unknowns >= 0;
* a family of identities that is violated on cells that are all published is dropped.
"""

from __future__ import annotations

import html as _html
import json
import math
import re
import time as _time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = [
    "AttackReport", "ClassResult", "Recovery", "Run", "attack_curves", "attack_differencing",
    "attack_hierarchy", "attack_levels", "attack_non_events", "attack_run", "attack_table1",
    "attack_text", "attack_within_row", "run_all",
]

CLASSES = ("differencing", "within_row", "hierarchy", "curves", "table1", "levels", "non_events", "text")

NATIONAL = {"norway", "national", "all", "overall", "total", "norge", "landet", "hele landet"}
EVENT_ALIASES = {"observed": "events", "deaths": "events", "n_events": "events"}
COUNT_NAMES = {
    "n", "events", "n_risk", "deaths", "observed", "n_missing", "n_events", "censored", "n_total",
    "n_both", "n_nhfr_only", "n_npr_only", "n_in", "n_excluded", "n_out", "n_read", "n_dropped", "n_kept",
    "n_own_trust", "n_own_region", "n_level", "n_exposed", "n_patients", "n_obs", "count", "fractures",
    "n_censored", "at_risk", "cases", "antall", "hendelser", "dode", "døde", "n_treated", "treated",
}
NOT_COUNT = {"n_per_year", "n_groups", "year", "step", "k", "df", "boot_replicates", "units", "areas",
             "window_days", "horizon_days", "strata_empty", "bin", "units_green", "units_yellow",
             "units_red", "units_below_min", "units_low_coverage", "min_n", "time", "day", "days",
             "start_days", "stop_days", "start", "stop", "years", "rows", "age", "reference_age",
             "annual_cost", "savings", "avoided", "cost_per_fracture"}
NUMERIC_DIMS = {"horizon_days", "window_days", "time", "years", "day", "days", "start", "stop",
                "start_days", "stop_days", "time_days", "bin", "step", "age", "reference_age"}
TIME_COLS = ("time", "day", "days", "time_days", "years")
ATTR_NAMES = {"hospital_name", "title", "label", "kind", "low_n_flag", "low_coverage", "direction",
              "source_text", "note", "unit_name", "area_name", "trust_name"}
GEO_COLS = ("hospital", "referral_area", "res_trust", "hosp_trust", "res_region", "hosp_region")
GEO_LEVEL_ALIASES = {"hospital": "hospital", "sykehus": "hospital", "referral_area": "referral_area",
                     "opptaksomrade": "referral_area", "res_region": "res_region", "hosp_region": "hosp_region",
                     "region": "region", "res_trust": "res_trust", "trust": "hosp_trust",
                     "hosp_trust": "hosp_trust", "national": "national", "all": "national",
                     "norway": "national", "overall": "national", "total": "national"}
GEO_PARENT = {"hospital": "hosp_trust", "hosp_trust": "hosp_region", "hosp_region": "national",
              "referral_area": "res_trust", "res_trust": "res_region", "res_region": "national",
              "region": "national"}
TOL = 1e-6


# ------------------------------------------------------------------------------------------------
# results
# ------------------------------------------------------------------------------------------------
@dataclass
class Recovery:
    """One recovered cell (or derived quantity).

    Attributes
    ----------
    cls : str
        Attack class that made the recovery.
    file : str
        File, relative to the run directory (``<notebook>/tables/<name>.csv`` ...).
    row : int
        Row index in that file (0-based, data rows), or -1 when not a row.
    column : str
        Column (or a description such as ``"n-events"`` / ``"deaths(7,14]"``).
    lo, hi : float
        Recovered interval; ``lo == hi`` is an exact recovery.
    how : str
        How it was derived.
    truth : float or None
        True value from the answer key (set by scoring).
    success : bool or None
        Correct and small (None when unscored).
    visible : bool
        True for a quantity read directly off published numbers (e.g. a visible ``n - events``).
    """

    cls: str
    file: str
    row: int
    column: str
    lo: float
    hi: float
    how: str
    truth: float | None = None
    success: bool | None = None
    visible: bool = False

    @property
    def exact(self) -> bool:
        """True when the recovery is a single value."""
        return self.lo == self.hi

    @property
    def cell(self) -> tuple[str, int, str]:
        """The ``(file, row, column)`` identity of the recovered quantity."""
        return (self.file, self.row, self.column)


@dataclass
class ClassResult:
    """Recoveries of one attack class.

    Attributes
    ----------
    name : str
        Attack class.
    examined : int
        Withheld cells (or candidate quantities) the class looked at.
    recoveries : list of Recovery
        Exact values and intervals narrower than ``min_cell`` (de-duplicated per cell).
    notes : list of str
        Diagnostics (dropped identities, inconsistent systems).
    seconds : float
        Run time.
    """

    name: str
    examined: int = 0
    recoveries: list[Recovery] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def add(self, rec: Recovery) -> None:
        """Add a recovery (class name filled in)."""
        rec.cls = self.name
        self.recoveries.append(rec)

    def dedupe(self) -> None:
        """Keep one recovery per cell: the narrowest."""
        best: dict = {}
        for r in self.recoveries:
            k = r.cell
            if k not in best or (r.hi - r.lo) < (best[k].hi - best[k].lo):
                best[k] = r
        self.recoveries = list(best.values())

    @property
    def successes(self) -> list[Recovery]:
        """Recoveries scored correct and small."""
        return [r for r in self.recoveries if r.success]

    @property
    def wrong(self) -> list[Recovery]:
        """Scored recoveries whose interval misses the truth."""
        return [r for r in self.recoveries if r.truth is not None and not (r.lo - TOL <= r.truth <= r.hi + TOL)]


@dataclass
class AttackReport:
    """Everything the attacker recovered from one run.

    Attributes
    ----------
    run_dir : str
        The attacked run directory.
    min_cell : int
        Smallest publishable count.
    classes : dict of str to ClassResult
        Per attack class (plus ``"joint"`` when run).
    scored : bool
        True when an answer key (or cohort) was used.
    seconds : float
        Total run time.
    """

    run_dir: str
    min_cell: int
    classes: dict = field(default_factory=dict)
    scored: bool = False
    seconds: float = 0.0
    cellkeys: dict | None = None

    def summary(self) -> pd.DataFrame:
        """One row per class: examined, recovered, exact, small exact (1..min_cell-1), correct-and-small, wrong."""
        rows = []
        for name, c in self.classes.items():
            rows.append({
                "class": name, "examined": c.examined, "recovered": len(c.recoveries),
                "exact": sum(r.exact for r in c.recoveries),
                "exact_small": sum(r.exact and 1 <= r.lo <= self.min_cell - 1 for r in c.recoveries),
                "correct_small": len(c.successes) if self.scored else None,
                "wrong": len(c.wrong) if self.scored else None, "seconds": round(c.seconds, 2)})
        return pd.DataFrame(rows)

    def successes(self, cls: str | None = None) -> list[Recovery]:
        """Correct-and-small recoveries (of one class, or of all, one per cell)."""
        if cls is not None:
            return self.classes[cls].successes
        seen, out = set(), []
        for c in self.classes.values():
            for r in c.successes:
                if r.cell not in seen:
                    seen.add(r.cell)
                    out.append(r)
        return out

    def distinct_successes(self) -> int:
        """Correct-and-small recoveries counted once per population cell: the same count published in a
        table and in a figure (same differencing key) counts once."""
        seen = set()
        keys = self.cellkeys or {}
        for r in self.successes():
            k = keys.get(r.cell)
            if k is None and "-" in r.column:
                base = keys.get((r.file, r.row, r.column.split("-")[0]))
                k = None if base is None else base[:2] + (r.column,) + base[3:]
            if k is None:
                parts = r.file.split("/")
                k = (parts[0], parts[-1].replace(".data.csv", "").replace(".csv", ""), r.row, r.column)
            seen.add(k)
        return len(seen)

    def leaks(self) -> list[Recovery]:
        """What is a leak without any answer key: visible small non-events, exact recoveries of 1..min_cell-1,
        and (when scored) every correct-and-small recovery; one per cell."""
        seen, out = set(), []
        for c in self.classes.values():
            for r in c.recoveries:
                small = r.exact and 1 <= r.lo <= self.min_cell - 1
                if (small and r.truth is None) or r.success or (small and r.visible):
                    if r.cell not in seen:
                        seen.add(r.cell)
                        out.append(r)
        return out

    def table(self) -> pd.DataFrame:
        """All recoveries as a frame."""
        return pd.DataFrame([r.__dict__ for c in self.classes.values() for r in c.recoveries])


# ------------------------------------------------------------------------------------------------
# public knowledge
# ------------------------------------------------------------------------------------------------
class Geography:
    """Hospital -> trust -> region and referral area -> trust -> region, from ``hipfrac.geography``."""

    def __init__(self):
        try:
            from hipfrac import geography as g
            h, a = g.hospitals(), g.referral_areas()
        except Exception:  # pragma: no cover - package data not importable
            root = Path(__file__).resolve().parents[1] / "lib" / "hipfrac" / "data"
            h = pd.read_csv(root / "hospitals.csv", dtype=str)
            a = pd.read_csv(root / "referral_areas.csv", dtype=str)
        self.regions = sorted(set(a["region"]) | set(h["region"]))
        self.hospital_trust = dict(zip(h["hospital"], h["trust"]))
        self.hospital_region = dict(zip(h["hospital"], h["region"]))
        self.hosp_trust_region = dict(zip(h["trust"], h["region"]))
        self.area_trust = dict(zip(a["referral_area"], a["trust"]))
        self.area_region = dict(zip(a["referral_area"], a["region"]))
        self.res_trust_region = dict(zip(a["trust"], a["region"]))
        self.parent_of = {"hospital": self.hospital_trust, "hosp_trust": self.hosp_trust_region,
                          "referral_area": self.area_trust, "res_trust": self.res_trust_region}
        self.members = {
            "hospital": set(h["hospital"]), "hosp_trust": set(h["trust"]), "referral_area": set(a["referral_area"]),
            "res_trust": set(a["trust"]), "res_region": set(self.regions), "hosp_region": set(self.regions),
            "region": set(self.regions)}

    def children(self, level: str, unit: str) -> dict[str, list[str]]:
        """Child levels and their units that partition ``unit`` of ``level``."""
        out = {}
        if level == "national":
            for lv in ("hosp_region", "res_region", "region"):
                out[lv] = list(self.regions)
        elif level == "hosp_region":
            out["hosp_trust"] = sorted(t for t, r in self.hosp_trust_region.items() if r == unit)
            out["hospital"] = sorted(x for x, r in self.hospital_region.items() if r == unit)
        elif level == "hosp_trust":
            out["hospital"] = sorted(x for x, t in self.hospital_trust.items() if t == unit)
        elif level == "res_region":
            out["res_trust"] = sorted(t for t, r in self.res_trust_region.items() if r == unit)
            out["referral_area"] = sorted(x for x, r in self.area_region.items() if r == unit)
        elif level == "res_trust":
            out["referral_area"] = sorted(x for x, t in self.area_trust.items() if t == unit)
        return out

    def parent(self, level: str, unit: str):
        """``(level, unit)`` of the next coarser unit, or None."""
        plev = GEO_PARENT.get(level)
        if plev is None:
            return None
        if plev == "national":
            return ("national", "Norway")
        if plev in ("hosp_region", "res_region"):
            m = self.hospital_region if level == "hospital" else (
                self.hosp_trust_region if level == "hosp_trust" else (
                    self.area_region if level == "referral_area" else self.res_trust_region))
            u = m.get(unit)
            return (plev, u) if u else None
        u = self.parent_of.get(level, {}).get(unit)
        return (plev, u) if u else None

    def infer_level(self, values) -> str | None:
        """The geography level whose units contain every value (None if none does)."""
        vals = {str(v) for v in values if str(v).lower() not in NATIONAL and str(v) != ""}
        if not vals:
            return None
        for lv in ("hospital", "referral_area", "region", "hosp_trust", "res_trust"):
            if vals <= self.members[lv]:
                return lv
        return None


def indicator_targets() -> dict[str, dict]:
    """Indicator id -> {green, yellow, direction, min_n} from the shipped catalogue."""
    import yaml
    p = Path(__file__).resolve().parents[1] / "lib" / "hipfrac" / "data" / "indicators.yaml"
    try:
        from importlib import resources
        text = resources.files("hipfrac.data").joinpath("indicators.yaml").read_text(encoding="utf-8")
    except Exception:  # pragma: no cover
        text = p.read_text(encoding="utf-8")
    data = yaml.safe_load(text) or {}
    out = {}
    for k, v in (data.get("indicators") or {}).items():
        out[str(k)] = {"green": v.get("green"), "yellow": v.get("yellow"),
                       "direction": v.get("direction", "higher"), "min_n": v.get("min_n", 5)}
    return out


#: fracture_type -> fracture_group, as the cohort data dictionary defines fracture_group
FRACTURE_GROUP = {"fn_undisplaced": "femoral_neck", "fn_displaced": "femoral_neck", "basocervical": "femoral_neck",
                  "troch_a1": "trochanteric", "troch_a2": "trochanteric", "troch_a3": "trochanteric",
                  "subtroch": "subtrochanteric", "missing": "missing"}


# ------------------------------------------------------------------------------------------------
# the published run
# ------------------------------------------------------------------------------------------------
def _num(x) -> float:
    """Parse a published cell to float (NaN when empty or not a number)."""
    if x is None:
        return math.nan
    if isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool):
        return float(x)
    s = str(x).strip().replace("\u2212", "-")
    if s == "" or s.lower() in {"nan", "s", "–", "-", "na", "none"}:
        return math.nan
    try:
        return float(s)
    except ValueError:
        return math.nan


def _sig_digits(s: str) -> int:
    """Significant digits of a number string."""
    m = str(s).strip().lower().lstrip("+-").split("e")[0].replace(".", "").lstrip("0")
    return len(m)


def column_tolerances(raw: pd.Series, num: pd.Series) -> np.ndarray:
    """Half a unit of the last published digit of every value of a column.

    pandas writes floats with 6 significant digits (trailing zeros dropped): a column in which some
    value shows 6 significant digits (or an exponent) is read that way, every value exact to 6
    significant digits; otherwise the column was rounded to its largest number of printed decimals.
    """
    vals = num.to_numpy(float)
    strs = raw.astype(str).to_numpy()
    ok = ~np.isnan(vals)
    if not ok.any():
        return np.zeros(len(vals))
    sig6 = any(_sig_digits(x) >= 6 or "e" in x.lower() for x in strs[ok])
    if sig6:
        with np.errstate(divide="ignore"):
            mag = np.floor(np.log10(np.abs(np.where(ok & (vals != 0), vals, 1.0))))
        tol = 0.5 * 10.0 ** (mag - 5)
        return np.where(ok & (vals != 0), tol, 0.0)
    dec = max((len(x.split(".")[1]) if "." in x else 0) for x in strs[ok])
    return np.where(ok, 0.5 * 10.0 ** (-dec), 0.0)


@dataclass
class Frame:
    """One published CSV with its metadata and (optionally) its answer-key frame."""

    rel: str
    notebook: str
    kind: str
    name: str
    raw: pd.DataFrame
    num: pd.DataFrame
    meta: dict
    key: pd.DataFrame | None = None

    def truth(self, row: int, col: str) -> float | None:
        """True value of a cell from the answer key (None if unknown)."""
        if self.key is None or col not in self.key.columns or row >= len(self.key):
            return None
        v = _num(self.key[col].iloc[row])
        return None if math.isnan(v) else v

    def tol(self, col: str) -> np.ndarray:
        """Publication tolerance of every value of a column (see :func:`column_tolerances`)."""
        cache = self.__dict__.setdefault("_tols", {})
        if col not in cache:
            cache[col] = column_tolerances(self.raw[col], self.num[col])
        return cache[col]

    def count_columns(self) -> list[str]:
        """Count columns: declared in the meta, or count-like by name, with integer visible values."""
        declared = set(self.meta.get("count_columns") or [])
        out = []
        for c in self.raw.columns:
            lc = str(c).lower()
            if lc in NOT_COUNT:
                continue
            named = (lc in COUNT_NAMES or c in declared or re.fullmatch(r"n_[a-z0-9_]+", lc) is not None
                     or re.search(r"(^|_)(events|deaths|count|observed)$", lc) is not None)
            if not named:
                continue
            v = self.num[c].dropna()
            if len(v) and not (np.all(np.abs(v - np.round(v)) < 1e-9) and (v >= 0).all()):
                continue
            if self.raw[c].astype(str).str.contains(r"[A-Za-z<]", regex=True).any():
                continue
            out.append(c)
        return out

    def withheld(self) -> list[tuple[int, str]]:
        """Withheld count cells: empty (or ``s``) in a count column; with an answer key, only those the key fills."""
        cells = []
        for c in self.count_columns():
            col = self.raw[c].astype(str).str.strip()
            for i in np.flatnonzero(col.isin(["", "s", "nan"]).to_numpy()):
                if self.key is not None and self.truth(int(i), c) is None:
                    continue
                cells.append((int(i), c))
        return cells


class Run:
    """The published files of one run directory (and an optional answer key).

    Parameters
    ----------
    run_dir : path
        ``outputs/<run>``.
    answer_key : path, optional
        Directory ``<notebook>/tables/<name>.csv`` and ``<notebook>/figures/<name>.csv`` of unsuppressed frames.
    cohort : path, optional
        Cohort parquet, used only to score curve steps and Table 1 (whose answer key is itself masked).
    """

    def __init__(self, run_dir, answer_key=None, cohort=None):
        self.dir = Path(run_dir)
        self.answer_key = Path(answer_key) if answer_key else None
        self.frames: dict[str, Frame] = {}
        self.geo = Geography()
        self.targets = indicator_targets()
        self.cohort = None
        if cohort is not None:
            self.cohort = pd.read_parquet(cohort) if not isinstance(cohort, pd.DataFrame) else cohort
        for p in sorted(self.dir.glob("*/tables/*.csv")) + sorted(self.dir.glob("*/figures/*.data.csv")):
            rel = p.relative_to(self.dir).as_posix()
            nb, kind, fname = rel.split("/")
            name = fname[:-len(".data.csv")] if fname.endswith(".data.csv") else fname[:-4]
            try:
                raw = pd.read_csv(p, dtype=str, keep_default_na=False)
            except pd.errors.EmptyDataError:
                continue
            num = raw.apply(lambda s: s.map(_num))
            meta = {}
            mp = p.with_name(name + ".meta.json")
            if mp.exists():
                try:
                    meta = json.loads(mp.read_text(encoding="utf-8"))
                except ValueError:
                    meta = {}
            key = None
            if self.answer_key is not None:
                kp = self.answer_key / nb / kind / f"{name}.csv"
                if kp.exists():
                    k = pd.read_csv(kp, dtype=str, keep_default_na=False)
                    if len(k) == len(raw):
                        key = k
            self.frames[rel] = Frame(rel, nb, kind, name, raw, num, meta, key)

    @property
    def scored(self) -> bool:
        """True when an answer key or cohort is available."""
        return self.answer_key is not None or self.cohort is not None


# ------------------------------------------------------------------------------------------------
# linear systems: exact determination and LP bounds
# ------------------------------------------------------------------------------------------------
class _LPBounds:
    """Min and max of single unknowns over ``A x = b, G x <= h, lo <= x <= up`` (HiGHS through highspy
    when installed, keeping the model between objectives; else ``scipy.optimize.linprog``)."""

    def __init__(self, A, b, G, h, lo, up):
        self.k = A.shape[1] if A.size else (G.shape[1] if G.size else len(lo))
        self.args = (A, b, G, h, lo, up)
        self.hs = None
        try:
            import highspy
        except ImportError:  # pragma: no cover - scipy fallback
            highspy = None
        if highspy is not None:
            import contextlib
            import io
            with contextlib.redirect_stdout(io.StringIO()):
                hs = highspy.Highs()
            hs.setOptionValue("output_flag", False)
            inf = highspy.kHighsInf
            hs.addVars(self.k, lo.astype(float), np.where(np.isinf(up), inf, up).astype(float))
            for M, lo_r, up_r in ((A, b, b), (G, np.full(len(h), -inf), h)):
                for r in range(M.shape[0]):
                    nz = np.flatnonzero(M[r])
                    hs.addRow(float(lo_r[r]), float(up_r[r]), len(nz), nz.astype(np.int32), M[r, nz].astype(float))
            self.hs, self.inf = hs, inf
            self._status = highspy.HighsModelStatus
            hs.run()
            self.feasible = hs.getModelStatus() == highspy.HighsModelStatus.kOptimal
        else:
            from scipy.optimize import linprog
            self.kw = dict(A_eq=A if A.size else None, b_eq=b if A.size else None, A_ub=G if G.size else None,
                           b_ub=h if G.size else None, method="highs",
                           bounds=[(lo[i], None if math.isinf(up[i]) else up[i]) for i in range(self.k)])
            self.linprog = linprog
            self.feasible = linprog(np.zeros(self.k), **self.kw).status == 0

    def _opt(self, i, sign):
        if self.hs is not None:
            self.hs.changeColCost(i, float(sign))
            self.hs.run()
            st = self.hs.getModelStatus()
            val = self.hs.getInfo().objective_function_value
            self.hs.changeColCost(i, 0.0)
            if st == self._status.kOptimal:
                return sign * val
            return math.inf if sign < 0 else None
        c = np.zeros(self.k)
        c[i] = sign
        r = self.linprog(c, **self.kw)
        if r.status == 0:
            return sign * r.fun
        return math.inf if (sign < 0 and r.status == 3) else None

    def bounds(self, i):
        """(min, max) of unknown ``i`` (None when the LP failed; max inf when unbounded)."""
        return self._opt(i, 1.0), self._opt(i, -1.0)


class System:
    """Equalities and inequalities over unknown non-negative integer cells.

    Unknowns are arbitrary hashable names; published numbers enter as constants.  :meth:`solve` finds,
    per connected component, the unknowns determined by the equalities (their unit vector lies in the
    row space, tested through the null space) and LP bounds (``scipy.optimize.linprog``, HiGHS) for the
    others.
    """

    def __init__(self):
        self.eqs: list[tuple[dict, float, str, tuple]] = []
        self.ineqs: list[tuple[dict, float, str]] = []
        self.lower: dict = {}
        self.upper: dict = {}
        self.free: set = set()

    def add_eq(self, terms: dict, rhs: float, tag: str = "", sources: tuple = ()) -> None:
        """``sum(coef * x) = rhs`` with ``terms`` a dict unknown -> coefficient."""
        terms = {k: v for k, v in terms.items() if v != 0}
        if terms:
            self.eqs.append((terms, float(rhs), tag, sources))

    def add_le(self, terms: dict, rhs: float, tag: str = "") -> None:
        """``sum(coef * x) <= rhs``."""
        terms = {k: v for k, v in terms.items() if v != 0}
        if terms:
            self.ineqs.append((terms, float(rhs), tag))

    def bound(self, var, lo=None, hi=None) -> None:
        """Tighten the bounds of one unknown."""
        if lo is not None:
            self.lower[var] = max(self.lower.get(var, 0.0), float(lo))
        if hi is not None:
            self.upper[var] = min(self.upper.get(var, math.inf), float(hi))

    def prune(self) -> None:
        """Drop free (unpublished, never targeted) unknowns that occur in a single equality: the equality
        becomes an inequality when the free unknown is a non-negative slack, else it is dropped."""
        changed = True
        while changed:
            changed = False
            occ = defaultdict(list)
            for i, (t, _, _, _) in enumerate(self.eqs):
                for v in t:
                    if v in self.free:
                        occ[v].append(i)
            for t, _, _ in self.ineqs:
                for v in t:
                    if v in self.free:
                        occ[v].append(-1)
            drop = set()
            for v, idx in occ.items():
                if len(idx) == 1 and idx[0] >= 0 and idx[0] not in drop:
                    i = idx[0]
                    t, rhs, tag, _ = self.eqs[i]
                    c = t[v]
                    rest = {k: x for k, x in t.items() if k != v}
                    # rest + c v = rhs, v >= 0: c > 0 -> rest <= rhs ; c < 0 -> rest >= rhs
                    if rest and v not in self.upper:
                        if c > 0:
                            self.add_le(rest, rhs, tag + " (slack)")
                        else:
                            self.add_le({k: -x for k, x in rest.items()}, -rhs, tag + " (slack)")
                    drop.add(i)
            if drop:
                self.eqs = [e for i, e in enumerate(self.eqs) if i not in drop]
                changed = True

    def components(self):
        """Connected components: lists of (unknowns, equality indices, inequality indices)."""
        parent = {}

        def find(a):
            parent.setdefault(a, a)
            while parent[a] != a:
                parent[a] = parent[parent[a]]
                a = parent[a]
            return a

        def union(vs):
            vs = list(vs)
            r = find(vs[0])
            for v in vs[1:]:
                rv = find(v)
                if rv != r:
                    parent[rv] = r
        for t, *_ in self.eqs:
            union(t)
        for t, *_ in self.ineqs:
            union(t)
        for v in list(self.lower) + list(self.upper):
            find(v)
        groups = defaultdict(lambda: [set(), [], []])
        for i, (t, *_) in enumerate(self.eqs):
            groups[find(next(iter(t)))][1].append(i)
        for i, (t, *_) in enumerate(self.ineqs):
            groups[find(next(iter(t)))][2].append(i)
        for v in parent:
            groups[find(v)][0].add(v)
        return list(groups.values())

    def solve(self, targets, min_cell: int = 5, lp: bool = True, max_lp_vars: int = 4000):
        """Recover the target unknowns.

        Parameters
        ----------
        targets : iterable
            Unknowns of interest (withheld cells).
        min_cell : int
            LP intervals are kept when they hold fewer than ``min_cell`` integers.
        lp : bool
            Also compute LP bounds for unknowns the equalities leave undetermined.
        max_lp_vars : int
            Components larger than this get no LP bounds (time).

        Returns
        -------
        dict
            unknown -> (lo, hi, how); ``lo == hi`` when exact.
        list of str
            Notes (inconsistent components).
        """
        targets = set(targets)
        out, notes = {}, []
        for vars_, eq_idx, in_idx in self.components():
            tv = [v for v in vars_ if v in targets]
            if not tv:
                continue
            vl = sorted(vars_, key=repr)
            pos = {v: i for i, v in enumerate(vl)}
            k = len(vl)
            A = np.zeros((len(eq_idx), k))
            b = np.zeros(len(eq_idx))
            for r, i in enumerate(eq_idx):
                t, rhs, _, _ = self.eqs[i]
                for v, c in t.items():
                    A[r, pos[v]] += c
                b[r] = rhs
            determined = {}
            if len(eq_idx):
                x, *_ = np.linalg.lstsq(A, b, rcond=None)
                res = np.abs(A @ x - b).max() if len(b) else 0.0
                if res > 1e-6 * max(1.0, np.abs(b).max()):
                    notes.append(f"inconsistent equalities ({len(eq_idx)}: "
                                 f"{sorted({self.eqs[i][2] for i in eq_idx})[:3]}); component skipped")
                    continue
                u, s, vt = np.linalg.svd(A, full_matrices=True)
                rank = int((s > 1e-9 * max(1.0, s.max() if len(s) else 1.0)).sum())
                null = vt[rank:].T  # k x (k-rank)
                for v in tv:
                    i = pos[v]
                    if null.shape[1] == 0 or np.abs(null[i]).max() < 1e-9:
                        val = x[i]
                        if abs(val - round(val)) < 1e-6 and round(val) >= -1e-9:
                            determined[v] = float(round(val))
                        else:
                            notes.append(f"non-integer or negative determined value {val:.3f} for {v!r}")
            tags = sorted({self.eqs[i][2] for i in eq_idx} | {self.ineqs[i][2] for i in in_idx})
            tagtxt = "; ".join(tags[:3]) + (f"; +{len(tags) - 3} more" if len(tags) > 3 else "")
            for v, val in determined.items():
                out[v] = (val, val, f"linear system [{tagtxt}]")
            rest = [v for v in tv if v not in determined]
            if not lp or not rest or k > max_lp_vars:
                continue
            G = np.zeros((len(in_idx), k))
            h = np.zeros(len(in_idx))
            for r, i in enumerate(in_idx):
                t, rhs, _ = self.ineqs[i]
                for v, c in t.items():
                    G[r, pos[v]] += c
                h[r] = rhs
            lows = np.array([self.lower.get(v, 0.0) for v in vl])
            ups = np.array([self.upper.get(v, math.inf) for v in vl])
            bounder = _LPBounds(A, b, G, h, lows, ups)
            if not bounder.feasible:
                notes.append(f"infeasible LP component ({len(eq_idx)} eqs); skipped")
                continue
            for v in rest:
                lo, hi = bounder.bounds(pos[v])
                if lo is None or hi is None or math.isinf(hi):
                    continue
                lo, hi = math.ceil(lo - 1e-6), math.floor(hi + 1e-6)
                if hi < lo:
                    continue
                if hi - lo + 1 < min_cell:
                    out[v] = (float(lo), float(hi), ("LP bounds" if hi > lo else "LP bounds (exact)") + f" [{tagtxt}]")
        return out, notes


# ------------------------------------------------------------------------------------------------
# canonical cells: population keys of the rows of a frame
# ------------------------------------------------------------------------------------------------
_BOOLISH = {"true", "false", "", "yes", "no", "nan"}
_LEVELISH = re.compile(r"^(green|yellow|red|none|low|moderate|high|above|below|)$|%", re.I)


def _is_text_col(fr: Frame, c: str) -> bool:
    """A column holding non-numeric strings."""
    s = fr.raw[c].astype(str).str.strip()
    nonempty = s[s != ""]
    return len(nonempty) > 0 and fr.num[c][s != ""].isna().mean() > 0.5


def _dim_columns(fr: Frame, counts: set) -> list[str]:
    """Dimension columns of a frame (text columns that classify rows, and known numeric dimensions)."""
    dims = []
    for c in fr.raw.columns:
        lc = c.lower()
        if c in counts or lc in ATTR_NAMES or lc.startswith("outside") or lc.endswith("_flag"):
            continue
        if lc in NUMERIC_DIMS or lc == "year":
            dims.append(c)
            continue
        if not _is_text_col(fr, c):
            continue
        vals = set(fr.raw[c].astype(str).str.strip().str.lower())
        if vals <= _BOOLISH:
            continue
        if lc in ("level", "band", "achievement") and all(_LEVELISH.search(v) for v in vals):
            continue
        dims.append(c)
    # attributes: a text column that is a function of another dimension (title of indicator, region of
    # hospital) and constant columns
    out = []
    for c in dims:
        s = fr.raw[c].astype(str)
        if s.nunique() <= 1 and c.lower() not in ("year",) and len(fr.raw) > 1:
            continue
        dependent = False
        if c.lower() not in NUMERIC_DIMS and c.lower() != "year" and c.lower() not in (
                "unit_level", "unit_type", "group_type", "by", "indicator", "outcome"):
            for d in dims:
                if d == c:
                    continue
                nd = fr.raw[d].astype(str).nunique()
                if nd >= s.nunique() and nd > 1 and (fr.raw.groupby(d)[c].nunique() <= 1).all():
                    # c is determined by d; keep c if d is determined by c too and c is a geo column
                    if (fr.raw.groupby(c)[d].nunique() <= 1).all() and c.lower() in GEO_COLS + ("unit", "region"):
                        continue
                    dependent = True
                    break
        if not dependent:
            out.append(c)
    return out


def _level_name(v: str) -> str | None:
    return GEO_LEVEL_ALIASES.get(str(v).strip().lower())


@dataclass
class CellRef:
    """A count cell of a frame with its population key."""

    key: tuple
    rel: str
    row: int
    col: str
    value: float | None  # None when withheld


def frame_cells(fr: Frame, geo: Geography, indicators: set, partition_out: set | None = None) -> list[CellRef]:
    """Key every count cell of ``fr`` by ``(notebook, context, measure, geo level, geo unit, year)``.

    Returns an empty list when the rows cannot be keyed uniquely (a classifying column is not recognised).
    """
    counts = fr.count_columns()
    if not counts or not len(fr.raw):
        return []
    cset = set(counts)
    dims = _dim_columns(fr, cset)
    lc = {c.lower(): c for c in fr.raw.columns}
    raw = fr.raw
    n = len(raw)
    geo_level = [None] * n
    geo_unit = [None] * n
    used = set()
    extra = [dict() for _ in range(n)]
    levcol = lc.get("unit_level") or lc.get("unit_type")
    grpcol = lc.get("group_type") or lc.get("by")
    if levcol:
        used.add(levcol)
        unitcol = lc.get("unit")
        for i in range(n):
            lv = _level_name(raw[levcol].iat[i])
            ucol = unitcol
            if ucol is None:
                lvraw = str(raw[levcol].iat[i])
                ucol = lc.get(lvraw) or lc.get("region") or lc.get("hospital")
            u = str(raw[ucol].iat[i]) if ucol else "Norway"
            if ucol:
                used.add(ucol)
            if u.strip().lower() in NATIONAL:
                lv, u = "national", "Norway"
            if lv is None:
                extra[i][str(raw[levcol].iat[i])] = u
                lv, u = "national", "Norway"
            geo_level[i], geo_unit[i] = lv, u
    elif grpcol:
        used.add(grpcol)
        for i in range(n):
            g = str(raw[grpcol].iat[i]).strip()
            vcol = lc.get("group") or lc.get(g.lower())
            v = str(raw[vcol].iat[i]) if vcol else g
            if vcol:
                used.add(vcol)
            lv = _level_name(g)
            if g.lower() in NATIONAL or v.strip().lower() in NATIONAL:
                geo_level[i], geo_unit[i] = "national", "Norway"
            elif lv is not None:
                geo_level[i], geo_unit[i] = lv, v
            else:
                geo_level[i], geo_unit[i] = "national", "Norway"
                extra[i][g] = v
                if partition_out is not None:
                    partition_out.add(g)
    else:
        gcol = next((lc[c] for c in GEO_COLS if c in lc), None)
        if gcol is not None:
            lv = _level_name(gcol.lower()) or gcol.lower()
        elif "region" in lc:
            gcol, lv = lc["region"], "region"
        elif "unit" in lc:
            gcol = lc["unit"]
            lv = geo.infer_level(raw[gcol])
            if lv is None:
                gcol = None
        if gcol is not None:
            used.add(gcol)
            for i in range(n):
                u = str(raw[gcol].iat[i])
                if u.strip().lower() in NATIONAL:
                    geo_level[i], geo_unit[i] = "national", "Norway"
                else:
                    geo_level[i], geo_unit[i] = lv, u
        else:
            geo_level = ["national"] * n
            geo_unit = ["Norway"] * n
    # geography attributes of a finer unit are not dimensions
    finest = {lv for lv in geo_level}
    for c in ("region", "trust", "hospital_name", "referral_area", "res_region", "hosp_region"):
        if c in lc and lc[c] not in used and finest & {"hospital", "referral_area", "hosp_trust", "res_trust"}:
            used.add(lc[c])
    ycol = lc.get("year")
    other = [d for d in dims if d not in used and d != ycol]
    ctx_base = [("notebook", fr.notebook)]
    if "indicator" not in lc:
        for ind in sorted(indicators, key=len, reverse=True):
            if re.search(rf"(^|_){re.escape(ind)}($|_)", fr.name):
                ctx_base.append(("indicator", ind))
                break
    if not any(c.lower() in ("horizon_days", "window_days") for c in raw.columns):
        m = re.search(r"(?:^|_)(\d+)d(?:_|$)", fr.name)
        if m:
            ctx_base.append(("horizon_days", str(float(m.group(1)))))
    aliases = [c for c in counts if c.lower() in EVENT_ALIASES or c.lower() == "events"]
    measure = {c: (EVENT_ALIASES.get(c.lower(), c.lower()) if len(aliases) == 1 else c.lower()) for c in counts}
    cells, seen = [], set()
    for i in range(n):
        ctx = list(ctx_base)
        for d in other:
            v = raw[d].iat[i]
            if d.lower() in NUMERIC_DIMS:
                fv = _num(v)
                v = str(fv) if not math.isnan(fv) else str(v)
            ctx.append((d.lower(), str(v)))
        ctx.extend(extra[i].items())
        ctx = tuple(sorted(ctx))
        yr = "ALL"
        if ycol is not None:
            yv = _num(raw[ycol].iat[i])
            yr = str(int(yv)) if not math.isnan(yv) else str(raw[ycol].iat[i])
        rk = (ctx, geo_level[i], geo_unit[i], yr)
        if rk in seen:
            return []  # rows not unique under the recognised dimensions: do not link this frame
        seen.add(rk)
        for c in counts:
            v = fr.num[c].iat[i]
            withheld = str(raw[c].iat[i]).strip() in ("", "s", "nan")
            if withheld and fr.key is not None and fr.truth(i, c) is None:
                continue  # genuinely missing (the key has no value either)
            cells.append(CellRef((ctx, measure[c], geo_level[i], geo_unit[i], yr), fr.rel, i, c,
                                 None if withheld else float(v)))
    return cells


# ------------------------------------------------------------------------------------------------
# linked system over keys (differencing, hierarchy)
# ------------------------------------------------------------------------------------------------
def _namespaces(cells: list[CellRef]) -> dict[str, int]:
    """Frame -> name space: frames that publish different values for one key never share a name space."""
    by_key = defaultdict(dict)
    for c in cells:
        if c.value is not None:
            by_key[c.key].setdefault(c.rel, set()).add(c.value)
    conflict = defaultdict(set)
    agree = defaultdict(int)
    for _k, per in by_key.items():
        rels = list(per)
        for a in range(len(rels)):
            for b in range(a + 1, len(rels)):
                ra, rb = rels[a], rels[b]
                if per[ra] != per[rb]:
                    conflict[ra].add(rb)
                    conflict[rb].add(ra)
                else:
                    agree[(ra, rb)] += 1
                    agree[(rb, ra)] += 1
    frames = sorted({c.rel for c in cells}, key=lambda r: -sum(1 for c in cells if c.rel == r))
    spaces: list[set] = []
    out = {}
    for r in frames:
        for i, sp in enumerate(spaces):
            if not (conflict[r] & sp):
                sp.add(r)
                out[r] = i
                break
        else:
            spaces.append({r})
            out[r] = len(spaces) - 1
    return out


class LinkedSystem:
    """Cells keyed by population, their hierarchies, as a :class:`System`."""

    def __init__(self, run: Run, frames: list[Frame], per_frame: bool = False):
        self.run = run
        indicators = set(run.targets)
        for fr in run.frames.values():
            if "indicator" in fr.raw.columns:
                indicators |= set(fr.raw["indicator"].astype(str))
        self.partitions: set = set()
        cells: list[CellRef] = []
        for fr in frames:
            cs = frame_cells(fr, run.geo, indicators, self.partitions)
            cells.extend(cs)
        ns = _namespaces(cells) if not per_frame else {fr.rel: fr.rel for fr in frames}
        self.cells = []
        for c in cells:
            key = (ns.get(c.rel, 0),) + c.key
            self.cells.append(CellRef(key, c.rel, c.row, c.col, c.value))
        self.value: dict = {}
        self.sources: dict = defaultdict(set)
        self.withheld: dict = defaultdict(list)
        self.cellkey: dict = {}
        for c in self.cells:
            self.cellkey[(c.rel, c.row, c.col)] = c.key
            self.sources[c.key].add(c.rel)
            if c.value is not None:
                self.value.setdefault(c.key, c.value)
            else:
                self.withheld[c.key].append((c.rel, c.row, c.col))
        self.present = set(self.sources)
        self.system = System()
        self.dropped: list[str] = []
        self._build()

    # key layout: (ns, ctx, measure, level, unit, year)
    def _term(self, key):
        if key in self.value:
            return None, self.value[key]
        if key not in self.present:
            self.system.free.add(key)
        return key, 0.0

    def _eq(self, parent, children, kind):
        terms, const = defaultdict(float), 0.0
        v, c = self._term(parent)
        if v is None:
            const -= c
        else:
            terms[v] -= 1
        for ch in children:
            v, c = self._term(ch)
            if v is None:
                const += c
            else:
                terms[v] += 1
        srcs = tuple(sorted(set().union(*[self.sources.get(k, set()) for k in [parent] + list(children)])))
        sig = (kind, srcs)
        if not terms:
            if abs(const) > 1e-9:
                self._bad.add(sig)
            return
        self._pending.append((dict(terms), -const, sig))

    def _build(self):
        self._bad, self._pending = set(), []
        geo = self.run.geo
        groups = defaultdict(set)  # (ns, ctx, measure) -> keys
        for k in self.present:
            groups[k[:3]].add(k)
        for g, keys in groups.items():
            years = sorted({k[5] for k in keys if k[5] != "ALL"})
            slices = defaultdict(set)
            for k in keys:
                slices[k[5]].add((k[3], k[4]))
            # geography, per year slice (and pooled)
            allyears = set(slices) | ({"ALL"} if years else set())
            for yr in allyears:
                nodes = set(slices.get(yr, set()))
                present_levels = {lv for lv, _ in nodes}
                if not nodes and yr == "ALL":
                    for y in years:
                        nodes |= slices[y]
                    present_levels = set()
                up = set()
                for lv, u in list(nodes):
                    cur = (lv, u)
                    while cur is not None:
                        p = geo.parent(*cur)
                        if p is None:
                            break
                        if p[0] in ("hosp_trust", "res_trust") and p[0] not in present_levels:
                            p2 = geo.parent(*p)
                            p = p2
                        if p is None:
                            break
                        up.add(p)
                        cur = p
                for node in up | nodes:
                    lv, u = node
                    for clv, units in geo.children(lv, u).items():
                        ch = [g + (clv, x, yr) for x in units]
                        if any(c in self.present for c in ch):
                            self._eq(g + (lv, u, yr), ch, f"geo {lv}<-{clv}")
            # years: pooled = sum of years
            if years:
                geos = {(k[3], k[4]) for k in keys}
                ext = set(geos)
                for lv, u in geos:
                    cur = (lv, u)
                    while True:
                        p = geo.parent(*cur)
                        if p is None:
                            break
                        ext.add(p)
                        cur = p
                for lv, u in ext:
                    ch = [g + (lv, u, y) for y in years]
                    if any(c in self.present for c in ch):
                        self._eq(g + (lv, u, "ALL"), ch, "years")
        # partitions of stacked tables: total = sum over the groups of a partition dimension
        byctx = defaultdict(set)
        for k in self.present:
            byctx[(k[0], k[2], k[3], k[4], k[5])].add(k[1])
        for (ns, meas, lv, u, yr), ctxs in byctx.items():
            for part in self.partitions:
                fam = defaultdict(list)
                for ctx in ctxs:
                    d = dict(ctx)
                    if part in d:
                        rest = tuple(x for x in ctx if x[0] != part)
                        fam[rest].append(ctx)
                for rest, members in fam.items():
                    if len(members) < 2:
                        continue
                    self._eq((ns, rest, meas, lv, u, yr), [(ns, m, meas, lv, u, yr) for m in members],
                             f"partition {part}")
        for terms, rhs, sig in self._pending:
            if sig in self._bad:
                continue
            self.system.add_eq(terms, rhs, sig[0], sig[1])
        self.dropped = [f"{k}: {', '.join(s)}" for k, s in sorted(self._bad)]
        # events <= n for the same key
        for k in self.present:
            if k[2] in ("events", "n_risk", "n_missing", "deaths"):
                kn = k[:2] + ("n",) + k[3:]
                if kn in self.present and (k not in self.value or kn not in self.value):
                    t, const = defaultdict(float), 0.0
                    v, c = self._term(k)
                    if v is None:
                        const += c
                    else:
                        t[v] += 1
                    v, c = self._term(kn)
                    if v is None:
                        const -= c
                    else:
                        t[v] -= 1
                    self.system.add_le(dict(t), -const, "events<=n")
        self.system.prune()

    def recover(self, cls: ClassResult, min_cell: int, lp: bool = True) -> dict:
        """Solve and add recoveries of withheld cells to ``cls``; returns key -> (lo, hi, how)."""
        for key, cl in self.withheld.items():
            if key in self.value:
                src = sorted(self.sources[key] - {r for r, _, _ in cl})
                for rel, row, col in cl:
                    cls.add(Recovery(cls.name, rel, row, col, self.value[key], self.value[key],
                                     f"same cell published in {', '.join(src) or 'the same file'}"))
        targets = [k for k in self.withheld if k not in self.value]
        sol, notes = self.system.solve(targets, min_cell=min_cell, lp=lp)
        cls.notes.extend(notes)
        cls.notes.extend(f"identity dropped (violated by published cells): {d}" for d in self.dropped)
        for key, (lo, hi, how) in sol.items():
            for rel, row, col in self.withheld[key]:
                cls.add(Recovery(cls.name, rel, row, col, lo, hi, f"{how} over linked cells ({key[2]})"))
        return sol


# ------------------------------------------------------------------------------------------------
# within-row identities
# ------------------------------------------------------------------------------------------------
SCALES = (1.0, 100.0, 1000.0, 100000.0)


def _subgroups(fr: Frame):
    """Row groups for relation discovery: the whole frame, then per value of a horizon/time column."""
    yield "all rows", np.arange(len(fr.raw))
    for c in fr.raw.columns:
        if c.lower() in ("horizon_days", "window_days", "time", "years", "day", "days") \
                and fr.raw[c].nunique() <= 20:
            for v, idx in fr.raw.groupby(c).indices.items():
                yield f"{c} = {v}", np.asarray(idx)


def sum_relations(fr: Frame, counts: list[str], min_rows: int = 3):
    """Discover ``a = sum(S)`` among count columns (|S| = 2..3) that holds on every fully visible row.

    A relation is kept when every term of ``S`` is non-zero on some visible row, or when ``S`` is every
    other count column of the frame and ``a`` is named as a total (n, n_total, n_in, n_read: a total and its
    full partition, e.g. n_total = n_both + n_nhfr_only
    + n_npr_only, whose zero columns are no evidence against it).  ``a = b`` relations are kept only for
    the aliases events/observed/deaths/n_events (visible rows are biased: a withheld small part makes
    ``a = b`` hold on the visible ones).

    Returns
    -------
    list of (str, list of str, str, ndarray)
        ``(a, S, where, rows)``: the relation holds on the rows ``rows`` (a subgroup of the frame).
    """
    from itertools import combinations
    X = fr.num
    out = []
    alias = {"events", "observed", "deaths", "n_events"}
    for where, rows in _subgroups(fr):
        found_here = False
        for a in counts:
            others = [c for c in counts if c != a]
            for size in (1, 2, 3):
                for S in combinations(others, size):
                    if size == 1 and not (a.lower() in alias and S[0].lower() in alias):
                        continue
                    cols = [a, *S]
                    sub = X.iloc[rows][cols]
                    vis = sub.notna().all(axis=1).to_numpy()
                    if vis.sum() < min_rows:
                        continue
                    v = sub[vis]
                    if (v[a] == 0).all() or v[a].nunique() < 2:
                        continue
                    hold = np.abs(v[a].to_numpy() - v[list(S)].sum(axis=1).to_numpy()) < 1e-9
                    tag = where
                    if not hold.all():
                        # an approximate identity of a subgroup (n = n_risk + deaths at a horizon with
                        # almost complete follow-up): kept when it holds on >= 85 % of >= 10 rows
                        if where == "all rows" or len(hold) < 10 or hold.mean() < 0.85:
                            continue
                        tag = f"{where}, approximate: holds on {int(hold.sum())} of {len(hold)} visible rows"
                    supported = all((v[c] != 0).any() for c in S)
                    full = set(S) == set(others) and a.lower() in TOTALS + ("n_read",)
                    if supported or full:
                        out.append((a, list(S), tag, rows))
                        found_here = True
        if found_here and where == "all rows":
            break
    return out


def chain_relations(fr: Frame, counts: list[str], min_rows: int = 3):
    """Discover ``b[i + 1] = a[i]`` between count columns of successive rows (a flowchart's n_out -> n_in)."""
    out = []
    X = fr.num
    for a in counts:
        for b in counts:
            if a == b:
                continue
            x = X[a].to_numpy(dtype=float, na_value=np.nan)[:-1]
            y = X[b].to_numpy(dtype=float, na_value=np.nan)[1:]
            vis = ~np.isnan(x) & ~np.isnan(y)
            if vis.sum() >= min_rows and np.abs(x[vis] - y[vis]).max() < 1e-9 and np.ptp(x[vis]) > 0 \
                    and (x[vis] != 0).sum() >= min_rows:
                out.append((a, b))
    return out


def ratio_relations(fr: Frame, counts: list[str], min_rows: int = 3):
    """Discover ``f = s * a / g`` or ``f = s * (1 - a / g)`` (f a published ratio, a a count, g a count or a
    published denominator such as ``expected``) that holds, to the printed precision, on every visible row.

    Returns
    -------
    list of tuple
        ``(f, a, g, s, complement, where, rows)``.
    """
    X, R = fr.num, fr.raw
    numeric = [c for c in R.columns if c not in counts and X[c].notna().any() and not _is_text_col(fr, c)
               and c.lower() not in NUMERIC_DIMS and c.lower() != "year"]
    denoms = counts + [c for c in numeric if (X[c].dropna() > 0).all()]
    tols = {c: fr.tol(c) for c in set(numeric) | set(denoms)}
    out = []
    for where, rows in _subgroups(fr):
        found = False
        with np.errstate(all="ignore"):
            found = _ratio_scan(X, numeric, counts, denoms, tols, rows, where, out, min_rows)
        if found and where == "all rows":
            break
    return out


def _ratio_scan(X, numeric, counts, denoms, tols, rows, where, out, min_rows) -> bool:
    """One pass of :func:`ratio_relations` over the rows ``rows``; appends to ``out``."""
    found = False
    if True:
        for f in numeric:
            for a in counts:
                for g in denoms:
                    if g in (a, f):
                        continue
                    fv, av, gv = (X[c].to_numpy()[rows] for c in (f, a, g))
                    vis = ~np.isnan(fv) & ~np.isnan(av) & ~np.isnan(gv) & (gv > 0)
                    if vis.sum() < min_rows or (av[vis] == 0).all() or np.ptp(av[vis]) == 0 \
                            or np.ptp(fv[vis]) == 0 or np.ptp(gv[vis]) == 0:
                        continue
                    tol = tols[f][rows][vis]
                    gtol = tols[g][rows][vis]
                    for s in SCALES:
                        for comp in (False, True):
                            r = av[vis] / gv[vis]
                            pred = s * (1 - r) if comp else s * r
                            slack = s * av[vis] * gtol / gv[vis] ** 2 + 1e-9
                            if np.all(np.abs(fv[vis] - pred) <= tol + slack + 1e-12):
                                out.append((f, a, g, s, comp, where, rows))
                                found = True
                                break
                        else:
                            continue
                        break
    return found


def _ratio_interval(d, f, g, dg, s, comp):
    """Interval of the count ``a`` given ``f = s*a/g`` (or the complement), ``f`` and ``g`` published to
    within ``d`` and ``dg``."""
    lo_r, hi_r = (f - d) / s, (f + d) / s
    if comp:
        lo_r, hi_r = 1 - hi_r, 1 - lo_r
    lo = max(0.0, lo_r) * max(g - dg, 0.0)
    hi = hi_r * (g + dg)
    return math.ceil(lo - 1e-9), math.floor(hi + 1e-9)


def _wilson(e, n, z=1.959963984540054):
    p = e / n
    den = 1 + z * z / n
    c = (p + z * z / (2 * n)) / den
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return c - h, c + h


def _exact(e, n, a=0.05):
    from scipy.stats import beta
    lo = 0.0 if e == 0 else beta.ppf(a / 2, e, n - e + 1)
    hi = 1.0 if e == n else beta.ppf(1 - a / 2, e + 1, n - e)
    return lo, hi


def _ci_methods():
    return {"Wilson": _wilson, "Clopper-Pearson": _exact}


def ci_inversion(fr: Frame, cls: ClassResult, system: System, var, min_rows: int = 3) -> int:
    """Invert proportion CIs (Wilson, Clopper-Pearson) with visible ``n`` to the withheld events.

    Adds bounds to ``system`` and returns the number of bounded cells.
    """
    lc = {c.lower(): c for c in fr.raw.columns}
    ev = next((lc[c] for c in ("events", "observed", "deaths", "n_events") if c in lc), None)
    n = lc.get("n")
    lo_c, hi_c = lc.get("lower"), lc.get("upper")
    if not (ev and n and lo_c and hi_c):
        return 0
    X = fr.num
    vis = X[[ev, n, lo_c, hi_c]].notna().all(axis=1) & (X[n] > 0)
    method = None
    for name, fn in _ci_methods().items():
        rows = np.flatnonzero(vis.to_numpy())[:50]
        if len(rows) < min_rows:
            return 0
        ok = all(abs(fn(X[ev].iat[i], X[n].iat[i])[0] - X[lo_c].iat[i]) < 1e-4 * max(1, X[lo_c].iat[i]) + 1e-5
                 and abs(fn(X[ev].iat[i], X[n].iat[i])[1] - X[hi_c].iat[i]) < 1e-4 + 1e-5 for i in rows)
        if ok:
            method = (name, fn)
            break
    if method is None:
        return 0
    k = 0
    for i in np.flatnonzero((X[ev].isna() & X[n].notna() & X[lo_c].notna() & X[hi_c].notna()).to_numpy()):
        nn = int(X[n].iat[i])
        if nn <= 0 or nn > 100000:
            continue
        cand = [e for e in range(nn + 1)
                if abs(method[1](e, nn)[0] - X[lo_c].iat[i]) < 1e-4 and abs(method[1](e, nn)[1] - X[hi_c].iat[i]) < 1e-4]
        if cand:
            system.bound(var(i, ev), min(cand), max(cand))
            k += 1
    return k


def attack_within_row(run: Run, min_cell: int = 5, frames=None, collect: System | None = None,
                      var=None) -> ClassResult:
    """Identities between the columns of a row (and successive rows of a chain).

    Discovered on the visible rows of each frame, then applied to rows with withheld cells:
    ``a = b + c (+ d)`` among counts (n = events + non-events, n_total = n_both + n_nhfr_only + n_npr_only,
    n_in = n_excluded + n_out, n = n_risk + deaths at a horizon with complete follow-up), a flowchart chain
    (``n_out[k] = n_in[k+1]``), ratios ``f = s*a/g`` to the printed precision (prop x n = events, O/E x
    expected = observed, rates x person-years, coverage, percentages) and proportion CIs inverted.

    Parameters
    ----------
    run : Run
    min_cell : int
    frames : list of Frame, optional
        Frames to attack (default: all).
    collect : System, optional
        When given, the identities are also added to this system (joint attack) with unknown names
        ``var(rel, row, col)``.
    var : callable, optional
        Unknown naming for ``collect``.
    """
    cls = ClassResult("within_row")
    for fr in frames or run.frames.values():
        wh = fr.withheld()
        counts = fr.count_columns()
        if not counts:
            continue
        cls.examined += len(wh)
        system = System()

        def v(i, c, fr=fr):
            return ("cell", fr.rel, int(i), c)
        X = fr.num
        whs = set(wh)
        rels = sum_relations(fr, counts)
        for a, S, where, rows in rels:
            for i in rows:
                cols = [a, *S]
                if not any((int(i), c) in whs for c in cols):
                    continue
                if any(math.isnan(X[c].iat[i]) and (int(i), c) not in whs for c in cols):
                    continue
                terms, rhs = defaultdict(float), 0.0
                for c, coef in [(a, 1.0)] + [(c, -1.0) for c in S]:
                    if (int(i), c) in whs:
                        terms[v(i, c)] += coef
                    else:
                        rhs -= coef * X[c].iat[i]
                system.add_eq(dict(terms), rhs, f"{a} = {' + '.join(S)} ({where})")
        for a, b in chain_relations(fr, counts):
            for i in range(len(X) - 1):
                if (i, a) in whs or (i + 1, b) in whs:
                    terms, rhs = defaultdict(float), 0.0
                    for (r, c, coef) in ((i, a, 1.0), (i + 1, b, -1.0)):
                        if (r, c) in whs:
                            terms[v(r, c)] += coef
                        elif math.isnan(X[c].iat[r]):
                            terms = None
                            break
                        else:
                            rhs -= coef * X[c].iat[r]
                    if terms:
                        system.add_eq(dict(terms), rhs, f"chain {a}[k] = {b}[k+1]")
        for f, a, g, s, comp, _where, rows in ratio_relations(fr, counts):
            for i in rows:
                fs, gs = fr.tol(f)[i], fr.tol(g)[i]
                fv, gv, av = X[f].iat[i], X[g].iat[i], X[a].iat[i]
                if (int(i), a) in whs and not math.isnan(fv) and not math.isnan(gv):
                    lo, hi = _ratio_interval(fs, fv, gv, gs, s, comp)
                    if hi >= lo:
                        system.bound(v(i, a), lo, hi)
                if (int(i), g) in whs and g in counts and not math.isnan(fv) and not math.isnan(av) and fv > 0 \
                        and not comp:
                    d = fs
                    lo, hi = math.ceil(s * av / (fv + d) - 1e-9), math.floor(s * av / max(fv - d, 1e-12) + 1e-9)
                    if hi >= lo:
                        system.bound(v(i, g), lo, hi)
        ci_inversion(fr, cls, system, v)
        for (i, c) in wh:
            system.bound(v(i, c), 0)
        targets = [v(i, c) for i, c in wh]
        sol, notes = system.solve(targets, min_cell=min_cell)
        cls.notes.extend(f"{fr.rel}: {x}" for x in notes)
        for key, (lo, hi, how) in sol.items():
            _, rel, row, col = key
            cls.add(Recovery("within_row", rel, row, col, lo, hi, f"row identities: {how}"))
        if collect is not None:
            for t, rhs, tag, _ in system.eqs:
                if "approximate" in tag:
                    continue  # heuristic identities stay out of the joint system (they may be off by one)
                collect.add_eq({var(*k[1:]): c for k, c in t.items()}, rhs, "row: " + tag)
            for t, rhs, tag in system.ineqs:
                collect.add_le({var(*k[1:]): c for k, c in t.items()}, rhs, "row: " + tag)
            for k, lo in system.lower.items():
                collect.bound(var(*k[1:]), lo=lo)
            for k, hi in system.upper.items():
                collect.bound(var(*k[1:]), hi=hi)
    return cls


# ------------------------------------------------------------------------------------------------
# differencing and hierarchy
# ------------------------------------------------------------------------------------------------
def margin_relations(fr: Frame, counts: list[str], min_groups: int = 3):
    """Discover ``sum over the rows of a group of p = t`` with ``t`` constant within the group (e.g. the
    ``n_level`` of a Cox table's levels summing to its ``n``), on groups that are fully visible.

    Returns
    -------
    list of (str, str, str, dict)
        ``(group column, p, t, {group value: row indices})``.
    """
    out = []
    dims = _dim_columns(fr, set(counts))
    dims = [c for c in dims if _is_text_col(fr, c)]
    X = fr.num
    for gcol in dims:
        groups = {k: np.asarray(v) for k, v in fr.raw.groupby(gcol, sort=False).indices.items() if len(v) >= 2}
        if not groups:
            continue
        for p in counts:
            for t in counts:
                if p == t:
                    continue
                ok, bad = 0, 0
                for _, idx in groups.items():
                    tv = X[t].to_numpy()[idx]
                    pv = X[p].to_numpy()[idx]
                    if np.isnan(tv).all() or np.nanmax(tv) != np.nanmin(tv):
                        continue
                    if np.isnan(pv).any():
                        continue
                    if abs(pv.sum() - np.nanmax(tv)) < 1e-9 and (pv > 0).sum() >= 2:
                        ok += 1
                    elif abs(pv.sum() - np.nanmax(tv)) > 1e-9:
                        bad += 1
                if ok >= min_groups and bad == 0:
                    out.append((gcol, p, t, groups))
    return out


def margin_eqs(fr: Frame):
    """Equalities of the discovered group margins of ``fr`` that involve withheld cells.

    Returns
    -------
    list of (dict, float, str)
        ``({(rel, row, col): coef}, rhs, tag)``.
    """
    out = []
    counts = fr.count_columns()
    whs = set(fr.withheld())
    if not whs:
        return out
    for gcol, p, t, groups in margin_relations(fr, counts):
        for _, idx in groups.items():
            tv = fr.num[t].to_numpy()[idx]
            if np.isnan(tv).all():
                continue
            terms, rhs, skip = {}, float(np.nanmax(tv)), False
            for i in idx:
                if (int(i), p) in whs:
                    terms[(fr.rel, int(i), p)] = 1.0
                elif math.isnan(fr.num[p].iat[i]):
                    skip = True
                else:
                    rhs -= fr.num[p].iat[i]
            if terms and not skip:
                out.append((terms, rhs, f"margin {p} by {gcol} = {t}"))
    return out


def attack_hierarchy(run: Run, min_cell: int = 5) -> ClassResult:
    """Margins inside one table: stacked rows that sum to a total row (national = sum of regions, pooled
    = sum of years, total = sum of the groups of a ``group_type``), and discovered group margins
    (levels of a factor summing to the factor's ``n``).  No cell of another file is used."""
    cls = ClassResult("hierarchy")
    frames = list(run.frames.values())
    cls.examined = sum(len(fr.withheld()) for fr in frames)
    ls = LinkedSystem(run, frames, per_frame=True)
    for fr in frames:
        for terms, rhs, tag in margin_eqs(fr):
            t2 = {}
            for cell, c in terms.items():
                k = ls.cellkey.get(cell, ("cell",) + cell)
                t2[k] = c
                if k[0] == "cell":
                    ls.withheld.setdefault(k, [cell])
            ls.system.add_eq(t2, rhs, tag)
    ls.recover(cls, min_cell)
    return cls


def attack_differencing(run: Run, min_cell: int = 5, linked: LinkedSystem | None = None) -> ClassResult:
    """Differencing across every group of published tables that share a population.

    Cells of all frames are keyed by population (see the module docstring for the matching rules); the
    linear system of the hierarchies (hospital ⊂ trust ⊂ region ⊂ national, referral area ⊂ region of
    residence, years ⊂ pooled period, groups ⊂ total) is solved exactly (null space) and by LP bounds.
    """
    cls = ClassResult("differencing")
    frames = list(run.frames.values())
    cls.examined = sum(len(fr.withheld()) for fr in frames)
    ls = linked or LinkedSystem(run, frames)
    ls.recover(cls, min_cell)
    return cls


# ------------------------------------------------------------------------------------------------
# levels, flags and bands of withheld rows
# ------------------------------------------------------------------------------------------------
_BAND = re.compile(r"(>=|≥|<=|≤|<|>)?\s*(\d+(?:\.\d+)?)\s*%?\s*(?:-|–|to)\s*(\d+(?:\.\d+)?)\s*%|"
                   r"(>=|≥|<=|≤|<|>)\s*(\d+(?:\.\d+)?)\s*%")


def band_interval(label: str):
    """Proportion interval of a band label (">=90%", "80-90%", "low coverage (<60%)"), or None."""
    s = str(label)
    m = re.search(r"(\d+(?:\.\d+)?)\s*%?\s*(?:-|–)\s*(\d+(?:\.\d+)?)\s*%", s)
    if m:
        return float(m.group(1)) / 100, float(m.group(2)) / 100
    m = re.search(r"(>=|≥|>)\s*(\d+(?:\.\d+)?)\s*%", s)
    if m:
        return float(m.group(2)) / 100, 1.0
    m = re.search(r"(<=|≤|<)\s*(\d+(?:\.\d+)?)\s*%", s)
    if m:
        return 0.0, float(m.group(2)) / 100
    return None


def _target_interval(level: str, t: dict):
    """Proportion interval implied by a target level (green/yellow/red) of an indicator."""
    g, y = t.get("green"), t.get("yellow")
    if g is None:
        return None
    y = g if y is None else y
    level = str(level).strip().lower()
    if t.get("direction", "higher") == "higher":
        return {"green": (g, 1.0), "yellow": (y, g), "red": (0.0, y)}.get(level)
    return {"green": (0.0, g), "yellow": (g, y), "red": (y, 1.0)}.get(level)


def _with_sibling(run: Run, fr: Frame) -> pd.DataFrame:
    """The frame's raw cells with the text columns of its same-name sibling (figure <-> table) appended
    when the sibling has the same rows (same values in the shared text columns)."""
    other_kind = "figures" if fr.kind == "tables" else "tables"
    suffix = ".data.csv" if other_kind == "figures" else ".csv"
    sib = run.frames.get(f"{fr.notebook}/{other_kind}/{fr.name}{suffix}")
    raw = fr.raw
    if sib is None or len(sib.raw) != len(raw):
        return raw
    shared = [c for c in raw.columns if c in sib.raw.columns]
    if not shared or not all((raw[c].astype(str).values == sib.raw[c].astype(str).values).all()
                             for c in shared if _is_text_col(fr, c)):
        return raw
    extra = [c for c in sib.raw.columns if c not in raw.columns]
    return pd.concat([raw, sib.raw[extra]], axis=1) if extra else raw


def attack_levels(run: Run, min_cell: int = 5, collect=None) -> ClassResult:
    """Withheld rows that still show a derived category.

    * target level (green/yellow/red) of an indicator (targets from the catalogue) with visible ``n``:
      events within ``[lo * n, hi * n]`` (a unit with n <= 4 shown green at 80 % had every patient operated);
    * band labels (">=90%", "80-90%") of a discovered ratio column (coverage = n_both / n_total,
      completeness = 1 - n_missing / n), also from the same-name figure data;
    * ``low_n_flag`` true with a withheld ``n``: ``1 <= n < min_n``.
    """
    cls = ClassResult("levels")
    targets = run.targets
    for fr in run.frames.values():
        wh = fr.withheld()
        if not wh:
            continue
        whs = set(wh)
        raw = _with_sibling(run, fr)
        lc = {c.lower(): c for c in raw.columns}
        X = fr.num
        counts = fr.count_columns()
        ev = next((lc[c] for c in ("events", "observed", "n_events") if c in lc and lc[c] in counts), None)
        n = lc.get("n") if lc.get("n") in counts else None
        examined = set()

        def add(i, c, lo, hi, how, fr=fr):
            lo, hi = math.ceil(lo - 1e-9), math.floor(hi + 1e-9)
            if collect is not None:
                collect(fr.rel, int(i), c, lo, hi)
            if hi >= lo and hi - lo + 1 < min_cell:
                cls.add(Recovery("levels", fr.rel, int(i), c, float(lo), float(hi), how))
        # target levels
        level_cols = [c for c in raw.columns if c.lower() in ("level", "achievement")]
        if ev and n and level_cols:
            ind_col = lc.get("indicator")
            name_ind = next((k for k in sorted(targets, key=len, reverse=True)
                             if re.search(rf"(^|_){re.escape(k)}($|_)", fr.name)), None)
            for i in range(len(raw)):
                if (i, ev) not in whs:
                    continue
                examined.add((i, ev))
                ind = str(raw[ind_col].iat[i]) if ind_col else name_ind
                t = targets.get(ind)
                nv = X[n].iat[i]
                if t is None or math.isnan(nv):
                    continue
                iv = _target_interval(raw[level_cols[0]].iat[i], t)
                if iv is None:
                    continue
                lo_p, hi_p = iv
                lo, hi = lo_p * nv, hi_p * nv
                # strict inequality at the upper target edge (yellow < green)
                if hi_p < 1.0 and abs(hi - round(hi)) < 1e-9:
                    hi -= 1
                add(i, ev, lo, hi, f"target level {raw[level_cols[0]].iat[i]!r} of {ind} with n = {int(nv)}")
        # band labels of ratio columns
        band_cols = [c for c in raw.columns if c.lower() in ("level", "band", "coverage_band", "completeness")
                     or c.lower().endswith("_band")]
        if band_cols:
            for f, a, g, s, comp, _where, rows in ratio_relations(fr, counts):
                for bc in band_cols:
                    labels = raw[bc].astype(str)
                    ivs = [band_interval(x) for x in labels]
                    vis = [i for i in rows if ivs[i] is not None and not math.isnan(X[f].iat[i])]
                    if len(vis) < 3 or not all(ivs[i][0] - 1e-9 <= X[f].iat[i] / s <= ivs[i][1] + 1e-9 for i in vis):
                        continue
                    for i in rows:
                        if (int(i), a) in whs and ivs[i] is not None and not math.isnan(X[g].iat[i]):
                            examined.add((int(i), a))
                            plo, phi = ivs[i]
                            if comp:
                                plo, phi = 1 - phi, 1 - plo
                            gv = X[g].iat[i]
                            add(i, a, plo * gv, phi * gv, f"band {labels.iat[i]!r} of {f} = {a}/{g}")
        # low-n flags
        if "low_n_flag" in lc and n:
            fl = raw[lc["low_n_flag"]].astype(str).str.lower()
            ind_col = lc.get("indicator")
            for i in range(len(raw)):
                if (i, n) in whs and fl.iat[i] in ("true", "1", "yes"):
                    examined.add((i, n))
                    ind = str(raw[ind_col].iat[i]) if ind_col else None
                    mn = (targets.get(ind) or {}).get("min_n", min_cell)
                    add(i, n, 1, mn - 1, f"low_n_flag with min_n = {mn}")
        cls.examined += len(examined)
    return cls


# ------------------------------------------------------------------------------------------------
# visible small non-events
# ------------------------------------------------------------------------------------------------
TOTALS = ("n", "n_total", "n_level", "n_patients", "n_in")
PARTS = ("events", "observed", "deaths", "n_events", "n_own_trust", "n_own_region", "n_exposed", "n_missing",
         "n_both", "n_npr_only", "n_nhfr_only", "n_risk", "n_treated")


def attack_non_events(run: Run, min_cell: int = 5) -> ClassResult:
    """Visible ``total - part`` of 1..min_cell-1 in one row ("all but 2 operated"), for the pairs
    (n, events/observed/deaths/n_events/n_risk/n_missing/...), (n_total, n_both), (n_level, deaths),
    and the censored ``n - n_risk - deaths`` of a mortality row."""
    cls = ClassResult("non_events")
    for fr in run.frames.values():
        counts = fr.count_columns()
        lc = {c.lower(): c for c in counts}
        X = fr.num
        pairs = []
        for t in TOTALS:
            for p in PARTS:
                if t in lc and p in lc:
                    tv, pv = X[lc[t]], X[lc[p]]
                    vis = tv.notna() & pv.notna()
                    if vis.sum() and (pv[vis] <= tv[vis]).all():
                        pairs.append((lc[t], lc[p]))
        for t, p in pairs:
            d = (X[t] - X[p]).to_numpy()
            cls.examined += int(np.isfinite(d).sum())
            for i in np.flatnonzero(np.isfinite(d) & (d >= 1) & (d <= min_cell - 1)):
                rec = Recovery("non_events", fr.rel, int(i), f"{t}-{p}", float(d[i]), float(d[i]),
                               f"visible {t} = {int(X[t].iat[i])} and {p} = {int(X[p].iat[i])}", visible=True)
                if fr.key is not None:
                    a, b = fr.truth(int(i), t), fr.truth(int(i), p)
                    if a is not None and b is not None:
                        rec.truth = a - b
                cls.add(rec)
        if all(c in lc for c in ("n", "n_risk")) and ("deaths" in lc or "n_events" in lc):
            dc = lc.get("deaths") or lc["n_events"]
            d = (X[lc["n"]] - X[lc["n_risk"]] - X[dc]).to_numpy()
            for i in np.flatnonzero(np.isfinite(d) & (d >= 1) & (d <= min_cell - 1)):
                rec = Recovery("non_events", fr.rel, int(i), f"n-n_risk-{dc}", float(d[i]), float(d[i]),
                               "censored before the horizon = n - n_risk - deaths", visible=True)
                if fr.key is not None:
                    vals = [fr.truth(int(i), c) for c in (lc["n"], lc["n_risk"], dc)]
                    if None not in vals:
                        rec.truth = vals[0] - vals[1] - vals[2]
                cls.add(rec)
    return cls


# ------------------------------------------------------------------------------------------------
# curves
# ------------------------------------------------------------------------------------------------
def _curve_groups(fr: Frame):
    """(time column, {group label: sorted row indices}) of a curve frame, or None."""
    lc = {c.lower(): c for c in fr.raw.columns}
    tcol = next((lc[c] for c in TIME_COLS if c in lc), None)
    if tcol is None:
        return None
    counts = set(fr.count_columns())
    gcols = [c for c in fr.raw.columns if c != tcol and c not in counts
             and (_is_text_col(fr, c) or c.lower() in ("cause", "horizon_days", "window_days"))]
    t = fr.num[tcol]
    if t.isna().all():
        return None
    groups = {}
    keys = fr.raw[gcols].astype(str).agg(" | ".join, axis=1) if gcols else pd.Series(["all"] * len(fr.raw))
    for g, idx in keys.groupby(keys, sort=False).indices.items():
        idx = np.asarray(idx)
        idx = idx[np.argsort(t.to_numpy()[idx], kind="stable")]
        if len(idx) >= 2 and len(np.unique(t.to_numpy()[idx])) == len(idx):
            groups[g] = idx
    return tcol, gcols, groups


def attack_curves(run: Run, min_cell: int = 5) -> ClassResult:
    """Figure data of survival / incidence curves.

    * Kaplan-Meier (``n_risk`` and ``surv`` on a grid): deaths between grid times ``t[k-1] < t <= t[k]``
      are ``d = n_risk[k-1] * (1 - S[k]/S[k-1])``; exact ``d = n_risk[k-1] - n_risk[k]`` when that drop
      reproduces the survival ratio (no censoring in between), else bounds
      ``(1 - q)(r - drop) <= d <= min(drop, -r log q)``;
    * cumulative counts along time (``events``, ``n_events``): visible increments of 1..min_cell-1, and
      withheld values squeezed between visible neighbours (monotone);
    Scored with the cohort (deaths per step) when given, else with the answer key.
    """
    cls = ClassResult("curves")
    coh = run.cohort
    for fr in run.frames.values():
        cg = _curve_groups(fr)
        if cg is None:
            continue
        tcol, gcols, groups = cg
        lc = {c.lower(): c for c in fr.raw.columns}
        X = fr.num
        surv = lc.get("surv") or lc.get("survival")
        nr = lc.get("n_risk")
        counts = fr.count_columns()
        cum = [lc[c] for c in ("events", "n_events", "deaths") if c in lc and lc[c] in counts
               and (nr or surv or lc.get("cif"))]
        truth_fn = None
        if coh is not None and surv and nr and all(c in coh.columns for c in gcols) \
                and "followup_days" in coh.columns and "dead" in coh.columns:
            def truth_fn(g, t0, t1, gcols=gcols):
                sub = coh
                for c, v in zip(gcols, g.split(" | ")):
                    sub = sub[sub[c].astype(str) == v]
                fu = sub["followup_days"].to_numpy(float)
                dd = sub["dead"].to_numpy(int) == 1
                return float(((fu > t0) & (fu <= t1) & dd).sum()), int((fu >= t0).sum())
        whs = set(fr.withheld())
        for g, idx in groups.items():
            t = X[tcol].to_numpy()[idx]
            group_ok = False
            if truth_fn is not None:
                group_ok = truth_fn(g, -1.0, float(t[0]))[1] >= 0 and \
                    truth_fn(g, 0.0, 0.0)[1] == int(X[nr].to_numpy()[idx][0]) if float(t[0]) == 0.0 else False
            if surv and nr:
                S = X[surv].to_numpy()[idx]
                R = X[nr].to_numpy()[idx]
                with np.errstate(all="ignore"):
                    est_all = R[:-1] * (1 - S[1:] / S[:-1])
                drops = est_all[np.isfinite(est_all) & (est_all > 0.5)]
                near = np.abs(drops - np.round(drops)) < 0.01 + 2e-6 * np.nanmax(R) if len(drops) else np.array([])
                is_km = len(drops) >= 3 and near.mean() > 0.5
                for k in range(1, len(idx) if is_km else 0):
                    s0, s1, r0, r1 = S[k - 1], S[k], R[k - 1], R[k]
                    if any(math.isnan(x) for x in (s0, s1, r0, r1)) or s0 <= 0:
                        continue
                    q = s1 / s0
                    if q >= 1 - 1e-12:
                        continue
                    cls.examined += 1
                    drop = r0 - r1
                    est = r0 * (1 - q)
                    if drop >= 0 and abs(est - drop) < 0.01 + 2e-6 * r0:
                        lo = hi = float(drop)
                        how = f"KM step: n_risk {int(r0)} -> {int(r1)} and S ratio {q:.6f} (no censoring)"
                    else:
                        lo = float(max(1, math.ceil((1 - q) * max(r0 - max(drop, 0), 0) - 1e-6)))
                        hi = float(min(drop if drop >= 0 else math.inf, math.floor(-r0 * math.log(q) + 1e-6)))
                        how = "KM step bounds with censoring"
                        if not (hi >= lo and hi - lo + 1 < min_cell):
                            continue
                    rec = Recovery("curves", fr.rel, int(idx[k]), f"deaths({t[k - 1]:g},{t[k]:g}]", lo, hi, how)
                    if group_ok:
                        rec.truth = truth_fn(g, t[k - 1], t[k])[0]
                    cls.add(rec)
            for c in cum:
                E = X[c].to_numpy()[idx]
                ev = E[~np.isnan(E)]
                if len(ev) >= 2 and (np.diff(ev) < 0).any():
                    continue  # not cumulative
                K = None
                if fr.key is not None:
                    K = np.array([fr.truth(int(i), c) if fr.truth(int(i), c) is not None else np.nan for i in idx])
                for k in range(1, len(idx)):
                    a, b = E[k - 1], E[k]
                    if not math.isnan(a) and not math.isnan(b):
                        d = b - a
                        cls.examined += 1
                        if 1 <= d <= min_cell - 1:
                            rec = Recovery("curves", fr.rel, int(idx[k]), f"{c} step ({t[k - 1]:g},{t[k]:g}]",
                                           d, d, "visible increment of a cumulative count", visible=True)
                            if K is not None and not np.isnan(K[k]) and not np.isnan(K[k - 1]):
                                rec.truth = K[k] - K[k - 1]
                            cls.add(rec)
                # withheld cumulative values between visible neighbours
                vis = np.flatnonzero(~np.isnan(E))
                for k in np.flatnonzero(np.isnan(E)):
                    before = vis[vis < k]
                    after = vis[vis > k]
                    if (int(idx[k]), c) not in whs:
                        continue
                    cls.examined += 1
                    if len(before) and len(after):
                        lo, hi = E[before[-1]], E[after[0]]
                        if hi - lo + 1 < min_cell:
                            cls.add(Recovery("curves", fr.rel, int(idx[k]), c, float(lo), float(hi),
                                             "cumulative count between visible neighbours"))
    return cls


# ------------------------------------------------------------------------------------------------
# Table 1
# ------------------------------------------------------------------------------------------------
_T1_CELL = re.compile(r"^\s*(\d+)\s*\(\s*([\d.]+)\s*\)\s*$")
_T1_MASK = re.compile(r"^\s*[<≤]\s*(\d+)\s*$")


def _t1_var(v: str) -> tuple[str, bool]:
    """Variable name and whether the row is categorical (``"age_band, n (%)"``)."""
    s = str(v)
    if ", n (%)" in s:
        return s.split(", n (%)")[0].strip(), True
    return s.split(",")[0].strip(), False


def table1_cells(run: Run):
    """Table 1 cells in a long form: {(variable, level, group): [cell dicts]}, group sizes and SMDs.

    Reads the wide layout of ``table_one`` (``"3 (0.2)"``, ``"<5"``) and the long numeric layout
    (columns variable, level, group, n, pct).
    """
    cells = defaultdict(list)
    sizes = defaultdict(list)
    smds = {}
    for fr in run.frames.values():
        cols = [c.lower() for c in fr.raw.columns]
        if not ("variable" in cols and "level" in cols):
            continue
        lc = {c.lower(): c for c in fr.raw.columns}
        raw = fr.raw
        if "group" in lc and "n" in lc:  # long layout
            for i in range(len(raw)):
                var, _ = _t1_var(raw[lc["variable"]].iat[i])
                lev = str(raw[lc["level"]].iat[i])
                grp = str(raw[lc["group"]].iat[i])
                nv = fr.num[lc["n"]].iat[i]
                pct = fr.num[lc["pct"]].iat[i] if "pct" in lc else math.nan
                d = dict(file=fr.rel, row=i, col=lc["n"], n=None if math.isnan(nv) else nv,
                         pct=None if math.isnan(pct) else pct, frame=fr)
                if var == "n" and lev in ("", "nan"):
                    sizes[grp].append(d)
                elif lev not in ("", "nan") and not any(c in lc and not math.isnan(fr.num[lc[c]].iat[i])
                                                         for c in ("mean", "median")):
                    cells[(var, lev, grp)].append(d)
            continue
        groups = [c for c in fr.raw.columns if c.lower() not in ("variable", "level", "missing", "p-value", "test")
                  and not c.lower().startswith("smd")]
        smdcols = [c for c in fr.raw.columns if c.lower().startswith("smd")]
        if not any(raw[g].astype(str).str.match(_T1_CELL).any() for g in groups):
            continue
        cur = None
        for i in range(len(raw)):
            var, cat = _t1_var(raw[lc["variable"]].iat[i])
            lev = str(raw[lc["level"]].iat[i])
            if var == "n" and lev.strip() == "":
                for g in groups:
                    s = str(raw[g].iat[i])
                    v = _num(s)
                    sizes[g].append(dict(file=fr.rel, row=i, col=g, n=None if math.isnan(v) else v, pct=None,
                                         frame=fr))
                continue
            if not cat:
                continue
            if var != cur:
                cur = var
                for c in smdcols:
                    m = re.match(r"smd\s*\((.*),(.*)\)", c, re.I)
                    if m and str(raw[c].iat[i]).strip():
                        smds[(var, m.group(1).strip(), m.group(2).strip())] = str(raw[c].iat[i]).strip()
            for g in groups:
                s = str(raw[g].iat[i])
                m = _T1_CELL.match(s)
                d = dict(file=fr.rel, row=i, col=g, n=float(m.group(1)) if m else None,
                         pct=float(m.group(2)) if m else None, frame=fr, raw=s)
                if m or _T1_MASK.match(s):
                    cells[(var, lev, g)].append(d)
    return cells, sizes, smds


def _cat_smd(p1, p2):
    p1, p2 = np.asarray(p1, float)[1:], np.asarray(p2, float)[1:]
    covs = []
    for p in (p1, p2):
        c = -np.outer(p, p)
        c[np.diag_indices_from(c)] = p * (1 - p)
        covs.append(c)
    md = (p2 - p1).reshape(1, -1)
    try:
        sq = md @ np.linalg.inv((covs[0] + covs[1]) / 2) @ md.T
    except np.linalg.LinAlgError:
        return math.nan
    return float(np.sqrt(sq)[0][0]) if sq[0][0] >= 0 else math.nan


def attack_table1(run: Run, min_cell: int = 5, max_combos: int = 200000) -> ClassResult:
    """Table 1: the masked cells from the margins.

    * per variable and group: the levels (with "missing") sum to the group's n;
    * per level: Overall = sum of the groups;
    * ``fracture_group`` = sum of its ``fracture_type`` levels (cohort data dictionary);
    * a visible percentage x group n;
    * the SMDs (Yang & Dalton, as tableone) printed next to masked cells: every combination of the masked
      counts allowed by the margins is tried and those reproducing the printed SMDs kept;
    * a "<5" mark whose recovered value is >= 5 is false (noted; with a cohort, every false mark is noted).
    """
    cls = ClassResult("table1")
    cells, sizes, smds = table1_cells(run)
    if not cells:
        return cls
    system = System()
    value = {}
    masked = defaultdict(list)
    for key, ds in cells.items():
        vis = [d["n"] for d in ds if d["n"] is not None]
        if vis:
            value[key] = vis[0]
        for d in ds:
            if d["n"] is None:
                masked[key].append(d)
    masked = {k: v for k, v in masked.items() if k not in value}
    cls.examined = sum(len(v) for v in masked.values())
    # publicly: the same masked cell in both files is one unknown
    for key, ds in cells.items():
        if key in value:
            for d in ds:
                if d["n"] is None:
                    cls.add(Recovery("table1", d["file"], d["row"], d["col"], value[key], value[key],
                                     "same Table 1 cell published in another file"))
    N = {g: next((d["n"] for d in ds if d["n"] is not None), None) for g, ds in sizes.items()}
    groups = sorted({k[2] for k in cells})
    overall = next((g for g in groups if g.lower() in NATIONAL), None)
    variables = defaultdict(lambda: defaultdict(list))  # var -> group -> levels in order
    for (var, lev, g) in cells:
        if lev not in variables[var][g]:
            variables[var][g].append(lev)

    def term(key, terms, sign):
        if key in value:
            return sign * value[key]
        terms[key] = terms.get(key, 0.0) + sign
        return 0.0
    for var, per in variables.items():
        for g, levels in per.items():
            if N.get(g) is None:
                continue
            terms, rhs = {}, float(N[g])
            for lev in levels:
                rhs -= term((var, lev, g), terms, 1.0)
            system.add_eq(terms, rhs, f"{var}: levels sum to n of {g}")
        if overall:
            levels = {lev for g in per for lev in per[g]}
            parts = [g for g in per if g != overall]
            if len(parts) >= 2 and overall in per:
                for lev in levels:
                    terms, rhs = {}, 0.0
                    rhs -= term((var, lev, overall), terms, 1.0)
                    for g in parts:
                        rhs -= term((var, lev, g), terms, -1.0)
                    system.add_eq(terms, rhs, f"{var}={lev}: Overall = sum of groups")
    if "fracture_group" in variables and "fracture_type" in variables:
        for g in set(variables["fracture_group"]) & set(variables["fracture_type"]):
            for grp in variables["fracture_group"][g]:
                types = [t for t in variables["fracture_type"][g] if FRACTURE_GROUP.get(t) == grp]
                if not types:
                    continue
                terms, rhs = {}, 0.0
                rhs -= term(("fracture_group", grp, g), terms, 1.0)
                for t in types:
                    rhs -= term(("fracture_type", t, g), terms, -1.0)
                system.add_eq(terms, rhs, f"fracture_group {grp} = sum of fracture_type ({g})")
    for key, ds in masked.items():
        system.bound(key, lo=0)
        pct = next((d["pct"] for d in ds if d["pct"] is not None), None)
        if pct is not None and N.get(key[2]):
            system.bound(key, lo=max(0, math.ceil((pct - 0.05) * N[key[2]] / 100 - 1e-9)),
                         hi=math.floor((pct + 0.05) * N[key[2]] / 100 + 1e-9))
    sol, notes = system.solve(list(masked), min_cell=10 ** 9)
    cls.notes.extend(notes)
    # SMD: enumerate the masked counts of a variable allowed by the margins
    final = {}
    for var, per in variables.items():
        keys = [k for k in masked if k[0] == var]
        if not keys:
            continue
        pairs = [(a, b, s) for (v, a, b), s in smds.items() if v == var]
        free = [k for k in keys if k in sol and sol[k][0] != sol[k][1] and k[2] != overall]
        fixed = {k: sol[k][0] for k in keys if k in sol and sol[k][0] == sol[k][1]}
        if pairs and free and all(k in sol for k in keys):
            ranges = [range(int(sol[k][0]), int(sol[k][1]) + 1) for k in free]
            total = np.prod([len(r) for r in ranges], dtype=float)
            if total <= max_combos:
                from itertools import product
                ok = []
                for combo in product(*ranges):
                    vals = dict(fixed)
                    vals.update(zip(free, combo))
                    good = True
                    for g, levels in per.items():
                        if g == overall or N.get(g) is None:
                            continue
                        cnt = [vals.get((var, lev, g), value.get((var, lev, g), math.nan)) for lev in levels]
                        if abs(np.nansum(cnt) - N[g]) > 1e-9 or any(math.isnan(x) for x in cnt):
                            good = False
                            break
                    if not good:
                        continue
                    for a, b, s in pairs:
                        if a not in per or b not in per or not N.get(a) or not N.get(b):
                            continue
                        pa = [vals.get((var, lev, a), value.get((var, lev, a), 0.0)) / N[a] for lev in per[a]]
                        pb = [vals.get((var, lev, b), value.get((var, lev, b), 0.0)) / N[b] for lev in per[b]]
                        sm = _cat_smd(pa, pb)
                        pv = _num(s)
                        if s.startswith("<"):
                            if not (sm < _num(s[1:]) + 1e-12):
                                good = False
                        elif math.isnan(pv) != math.isnan(sm) or (not math.isnan(pv) and abs(sm - abs(pv)) > 5e-4 + 1e-9):
                            good = False
                        if not good:
                            break
                    if good:
                        ok.append(combo)
                if ok:
                    arr = np.array(ok, float)
                    for j, k in enumerate(free):
                        final[k] = (arr[:, j].min(), arr[:, j].max(), f"SMD-consistent combinations ({len(ok)})")
    for k in masked:
        if k in final:
            lo, hi, how = final[k]
        elif k in sol:
            lo, hi, how = sol[k]
            how = "Table 1 margins: " + how
        else:
            continue
        if hi - lo + 1 < min_cell:
            for d in masked[k]:
                flag = " (the '<5' mark is false)" if lo >= min_cell else ""
                cls.add(Recovery("table1", d["file"], d["row"], d["col"], float(lo), float(hi), how + flag))
    # truth from the cohort: every masked cell
    coh = run.cohort
    if coh is not None:
        others = {g for g in groups if g != overall}
        gcol = next((c for c in coh.columns if others and others <= set(coh[c].astype(str))), None)
        truth = {}
        for (var, lev, g) in cells:
            if var not in coh.columns:
                continue
            s = coh[var].astype("string").fillna("missing").astype(str)
            if str(coh[var].dtype).startswith("float"):
                s = coh[var].map(lambda x: "missing" if pd.isna(x) else (str(int(x)) if float(x).is_integer()
                                                                           else str(x)))
            m = s == lev
            if g != overall and gcol is not None:
                m &= coh[gcol].astype(str) == g
            truth[(var, lev, g)] = float(m.sum())
        run._table1_truth = {(d["file"], d["row"], d["col"]): truth.get(k) for k, ds in cells.items() for d in ds}
        for k in masked:
            t = truth.get(k)
            if t is not None and t >= min_cell:
                cls.notes.append(f"false '<{min_cell}' mark: {k[0]}={k[1]} in {k[2]} is {int(t)}")
    return cls


# ------------------------------------------------------------------------------------------------
# texts and notebook outputs
# ------------------------------------------------------------------------------------------------
_PROSE = re.compile(
    r"(?<![\w.,-])([1-4])(?![\d.,%])\s+(?:of\s+\d+\s+)?(?:[a-z]+\s+)?(patients?|persons?|people|deaths?|died|"
    r"fractures?|cases?|women|men|individuals?|pasienter|personer|dødsfall|brudd|operated|treated|events?)\b(?!-)",
    re.I)
_NEQ = re.compile(r"\b(?:n|N|events|deaths|observed)\s*=\s*([1-4])(?![\d.])")


def _md_tables(text: str) -> list[list[list[str]]]:
    """Markdown pipe tables as lists of rows of cells (header first, separator dropped)."""
    out, cur = [], []
    for line in text.splitlines():
        if line.strip().startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if all(re.fullmatch(r":?-{3,}:?", c) for c in cells if c):
                continue
            cur.append(cells)
        elif cur:
            out.append(cur)
            cur = []
    if cur:
        out.append(cur)
    return out


def _html_tables(text: str) -> list[pd.DataFrame]:
    """HTML tables (pandas DataFrame reprs) parsed without lxml."""
    out = []
    for tbl in re.findall(r"<table.*?</table>", text, re.S | re.I):
        rows = []
        for tr in re.findall(r"<tr.*?</tr>", tbl, re.S | re.I):
            cells = [_html.unescape(re.sub(r"<.*?>", "", c)).strip()
                     for c in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", tr, re.S | re.I)]
            rows.append(cells)
        if len(rows) < 2:
            continue
        head = rows[0]
        body = [r for r in rows[1:] if len(r) == len(head)]
        if body:
            df = pd.DataFrame(body, columns=[h or f"_{i}" for i, h in enumerate(head)])
            out.append(df)
    return out


def _small_prose(text: str, min_cell: int):
    for m in list(_PROSE.finditer(text)) + list(_NEQ.finditer(text)):
        v = int(m.group(1))
        if 1 <= v <= min_cell - 1:
            yield v, m.group(0)


def attack_text(run: Run, min_cell: int = 5) -> ClassResult:
    """Small counts in texts: Markdown and xlsx renderings of a table showing a cell the CSV withholds,
    small counts in prose (``*.md`` texts, notebook Markdown), and in the executed notebook's outputs
    (HTML/plain DataFrame reprs matched to a published table, stream and plain-text prose)."""
    cls = ClassResult("text")
    # renderings of tables
    for fr in run.frames.values():
        if fr.kind != "tables":
            continue
        wh = fr.withheld()
        if not wh:
            continue
        cls.examined += len(wh)
        md = run.dir / fr.notebook / "tables" / f"{fr.name}.md"
        cols = list(fr.raw.columns)
        if md.exists():
            for tb in _md_tables(md.read_text(encoding="utf-8")):
                if len(tb) - 1 == len(fr.raw) and len(tb[0]) == len(cols):
                    for i, c in wh:
                        v = _num(tb[i + 1][cols.index(c)])
                        if not math.isnan(v):
                            cls.add(Recovery("text", fr.rel, i, c, v, v, f"shown in {md.name}"))
        xl = run.dir / fr.notebook / f"{fr.notebook}.xlsx"
        if xl.exists():
            sheets = getattr(run, "_xlsx", {})
            if xl not in sheets:
                try:
                    import openpyxl
                    wb = openpyxl.load_workbook(xl, read_only=True, data_only=True)
                    sheets[xl] = {ws.title: [list(r) for r in ws.iter_rows(values_only=True)] for ws in wb}
                except Exception:
                    sheets[xl] = {}
                run._xlsx = sheets
            rows = sheets[xl].get(fr.name[:31])
            if rows:
                hdr = next((k for k, r in enumerate(rows) if r and len([x for x in r if x is not None]) == len(cols)),
                           None)
                if hdr is not None and len(rows) - hdr - 1 >= len(fr.raw):
                    for i, c in wh:
                        x = rows[hdr + 1 + i][cols.index(c)] if cols.index(c) < len(rows[hdr + 1 + i]) else None
                        v = _num(x)
                        if not math.isnan(v):
                            cls.add(Recovery("text", fr.rel, i, c, v, v, f"shown in {xl.name}"))
    # prose texts
    for p in sorted(run.dir.glob("**/*.md")):
        rel = p.relative_to(run.dir).as_posix()
        if "/tables/" in rel:
            continue
        text = p.read_text(encoding="utf-8", errors="replace")
        cls.examined += 1
        for k, (v, what) in enumerate(_small_prose(text, min_cell)):
            cls.add(Recovery("text", rel, k, f"prose: {what}", v, v, "small count stated in a text"))
    # notebooks
    by_cols = defaultdict(list)
    for fr in run.frames.values():
        by_cols[tuple(fr.raw.columns)].append(fr)
    for p in sorted(run.dir.glob("*/*.ipynb")):
        rel = p.relative_to(run.dir).as_posix()
        try:
            nb = json.loads(p.read_text(encoding="utf-8"))
        except ValueError:
            continue
        for ci, cell in enumerate(nb.get("cells", [])):
            texts = []
            if cell.get("cell_type") == "markdown":
                texts.append("".join(cell.get("source", [])))
            for o in cell.get("outputs", []):
                if o.get("output_type") == "stream":
                    texts.append("".join(o.get("text", [])))
                data = o.get("data", {})
                h = data.get("text/html")
                if h:
                    h = "".join(h) if isinstance(h, list) else h
                    for ti, df in enumerate(_html_tables(h)):
                        cls.examined += 1
                        idxcol = df.columns[0]
                        body = df.drop(columns=[idxcol]) if idxcol.startswith("_") else df
                        match = None
                        for fr in run.frames.values():
                            if fr.notebook == p.parent.name and list(fr.raw.columns[:len(body.columns)]) == \
                                    list(body.columns) and len(fr.raw) >= len(body):
                                match = fr
                                break
                        counts = [c for c in body.columns if c.lower() in COUNT_NAMES
                                  or re.fullmatch(r"n_[a-z0-9_]+", c.lower())]
                        if match is not None:
                            wh = set(match.withheld())
                            for r in range(len(body)):
                                try:
                                    i = int(df[idxcol].iat[r]) if idxcol.startswith("_") else r
                                except ValueError:
                                    i = r
                                for c in counts:
                                    v = _num(body[c].iat[r])
                                    if (i, c) in wh and not math.isnan(v):
                                        cls.add(Recovery("text", match.rel, i, c, v, v,
                                                         f"printed in {rel} cell {ci}"))
                        else:
                            for r in range(len(body)):
                                for c in counts:
                                    v = _num(body[c].iat[r])
                                    if 1 <= v <= min_cell - 1:
                                        cls.add(Recovery("text", rel, ci * 1000 + r, f"output table {ti}: {c}",
                                                         v, v, f"printed frame in cell {ci}"))
                elif "text/plain" in data and o.get("output_type") != "execute_result":
                    t = data["text/plain"]
                    texts.append("".join(t) if isinstance(t, list) else t)
            for k, tx in enumerate(texts):
                for j, (v, what) in enumerate(_small_prose(tx, min_cell)):
                    cls.add(Recovery("text", rel, ci * 1000 + 100 * k + j, f"prose: {what}", v, v,
                                     f"small count in cell {ci}"))
    return cls


# ------------------------------------------------------------------------------------------------
# joint attack, scoring, entry points
# ------------------------------------------------------------------------------------------------
def attack_joint(run: Run, min_cell: int = 5, linked: LinkedSystem | None = None,
                 known: list[Recovery] | None = None) -> ClassResult:
    """One system over everything the attacker can link: the differencing keys and hierarchies, the
    within-row identities and bounds, group margins, target-level bounds, and exact values read off
    texts, solved together (null space + LP bounds)."""
    cls = ClassResult("joint")
    frames = list(run.frames.values())
    ls = linked or LinkedSystem(run, frames)
    sysj = System()
    sysj.eqs = list(ls.system.eqs)
    sysj.ineqs = list(ls.system.ineqs)
    sysj.free = set(ls.system.free)
    withheld = defaultdict(list)
    for k, cl in ls.withheld.items():
        withheld[k].extend(cl)

    def var(rel, row, col):
        k = ls.cellkey.get((rel, row, col))
        if k is None:
            k = ("cell", rel, row, col)
            if (rel, row, col) not in withheld[k]:
                withheld[k].append((rel, row, col))
        return k
    for k, v in ls.value.items():
        if k in ls.withheld:
            sysj.add_eq({k: 1.0}, v, "published elsewhere")
    attack_within_row(run, min_cell, collect=sysj, var=var)
    attack_levels(run, min_cell, collect=lambda rel, row, col, lo, hi: sysj.bound(var(rel, row, col), lo, hi))
    for fr in frames:
        for terms, rhs, tag in margin_eqs(fr):
            sysj.add_eq({var(*c): x for c, x in terms.items()}, rhs, tag)
    for r in known or []:
        if r.exact and r.file in run.frames and r.column in run.frames[r.file].raw.columns:
            sysj.add_eq({var(r.file, r.row, r.column): 1.0}, r.lo, f"read in a text ({r.how})")
    targets = set()
    for fr in frames:
        for i, c in fr.withheld():
            k = var(fr.rel, i, c)
            if k in ls.value:
                cls.add(Recovery("joint", fr.rel, i, c, ls.value[k], ls.value[k], "same cell published elsewhere"))
            else:
                targets.add(k)
                sysj.bound(k, lo=0)
    cls.examined = sum(len(fr.withheld()) for fr in frames)
    sysj.prune()
    sol, notes = sysj.solve(targets, min_cell=min_cell)
    cls.notes.extend(notes)
    for k, (lo, hi, how) in sol.items():
        for rel, row, col in withheld.get(k, []):
            cls.add(Recovery("joint", rel, row, col, lo, hi, f"joint system: {how}"))
    return cls


def score(run: Run, rec: Recovery, min_cell: int) -> None:
    """Fill ``truth`` and ``success`` of a recovery from the answer key (or the cohort for Table 1)."""
    if rec.truth is None and rec.row >= 0:
        fr = run.frames.get(rec.file)
        if fr is not None and rec.column in fr.raw.columns:
            rec.truth = fr.truth(rec.row, rec.column)
            if rec.truth is None:
                rec.truth = getattr(run, "_table1_truth", {}).get(rec.cell)
    if rec.truth is None and rec.visible:
        rec.truth = rec.lo  # read off published numbers: true by construction
    if rec.truth is None:
        rec.success = None
        return
    inside = rec.lo - TOL <= rec.truth <= rec.hi + TOL
    if rec.exact:
        rec.success = bool(inside and 1 <= rec.truth <= min_cell - 1)
    else:
        rec.success = bool(inside and rec.hi - rec.lo + 1 < min_cell)


def run_all(run: Run, min_cell: int = 5, joint: bool = True, classes=CLASSES) -> dict:
    """Run the attack classes (and the joint system) on a loaded run.

    Returns
    -------
    dict of str to ClassResult
    """
    out = {}
    linked = None
    fns = {"differencing": attack_differencing, "within_row": attack_within_row, "hierarchy": attack_hierarchy,
           "curves": attack_curves, "table1": attack_table1, "levels": attack_levels,
           "non_events": attack_non_events, "text": attack_text}
    for name in classes:
        t0 = _time.perf_counter()
        if name == "differencing":
            linked = LinkedSystem(run, list(run.frames.values()))
            run._linked = linked
            res = attack_differencing(run, min_cell, linked=linked)
        else:
            res = fns[name](run, min_cell)
        res.dedupe()
        res.seconds = _time.perf_counter() - t0
        out[name] = res
    if joint:
        t0 = _time.perf_counter()
        res = attack_joint(run, min_cell, linked=linked, known=out.get("text", ClassResult("text")).recoveries)
        res.dedupe()
        res.seconds = _time.perf_counter() - t0
        out["joint"] = res
    return out


def attack_run(run_dir, answer_key=None, min_cell: int = 5, cohort=None, joint: bool = True,
               classes=CLASSES) -> AttackReport:
    """Attack the published files of ``run_dir`` with every class; score with ``answer_key`` if given.

    Parameters
    ----------
    run_dir : path
        Published run directory (``outputs/<run>``).
    answer_key : path, optional
        Directory of the frames before suppression (``<notebook>/tables/<name>.csv``,
        ``<notebook>/figures/<name>.csv``), same rows in the same order as the published CSVs.
    min_cell : int
        Smallest publishable count.
    cohort : path or DataFrame, optional
        The cohort, to score curve steps and Table 1 cells (not used by the attacks).
    joint : bool
        Also solve the joint system.
    classes : sequence of str
        Attack classes to run.

    Returns
    -------
    AttackReport
    """
    t0 = _time.perf_counter()
    run = Run(run_dir, answer_key, cohort)
    res = run_all(run, min_cell, joint=joint, classes=classes)
    linked = getattr(run, "_linked", None)
    rep = AttackReport(str(run_dir), min_cell, res, scored=run.scored,
                       cellkeys=linked.cellkey if linked is not None else None)
    for c in res.values():
        for r in c.recoveries:
            score(run, r, min_cell)
    rep.seconds = _time.perf_counter() - t0
    return rep
