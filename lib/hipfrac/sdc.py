"""Cell suppression over linked tables: the engine behind every table, every figure and the run-level audit.

Model
-----
A **cell** is the number of units (patients, fracture events, extract records: its *universe*) that meet a set
of conditions ``{variable: level}``. Two kinds of variables:

* **classifying variables** (dimensions: treating hospital, residence, year, sex, age band, a Table 1
  variable, ...). Their levels form a tree written as a path of segments: a hospital is
  ``region > trust > hospital`` (:func:`dim_level` builds the paths from the shipped geography), a
  5-year age band lies in its 10-year band, a fracture type in its group. Every unit has exactly one level,
  so a node is the sum of its children: the levels listed in a table are the whole node (no remainder).
* **status variables** (what a count counts within its row: eligible and analysed, event, missing,
  dead by a horizon, at risk, ...), named with a leading ``#``. A condition on a status variable is a set of
  *atoms* (``"event|nonevent"`` = analysed, ``"event"`` = events); atoms never named are one *remainder*
  atom ``~`` (not eligible, censored, ...). A row "n, events" therefore implies the cell "non-events"
  (atom ``nonevent``): a count that was never published but must not be revealed when it is small.

**Time intervals.** A status atom ``kind@a-b`` is the units whose event `kind` happened in the interval
(a, b] (days of follow-up; ``b`` may be ``inf``): ``"dead@0-30"`` died within 30 days, ``"dead@30-inf|cens@30-inf"``
alive and followed on day 30. Counts at different horizons (dead by 30, 90 and 365 days, at risk on the
days of an at-risk table, cumulative events of a curve) are then one variable: before solving, every
interval atom of a variable is cut at every break point any cell of that variable uses
(:func:`refine_map`), so "dead by 90" is "dead@0-30|dead@30-90" and the deaths between day 30 and 90 are a
cell of the system (protected when small) even if no output names them. A variable named with its
complete set of kinds, ``#fu[dead,cens]``, has no remainder: over (-inf, inf] the kinds are every unit, so
the row's patients (a cell without the variable) are the sum of its atoms and "alive and followed on day
30" is ``dead@30-inf|cens@30-inf``.

Each count is the sum of **inner cells**: the products of the finest levels of its system's variables (see
below). A withheld cell is *determined* when its row of the model matrix is a linear combination of the
rows of the published cells (exact disclosure); it is *bounded* when the linear programme
min / max x_cell subject to the published totals and x >= 0 gives an interval narrower than ``min_cell``.

Systems and decomposition
-------------------------
Cells are grouped by universe and by **maximal variable set**: a system holds every cell whose variables
are a subset of one maximal set F (so a hospital x year table, its hospital totals, its region x year totals
and the national totals are one system). Cells of other maximal sets G reach F only through their
projection onto F ∩ G (sums over G's other variables); those projections are treated as *known*
(published), which can only over-state what an attacker knows. This is exact for tables linked through a
common margin (a hospital table and a hospital x sex table share the hospital totals) and conservative
otherwise; three or more tables joined in a cycle of 2-way margins (A x B, B x C, A x C) can reveal more
than their pairwise margins (documented in docs/outputs.md).

Secondary suppression (GaussSuppression-like, Langsrud 2024)
-----------------------------------------------------------
Within a system: known cells are published first; then the publishable cells in order of preference
(zeros, then from the largest value down); a cell is published unless publishing it (with everything
published before it) would determine a *sensitive* cell - a count of 1..min_cell-1, published or implied.
The test is incremental Gaussian elimination (reduced row echelon form of the published rows; a sensitive
cell is determined when its residual vanishes). Then the interval test (LP, scipy HiGHS) withholds more cells
until every sensitive cell keeps an interval of at least ``min_cell`` (or nothing is left to withhold:
*exposed*). Systems sharing cells are solved in turn until no decision changes.
"""

from __future__ import annotations

import bisect
import contextlib
import gc
import itertools
import math
import re
from collections import defaultdict, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

SEP = " > "  # level path separator (a name never contains it)
REMAINDER = "~"
TOL = 1e-9

# statuses of a cell in a problem, in order of precedence when one cell is added twice
VISIBLE = "visible"      # published in an earlier output (or elsewhere in the run): cannot be withheld here
FORCED = "forced"        # must be withheld (the run-level audit's plan, or withheld in an earlier output)
CANDIDATE = "candidate"  # in the output being protected: published unless it has to be withheld
ASSUMED = "assumed"      # not in this output; assumed published elsewhere (coarser margins): known
IMPLIED = "implied"      # never published (non-events, remainders); protected when small
_PRECEDENCE = {VISIBLE: 0, FORCED: 1, CANDIDATE: 2, ASSUMED: 3, IMPLIED: 4}


@dataclass(frozen=True, order=True)
class Cell:
    """A count: the units of `universe` meeting every condition (variable, level) in `conds` (sorted)."""

    universe: str
    conds: tuple[tuple[str, str], ...]
    _vars: frozenset = field(default=frozenset(), init=False, repr=False, compare=False)
    _hash: int = field(default=0, init=False, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "_vars", frozenset(v for v, _ in self.conds))
        # the hash the dataclass would compute on every call (of the compared fields), computed once: cells
        # are looked up in sets and dicts millions of times per national run; same value, so sets of cells
        # iterate in the same order
        object.__setattr__(self, "_hash", hash((self.universe, self.conds)))

    def __hash__(self) -> int:
        return self._hash

    def __reduce__(self):
        # rebuilt from its fields (string hashes differ between processes: the cached hash is not pickled)
        return Cell, (self.universe, self.conds)

    def __setstate__(self, state):
        # a cell pickled as its attributes (before __reduce__): hash recomputed in this process
        self.__dict__.update(state)
        object.__setattr__(self, "_hash", hash((self.universe, self.conds)))

    @staticmethod
    def make(universe: str, conds: Mapping[str, str] | Iterable[tuple[str, str]]) -> Cell:
        items = conds.items() if isinstance(conds, Mapping) else conds
        d: dict[str, str] = {}
        for var, level in items:
            level = str(level)
            if var in d and d[var] != level:
                d[var] = _intersect(var, d[var], level)
            else:
                d[var] = level
        return Cell(universe, tuple(sorted(d.items())))

    @property
    def vars(self) -> frozenset[str]:
        return self._vars

    def get(self, var: str) -> str | None:
        for v, lev in self.conds:
            if v == var:
                return lev
        return None

    def label(self) -> str:
        """Readable form for messages: universe[var=level, ...]."""
        return f"{self.universe}[" + ", ".join(f"{v}={lev}" for v, lev in self.conds) + "]"

    def to_json(self) -> list:
        return [self.universe, [list(c) for c in self.conds]]

    @staticmethod
    def from_json(obj) -> Cell:
        return Cell(obj[0], tuple((str(a), str(b)) for a, b in obj[1]))


