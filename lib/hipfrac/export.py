"""The single way tables and figures leave a notebook: disclosure-checked, provenance-stamped.

INTERFACE (stable; notebooks and modules rely on it):

    from hipfrac.export import Exporter
    out = Exporter(params, notebook="01_treatment_variation", output_dir=output_dir)
    safe = out.suppress(df, counts=["n", "events"], derived={"events": ["prop", "lower", "upper"]})
    out.table(df, "indicator_overview", title="...", counts=[...], derived={...})  # suppresses itself
    out.figure(fig, "funnel_surgery_48h", title="...", data=safe_frame_behind_the_figure)
    out.text("summary", markdown_text)
    out.finish()   # writes the workbook and the notebook's manifest piece; call at the end

counts: count columns whose values 1..min_cell-1 are suppressed (None: detected by name).
derived: count column -> columns computed from it (suppressed with it; None: every other numeric
    column of an affected row).
by / row_totals (optional): groups for complementary suppression, see hipfrac.disclosure.suppress.
formats (optional): {column: "int" | "pct" | "ratio" | "p" | "float0".."float3" | "text"} for the
    human-readable formats (see hipfrac.tableformat; otherwise found by column name).
output_dir: where to write (the runner passes a temporary directory; None = outputs/<run>/<notebook>).

What is written (outputs/<run>/<notebook>/):
    tables/<name>.csv         machine-readable, byte-deterministic (fixed float format, "\\n" line ends,
                              rows in the order given: sort them before exporting), suppressed cells empty
    tables/<name>.meta.json   sidecar: run, notebook, title, columns, suppressed cells (no timestamps)
    tables/<name>.md / .tex   human-readable (labels in params.lang, % with one decimal, HR (CI)),
                              footer naming the run and explaining "s" (suppressed)
    <notebook>.xlsx           one sheet per table (written by finish), deterministic zip
    figures/<name>.png / .pdf 300 dpi PNG and vector PDF, run id in the metadata, no creation date
    figures/<name>.data.csv   the (suppressed) aggregate frame behind the figure, when data= is given
    <name>.md                 texts
    outputs.json              this notebook's piece of the run manifest (files with sha256, suppression
                              counts, warnings, start/end time); python -m hipfrac manifest joins them

Disclosure (hipfrac.disclosure): person-level frames are refused in every run. Small counts are
suppressed with their complements and derived values. Undeclared count-like columns (by name) with
small values, and figure data with unsuppressed small counts, raise DisclosureError in a real-data
run (params.real_data: true) and are suppressed / recorded as warnings otherwise.
"""

from __future__ import annotations

import io
import json
import numbers
import re
import warnings
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from hipfrac import disclosure, labels, tableformat
from hipfrac.disclosure import DisclosureError
from hipfrac.figures.save import FigureSaver

__all__ = ["Exporter", "DisclosureError", "write_csv", "normalize_zip"]

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
FIXED_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
FIXED_DOC_TIME = "2000-01-01T00:00:00Z"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def write_csv(df: pd.DataFrame, path: Path, float_digits: int = 6) -> None:
    """Byte-deterministic CSV: floats with `float_digits` significant digits, "\\n" line ends, UTF-8,
    ISO dates, missing values empty, no index."""
    text = df.to_csv(index=False, lineterminator="\n", float_format=f"%.{float_digits}g",
                     date_format="%Y-%m-%d")
    path.write_bytes(text.encode("utf-8"))


def normalize_zip(path: Path) -> None:
    """Rewrite a zip-based file (XLSX) with fixed member times and document dates: same content ->
    same bytes."""
    data = path.read_bytes()
    buf = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as zin, zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zout:
        for item in zin.infolist():
            content = zin.read(item.filename)
            if item.filename == "docProps/core.xml":
                content = re.sub(rb"(<dcterms:(created|modified)[^>]*>)[^<]*(</dcterms:)",
                                 rb"\g<1>" + FIXED_DOC_TIME.encode() + rb"\g<3>", content)
            info = zipfile.ZipInfo(item.filename, date_time=FIXED_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zout.writestr(info, content)
    path.write_bytes(buf.getvalue())


def _tidy(df, what: str) -> pd.DataFrame:
    """A plain frame: a Series becomes a column, named index levels become columns, multi-level
    column labels are joined with " / "."""
    if isinstance(df, pd.Series):
        df = df.to_frame(df.name if df.name is not None else "value")
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"{what}: expected a pandas DataFrame, got {type(df).__name__}")
    if isinstance(df.index, pd.MultiIndex) or df.index.name is not None:
        df = df.reset_index()
    if isinstance(df.columns, pd.MultiIndex):
        df = df.copy()
        df.columns = [" / ".join(str(x) for x in c if str(x) != "") for c in df.columns]
    if len(set(map(str, df.columns))) != len(df.columns):
        raise ValueError(f"{what}: duplicate column names {list(df.columns)}")
    return df


