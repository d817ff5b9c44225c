"""Reading registry extracts (synthetic or real deliveries) into DuckDB, as named in params.

Each source of `params.sources` names a file and its format (`params.source_file(name)`):
CSV (any delimiter, UTF-8 or Latin-1, decimal comma), parquet, SAS (.sas7bdat), Stata (.dta) or SPSS
(.sav). Columns are renamed onto the contract (`rename`: delivered name -> contract name), then all
names are stripped and lower-cased; `recode` maps delivered values onto the contract's codes (e.g. RESH
ids onto hospital codes) before validation.

Reading is two-staged so that validation can see what was delivered:
1. `register(con, sf, name)` loads the file as delivered into the DuckDB table `raw_<name>`; CSV columns
   stay text (VARCHAR) so that nothing is lost to guessing; `Extract.row_expr` gives the 1-based data row
   number in the file (the header line not counted), carried as `_row` and used in validation messages.
2. `typed_select(...)` is the SQL that casts every contract column to its type with TRY_CAST / TRY_STRPTIME
   (decimal comma handled); values that do not parse become NULL and are counted by `hipfrac.validate`.

CSV and parquet are read by DuckDB itself (out of core: tens of millions of NPR rows are fine); SAS, Stata
and SPSS files go through pyreadstat into pandas first.

`read_frame(sf, types)` returns a typed pandas DataFrame of one file (small data, tests, notebooks on
aggregates).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pandas as pd

__all__ = ["Extract", "IngestError", "SQL_TYPES", "cast_frame", "detect_format", "read_frame", "register", "typed_expr",
           "typed_select"]

SUFFIX_FORMAT = {".csv": "csv", ".txt": "csv", ".tsv": "csv", ".parquet": "parquet", ".pq": "parquet",
                 ".sas7bdat": "sas", ".dta": "stata", ".sav": "spss", ".zsav": "spss"}

# contract type -> DuckDB type
SQL_TYPES = {"string": "VARCHAR", "str": "VARCHAR", "int": "BIGINT", "float": "DOUBLE", "bool": "BOOLEAN",
             "date": "DATE", "datetime": "TIMESTAMP"}


class IngestError(ValueError):
    """An extract cannot be read (missing file, unknown format, unreadable content)."""


@dataclass
class Extract:
    """One extract loaded into DuckDB as `table` (as delivered, plus `_row`)."""

    name: str
    path: Path
    format: str
    table: str
    n_rows: int
    columns: list[str] = field(default_factory=list)
    decimal: str = "."
    date_format: str | None = None
    row_expr: str = "(rowid + 1)::BIGINT"  # the 1-based data row number of a row of `table`
    recoded: dict[str, tuple[int, int]] = field(default_factory=dict)  # column -> (values changed, map size)


def detect_format(path: str | Path, fmt: str = "auto") -> str:
    """The file format: `fmt` unless "auto", else guessed from the suffix (IngestError if unknown)."""
    if fmt != "auto":
        return fmt
    p = Path(path)
    suffixes = [s.lower() for s in p.suffixes]
    for s in reversed(suffixes):
        if s in SUFFIX_FORMAT:
            return SUFFIX_FORMAT[s]
        if s == ".gz" or s == ".zst":
            continue
    raise IngestError(f"{p}: cannot tell the format from the suffix {p.suffix!r}; set `format:` in the "
                      f"params sources section (csv, parquet, sas, stata, spss)")


def _quote(name: str) -> str:
    return '"' + str(name).replace('"', '""') + '"'


def _clean_names(columns: list[str], rename: dict[str, str], path: Path) -> list[str]:
    """Apply `rename` (exact, then case-insensitive), strip and lower-case; IngestError on clashes."""
    lower_map = {k.strip().lower(): v for k, v in rename.items()}
    out = []
    for c in columns:
        new = rename.get(c, lower_map.get(str(c).strip().lower(), c))
        out.append(str(new).strip().lower())
    seen: dict[str, int] = {}
    for c in out:
        seen[c] = seen.get(c, 0) + 1
    dup = sorted(c for c, n in seen.items() if n > 1)
    if dup:
        raise IngestError(f"{path}: after renaming, these column names occur more than once: {', '.join(dup)}")
    return out


def _read_stat(path: Path, fmt: str, encoding: str | None) -> pd.DataFrame:
    import pyreadstat

    readers = {"sas": pyreadstat.read_sas7bdat, "stata": pyreadstat.read_dta, "spss": pyreadstat.read_sav}
    kwargs = {}
    if fmt == "sas" and encoding:
        kwargs["encoding"] = "LATIN1" if encoding == "latin-1" else "UTF-8"
    try:
        df, _meta = readers[fmt](str(path), **kwargs)
    except Exception as exc:  # pyreadstat raises its own ReadstatError and others
        raise IngestError(f"{path}: cannot read as {fmt}: {exc}") from exc
    return df


def register(con: duckdb.DuckDBPyConnection, sf, name: str) -> Extract:
    """Load one extract, as delivered, into the DuckDB table `raw_<name>` (columns renamed, plus `_row`).

    sf: a `hipfrac.params.SourceFile` with its path filled in (`params.source_file(name)`).
    Raises IngestError naming the file when it is missing or unreadable.
    """
    path = Path(sf.path)
    if not path.exists():
        raise IngestError(f"source {name!r}: file not found: {path} (set sources.{name}.path in the params "
                          f"file, or generate the synthetic registry with `make data`)")
    fmt = detect_format(path, sf.format)
    table = f"raw_{name}"
    order = "rowid"
    try:
        if fmt == "csv":
            delim = sf.delimiter.replace("'", "''")
            enc = "latin-1" if sf.encoding == "latin-1" else "utf-8"
            con.execute(f"CREATE OR REPLACE TEMP TABLE {table} AS SELECT * FROM read_csv(?, delim='{delim}', "
                        f"header=true, all_varchar=true, encoding='{enc}', quote='\"', "
                        f"null_padding=false, strict_mode=true)", [str(path)])
        elif fmt == "parquet":
            con.execute(f"CREATE OR REPLACE TEMP TABLE {table} AS SELECT * FROM read_parquet(?, "
                        f"file_row_number=true)", [str(path)])
            order = "file_row_number"
        elif fmt in ("sas", "stata", "spss"):
            df = _read_stat(path, fmt, sf.encoding)
            con.register("_stat_df", df)
            con.execute(f"CREATE OR REPLACE TEMP TABLE {table} AS SELECT * FROM _stat_df")
            con.unregister("_stat_df")
        else:
            raise IngestError(f"{path}: unknown format {fmt!r}")
    except duckdb.Error as exc:
        raise IngestError(f"source {name!r}: cannot read {path} as {fmt}: {exc}") from exc
    delivered = [r[0] for r in con.execute(f"DESCRIBE {table}").fetchall()]
    if fmt == "parquet":
        delivered = [c for c in delivered if c != "file_row_number"]
    names = _clean_names(delivered, dict(sf.rename), path)
    if "_row" in names:
        raise IngestError(f"{path}: a column may not be called '_row' (reserved for row numbers)")
    for d, n in zip(delivered, names):   # renaming is a catalogue change: no copy of the data
        if d != n:
            tmpname = f"__tmp_{n}"
            con.execute(f"ALTER TABLE {table} RENAME COLUMN {_quote(d)} TO {_quote(tmpname)}")
    for d, n in zip(delivered, names):
        if d != n:
            con.execute(f"ALTER TABLE {table} RENAME COLUMN {_quote(f'__tmp_{n}')} TO {_quote(n)}")
    recoded = {c: _recode(con, table, c, m, names, path) for c, m in getattr(sf, "recode", {}).items()}
    n = con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    return Extract(name=name, path=path, format=fmt, table=table, n_rows=int(n), columns=names,
                   decimal=sf.decimal, date_format=sf.date_format, row_expr=f"({order} + 1)::BIGINT",
                   recoded=recoded)


def recode_map(mapping: dict[str, str] | str) -> dict[str, str]:
    """A recode map: the dict itself, or read from a two-column CSV (delivered, contract; header line;
    ";" or "," separated). Raises IngestError on a missing file, a wrong shape or a value mapped twice."""
    if isinstance(mapping, dict):
        return {str(k).strip(): str(v).strip() for k, v in mapping.items()}
    path = Path(mapping)
    if not path.exists():
        raise IngestError(f"recode map file not found: {path}")
    text = path.read_text(encoding="utf-8-sig")
    first = text.splitlines()[0] if text else ""
    sep = ";" if first.count(";") >= first.count(",") and ";" in first else ","
    df = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    if df.shape[1] != 2:
        raise IngestError(f"{path}: a recode map has two columns (delivered value, contract value), "
                          f"found {df.shape[1]}: {list(df.columns)}")
    src = df.iloc[:, 0].str.strip()
    twice = sorted(set(src[src.duplicated()]))
    if twice:
        raise IngestError(f"{path}: delivered value(s) mapped more than once: {twice[:5]}")
    return dict(zip(src, df.iloc[:, 1].str.strip()))


def _recode(con, table: str, column: str, mapping, names: list[str], path: Path) -> tuple[int, int]:
    """Replace delivered values of `column` by the map's contract values (in place: row order and
    `_row` numbers are kept); returns (how many values changed, how many values the map holds)."""
    col = column.strip().lower()
    if col not in names:
        raise IngestError(f"{path}: recode names column {column!r}, which the file does not have after "
                          f"renaming (columns: {', '.join(names)})")
    pairs = recode_map(mapping)
    q = _quote(col)
    raw_type = dict(con.execute(f"SELECT column_name, column_type FROM (DESCRIBE {table})").fetchall())[col]
    if not str(raw_type).upper().startswith("VARCHAR"):   # parquet / SAS numbers: map their text
        con.execute(f"ALTER TABLE {table} ALTER {q} SET DATA TYPE VARCHAR")
    con.register("_recode_df", pd.DataFrame({"src": list(pairs), "dst": list(pairs.values())}, dtype=str))
    try:
        n = con.execute(f"SELECT count(*) FROM {table} t JOIN _recode_df m ON trim(t.{q}) = m.src "
                        f"WHERE trim(t.{q}) IS DISTINCT FROM m.dst").fetchone()[0]
        con.execute(f"UPDATE {table} SET {q} = m.dst FROM _recode_df m WHERE trim({table}.{q}) = m.src")
    finally:
        con.unregister("_recode_df")
    return int(n), len(pairs)


def typed_expr(col: str, typ: str, raw_type: str = "VARCHAR", decimal: str = ".",
               date_format: str | None = None) -> str:
    """SQL expression casting column `col` (of DuckDB type raw_type) to the contract type `typ`.

    Unparseable values become NULL (TRY_CAST); `hipfrac.validate` counts them as type errors.
    Text is trimmed and empty strings count as missing. Decimal commas are accepted for numbers when
    decimal=",". Dates: ISO (YYYY-MM-DD) unless date_format (strptime format, e.g. %d.%m.%Y) is given;
    date-times also accept a date alone (00:00).
    """
    sql_t = SQL_TYPES[typ]
    q = _quote(col)
    is_text = raw_type.upper().startswith("VARCHAR")
    if not is_text:
        if typ in ("date", "datetime") and raw_type.upper() in ("DOUBLE", "FLOAT", "BIGINT", "INTEGER"):
            # pyreadstat returns dates as datetime already; a number here is not a date
            return f"TRY_CAST(NULL AS {sql_t})"
        if typ == "string" and raw_type.upper() in ("DOUBLE", "FLOAT"):
            # whole numbers read by pyreadstat as floats: 301.0 -> "301"
            return (f"CASE WHEN {q} = floor({q}) THEN CAST(CAST({q} AS BIGINT) AS VARCHAR) "
                    f"ELSE CAST({q} AS VARCHAR) END")
        if typ == "int" and raw_type.upper() in ("DOUBLE", "FLOAT"):
            return f"CASE WHEN {q} = floor({q}) THEN TRY_CAST({q} AS BIGINT) END"
        return f"TRY_CAST({q} AS {sql_t})"
    t = f"NULLIF(trim({q}), '')"
    if typ in ("string", "str"):
        return t
    if typ == "float":
        if decimal == ",":
            t = f"replace({t}, ',', '.')"
        return f"TRY_CAST({t} AS DOUBLE)"
    if typ == "int":
        if decimal == ",":
            t = f"replace({t}, ',', '.')"
        # "3.0" is accepted as 3, "3.5" is not an integer (a plain cast would round it)
        return f"CASE WHEN TRY_CAST({t} AS DOUBLE) = TRY_CAST({t} AS BIGINT) THEN TRY_CAST({t} AS BIGINT) END"
    if typ == "bool":
        return (f"CASE lower({t}) WHEN '1' THEN true WHEN 'true' THEN true WHEN 'yes' THEN true "
                f"WHEN '0' THEN false WHEN 'false' THEN false WHEN 'no' THEN false END")
    if typ == "date":
        if date_format:
            fmt = date_format.replace("'", "''")
            return f"CAST(TRY_STRPTIME({t}, '{fmt}') AS DATE)"
        return f"TRY_CAST({t} AS DATE)"
    if typ == "datetime":
        if date_format:
            fmt = date_format.replace("'", "''")
            return (f"COALESCE(TRY_STRPTIME({t}, '{fmt} %H:%M:%S'), TRY_STRPTIME({t}, '{fmt} %H:%M'), "
                    f"TRY_STRPTIME({t}, '{fmt}'))")
        return f"TRY_CAST({t} AS TIMESTAMP)"
    raise ValueError(f"unknown contract type {typ!r}")


def raw_types(con: duckdb.DuckDBPyConnection, table: str) -> dict[str, str]:
    """Column -> DuckDB type of a table."""
    return {r[0]: r[1] for r in con.execute(f"DESCRIBE {table}").fetchall()}


def typed_select(con: duckdb.DuckDBPyConnection, ext: Extract, types: dict[str, str],
                 keep_row: bool = True, flags: bool = False) -> str:
    """SELECT list (SQL) casting the contract columns `types` (column -> contract type) of an extract.

    Columns missing from the file come out as NULL of the right type (validation reports them first).
    keep_row: include `_row`, the 1-based data row number. flags: for every non-text column also
    `_bad_<column>`, true where a value was delivered but does not parse (counted by validation).
    """
    rt = raw_types(con, ext.table)
    parts = [f"{ext.row_expr} AS _row"] if keep_row else []
    for col, typ in types.items():
        if col in rt:
            expr = typed_expr(col, typ, rt[col], ext.decimal, ext.date_format)
        else:
            expr = f"CAST(NULL AS {SQL_TYPES[typ]})"
        parts.append(f"{expr} AS {_quote(col)}")
        if flags and col in rt and typ not in ("string", "str"):
            parts.append(f"(NULLIF(trim(CAST({_quote(col)} AS VARCHAR)), '') IS NOT NULL AND ({expr}) IS NULL) "
                         f"AS {_quote('_bad_' + col)}")
    return ", ".join(parts)


_PD_TYPES = {"string": "string", "str": "string", "int": "Int64", "float": "float64", "bool": "boolean",
             "date": "datetime64[ns]", "datetime": "datetime64[ns]"}


def read_frame(sf, types: dict[str, str] | None = None, name: str = "extract") -> pd.DataFrame:
    """One extract as a pandas DataFrame, typed by `types` (column -> contract type) when given.

    Other columns are kept as delivered. The `_row` column holds the 1-based data row number.
    """
    con = duckdb.connect()
    try:
        ext = register(con, sf, re.sub(r"\W", "_", name))
        if types is None:
            star = "* EXCLUDE (file_row_number)" if ext.format == "parquet" else "*"
            return con.execute(f"SELECT {ext.row_expr} AS _row, {star} FROM {ext.table} ORDER BY _row").df()
        extra = [c for c in ext.columns if c not in types]
        sel = typed_select(con, ext, types)
        if extra:
            sel += ", " + ", ".join(_quote(c) for c in extra)
        df = con.execute(f"SELECT {sel} FROM {ext.table} ORDER BY _row").df()
    finally:
        con.close()
    return cast_frame(df, types)


def cast_frame(df: pd.DataFrame, types: dict[str, str]) -> pd.DataFrame:
    """pandas dtypes of contract types: string, Int64, float64, boolean, datetime64[ns] (dates at midnight)."""
    df = df.copy()
    for col, typ in types.items():
        if typ in ("date", "datetime"):
            df[col] = pd.to_datetime(df[col]).astype("datetime64[ns]")
        else:
            df[col] = df[col].astype(_PD_TYPES[typ])
    return df