def is_status(var: str) -> bool:
    return var.startswith("#")


def atoms(level: str) -> frozenset[str]:
    return frozenset(level.split("|"))


def status_level(*atom_names: str) -> str:
    """A status condition from atom names: status_level("event", "nonevent") == "event|nonevent"."""
    return "|".join(sorted(set(atom_names)))


_INTERVAL = re.compile(r"^(?P<kind>[^@|]+)@(?P<a>-?(?:\d+(?:\.\d+)?|inf))-(?P<b>\d+(?:\.\d+)?|inf)$")


def _num(x: float) -> str:
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def interval_atom(kind: str, a: float, b: float) -> str:
    """The atom of units whose `kind` event happened in (a, b] (b may be math.inf)."""
    if not a < b:
        raise ValueError(f"empty interval ({a}, {b}] for {kind}")
    return f"{kind}@{_num(a)}-{_num(b)}"


def parse_interval(atom: str) -> tuple[str, float, float] | None:
    """(kind, a, b) of an interval atom, None for other atoms."""
    m = _INTERVAL.match(atom)
    if m is None:
        return None
    return m["kind"], float(m["a"]), float(m["b"])


_KINDS = re.compile(r"\[([A-Za-z_]\w*(?:,\s*[A-Za-z_]\w*)+)\]$")


def complete_kinds(var: str) -> tuple[str, ...] | None:
    """The event kinds of a follow-up variable named ``#name[kind1,kind2,...]``: every unit has exactly one
    of them at some time in (-inf, inf] (e.g. ``#fu[dead,cens]``: each patient's follow-up ends in death or
    censoring), so the variable has no remainder; None for other variables."""
    if not is_status(var):
        return None
    m = _KINDS.search(var)
    return tuple(k.strip() for k in m[1].split(",")) if m else None


def full_partition(var: str, grid: Iterable[float]) -> list[str]:
    """Every atom of a complete-kinds variable on a grid of break points (-inf and inf added)."""
    kinds = complete_kinds(var)
    g = sorted(set(grid) | {-math.inf, math.inf})
    return [interval_atom(k, g[i], g[i + 1]) for k in kinds for i in range(len(g) - 1)]


def _grid(levels: Iterable[str]) -> set[float]:
    out: set[float] = set()
    for lev in levels:
        for a in atoms(lev):
            p = parse_interval(a)
            if p is not None:
                out.update(p[1:])
    return out


def refine_map(cells: Iterable[Cell]) -> dict[Cell, Cell]:
    """Cells whose interval atoms are cut at the break points of every cell given (per status variable),
    mapped to their refined form (cells that do not change are left out). A complete-kinds level holding
    every kind over (-inf, inf] is the same units as no condition on the variable: the condition is
    dropped, so the two names are one cell."""
    cells = list(cells)
    breaks: dict[str, set[float]] = defaultdict(set)
    for c in cells:
        for var, lev in c.conds:
            if "@" in lev and is_status(var):
                for a in atoms(lev):
                    p = parse_interval(a)
                    if p is not None:
                        breaks[var].update(p[1:])
    if not breaks:
        return {}
    for v in breaks:
        if complete_kinds(v):
            breaks[v] |= {-math.inf, math.inf}
    grids = {v: sorted(b) for v, b in breaks.items()}
    # every atom of a complete-kinds variable on its grid (a level holding them all is every unit)
    everyone = {v: frozenset(full_partition(v, g)) for v, g in grids.items() if complete_kinds(v)}
    out: dict[Cell, Cell] = {}
    for c in cells:
        new, changed = [], False
        for var, lev in c.conds:
            if var in grids and "@" in lev:
                g = grids[var]
                parts = []
                for a in atoms(lev):
                    p = parse_interval(a)
                    if p is None:
                        parts.append(a)
                        continue
                    i, j = bisect.bisect_left(g, p[1]), bisect.bisect_left(g, p[2])
                    parts += [interval_atom(p[0], g[k], g[k + 1]) for k in range(i, j)]
                if var in everyone and everyone[var] <= set(parts):
                    # every kind over all time: every unit, the cell without the condition
                    changed = True
                    continue
                lev2 = status_level(*parts)
                changed |= lev2 != lev
                new.append((var, lev2))
            else:
                new.append((var, lev))
        if changed:
            out[c] = Cell(c.universe, tuple(new))
    return out