class Exporter:
    """Writes disclosure-checked tables and figures for one notebook of one run."""

    def __init__(self, params, notebook: str, output_dir: str | Path | None = None):
        if not _NAME_RE.match(notebook):
            raise ValueError(f"notebook name {notebook!r}: use letters, digits, '_', '-', '.'")
        self.params = params
        self.notebook = notebook
        self.run = params.run
        self.dir = Path(output_dir) if output_dir else params.output_dir / notebook
        self.dir.mkdir(parents=True, exist_ok=True)
        self.min_cell = params.export.min_cell
        self.strict = bool(params.real_data)
        self.lang = params.lang
        self.started = _now()
        self.written: list[Path] = []
        self.tables: list[dict] = []
        self.figures: list[dict] = []
        self.texts: list[str] = []
        self.warnings: list[str] = []
        self._sheets: dict[str, tuple[pd.DataFrame, pd.DataFrame, dict, str]] = {}
        self._names: set[str] = set()
        self._saver = FigureSaver(params.export.figure_workers)

    # --- helpers -----------------------------------------------------------------------------------
    def _claim(self, kind: str, name: str) -> None:
        if not _NAME_RE.match(name):
            raise ValueError(f"{kind} name {name!r}: use letters, digits, '_', '-', '.' (max 100)")
        key = f"{kind}:{name}"
        if key in self._names:
            raise ValueError(f"{kind} {name!r} is exported twice in notebook {self.notebook}")
        self._names.add(key)

    def _warn(self, msg: str) -> None:
        self.warnings.append(msg)
        warnings.warn(msg, stacklevel=3)

    def _notes(self) -> list[str]:
        return [labels.t("suppressed_note", self.lang, min_cell=self.min_cell),
                labels.t("run_note", self.lang, run=self.run, notebook=self.notebook)]

    def _record(self, path: Path) -> Path:
        self.written.append(path)
        return path

    def _safe(self, df: pd.DataFrame, what: str, counts, derived, by, row_totals):
        """Person-level check, suppression, and the undeclared-count check; (Suppression, undeclared)."""
        df = _tidy(df, what)
        disclosure.check_person_level(df, what)
        sup = disclosure.suppress(df, self.min_cell, counts, derived, by=by, row_totals=row_totals)
        undeclared = []
        if counts is not None:
            others = [c for c in disclosure.detect_counts(df) if c not in counts]
            left = disclosure.small_cells(sup.frame, self.min_cell, others)
            if left:
                if self.strict:
                    disclosure.check_no_small_cells(sup.frame, what, self.min_cell, others)
                undeclared = sorted({c for _, c, _ in left})
                self._warn(f"{what}: count-like column(s) {undeclared} were not declared in counts= but hold "
                           f"small values; suppressed them as counts")
                sup = disclosure.suppress(df, self.min_cell, list(counts) + undeclared, derived,
                                          by=by, row_totals=row_totals)
        if sup.exposed:
            msg = (f"{what}: withheld cell(s) {sup.exposed[:10]} (row, column) can still be derived from "
                   f"the totals and no cell is left to withhold beside them")
            if self.strict:
                raise DisclosureError(msg)
            self._warn(msg)
        return sup, undeclared

    # --- interface ---------------------------------------------------------------------------------
    def suppress(self, df: pd.DataFrame, counts=None, derived=None, *, by=None, row_totals="auto") -> pd.DataFrame:
        """Copy of df with counts 1..min_cell-1, their complements and columns derived from them set
        to missing (see hipfrac.disclosure.suppress). Refuses person-level frames."""
        sup, _ = self._safe(df, "frame passed to suppress()", counts, derived, by, row_totals)
        return sup.frame

    def table(self, df: pd.DataFrame, name: str, *, title: str = "", counts=None, derived=None, by=None,
              row_totals="auto", formats=None, note: str = "") -> Path:
        """Suppress and write one table in every format of params.export.table_formats.

        Returns the path of the CSV (written in every case, as the machine-readable copy).
        """
        self._claim("table", name)
        what = f"table '{name}' (notebook {self.notebook})"
        df = _tidy(df, what)
        sup, undeclared = self._safe(df, what, counts, derived, by, row_totals)
        safe, mask = sup.frame, sup.mask.reset_index(drop=True)
        safe = safe.reset_index(drop=True)
        tdir = self.dir / "tables"
        tdir.mkdir(parents=True, exist_ok=True)
        fmts = self.params.export.table_formats
        csv_path = tdir / f"{name}.csv"
        write_csv(safe, csv_path, self.params.export.float_digits)
        self._record(csv_path)
        used_counts = list(disclosure.detect_counts(df) if counts is None else counts) + undeclared
        meta = {
            "run": self.run, "notebook": self.notebook, "table": name, "title": title, "note": note,
            "params_fingerprint": self.params.fingerprint(), "min_cell": self.min_cell,
            "real_data": self.strict, "rows": len(safe), "columns": [str(c) for c in safe.columns],
            "count_columns": [str(c) for c in used_counts],
            "suppressed": {**sup.summary(), "cells": [[i, c] for i, c in sorted(sup.primary + sup.secondary)]},
        }
        meta_path = tdir / f"{name}.meta.json"
        meta_path.write_text(json.dumps(meta, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        self._record(meta_path)
        human = tableformat.format_table(safe, mask, lang=self.lang, counts=used_counts, formats=formats)
        notes = ([note] if note else []) + self._notes()
        if "md" in fmts:
            p = tdir / f"{name}.md"
            p.write_text(tableformat.to_markdown(human, title, notes), encoding="utf-8")
            self._record(p)
        if "tex" in fmts:
            p = tdir / f"{name}.tex"
            p.write_text(tableformat.to_latex(human, title, f"{self.notebook}:{name}", notes), encoding="utf-8")
            self._record(p)
        if "xlsx" in fmts:
            kinds = tableformat.column_kinds(safe, used_counts, formats)
            self._sheets[name] = (safe, mask, kinds, title)
        self.tables.append({"name": name, "title": title, "rows": len(safe), "columns": len(safe.columns),
                            "suppressed": sup.summary(), "undeclared_counts": undeclared})
        return csv_path

    def figure(self, fig, name: str, *, title: str = "", data: pd.DataFrame | None = None, counts=None,
               derived=None) -> Path:
        """Save fig as PNG (params.export.dpi) and PDF with the run id in the metadata.

        data: the aggregate frame the figure was drawn from. It is checked (person-level frames are
        refused; an unsuppressed small count raises in a real-data run, is recorded as a warning
        otherwise) and saved, suppressed, as figures/<name>.data.csv. Plotting functions should draw
        from `out.suppress(frame, ...)` so that withheld units are not drawn with a value.
        The files are written by a background process (params export.figure_workers; 0 = here, before
        returning) from a pickled copy of fig: changing fig afterwards does not change them, and they
        exist once `finish()` (or `wait_figures()`) has returned.
        Returns the path of the PNG (or the first format).
        """
        self._claim("figure", name)
        what = f"figure '{name}' (notebook {self.notebook})"
        fdir = self.dir / "figures"
        fdir.mkdir(parents=True, exist_ok=True)
        info = {"name": name, "title": title, "data": data is not None, "unsuppressed_small_cells": 0}
        if data is not None:
            frame = _tidy(data, what)
            disclosure.check_person_level(frame, what)
            left = disclosure.small_cells(frame, self.min_cell, counts)
            if left:
                if self.strict:
                    disclosure.check_no_small_cells(frame, what, self.min_cell, counts)
                info["unsuppressed_small_cells"] = len(left)
                self._warn(f"{what}: drawn from {len(left)} unsuppressed small count(s); draw from "
                           f"out.suppress(frame, ...) instead (a real-data run would stop here)")
            sup = disclosure.suppress(frame, self.min_cell, counts, derived)
            p = fdir / f"{name}.data.csv"
            write_csv(sup.frame.reset_index(drop=True), p, self.params.export.float_digits)
            self._record(p)
        desc = f"hipfrac run {self.run}; notebook {self.notebook}; figure {name}"
        jobs = []
        for fmt in self.params.export.figure_formats:
            p = fdir / f"{name}.{fmt}"
            if fmt == "png":
                meta = {"Title": title or name, "Description": desc, "Source": f"hipfrac run {self.run}",
                        "Software": "hipfrac"}
                kwargs = {"dpi": self.params.export.dpi, "metadata": meta, "bbox_inches": "tight"}
            else:
                meta = {"Title": title or name, "Subject": desc, "Keywords": f"hipfrac run {self.run}",
                        "Creator": "hipfrac", "Author": "hipfrac", "CreationDate": None, "ModDate": None}
                kwargs = {"metadata": meta, "bbox_inches": "tight"}
            jobs.append((str(p), fmt, kwargs))
            self._record(p)
        # written in the background (params export.figure_workers); finish() waits for the files
        self._saver.submit(fig, jobs, name)
        self.figures.append(info)
        return Path(jobs[0][0]) if jobs else None

    def wait_figures(self) -> None:
        """Block until every figure handed to `figure()` is written (finish() calls this)."""
        self._saver.wait()

    def text(self, name: str, text: str) -> Path:
        """Write a Markdown text (e.g. a summary paragraph) as <name>.md."""
        self._claim("text", name)
        path = self.dir / f"{name}.md"
        path.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
        self.texts.append(name)
        return self._record(path)

    def finish(self) -> list[Path]:
        """Wait for the figures being saved, write the XLSX workbook and the notebook's manifest piece
        (outputs.json); return all paths."""
        self._saver.wait()
        if self._sheets:
            p = self.dir / f"{self.notebook}.xlsx"
            self._write_xlsx(p)
            if p not in self.written:
                self._record(p)
        from hipfrac import manifest

        part = manifest.notebook_part(self)
        p = self.dir / manifest.PART_NAME
        p.write_text(json.dumps(part, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        return list(self.written)

    # --- xlsx --------------------------------------------------------------------------------------
    _XLSX_FORMATS = {"int": "#,##0", "pct": "0.0%", "ratio": "0.00", "p": "0.000", "float": "0.00",
                     "float0": "0", "float1": "0.0", "float2": "0.00", "float3": "0.000"}

    def _write_xlsx(self, path: Path) -> None:
        from openpyxl import Workbook
        from openpyxl.styles import Font

        wb = Workbook()
        wb.remove(wb.active)
        wb.properties.creator = "hipfrac"
        wb.properties.title = f"hipfrac run {self.run}, notebook {self.notebook}"
        used = set()
        for name, (safe, mask, kinds, title) in self._sheets.items():
            sheet = name[:31]
            k = 1
            while sheet.lower() in used:
                k += 1
                sheet = f"{name[:28]}~{k}"
            used.add(sheet.lower())
            ws = wb.create_sheet(sheet)
            ws.append([title or name])
            ws["A1"].font = Font(bold=True)
            ws.append([labels.t(c, self.lang) for c in safe.columns])
            for cell in ws[2]:
                cell.font = Font(bold=True)
            values = [safe[c].to_numpy() for c in safe.columns]
            hidden = mask[list(safe.columns)].to_numpy(bool)
            fmts = [self._XLSX_FORMATS.get(kinds[c]) for c in safe.columns]
            for i in range(len(safe)):
                row = []
                for j, c in enumerate(safe.columns):
                    v = values[j][i]
                    if hidden[i, j]:
                        row.append(tableformat.SUPPRESSED)
                    elif v is None or v is pd.NA or (isinstance(v, float) and v != v) or v is pd.NaT:
                        row.append(None)
                    elif kinds[c] == "text" or not isinstance(v, numbers.Number) or isinstance(v, bool):
                        row.append(tableformat.format_value(v, "text", self.lang) if isinstance(v, str) else
                                   (v.isoformat() if hasattr(v, "isoformat") else str(v)))
                    else:
                        row.append(float(v) if kinds[c] != "int" or not float(v).is_integer() else int(v))
                ws.append(row)
                # the row just appended is row i + 3 (title, header); ws[ws.max_row] scanned every cell
                for j, v in enumerate(row):
                    if fmts[j] and isinstance(v, (int, float)) and not isinstance(v, bool):
                        ws.cell(row=i + 3, column=j + 1).number_format = fmts[j]
            ws.append([])
            for n in self._notes():
                ws.append([n])
        wb.save(path)
        normalize_zip(path)
