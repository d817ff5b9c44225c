"""Validation of registry extracts against the data contract, before anything is linked.

Every check runs in SQL on the DuckDB tables made by `hipfrac.ingest` (raw text as delivered and its typed
cast), so it scales to national extracts. Each finding is a `Problem`: what is wrong, in which source, file
and column, how severe (fatal or warning), how many rows, and up to 5 example row numbers (1-based data
rows of the file, header not counted).

Severity and action:
- fatal: the run stops (`ValidationReport.raise_if_fatal`) with a message naming file, column and rows;
  used for a missing required column, a column that is mostly not of its type (a wrong type, not a few
  bad values), or an unreadable file.
- warning: the run goes on; the action says what happens to the rows: `drop` (the record is removed and
  counted in the drop log with the problem as its reason), `null` (the bad value is set to missing and the
  record kept), or `keep` (reported only).

Nothing disappears silently: `DropLog` counts every removed record with its stage, source and reason, and
`hipfrac.cohort` writes it next to the cohort (drops.parquet) together with the report
(validation_report.parquet).

Code lists: ICD-10 and NCSP and ATC codes are checked by their structure (letter + digits as the
classifications define them); municipality and hospital codes against `hipfrac.geography`.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field

import duckdb
import pandas as pd

__all__ = ["CODE_PATTERNS", "DropLog", "Problem", "ValidationError", "ValidationReport", "Validator"]

# Structure of codes (after upper-casing and removing dots and spaces)
CODE_PATTERNS = {
    # ICD-10: letter, two digits, optional up to 4 further characters (S720, S7200, I214, C50.9 -> C509)
    "icd10": r"^[A-Z][0-9]{2}[0-9A-Z]{0,4}$",
    # NCSP (Nordic Classification of Surgical Procedures): 3 letters + 2 digits (+ optional character)
    "ncsp": r"^[A-Z]{3}[0-9]{2}[0-9A-Z]?$",
    # ATC: any level 1-5 (A, A10, A10B, A10BA, A10BA02)
    "atc": r"^[A-Z]([0-9]{2}([A-Z]([A-Z]([0-9]{2})?)?)?)?$",
}

MAX_EXAMPLES = 5


class ValidationError(ValueError):
    """Fatal problems in the extracts; the message names file, column and example rows."""


@dataclass
class Problem:
    """One validation finding."""

    problem: str
    source: str
    file: str
    column: str
    severity: str  # "fatal" | "warning"
    count: int
    examples: list[int] = field(default_factory=list)
    action: str = "keep"  # drop | null | keep | stop
    detail: str = ""

    def message(self) -> str:
        rows = ", ".join(str(r) for r in self.examples)
        where = f"column '{self.column}'" if self.column else "file"
        ex = f" (rows {rows}{', ...' if self.count > len(self.examples) else ''})" if rows else ""
        det = f": {self.detail}" if self.detail else ""
        return f"{self.severity.upper()} {self.file}: {where}: {self.problem}{det}: {self.count} rows{ex}"


class ValidationReport:
    """All problems found in one run's extracts (tidy table + text)."""

    COLUMNS = ["source", "file", "column", "problem", "severity", "action", "count", "example_rows", "detail"]

    def __init__(self):
        self.problems: list[Problem] = []

    def add(self, p: Problem) -> Problem | None:
        if p.count > 0:
            self.problems.append(p)
            return p
        return None

    @property
    def fatal(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "fatal"]

    def table(self) -> pd.DataFrame:
        rows = [{"source": p.source, "file": p.file, "column": p.column, "problem": p.problem,
                 "severity": p.severity, "action": p.action, "count": int(p.count),
                 "example_rows": " ".join(str(r) for r in p.examples), "detail": p.detail}
                for p in self.problems]
        df = pd.DataFrame(rows, columns=self.COLUMNS)
        df["count"] = df["count"].astype("int64")
        return df

    def text(self) -> str:
        if not self.problems:
            return "Validation: no problems found."
        nf = len(self.fatal)
        head = f"Validation: {nf} fatal problem(s), {len(self.problems) - nf} warning(s)."
        return "\n".join([head] + ["  " + p.message() for p in self.problems])

    def raise_if_fatal(self) -> None:
        if self.fatal:
            lines = [p.message() for p in self.fatal]
            raise ValidationError("the extracts have fatal problems; fix them (or map the columns with "
                                  "`rename` in the params sources section) and rerun:\n  "
                                  + "\n  ".join(lines))