def implied_cells(row_cells: dict[Cell, float | None],
                  declared: Mapping[str, Iterable[str]] | None = None) -> dict[Cell, float | None]:
    """Counts implied within one row: for each status variable, the atoms of its levels that are not
    themselves a count of the row (non-events, not eligible), and the differences of nested levels (the
    deaths between two horizons), with their values when the row determines them (else None)."""
    out: dict[Cell, float | None] = {}
    by_var: dict[tuple, dict] = defaultdict(dict)
    for cell, v in row_cells.items():
        for var, lev in cell.conds:
            if is_status(var):
                rest = tuple(kv for kv in cell.conds if kv[0] != var)
                by_var[(var, rest)][lev] = v
    # a cell without the variable (same other conditions) is the root of the variable
    for (var, rest), levels in by_var.items():
        root = Cell(row_cells and next(iter(row_cells)).universe, rest)
        if root in row_cells:
            levels = dict(levels)
            levels[None] = row_cells[root]
        named = sorted(set().union(*(atoms(lev) for lev in levels if lev is not None), (declared or {}).get(var, ()))
                       - {REMAINDER})
        if complete_kinds(var):  # follow-up: the kinds over all time are every unit (no remainder)
            atom_list = full_partition(var, _grid(lev for lev in levels if lev is not None))
            stray = set(named) - set(atom_list)
            if stray:
                raise ValueError(f"{var}: atoms {sorted(stray)} are not on the variable's common interval grid")
        else:
            has_rest = None in levels or any(REMAINDER in atoms(lev) for lev in levels if lev is not None)
            atom_list = named + ([REMAINDER] if has_rest else [])
        if len(atom_list) < 2:
            continue
        sets = {lev: (frozenset(atom_list) if lev is None else atoms(lev)) for lev in levels}
        A = np.array([[1.0 if x in a else 0.0 for x in atom_list] for a in sets.values()])
        b = np.array([np.nan if v is None else v for v in levels.values()], dtype=float)
        ok = np.isfinite(b)
        present = set(sets.values())
        cands: list[frozenset] = [frozenset([a]) for a in atom_list]
        lv = list(present)
        for x in lv:  # differences of nested levels
            for y in lv:
                if x < y:
                    cands.append(y - x)
        for cand in dict.fromkeys(cands):
            if cand in present or not cand:
                continue
            val = None
            if ok.any():
                vec = np.array([1.0 if x in cand else 0.0 for x in atom_list])
                coef, *_ = np.linalg.lstsq(A[ok].T, vec, rcond=None)
                if np.allclose(A[ok].T @ coef, vec, atol=1e-9):
                    val = float(np.round(coef @ b[ok], 6))
            cell = Cell.make(root.universe, list(rest) + [(var, status_level(*cand))])
            if cell not in out or out[cell] is None:
                out[cell] = val
    return out


def is_missing_cell(cell: Cell) -> bool:
    """A count of missing values: a classifying level "missing", or a status condition including the atom
    "missing" or "missing:<what>" (a numerator not recorded; patients not analysed, missing or not
    eligible; a fracture missing from one of two registers)."""
    for var, lev in cell.conds:
        if is_status(var):
            if any(a == MISSING or a.startswith(MISSING + ":") for a in atoms(lev)):
                return True
        elif lev.split(SEP)[-1] == MISSING:
            return True
    return False


def _intersect(var: str, a: str, b: str) -> str:
    """Both conditions on one variable: the intersection (a deeper path, or the common atoms)."""
    if is_status(var):
        common = atoms(a) & atoms(b)
        if not common:
            raise ValueError(f"conditions {a!r} and {b!r} on {var} are disjoint: an empty cell")
        return status_level(*common)
    if within(a, b):
        return a
    if within(b, a):
        return b
    raise ValueError(f"conditions {a!r} and {b!r} on {var} are disjoint: an empty cell")


def _maximal_sets(varsets: list[frozenset]) -> tuple[list[frozenset], dict[frozenset, list[int]]]:
    """The maximal variable sets of `varsets` (sorted largest first: a set is maximal when no earlier
    maximal set holds it) and, per variable set, the indices of the maximal sets holding it. With one
    bitmask of maximal sets per variable (a set is held by m when every one of its variables is), so the
    cost is linear in the variable sets, not variable sets x maximal sets."""
    maximal: list[frozenset] = []
    idx: dict[str, int] = defaultdict(int)
    member: dict[frozenset, list[int]] = {}

    def holding(v) -> int:
        bits = (1 << len(maximal)) - 1
        for x in v:
            bits &= idx.get(x, 0)
            if not bits:
                break
        return bits

    for v in varsets:
        if not holding(v):
            i = len(maximal)
            maximal.append(v)
            for x in v:
                idx[x] |= 1 << i
    for v in varsets:
        member[v] = _bit_indices(holding(v))
    return maximal, member


def _bit_indices(bits: int) -> list[int]:
    """Indices of the set bits of `bits`, ascending: one step per set bit (lowest first), not one per bit
    position (a variable set is held by few of thousands of maximal sets)."""
    out = []
    while bits:
        low = bits & -bits
        out.append(low.bit_length() - 1)
        bits ^= low
    return out


def _commons(varsets, maximal: list[frozenset]) -> dict[frozenset, list[frozenset]]:
    """For each variable set v: the distinct intersections v & m with the maximal sets m that do not
    contain v, in the order of the first m giving each. Enumerates the proper subsets s of v and asks,
    with one bitmask of maximal sets per variable, whether some m holds all of s and nothing else of v
    (linear in the number of variable sets, not in variable sets x maximal sets)."""
    idx: dict[str, int] = defaultdict(int)
    for i, m in enumerate(maximal):
        for x in m:
            idx[x] |= 1 << i
    full = (1 << len(maximal)) - 1
    out = {}
    for v in varsets:
        vl = sorted(v)
        if len(vl) > 12:   # many variables: the direct way
            out[v] = list(dict.fromkeys(v & m for m in maximal if not v <= m))
            continue
        found = []
        for r in range(len(vl)):
            for sub in itertools.combinations(vl, r):
                bits = full
                for x in sub:
                    bits &= idx[x]
                    if not bits:
                        break
                if not bits:
                    continue
                for y in vl:
                    if y not in sub:
                        bits &= ~idx[y]
                if bits:
                    found.append(((bits & -bits).bit_length() - 1, frozenset(sub)))
        out[v] = [s for _, s in sorted(found, key=lambda t: t[0])]
    return out


