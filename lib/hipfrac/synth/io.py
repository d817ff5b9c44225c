"""Writing extracts as delivered: typed Arrow tables per the data contract, then CSV (`;`, UTF-8) or parquet."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from hipfrac import schema


def _column(values: pd.Series, dtype: str) -> pa.Array:
    if dtype == "date":
        v = pd.to_numeric(values, errors="coerce").to_numpy(float)
        mask = ~np.isfinite(v)
        days = np.where(mask, 0, v).astype(np.int32)
        return pa.array(days, type=pa.int32(), mask=mask).cast(pa.date32())
    if dtype == "datetime":
        v = pd.to_numeric(values, errors="coerce").to_numpy(float)
        mask = ~np.isfinite(v)
        secs = np.where(mask, 0, np.round(v * 1440) * 60).astype(np.int64)
        return pa.array(secs, type=pa.int64(), mask=mask).cast(pa.timestamp("s"))
    if dtype == "int":
        v = pd.array(values, dtype="Int64")
        return pa.array(v.to_numpy(dtype="int64", na_value=0), type=pa.int64(), mask=v.isna())
    if dtype == "float":
        return pa.array(pd.to_numeric(values).to_numpy(float), type=pa.float64())
    return pa.array(values.to_numpy(dtype=object), type=pa.string(), from_pandas=True)


def to_arrow(df: pd.DataFrame, table: str) -> pa.Table:
    """Typed Arrow table with exactly the contract's columns, in contract order."""
    spec = schema.TABLES[table]
    return pa.table({c.name: _column(df[c.name].reset_index(drop=True), c.dtype) for c in spec.columns})


def write(df: pd.DataFrame, table: str, out_dir: Path, fmt: str) -> Path:
    tbl = to_arrow(df, table)
    path = Path(out_dir) / f"{table}.{fmt}"
    tmp = path.with_suffix(path.suffix + ".tmp")
    if fmt == "parquet":
        pq.write_table(tbl, tmp, compression="zstd")
    else:
        cols = {}
        for c in schema.TABLES[table].columns:
            a = tbl[c.name]
            if c.dtype == "datetime":
                a = pc.strftime(a, format="%Y-%m-%d %H:%M")
            cols[c.name] = a
        pacsv.write_csv(pa.table(cols), tmp, write_options=pacsv.WriteOptions(
            delimiter=";", quoting_style="none", include_header=True))
    tmp.replace(path)
    return path


def read(path: str | Path) -> pd.DataFrame:
    """Read one extract back as strings (CSV) or typed columns (parquet) — for tests and checks."""
    p = Path(path)
    if p.suffix == ".parquet":
        return pd.read_parquet(p)
    return pd.read_csv(p, sep=";", dtype=str, keep_default_na=False, na_values=[""], encoding="utf-8")