class DropLog:
    """Every record removed anywhere: stage, source, reason, count."""

    COLUMNS = ["order", "stage", "source", "reason", "n"]

    def __init__(self):
        self.rows: list[dict] = []

    def add(self, stage: str, source: str, reason: str, n: int) -> None:
        if n:
            self.rows.append({"order": len(self.rows) + 1, "stage": stage, "source": source,
                              "reason": reason, "n": int(n)})

    def table(self) -> pd.DataFrame:
        df = pd.DataFrame(self.rows, columns=self.COLUMNS)
        return df.astype({"order": "int64", "n": "int64"})

    def total(self, stage: str | None = None, source: str | None = None) -> int:
        return int(sum(r["n"] for r in self.rows
                       if (stage is None or r["stage"] == stage) and (source is None or r["source"] == source)))


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class Validator:
    """Runs checks on one source: `raw` = table as delivered (text), `typed` = its typed cast, both with `_row`.

    Every check adds a Problem to the report; checks with action "drop" also record the offending rows in
    the temp table `flag_<source>(_row, reason, ord)` so that `apply()` can remove them, each row counted
    once under its first reason.
    """

    def __init__(self, con: duckdb.DuckDBPyConnection, report: ValidationReport, source: str, file: str,
                 raw: str, typed: str):
        self.con, self.report, self.source, self.file = con, report, source, str(file)
        self.raw, self.typed = raw, typed
        self.flags = f"flag_{source}"
        self._ord = 0
        self._deferred: list | None = None
        con.execute(f"CREATE OR REPLACE TEMP TABLE {self.flags} (_row BIGINT, reason VARCHAR, ord INTEGER)")

    # -- generic -----------------------------------------------------------------------------------
    def _count(self, table: str, where: str) -> tuple[int, list[int]]:
        n = self.con.execute(f"SELECT count(*) FROM {table} WHERE {where}").fetchone()[0]
        ex = []
        if n:
            ex = [r[0] for r in self.con.execute(
                f"SELECT _row FROM {table} WHERE {where} ORDER BY _row LIMIT {MAX_EXAMPLES}").fetchall()]
        return int(n), ex

    def check(self, where: str, problem: str, column: str = "", severity: str = "warning",
              action: str = "keep", table: str | None = None, detail: str = "",
              fatal_above: float | None = None) -> Problem | None:
        """Rows of `table` (default the typed table) matching SQL `where` are a problem.

        fatal_above: when more than this share of the column's non-missing values match, the problem is
        fatal (the column follows another coding than the contract's, e.g. ICD-10 codes with dots)."""
        table = table or self.typed
        if self._deferred is not None and table == self.typed:
            self._deferred.append((where, problem, column, severity, action, table, detail, fatal_above))
            return None
        return self._check_now(where, problem, column, severity, action, table, detail, fatal_above)

    @contextmanager
    def batch(self):
        """Checks inside the block are counted together in one scan of the typed table when the block
        ends (their actions are applied after all counts, so checks in one batch must not depend on each
        other's actions)."""
        self._deferred = []
        try:
            yield self
        finally:
            deferred, self._deferred = self._deferred, None
        if deferred:
            exprs = ", ".join(f"count_if(coalesce(({d[0]}), false))" for d in deferred)
            counts = self.con.execute(f"SELECT {exprs} FROM {self.typed}").fetchone()
            for d, n in zip(deferred, counts):
                self._check_now(*d, n=int(n))

    def _check_now(self, where, problem, column, severity, action, table, detail, fatal_above,
                   n: int | None = None) -> Problem | None:
        if n is None:
            n, ex = self._count(table, where)
        else:
            ex = [r[0] for r in self.con.execute(
                f"SELECT _row FROM {table} WHERE {where} ORDER BY _row LIMIT {MAX_EXAMPLES}").fetchall()] if n else []
        if n and fatal_above is not None and column:
            n_val = self.con.execute(f"SELECT count({_q(column)}) FROM {table}").fetchone()[0]
            if n / max(n_val, 1) > fatal_above:
                severity = "fatal"
                detail = (detail + "; " if detail else "") + \
                    f"{n / max(n_val, 1):.0%} of the values: another coding than the contract's? (map the values with `recode` in the params sources section)"
        if severity == "fatal":
            action = "stop"
        p = self.report.add(Problem(problem, self.source, self.file, column, severity, n, ex, action, detail))
        if p and action == "drop":
            self._ord += 1
            self.con.execute(f"INSERT INTO {self.flags} SELECT _row, ?, ? FROM {table} WHERE {where}",
                             [f"{problem} ({column})" if column else problem, self._ord])
        if p and action == "null" and column:
            self.con.execute(f"UPDATE {self.typed} SET {_q(column)} = NULL WHERE {where}")
        return p

    # -- specific checks ---------------------------------------------------------------------------
    def missing_columns(self, present: list[str], required: list[str]) -> list[str]:
        missing = [c for c in required if c not in present]
        for c in missing:
            self.report.add(Problem("required column missing", self.source, self.file, c, "fatal", 1, [],
                                    "stop", f"columns present: {', '.join(present)}"))
        return missing

    def types(self, types: dict[str, str], present: list[str], fatal_fraction: float,
              actions: dict[str, str] | None = None) -> None:
        """Values that do not parse as their contract type (the typed table's `_bad_<column>` flags, see
        `hipfrac.ingest.typed_select(flags=True)`). Fatal when more than `fatal_fraction` of the delivered
        (non-empty) values of a column fail (the column has the wrong type); otherwise a warning with the
        column's action (default: the value is missing)."""
        actions = actions or {}
        for col, typ in types.items():
            if col not in present or typ in ("string", "str"):
                continue
            flag = _q("_bad_" + col)
            n_bad, ex = self._count(self.typed, flag)
            if not n_bad:
                continue
            n_present = self.con.execute(
                f"SELECT count(*) FROM {self.typed} WHERE {_q(col)} IS NOT NULL OR {flag}").fetchone()[0]
            frac = n_bad / max(n_present, 1)
            kind = {"date": "unparseable date", "datetime": "unparseable date-time"}.get(
                typ, f"not a valid {typ}")
            if frac > fatal_fraction:
                self.report.add(Problem(f"wrong type: {kind}", self.source, self.file, col, "fatal", n_bad,
                                        ex, "stop", f"{frac:.0%} of the non-missing values are not {typ}"))
                continue
            action = actions.get(col, "null")
            self.report.add(Problem(kind, self.source, self.file, col, "warning", n_bad, ex, action))
            if action == "drop":
                self._ord += 1
                self.con.execute(f"INSERT INTO {self.flags} SELECT _row, ?, ? FROM {self.typed} WHERE {flag}",
                                 [f"{kind} ({col})", self._ord])

    def required_values(self, columns: list[str], action: str = "drop") -> None:
        """Rows missing a value in a column every record needs (identity, key dates)."""
        for c in columns:
            self.check(f"{_q(c)} IS NULL", "missing value", c, action=action)

    def code_pattern(self, column: str, kind: str, action: str = "null") -> None:
        """Codes whose structure is not that of the classification `kind` (icd10, ncsp, atc)."""
        pat = CODE_PATTERNS[kind]
        norm = f"regexp_replace(upper({_q(column)}), '[\\.\\s]', '', 'g')"
        self.check(f"{_q(column)} IS NOT NULL AND NOT regexp_matches({norm}, '{pat}')",
                   f"code outside the {kind.upper()} code list", column, action=action)

    def code_list(self, column: str, allowed: list[str], what: str, action: str = "null",
                  fatal_above: float | None = None) -> None:
        """Codes not in an explicit list (municipality, hospital, categorical codes)."""
        lits = ", ".join("'" + str(a).replace("'", "''") + "'" for a in allowed) or "NULL"
        self.check(f"{_q(column)} IS NOT NULL AND CAST({_q(column)} AS VARCHAR) NOT IN ({lits})",
                   f"code outside the {what} code list", column, action=action, fatal_above=fatal_above)

    def duplicates(self, key: list[str], action: str = "drop", exact: bool = False) -> None:
        """Rows repeating the key of an earlier row (the first occurrence is kept)."""
        cols = ", ".join(_q(k) for k in key)
        self.con.execute(
            f"CREATE OR REPLACE TEMP TABLE dup_{self.source} AS SELECT _row FROM ("
            f"SELECT _row, row_number() OVER (PARTITION BY {cols} ORDER BY _row) AS k FROM {self.typed} "
            f"WHERE {' AND '.join(f'{_q(k)} IS NOT NULL' for k in key)}) WHERE k > 1")
        self.check(f"_row IN (SELECT _row FROM dup_{self.source})", "duplicate key", "+".join(key),
                   action=action, detail="the first occurrence is kept")

    def order(self, earlier: str, later: str, what: str, action: str = "drop", slack: str | None = None) -> None:
        """Rows where `later` is before `earlier` (e.g. surgery before fracture)."""
        lhs = f"{_q(earlier)}" if slack is None else f"({_q(earlier)} - INTERVAL {slack})"
        self.check(f"{_q(later)} IS NOT NULL AND {_q(earlier)} IS NOT NULL AND {_q(later)} < {lhs}",
                   f"impossible order: {what}", f"{later}<{earlier}", action=action)

    def apply(self, drops: DropLog, stage: str = "validation") -> int:
        """Remove the rows flagged for dropping from the typed table; count each row once under its first
        reason. Returns the number removed."""
        per = self.con.execute(
            f"SELECT reason, count(*) FROM (SELECT _row, arg_min(reason, ord) AS reason, min(ord) AS o "
            f"FROM {self.flags} GROUP BY _row) GROUP BY reason, o ORDER BY o").fetchall()
        for reason, n in per:
            drops.add(stage, self.source, reason, n)
        self.con.execute(f"DELETE FROM {self.typed} WHERE _row IN (SELECT _row FROM {self.flags})")
        return int(sum(n for _, n in per))