@contextlib.contextmanager
def gc_paused():
    """The cyclic garbage collector paused for the duration (restored as it was): a national problem
    creates hundreds of thousands of cells, tuples and sets that all stay alive until it is solved, and
    each automatic collection would traverse them all again (cycles made meanwhile are collected later)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def within(path: str, node: str) -> bool:
    """True if level `path` lies within level `node` (equal, or a descendant)."""
    return path == node or path.startswith(node + SEP)


def ancestors(path: str) -> list[str]:
    """Proper ancestors of a level path, nearest first ("a > b > c" -> ["a > b", "a"])."""
    parts = path.split(SEP)
    return [SEP.join(parts[:k]) for k in range(len(parts) - 1, 0, -1)]


# --------------------------------------------------------------------------------------------------
# classifying variables: level paths from the shipped hierarchies (public knowledge)
# --------------------------------------------------------------------------------------------------
MISSING = "missing"


@lru_cache(maxsize=1)
def _geo():
    from hipfrac import geography

    hosp = geography.hospitals()
    areas = geography.referral_areas()
    munis = geography.municipalities()
    h = {r.hospital: (r.region, r.trust) for r in hosp.itertuples()}
    t = {r.trust: r.region for r in hosp.itertuples()}
    t.update({r.trust: r.region for r in areas.itertuples()})
    a = {r.referral_area: (r.region, r.trust) for r in areas.itertuples()}
    m = {str(r.municipality): r.referral_area for r in munis.itertuples()}
    return h, t, a, m


FRACTURE_GROUP = {"fn_undisplaced": "femoral_neck", "fn_displaced": "femoral_neck", "basocervical": "femoral_neck",
                  "troch_a1": "trochanteric", "troch_a2": "trochanteric", "troch_a3": "trochanteric",
                  "subtroch": "subtrochanteric"}

#: columns that are levels of one variable at different depths: column -> variable
DIM_VARIABLES = {
    "hospital": "hosp", "hosp_trust": "hosp", "hosp_region": "hosp",
    "referral_area": "res", "res_trust": "res", "res_region": "res", "municipality": "res",
    "age_band": "age", "age_band5": "age",
    "fracture_type": "fracture", "fracture_group": "fracture",
}


def _is_missing(value) -> bool:
    if value is None:
        return True
    try:
        return bool(value != value) or str(value) in ("<NA>", "NaN", "nan", "None", "")
    except (TypeError, ValueError):
        return False


def _age10(band5: str) -> str:
    s = str(band5)
    lo = s.split("-")[0].rstrip("+")
    try:
        k = int(lo)
    except ValueError:
        return s
    return "90+" if k >= 90 else f"{k // 10 * 10}-{k // 10 * 10 + 9}"


def dim_level(column: str, value) -> tuple[str, str]:
    """(variable, level path) of a classifying column's value.

    Hospitals lie in their trust and region, referral areas (and municipalities) in their trust and
    region of residence, 5-year age bands in their 10-year band, fracture types in their group;
    any other column is its own variable with flat levels. Missing values are the level "missing".
    """
    var = DIM_VARIABLES.get(column, column)
    if _is_missing(value) or str(value) == MISSING:
        return var, MISSING
    v = str(value)
    if var == "hosp":
        h, t, _, _ = _geo()
        if column == "hospital":
            region, trust = h.get(v, ("?", "?"))
            return var, SEP.join([region, trust, v])
        if column == "hosp_trust":
            return var, SEP.join([t.get(v, "?"), v])
        return var, v
    if var == "res":
        _, t, a, m = _geo()
        if column == "referral_area":
            region, trust = a.get(v, ("?", "?"))
            return var, SEP.join([region, trust, v])
        if column == "municipality":
            area = m.get(v.zfill(4), m.get(v, "?"))
            region, trust = a.get(area, ("?", "?"))
            return var, SEP.join([region, trust, area, v])
        if column == "res_trust":
            return var, SEP.join([t.get(v, "?"), v])
        return var, v
    if column == "age_band5":
        return var, SEP.join([_age10(v), v])
    if column == "fracture_type":
        return var, SEP.join([FRACTURE_GROUP.get(v, "?"), v])
    return var, v


# --------------------------------------------------------------------------------------------------
# problems
# --------------------------------------------------------------------------------------------------
@dataclass
class Entry:
    value: float | None
    status: str
    sources: set = field(default_factory=set)


@dataclass
class Solution:
    """Which cells are withheld, and what could not be protected.

    withheld: every cell not to publish (primary, secondary and forced).
    primary: candidates of 1..min_cell-1. secondary: withheld to protect them.
    exposed: sensitive cells still determined (or bounded to an interval narrower than min_cell) by cells
        that cannot be withheld here (visible elsewhere, or assumed known), with the reason.
    recoverable: withheld cells of 0 or >= min_cell that follow exactly from the published ones (withheld
        elsewhere or planned, where they protect nothing here).
    """

    withheld: set[Cell]
    primary: set[Cell]
    secondary: set[Cell]
    exposed: dict[Cell, str]
    systems: int = 0
    recoverable: set[Cell] = field(default_factory=set)  # withheld, not small, but following from the rest
    conflicts: set[Cell] = field(default_factory=set)  # assumed margins taken as not published (see Limits)


def _cell_key(c: Cell) -> tuple:
    """Sort key giving the order of Cell's own comparison (universe, then conditions) as one tuple
    comparison in C, instead of the dataclass __lt__ called for every pair."""
    return c.universe, c.conds


class Problem:
    """A set of cells with values and statuses, to protect together.

    add(cell, value, status): register a cell (a cell added twice keeps the stronger status: visible >
    forced > candidate > assumed > implied).
    """

    def __init__(self, min_cell: int = 5, *, intervals: bool = True, protect_missing: bool = True):
        self.min_cell = int(min_cell)
        self.intervals = intervals
        self.protect_missing = protect_missing
        self.cells: dict[Cell, Entry] = {}
        self.foreign: set[Cell] = set()  # cells only known from earlier outputs: interval-checked by the audit
        self.totals: set[Cell] = set()  # candidates that are margins of other candidates: published first

    def add(self, cell: Cell, value: float | None, status: str, source=None, own: bool = True) -> None:
        if own:
            self.foreign.discard(cell)
        elif cell not in self.cells:
            self.foreign.add(cell)
        e = self.cells.get(cell)
        v = None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)
        if e is None:
            self.cells[cell] = Entry(v, status, {source} if source is not None else set())
            return
        if _PRECEDENCE[status] < _PRECEDENCE[e.status]:
            e.status = status
        if e.value is None:
            e.value = v
        if source is not None:
            e.sources.add(source)

    def small(self, cell: Cell) -> bool:
        v = self.cells[cell].value
        if not self.protect_missing and is_missing_cell(cell):
            return False
        return v is not None and 1 <= v < self.min_cell and float(v).is_integer()

    def sensitive(self, cell: Cell) -> bool:
        """A count of 1..min_cell-1 (whatever its status), or an implied count of unknown value (counts of
        missing values only when protect_missing)."""
        e = self.cells[cell]
        if e.status == IMPLIED and e.value is None:
            return self.protect_missing or not is_missing_cell(cell)
        return self.small(cell)

    # --- systems -----------------------------------------------------------------------------------
    def systems(self) -> list[tuple[frozenset, list[Cell]]]:
        """(maximal variable set, its cells) per universe; a cell can belong to several systems."""
        out = []
        by_u: dict[str, list[Cell]] = defaultdict(list)
        for c in self.cells:
            by_u[c.universe].append(c)
        for u in sorted(by_u):
            cells = sorted(by_u[u], key=_cell_key)
            varsets = sorted({c.vars for c in cells}, key=lambda s: (-len(s), sorted(s)))
            maximal, member = _maximal_sets(varsets)
            # each distinct variable set once: the systems it belongs to (cells stay in sorted order)
            lists: list[list[Cell]] = [[] for _ in maximal]
            for c in cells:
                for i in member[c.vars]:
                    lists[i].append(c)
            out += list(zip(maximal, lists))
        return out

    def _solve_refined(self, mapping: dict[Cell, Cell], max_rounds: int) -> Solution:
        """Solve with every interval atom cut at the common break points (cells naming the same units
        become one), and map the solution back to the cells as given."""
        sub = Problem(self.min_cell, intervals=self.intervals, protect_missing=self.protect_missing)
        back: dict[Cell, list[Cell]] = defaultdict(list)
        for c, e in self.cells.items():
            r = mapping.get(c, c)
            back[r].append(c)
            sub.add(r, e.value, e.status, own=c not in self.foreign)
        sub.totals = {mapping.get(c, c) for c in self.totals}
        sub._interval_differences()
        sol = sub._solve_grid(max_rounds)

        def up(cells):
            return {o for r in cells for o in back.get(r, ())}

        # a count derived here (the deaths between two outputs' horizons) is reported as itself
        exposed = {o: why for r, why in sol.exposed.items() for o in back.get(r, (r,))}
        return Solution(up(sol.withheld), up(sol.primary), up(sol.secondary), exposed, sol.systems,
                        up(sol.recoverable), up(sol.conflicts))

    def _projections(self) -> None:
        """Add, for every pair of maximal variable sets of a universe, the projection of each cell of one
        onto the common variables of the other (assumed known: see the module doc)."""
        by_u: dict[str, list[Cell]] = defaultdict(list)
        for c in list(self.cells):
            by_u[c.universe].append(c)
        for u, cells in by_u.items():
            varsets = sorted({c.vars for c in cells}, key=lambda s: (-len(s), sorted(s)))
            maximal, _ = _maximal_sets(varsets)
            if len(maximal) < 2:
                continue
            # per distinct variable set: the common variables with each maximal set it is not within
            commons = _commons(varsets, maximal)
            seen: set[tuple] = set()
            for c in cells:
                if self.cells[c].status == IMPLIED:
                    continue
                for common in commons[c.vars]:
                    key = tuple(kv for kv in c.conds if kv[0] in common)
                    if key in seen:
                        continue
                    seen.add(key)
                    proj = Cell(u, key)
                    if proj not in self.cells:
                        self.add(proj, None, ASSUMED)

    def _interval_differences(self) -> None:
        """Add what interval cells imply together (cells on a common grid): deaths by 90 days (one row or
        output) minus deaths by 30 days (another) are the deaths between the horizons, protected when
        small."""
        groups: dict[tuple, dict[Cell, float | None]] = defaultdict(dict)
        for c, e in self.cells.items():
            if any("@" in lev and is_status(var) for var, lev in c.conds):
                for var, _lev in c.conds:
                    if is_status(var):
                        rest = tuple(kv for kv in c.conds if kv[0] != var)
                        groups[(c.universe, var, rest)][c] = e.value
                        root = Cell(c.universe, rest)
                        if root in self.cells:
                            groups[(c.universe, var, rest)][root] = self.cells[root].value
        for cells in groups.values():
            if len(cells) > 1:
                for c, v in implied_cells(cells).items():
                    if v is not None and c not in self.cells:
                        self.add(c, v, IMPLIED)

    # --- solving -----------------------------------------------------------------------------------
    def solve(self, max_rounds: int = 20) -> Solution:
        """Protect the problem's cells: interval atoms are cut at the common break points first (cells
        naming the same units become one) and their differences across rows and outputs added."""
        with gc_paused():
            return self._solve(max_rounds)

    def _solve(self, max_rounds: int) -> Solution:
        mapping = refine_map(self.cells)
        if mapping:
            return self._solve_refined(mapping, max_rounds)
        self._interval_differences()
        return self._solve_grid(max_rounds)

    def _solve_grid(self, max_rounds: int) -> Solution:
        """Solve cells already on a common interval grid."""
        self._projections()
        withheld: set[Cell] = {c for c, e in self.cells.items() if e.status == FORCED}
        primary = {c for c, e in self.cells.items() if e.status == CANDIDATE and self.small(c)}
        withheld |= primary
        exposed: dict[Cell, str] = {}
        # statuses and values do not change while solving: which cells are sensitive is decided once here,
        # not once per system holding the cell (the national totals lie in every system)
        sensitive = {c for c in self.cells if self.sensitive(c)}
        systems = [System(self, m, cells, sensitive) for m, cells in self.systems()]
        # withholding more never reveals anything, so each system is protected once, and again only when
        # another system withheld one of its cells (which must then stay hidden here too)
        member: dict[Cell, list[int]] | None = None  # systems of each cell, made when a first cell is added
        queue = deque(range(len(systems)))
        queued = set(queue)
        rounds = 0
        while queue and rounds < max_rounds * max(1, len(systems)):
            rounds += 1
            k = queue.popleft()
            queued.discard(k)
            added = systems[k].protect(withheld, exposed)
            new = added - withheld
            withheld |= added
            if new and member is None:
                member = defaultdict(list)
                for i, sys_ in enumerate(systems):
                    for c in sys_.cells:
                        member[c].append(i)
            for c in new:
                for j in member[c]:  # this system too: a cell withheld for an interval must stay hidden
                    if j not in queued:
                        queue.append(j)
                        queued.add(j)
        # the interval test changes nothing already exact; exact protection is rechecked at the end
        recoverable: set[Cell] = set()
        hidden = withheld | {c for c in sensitive if self.cells[c].status == IMPLIED}
        for s in systems:
            for c in s.determined(withheld, hidden):
                if self.sensitive(c):
                    exposed.setdefault(c, "determined by cells that cannot be withheld here")
                else:
                    recoverable.add(c)
        secondary = withheld - primary - {c for c, e in self.cells.items() if e.status == FORCED}
        conflicts = set().union(*(s.conflicts for s in systems)) if systems else set()
        return Solution(withheld, primary, secondary, exposed, len(systems), recoverable, conflicts)


class System:
    """One maximal variable set of one universe: inner cells, model matrix, protection."""

    def __init__(self, problem: Problem, varset: frozenset, cells: list[Cell], sensitive: set[Cell] | None = None):
        self.p = problem
        self._sens = sensitive  # the problem's sensitive cells when known (else asked per cell)
        self.vars = sorted(varset)
        self.cells = cells
        self._wide: set[Cell] = set()
        self.conflicts: set[Cell] = set()  # assumed margins that would reveal a sensitive cell
        self._built = False

    # the inner cells and index tables are built when first needed: most systems of a run (those of
    # earlier outputs, one per at-risk time of a curve) hold no sensitive and no withheld cell, and are
    # then never reduced to inner cells
    @property
    def leaves(self) -> dict[str, list[str]]:
        if not self._built:
            self._build()
        return self._leaves

    @property
    def n_inner(self) -> int:
        if not self._built:
            self._build()
        return self._n_inner

    def _build(self) -> None:
        self._built = True
        leaves: dict[str, list[str]] = {}
        for var in self.vars:
            levels = sorted({c.get(var) for c in self.cells if c.get(var) is not None})
            if complete_kinds(var):
                leaves[var] = full_partition(var, _grid(levels))
            elif is_status(var):
                named = sorted(set().union(*(atoms(lev) for lev in levels)) - {REMAINDER}) if levels else []
                leaves[var] = named + [REMAINDER]
            else:
                used = set(levels)
                leaves[var] = sorted(lev for lev in used if not any(o != lev and within(o, lev) for o in used))
                # a level used only at a coarser depth than others of its branch stays a leaf
        self._leaves = leaves
        dims = [len(leaves[v]) for v in self.vars]
        self._n_inner = int(np.prod(dims)) if dims else 1
        self._index: dict[Cell, np.ndarray] = {}
        # per var: level -> indices of leaves within it
        self._within: dict[str, dict[str, np.ndarray]] = {}
        for var in self.vars:
            lv = leaves[var]
            cache = {}
            for c in self.cells:
                lev = c.get(var)
                if lev is None or lev in cache:
                    continue
                if is_status(var):
                    a = atoms(lev)
                    cache[lev] = np.array([i for i, x in enumerate(lv) if x in a], dtype=np.int64)
                else:
                    cache[lev] = np.array([i for i, x in enumerate(lv) if within(x, lev) or within(lev, x)],
                                          dtype=np.int64)
            self._within[var] = cache
        self._strides = []
        s = 1
        for d in reversed(dims):
            self._strides.insert(0, s)
            s *= d

    def support(self, cell: Cell) -> np.ndarray:
        """Indices of the inner cells a cell is the sum of."""
        if not self._built:
            self._build()
        got = self._index.get(cell)
        if got is not None:
            return got
        idx = np.zeros(1, dtype=np.int64)
        for var, stride, lv in zip(self.vars, self._strides, (self.leaves[v] for v in self.vars)):
            lev = cell.get(var)
            sel = np.arange(len(lv), dtype=np.int64) if lev is None else self._within[var][lev]
            idx = (idx[:, None] + (sel * stride)[None, :]).ravel()
        self._index[cell] = idx
        return idx

    def vec(self, cell: Cell) -> dict[int, float]:
        """The cell as a sparse 0/1 vector over inner cells."""
        return dict.fromkeys(self.support(cell).tolist(), 1.0)

    def row(self, cell: Cell) -> np.ndarray:
        r = np.zeros(self.n_inner)
        r[self.support(cell)] = 1.0
        return r

    # --- exact protection --------------------------------------------------------------------------
    def _order(self, withheld: set[Cell]):
        """Published-first order: cells published elsewhere (hard), margins assumed published elsewhere (soft,
        coarsest first), then candidates (zeros, then largest value first)."""
        hard, soft, cands = [], [], []
        for c in self.cells:
            e = self.p.cells[c]
            if c in withheld or e.status == IMPLIED:
                continue
            if e.status == VISIBLE:
                hard.append(c)
            elif e.status == ASSUMED:
                soft.append(c)
            else:
                cands.append(c)
        soft.sort(key=lambda c: (-len(self.support(c)), c))
        tot = self.p.totals
        cands.sort(key=lambda c: (c not in tot, -len(self.support(c)) if c in tot else 0,
                                  self.p.cells[c].value != 0, -(self.p.cells[c].value or 0), c))
        return sorted(hard), soft, cands

    def _is_sensitive(self, c: Cell) -> bool:
        return c in self._sens if self._sens is not None else self.p.sensitive(c)

    def _sensitive(self) -> list[Cell]:
        if self._sens is not None:
            return [c for c in self.cells if c in self._sens]
        return [c for c in self.cells if self.p.sensitive(c)]

    def protect(self, withheld: set[Cell], exposed: dict) -> set[Cell]:
        """Cells to withhold (besides `withheld`) so that no sensitive cell of this system is determined
        exactly or bounded narrowly by the published ones."""
        sens = self._sensitive()
        if not sens:
            return set()
        # no withheld cell may follow exactly from what is published (small or not: a complement that can
        # be recovered protects nothing and misleads); small ones must also keep a wide interval
        hidden = [c for c in self.cells if c in withheld and c not in set(sens)]
        added = self._exact(withheld, sens + hidden, exposed)
        if self.p.intervals:
            own = [c for c in sens if c not in self.p.foreign]
            if own:
                added |= self._intervals(withheld | added, own, exposed)
        return added

    def _exact(self, withheld: set[Cell], sens: list[Cell], exposed: dict) -> set[Cell]:
        hard, soft, cands = self._order(withheld)
        basis = _SparseBasis()
        added: set[Cell] = set()
        for c in hard:
            basis.add(self.vec(c))
        # residuals of the sensitive cells against what is published
        res = {s: basis.reduce(self.vec(s)) for s in sens}
        for s, r in res.items():
            if not r and self.p.sensitive(s):
                exposed.setdefault(s, "determined by cells published in earlier outputs")
        alive = {s: r for s, r in res.items() if r}

        def reveals(r, j) -> bool:
            rj = r[j]
            for rs in alive.values():
                a = rs.get(j)
                if a is None or len(rs) != len(r):
                    continue
                f = a / rj
                if all(abs(rs.get(k, 0.0) - f * v) <= TOL for k, v in r.items()):
                    return True
            return False

        def publish(r, j) -> None:
            row = basis.insert(r, j)
            for rs in alive.values():
                a = rs.get(j)
                if a is not None:
                    _axpy(rs, -a, row)

        # a margin assumed published elsewhere that would reveal a sensitive cell is not taken as known
        # here (it must not be published as it is: the run-level audit checks what really is)
        for c in soft:
            r = basis.reduce(self.vec(c))
            if not r:
                continue
            j = basis.pivot_for(r)
            if reveals(r, j):
                self.conflicts.add(c)
                continue
            publish(r, j)
        for c in cands:
            r = basis.reduce(self.vec(c))
            if not r:
                continue  # already implied by what is published: publishing adds nothing
            j = basis.pivot_for(r)
            if reveals(r, j):
                added.add(c)  # would reveal a sensitive cell: withhold it, and keep it hidden too
                alive[c] = r
                continue
            publish(r, j)
        return added

    def determined(self, withheld: set[Cell], hidden: set[Cell] | None = None) -> list[Cell]:
        """Withheld or implied sensitive cells of this system whose value follows exactly from the
        published ones. hidden: those cells of the whole problem when known (withheld | implied sensitive)."""
        if hidden is not None:
            sens = [c for c in self.cells if c in hidden]
        else:
            sens = [c for c in self.cells if c in withheld
                    or (self._is_sensitive(c) and self.p.cells[c].status == IMPLIED)]
        if not sens:
            return []
        basis = _SparseBasis()
        for c in self.cells:
            if c not in withheld and self.p.cells[c].status != IMPLIED and c not in self.conflicts:
                basis.add(self.vec(c))
        return [c for c in sens if not basis.reduce(self.vec(c))]

    # --- interval protection -----------------------------------------------------------------------
    def _published(self, withheld: set[Cell]) -> list[Cell]:
        return [c for c in self.cells if c not in withheld and self.p.cells[c].status != IMPLIED
                and self.p.cells[c].value is not None and c not in self.conflicts]

    def polytope(self, published: list[Cell]) -> _Polytope:
        """The attacker's feasible set: inner cells >= 0 that add up to the published values."""
        return _Polytope(self.n_inner, [self.support(c) for c in published],
                         [self.p.cells[c].value for c in published])

    def bounds(self, cell: Cell, published: list[Cell]) -> tuple[int, int] | None:
        """[min, max] of a cell over non-negative inner cells consistent with the published cells (None when
        unbounded above)."""
        if not published:
            return None
        b = self.polytope(published).bounds(self.support(cell))
        return None if b is None else (b[0], b[1])

    def _intervals(self, withheld: set[Cell], sens: list[Cell], exposed: dict) -> set[Cell]:
        """Withhold more until every sensitive cell keeps an interval of at least min_cell (LP bounds over
        the inner cells, >= 0, with the published cells of known value as equalities)."""
        added: set[Cell] = set()
        todo = [c for c in sens if c not in exposed and c not in self._wide]
        if not todo:
            return added
        pub = self._published(withheld)
        if not pub:
            return added
        poly = self.polytope(pub)
        row_of = {c: k for k, c in enumerate(pub)}
        by_inner: dict[int, list[Cell]] = defaultdict(list)
        for c in pub:
            if self.p.cells[c].status == CANDIDATE:
                for j in self.support(c).tolist():
                    by_inner[j].append(c)
        for s in todo:
            for _ in range(len(pub) + 1):
                v = self.p.cells[s].value
                try:
                    b = poly.bounds(self.support(s), None if v is None else v + self.p.min_cell)
                except RuntimeError as exc:  # inconsistent values of one cell from two outputs
                    exposed.setdefault(s, f"interval not computable: {exc}")
                    break
                if b is None or b[1] - b[0] >= self.p.min_cell:
                    self._wide.add(s)  # withholding more only widens it: never checked again
                    break
                # withhold the cheapest published candidate inside the totals that bound s (the rows with
                # non-zero duals): preferably the smallest value >= min_cell
                near = set(self.support(s).tolist())
                for k in b[2]:
                    near.update(self.support(pub[k]).tolist())
                cand = sorted({c for j in near for c in by_inner.get(j, ()) if c not in added})
                if not cand:
                    # last resort: a binding margin that is only assumed published is not taken as known
                    soft = [pub[k] for k in b[2] if self.p.cells[pub[k]].status == ASSUMED
                            and pub[k] not in self.conflicts]
                    if soft:
                        pick = min(soft, key=lambda c: (len(self.support(c)), c))
                        self.conflicts.add(pick)
                        poly.drop(row_of[pick])
                        continue
                    exposed.setdefault(s, f"bounded to [{b[0]}, {b[1]}] by cells published in earlier outputs")
                    break
                v = {c: self.p.cells[c].value for c in cand}
                pick = min(cand, key=lambda c: (v[c] < self.p.min_cell, v[c], c))
                added.add(pick)
                poly.drop(row_of[pick])
        return added


