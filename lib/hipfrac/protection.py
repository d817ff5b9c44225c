"""Protect one result (a table, the data behind a figure) against everything published before it.

    prot = protect(result, min_cell=5, registry=registry)     # registry: cells published so far (a run)
    prot.frame, prot.mask                                      # safe copy, withheld cells
    registry.record(prot)                                      # what an attacker now knows

A result carries its own disclosure metadata (:mod:`hipfrac.results`). From it every count of every row
becomes a cell (:mod:`hipfrac.sdc`); then, for the protection of this result:

* the result's counts are *candidates*; counts of 1..min_cell-1 are withheld (primary suppression);
* every coarser margin of every count (a hospital's trust, region and the country; the period instead of
  a year; the whole population instead of "eligible") is *assumed* published somewhere in the run, so the
  complements chosen here hold whatever else is published;
* counts implied by a row (non-events = n - events, "not eligible" = the unit's population - eligible, ...)
  must not be determined when they are 1..min_cell-1 (attribute disclosure: "all but 2 operated");
* an absent combination of a complete table's dimensions is a known zero;
* cells published or withheld by earlier outputs of the run are fixed: a new output never reveals an
  earlier withheld cell, it withholds more of itself instead;
* cells the run-level audit planned to withhold (``forced``) are withheld.

Derived columns of a withheld count (proportions, CIs, levels, flags) are withheld with it.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from hipfrac import results, sdc
from hipfrac.disclosure import DisclosureError
from hipfrac.sdc import ASSUMED, CANDIDATE, FORCED, IMPLIED, VISIBLE, Cell

MAX_ZERO_COMBOS = 20000

__all__ = ["DisclosureError", "Protected", "Registry", "protect", "infer"]


@dataclass
class Protected:
    """A protected result.

    frame: published copy (withheld cells missing, counts as nullable integers, private columns dropped).
    mask: True where a published cell is withheld (counts and derived columns).
    primary / secondary / derived: numbers of cells withheld for each reason.
    cells: (cell, value, status) of every count of the result: "visible", "withheld", "implied" (never
        published), "known" (private counts an attacker knows anyway).
    exposed: descriptions of sensitive cells that could not be protected here.
    roles: column -> role (count, dimension, derived, label, statistic).
    """

    frame: pd.DataFrame
    mask: pd.DataFrame
    primary: int = 0
    secondary: int = 0
    derived: int = 0
    forced: int = 0
    cells: list = field(default_factory=list)
    exposed: list[str] = field(default_factory=list)
    roles: dict = field(default_factory=dict)
    positions: dict = field(default_factory=dict)
    primary_at: list = field(default_factory=list)
    secondary_at: list = field(default_factory=list)

    def summary(self) -> dict:
        return {"primary": self.primary, "secondary": self.secondary, "derived": self.derived,
                "forced": self.forced}


class Registry:
    """Cells already published (or withheld) in a run: what an attacker knows, and what must stay hidden."""

    def __init__(self):
        self.cells: dict[Cell, tuple[float | None, str]] = {}

    def record(self, prot: Protected) -> None:
        for cell, value, status in prot.cells:
            old = self.cells.get(cell)
            if old is None or _rank(status) < _rank(old[1]):
                self.cells[cell] = (value, status)

    def relevant(self, universe: str, varsets: list[frozenset]) -> list[tuple[Cell, float | None, str]]:
        """Registered cells of `universe` that share a system with any of `varsets` (their variables are a
        subset or a superset of one)."""
        if any(not m for m in varsets):  # the empty set is within every cell's variables
            return [(c, v, st) for c, (v, st) in self.cells.items() if c.universe == universe]
        out = []
        for c, (v, st) in self.cells.items():
            if c.universe != universe:
                continue
            cv = c.vars
            if any(cv <= m or m <= cv for m in varsets):
                out.append((c, v, st))
        return out


# status in a problem of a cell registered by an earlier output
_REGISTERED = {"visible": VISIBLE, "withheld": FORCED, "known": ASSUMED, "implied": IMPLIED}


def _rank(status: str) -> int:
    return {"visible": 0, "withheld": 1, "known": 2, "implied": 3}[status]


# --------------------------------------------------------------------------------------------------
# plain frames: metadata by inference
# --------------------------------------------------------------------------------------------------
def infer(frame: pd.DataFrame, counts=None, derived=None, row_totals="auto", dims=None,
          universe: str = "table", by=None) -> pd.DataFrame:
    """Annotate a plain frame (no metadata) conservatively: count columns by name (or as given), the text
    and integer non-count columns as dimensions, every other number derived from every count of its row;
    its universe is its own (not linked to the rest of the run). row_totals: {total: [parts]} of counts
    adding up within a row ("auto": a count column equal to the sum of the others in every row)."""
    from hipfrac import disclosure

    # columns named with a leading "_" are private counts of a result whose metadata was lost (a merge):
    # never published
    hidden = [c for c in frame.columns if str(c).startswith("_")]
    frame = frame.drop(columns=hidden)
    cnt = disclosure.detect_counts(frame) if counts is None else [c for c in counts if c not in hidden]
    missing = [c for c in cnt if c not in frame.columns]
    if missing:
        raise KeyError(f"count column(s) {missing} not in the table (columns: {list(frame.columns)})")
    if derived is not None:
        bad = {k: [d for d in v if d not in frame.columns] for k, v in derived.items()}
        bad = {k: v for k, v in bad.items() if v or k not in frame.columns}
        if bad:
            raise KeyError(f"derived columns not in the table: {bad} (columns: {list(frame.columns)})")
    if dims is None:
        dims = disclosure.dimension_columns(frame, cnt)
        derived_cols = {d for v in (derived or {}).values() for d in v}
        dims = [d for d in dims if d not in derived_cols]
        # subtotals published elsewhere (by=): their columns classify rows too (a region above hospitals)
        extra = [b for grp in (by or []) for b in ([grp] if isinstance(grp, str) else grp)]
        dims = dims + [b for b in dict.fromkeys(extra) if b in frame.columns and b not in dims]
        # the classifying columns must tell every row apart (else two counts would be taken for one):
        # add the other non-count columns (e.g. a horizon in days stored as a float), then the row number
        if len(frame) and frame.duplicated(subset=dims).any() if dims else len(frame) > 1:
            for c in frame.columns:
                if c in cnt or c in dims or c in derived_cols:
                    continue
                dims.append(c)
                if not frame.duplicated(subset=dims).any():
                    break
            if frame.duplicated(subset=dims).any():
                frame = frame.assign(_row=np.arange(len(frame)))
                dims.append("_row")
    vals = pd.DataFrame({c: pd.to_numeric(frame[c], errors="coerce") for c in cnt})
    rt = {}
    if row_totals == "auto":
        rt = _auto_row_totals(vals, disclosure.total_rows(frame))
    elif row_totals:
        rt = dict(row_totals)
    # each count column its own quantity (atom of #count); parts of a row total lie within the total, and
    # the parts add up to it (a known zero remainder: the reader sees the sum)
    out = frame.copy()
    conds: dict[str, dict] = {c: {"#count": c} for c in cnt}
    private = []
    for k, (total, parts) in enumerate(rt.items()):
        var = f"#parts{k}" if len(rt) > 1 else "#parts"
        for p in parts:
            conds[p] = {"#count": total, var: p}
        rest = f"_rest{k}"
        out[rest] = pd.to_numeric(out[total], errors="coerce") - sum(pd.to_numeric(out[p], errors="coerce")
                                                                     for p in parts)
        conds[rest] = {"#count": total, var: sdc.REMAINDER}
        private.append(rest)
    der = {}
    for c in frame.columns:
        if c in cnt or c in dims:
            continue
        frame[c]
        if derived is not None:  # as given: other columns are kept
            srcs = sorted({k for k, v in derived.items() if c in v})
            if srcs:
                der[c] = srcs
            continue
        der[c] = "*"
    labels = [c for c in frame.columns if c not in cnt and c not in dims and c not in der]
    return results.annotate(out, counts=conds, dims=dims, derived=der, labels=labels, universe=universe,
                            population_conds=[], private=private, known=private)


def _auto_row_totals(vals: pd.DataFrame, total_rows) -> dict:
    cols = list(vals.columns)
    v = vals.drop(index=[vals.index[r] for r in total_rows if r < len(vals)])
    if len(cols) < 3 or v.isna().any().any() or len(v) == 0:
        return {}
    for t in cols:
        parts = [c for c in cols if c != t]
        if np.allclose(v[parts].sum(axis=1).to_numpy(), v[t].to_numpy()):
            return {t: parts}
    return {}


# --------------------------------------------------------------------------------------------------
# protection
# --------------------------------------------------------------------------------------------------
def _values(frame: pd.DataFrame, cols) -> dict[str, np.ndarray]:
    out = {}
    for c in cols:
        s = frame[c]
        if pd.api.types.is_bool_dtype(s):
            s = s.astype(float)
        out[c] = pd.to_numeric(s, errors="coerce").astype(float).to_numpy()
    return out


def _coarsenings(cell: Cell):
    """Every coarser cell: per condition, the same level, an ancestor (classifying variables), or none."""
    opts = []
    for var, lev in cell.conds:
        o = [(var, lev)]
        if not sdc.is_status(var):
            o += [(var, a) for a in sdc.ancestors(lev)]
        o.append(None)
        opts.append(o)
    for combo in itertools.product(*opts):
        conds = tuple(c for c in combo if c is not None)
        if conds != cell.conds:
            yield Cell(cell.universe, conds)


def _implied(row_cells: dict[Cell, float], declared=None) -> dict[Cell, float | None]:
    """Counts implied within one row (see hipfrac.sdc.implied_cells)."""
    return sdc.implied_cells(row_cells, declared)


def protect(frame: pd.DataFrame, min_cell: int, *, registry: Registry | None = None, forced=frozenset(),
            strict: bool = False, name: str = "result", intervals: bool = True,
            protect_missing: bool = True) -> Protected:
    """Withhold the small counts of a result, their complements and what is derived from them, so that
    nothing withheld can be recovered from this result together with everything in `registry`.

    frame: a result (see hipfrac.results); a plain frame is protected by inference (refused when strict).
    forced: cells the run-level audit planned to withhold.
    Raises DisclosureError in strict mode when the frame has no metadata, a column has no role, or a
    small count could not be protected.
    """
    with sdc.gc_paused():
        return _protect(frame, min_cell, registry=registry, forced=forced, strict=strict, name=name,
                        intervals=intervals, protect_missing=protect_missing)


def _protect(frame: pd.DataFrame, min_cell: int, *, registry: Registry | None, forced, strict: bool, name: str,
             intervals: bool, protect_missing: bool) -> Protected:
    if not results.is_result(frame):
        if strict:
            raise DisclosureError(f"{name}: the frame carries no disclosure metadata; export the result of a "
                                  "hipfrac analysis function (or annotate it with hipfrac.results.annotate)")
        frame = infer(frame, universe=f"table:{name}")
    meta = results.Meta(frame)
    if strict and meta.unassigned:
        raise DisclosureError(f"{name}: column(s) {meta.unassigned} have no disclosure role (count, dimension, "
                              "derived, label or statistic) in the result's metadata")
    n = len(frame)
    frame = frame.reset_index(drop=True)
    meta = results.Meta(frame, frame.attrs[results.KEY])
    # a column without a role that looks like a count (whole numbers, some of them small) is protected as
    # one (e.g. a count column renamed or pivoted after the result was built)
    for c in meta.unassigned:
        v = pd.to_numeric(frame[c], errors="coerce") if not pd.api.types.is_bool_dtype(frame[c]) else None
        if v is not None and v.notna().any() and (v.dropna() == np.floor(v.dropna())).all() \
                and ((v >= 1) & (v < min_cell)).any():
            meta.counts[c] = []
            meta.derived.pop(c, None)
            meta.published_counts.append(c)
    cols = list(meta.counts)
    vals = _values(frame, cols)
    cellmap = results.row_cells(meta)
    # interval atoms (deaths by several horizons, at risk on the days of a table) cut at this result's
    # break points, so that a row's implied counts (deaths between two horizons) are cells too
    refined = sdc.refine_map(set(cellmap.values()))
    if refined:
        cellmap = {k: refined.get(c, c) for k, c in cellmap.items()}
    problem = sdc.Problem(min_cell, intervals=intervals, protect_missing=protect_missing)
    private = set(meta.private)
    known = set(meta.known)
    forced = set(forced)

    # two counts of the result that are one cell must agree: otherwise the metadata misses a dimension
    seen: dict[Cell, tuple[int, str, float]] = {}
    for (i, c), cell in cellmap.items():
        v = vals[c][i]
        if cell in seen and not (np.isnan(v) and np.isnan(seen[cell][2])) and seen[cell][2] != v:
            j, d, w = seen[cell]
            raise ValueError(f"{name}: row {j} column {d!r} ({w:g}) and row {i} column {c!r} ({v:g}) are the same "
                             f"cell {cell.label()} in the result's metadata: a dimension that tells them apart "
                             "is missing")
        seen.setdefault(cell, (i, c, v))
    # the result's own counts
    per_row: dict[int, dict[Cell, float]] = defaultdict(dict)
    for (i, c), cell in cellmap.items():
        v = vals[c][i]
        v = None if np.isnan(v) else float(v)
        per_row[i][cell] = v
        if c in private:
            problem.add(cell, v, ASSUMED if c in known else IMPLIED)
        else:
            problem.add(cell, v, FORCED if cell in forced else CANDIDATE)
    # implied counts of each row
    implied: dict[Cell, float] = {}
    declared = results.row_atoms(meta)
    for i, rc in per_row.items():
        for cell, v in _implied(rc, declared[i]).items():
            if v is not None:  # a row that does not determine it (missing values) cannot reveal it either
                implied.setdefault(cell, v)
    for cell, v in implied.items():
        problem.add(cell, v, IMPLIED)
    # coarser margins, assumed published. Values: a margin over classifying variables only (same status
    # conditions) is the sum of the column's finest cells within it when the result is complete
    # (a result stacking several unit types, e.g. hospitals and referral areas, partitions a margin once
    # per type: its value is summed within one type, and taken only when the types agree)
    by_sig: dict[Cell, dict[frozenset, float]] = defaultdict(lambda: defaultdict(float))
    members: dict[Cell, int] = defaultdict(int)
    coarse: set[Cell] = set()
    counted: set[tuple[Cell, Cell]] = set()  # two columns naming one cell: it counts once in a margin
    for cells in _finest(cellmap).values():
        for cell, is_finest in cells:
            v = problem.cells[cell].value
            sig = frozenset(var for var, _ in cell.conds if not sdc.is_status(var))
            for x in _coarsenings(cell):
                coarse.add(x)
                if is_finest and _same_status(x, cell) and (x, cell) not in counted:
                    counted.add((x, cell))
                    members[x] += 1
                    if meta.complete and v is not None:
                        by_sig[x][sig] += v
    sums: dict[Cell, float] = {}
    for x, per in by_sig.items():
        agree = set(per.values())
        if len(agree) == 1:
            sums[x] = agree.pop()
    # a margin holding a single cell of the result is that cell (e.g. a hospital without its region, or a
    # region with one hospital): not an aggregate published elsewhere
    coarse = {x for x in coarse if members.get(x, 2) != 1}
    # a coarser margin (and a unit's population, a private count) is assumed published elsewhere unless it
    # is small; a small count it implies (the non-events of a region) must not be derivable. Assumed margins
    # are soft: one that would reveal a small count is not taken as known (hipfrac.sdc, "conflicts")
    groups: dict[tuple, dict[Cell, float | None]] = defaultdict(dict)
    for cell in coarse:
        key = (cell.universe, tuple(kv for kv in cell.conds if not sdc.is_status(kv[0])))
        v = problem.cells[cell].value if cell in problem.cells else sums.get(cell)
        groups[key][cell] = v
    for cells in groups.values():
        for c, v in _implied(cells).items():
            if v is not None and c not in problem.cells:
                problem.add(c, v, IMPLIED)
        for c, v in cells.items():
            small = v is not None and 1 <= v < min_cell and (protect_missing or not sdc.is_missing_cell(c))
            if c in problem.cells:
                e = problem.cells[c]
                if e.status == CANDIDATE:
                    problem.totals.add(c)  # an in-table total: published first, withheld only if it must be
                elif e.status == IMPLIED and not small and c not in implied:
                    e.status = ASSUMED  # a unit's population (private): published elsewhere
                continue
            problem.add(c, v, IMPLIED if small else ASSUMED)
    # absent combinations of a complete table: known zeros
    if meta.complete:
        for cell in _absent(cellmap, problem):
            problem.add(cell, 0.0, ASSUMED)
    # what earlier outputs published or withheld
    if registry is not None:
        for universe in sorted({c.universe for c in problem.cells}):
            varsets = sorted({c.vars for c in problem.cells if c.universe == universe},
                             key=lambda s: (len(s), sorted(s)))
            for cell, v, st in registry.relevant(universe, varsets):
                problem.add(cell, v, _REGISTERED[st], own=False)
    sol = problem.solve()

    # back to the frame
    mask = pd.DataFrame(False, index=range(n), columns=[str(c) for c in frame.columns])
    for (i, c), cell in cellmap.items():
        if c not in private and cell in sol.withheld:
            mask.at[i, c] = True
    n_derived = 0
    for d, srcs in meta.derived.items():
        if d in meta.counts:
            continue
        m = np.zeros(n, dtype=bool)
        for s in srcs:
            if s in private:
                m |= np.array([problem.sensitive(cellmap[(i, s)]) for i in range(n)], dtype=bool)
            else:
                m |= mask[s].to_numpy()
        mask[d] = mask[d].to_numpy() | m
        n_derived += int(m.sum())
    # private counts and helper columns (a leading "_") are never published
    hidden = list(dict.fromkeys(list(private) + [c for c in frame.columns if str(c).startswith("_")]))
    safe = frame.drop(columns=hidden).copy()
    mask = mask.drop(columns=hidden)
    for c in safe.columns:
        m = mask[c].to_numpy()
        if c in meta.counts:
            v = vals[c]
            if np.all(np.isnan(v) | (v == np.floor(v))):
                safe[c] = pd.array(np.where(m, np.nan, v), dtype="Float64").astype("Int64")
                continue
        if m.any():
            col = safe[c]
            if pd.api.types.is_integer_dtype(col):
                col = col.astype("Int64")
            elif pd.api.types.is_bool_dtype(col) or not pd.api.types.is_float_dtype(col):
                col = col.astype(object)
            safe[c] = col.mask(pd.Series(m, index=safe.index))
    safe.attrs = {k: v for k, v in frame.attrs.items()}
    own = set(cellmap.values())
    reg = []
    for (_i, c), cell in cellmap.items():
        v = problem.cells[cell].value
        if c in private:
            reg.append((cell, v, "known" if c in known else "implied"))
        else:
            reg.append((cell, v, "withheld" if cell in sol.withheld else "visible"))
    for cell, v in implied.items():
        if cell not in own:
            reg.append((cell, v, "implied"))
    # what this result exposes: its cells, what they imply, and differences with other cells (not cells
    # only known from earlier outputs: those were checked when they were published)
    exposed = [f"{cell.label()}: {why}" for cell, why in sorted(sol.exposed.items())
               if cell not in problem.foreign]
    pub = sorted((i, c) for (i, c) in cellmap if c not in private)
    prim_at = [(i, c) for i, c in pub if cellmap[(i, c)] in sol.primary]
    forc = sum(1 for i, c in pub if cellmap[(i, c)] in forced)
    sec_at = [(i, c) for i, c in pub if mask.at[i, c] and cellmap[(i, c)] not in sol.primary
              and cellmap[(i, c)] not in forced]
    return Protected(safe, mask, primary=len(prim_at), secondary=len(sec_at), derived=n_derived,
                     forced=forc, cells=reg, exposed=exposed, roles=meta.roles(),
                     positions={(i, c): cellmap[(i, c)] for i, c in pub}, primary_at=prim_at, secondary_at=sec_at)


def _same_status(a: Cell, b: Cell) -> bool:
    return [kv for kv in a.conds if sdc.is_status(kv[0])] == [kv for kv in b.conds if sdc.is_status(kv[0])]


def _finest(cellmap: dict) -> dict[str, list[tuple[Cell, bool]]]:
    """Per count column, its cells and whether each is a finest one (no other cell of the column with the
    same status conditions lies strictly within it)."""
    groups: dict[tuple, list[Cell]] = defaultdict(list)
    for (_i, c), cell in cellmap.items():
        groups[(c, tuple(kv for kv in cell.conds if sdc.is_status(kv[0])))].append(cell)
    out: dict[str, list[tuple[Cell, bool]]] = defaultdict(list)
    for (c, _), cells in groups.items():
        uniq = sorted(set(cells))
        depth = {x: sum(len(lev.split(sdc.SEP)) for v, lev in x.conds if not sdc.is_status(v)) for x in uniq}
        for x in uniq:
            fin = not any(depth[o] > depth[x] and _strictly_within(o, x) for o in uniq)
            out[c].append((x, fin))
    return out


def _strictly_within(a: Cell, b: Cell) -> bool:
    """True if cell a lies strictly within cell b (a is finer): every condition of b holds in a."""
    if a == b or a.universe != b.universe:
        return False
    for var, lev in b.conds:
        la = a.get(var)
        if la is None:
            return False
        if sdc.is_status(var):
            if not sdc.atoms(la) <= sdc.atoms(lev):
                return False
        elif not sdc.within(la, lev):
            return False
    return True


def _absent(cellmap: dict, problem: sdc.Problem):
    """Known zeros: combinations of the classifying levels of a complete table that have no row (blocks
    of two or more classifying variables; one variable's absent levels are zero by construction)."""
    blocks: dict[tuple, dict[str, set]] = {}
    present: dict[tuple, set] = defaultdict(set)
    for (_i, c), cell in cellmap.items():
        dvars = tuple(sorted(v for v, _ in cell.conds if not sdc.is_status(v)))
        if len(dvars) < 2:
            continue
        rest = tuple(kv for kv in cell.conds if sdc.is_status(kv[0]))
        key = (c, rest, dvars)
        b = blocks.setdefault(key, {v: set() for v in dvars})
        combo = []
        for v, lev in cell.conds:
            if v in b:
                b[v].add(lev)
                combo.append(lev)
        present[key].add(tuple(combo))
    for key, levels in blocks.items():
        c, rest, dvars = key
        size = int(np.prod([len(levels[v]) for v in dvars]))
        if size > MAX_ZERO_COMBOS or size == len(present[key]):
            continue
        universe = next(iter(cellmap.values())).universe
        for combo in itertools.product(*(sorted(levels[v]) for v in dvars)):
            if combo not in present[key]:
                yield Cell.make(universe, list(rest) + list(zip(dvars, combo)))