_BANNER_DONE = False


def _highs():
    """A HiGHS instance; the first of a process prints a copyright banner on the C-level stdout, which
    would land in a notebook's output: it is sent to /dev/null."""
    global _BANNER_DONE
    import highspy

    if _BANNER_DONE:
        return highspy.Highs()
    import os
    import sys

    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            h = highspy.Highs()
    finally:
        os.dup2(saved, 1)
        os.close(saved)
    _BANNER_DONE = True
    return h


class _Polytope:
    """{x >= 0 : A x = b} as a HiGHS model, re-solved with warm starts for one objective after another.
    Inner cells that no published cell covers are left out: a sum containing one is unbounded above."""

    def __init__(self, n: int, rows: list[np.ndarray], b: list[float]):
        import highspy

        self.hs = highspy
        used = sorted({j for r in rows for j in np.asarray(r).tolist()})
        self.cols = {j: k for k, j in enumerate(used)}
        m = len(used)
        self.m = m
        h = _highs()
        h.setOptionValue("output_flag", False)
        # warm starts: the basis of one objective is primal feasible for the next
        h.setOptionValue("presolve", "off")
        h.setOptionValue("simplex_strategy", 4)
        self.h = h
        if not m:
            return
        lp = highspy.HighsLp()
        lp.num_col_ = m
        lp.num_row_ = len(rows)
        lp.col_cost_ = np.zeros(m)
        lp.col_lower_ = np.zeros(m)
        lp.col_upper_ = np.full(m, highspy.kHighsInf)
        lp.row_lower_ = np.asarray(b, dtype=float)
        lp.row_upper_ = np.asarray(b, dtype=float)
        per_col: list[list[int]] = [[] for _ in range(m)]
        for r, idx in enumerate(rows):
            for j in np.asarray(idx).tolist():
                per_col[self.cols[j]].append(r)
        start = np.zeros(m + 1, dtype=np.int32)
        start[1:] = np.cumsum([len(c) for c in per_col])
        lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
        lp.a_matrix_.start_ = start
        lp.a_matrix_.index_ = np.array([r for c in per_col for r in c], dtype=np.int32)
        lp.a_matrix_.value_ = np.ones(int(start[-1]))
        h.passModel(lp)
        self._all = np.arange(m, dtype=np.int32)

    def drop(self, row: int) -> None:
        """Forget one published cell (it is withheld now)."""
        self.h.changeRowBounds(int(row), -self.hs.kHighsInf, self.hs.kHighsInf)

    def _solve(self, cols: np.ndarray, sense) -> tuple[float | None, np.ndarray]:
        cost = np.zeros(self.m)
        cost[cols] = 1.0
        self.h.changeColsCost(self.m, self._all, cost)
        self.h.changeObjectiveSense(sense)
        self.h.run()
        st = self.h.getModelStatus()
        if st == self.hs.HighsModelStatus.kUnbounded:
            return None, np.zeros(0)
        if st != self.hs.HighsModelStatus.kOptimal:
            raise RuntimeError(f"interval programme: HiGHS status {self.h.modelStatusToString(st)}")
        return self.h.getInfo().objective_function_value, np.asarray(self.h.getSolution().row_dual)

    def bounds(self, support: np.ndarray, wide_above: float | None = None) -> tuple[int, int, list[int]] | None:
        """(min, max, binding rows) of the sum of `support`; None when unbounded above. wide_above: when
        the maximum reaches it the interval is wide whatever the minimum (the true value lies in it), and
        (0, max, []) is returned without solving for the minimum."""
        cols = []
        for j in np.asarray(support).tolist():
            k = self.cols.get(j)
            if k is None:
                return None  # an inner cell no published cell constrains: unbounded above
            cols.append(k)
        cols = np.array(cols, dtype=np.int64)
        hi, d2 = self._solve(cols, self.hs.ObjSense.kMaximize)
        if hi is None:
            return None
        if wide_above is not None and hi >= wide_above - 1e-6:
            return 0, math.floor(hi + 1e-6), []
        lo, d1 = self._solve(cols, self.hs.ObjSense.kMinimize)
        binding = np.flatnonzero((np.abs(d1) > 1e-9) | (np.abs(d2) > 1e-9)).tolist()
        return math.ceil(lo - 1e-6), math.floor(hi + 1e-6), binding


def _axpy(x: dict, a: float, y: dict) -> None:
    """x += a * y (sparse, in place; entries that vanish are removed)."""
    for k, v in y.items():
        nv = x.get(k, 0.0) + a * v
        if abs(nv) <= TOL:
            x.pop(k, None)
        else:
            x[k] = nv


class _SparseBasis:
    """Reduced row echelon basis over sparse rows (dict column -> value): every pivot column is zero in every
    other row, so reducing a vector is one pass over the pivots it touches. The pivot of a new row is its
    entry in the column used by the fewest rows (little fill-in; 0/1 hierarchies stay 0/+-1)."""

    def __init__(self):
        self.rows: dict[int, dict[int, float]] = {}  # pivot column -> row
        self.colrows: dict[int, set[int]] = defaultdict(set)  # column -> pivots of rows using it

    def reduce(self, x: dict[int, float]) -> dict[int, float]:
        x = dict(x)
        for p in [k for k in x if k in self.rows]:
            a = x.get(p)
            if a is not None:
                _axpy(x, -a, self.rows[p])
        return x

    def pivot_for(self, r: dict[int, float]) -> int:
        return min(r, key=lambda k: (len(self.colrows.get(k, ())), -abs(r[k]), k))

    def insert(self, r: dict[int, float], j: int) -> dict[int, float]:
        """Add a reduced non-zero row with pivot column j; returns the stored (normalised) row."""
        a = r[j]
        row = {k: v / a for k, v in r.items()}
        for p in list(self.colrows.get(j, ())):
            q = self.rows[p]
            b = q.get(j)
            if b is None:
                continue
            before = set(q)
            _axpy(q, -b, row)
            after = set(q)
            for k in before - after:
                self.colrows[k].discard(p)
            for k in after - before:
                self.colrows[k].add(p)
        self.rows[j] = row
        for k in row:
            self.colrows[k].add(j)
        return row

    def add(self, x: dict[int, float]) -> bool:
        r = self.reduce(x)
        if not r:
            return False
        self.insert(r, self.pivot_for(r))
        return True


class _Basis:
    """Reduced row echelon basis of a growing set of rows (float, partial pivoting on the largest entry)."""

    def __init__(self, n: int):
        self.V = np.zeros((0, n))
        self.piv: list[int] = []

    def reduce(self, x: np.ndarray) -> np.ndarray:
        return x - x[self.piv] @ self.V if self.piv else x

    def add(self, x: np.ndarray) -> bool:
        r = self.reduce(x)
        if np.max(np.abs(r), initial=0.0) <= TOL:
            return False
        j = int(np.argmax(np.abs(r)))
        r = r / r[j]
        if self.piv:
            self.V = self.V - np.outer(self.V[:, j], r)
        self.V = np.vstack([self.V, r])
        self.piv.append(j)
        return True

    def in_span(self, x: np.ndarray) -> bool:
        return bool(np.max(np.abs(self.reduce(x)), initial=0.0) <= TOL)


def product_levels(levels: Mapping[str, Iterable[str]]) -> list[dict]:
    """Every combination of the given levels per variable (a helper for tests)."""
    keys = list(levels)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(list(levels[k]) for k in keys))]
