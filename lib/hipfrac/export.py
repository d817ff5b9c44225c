"""The single way tables, figures and texts leave a notebook: disclosure-checked, provenance-stamped.

INTERFACE (stable; notebooks and modules rely on it):

    from hipfrac.export import Exporter
    out = Exporter(params, notebook="01_treatment_variation", output_dir=output_dir)
    out.table(result, "indicator_overview", title="...")         # protects it, writes every format
    out.figure("funnel_surgery_48h", vfig.funnel_figure, result, title="...", target=0.8)
    out.show(result)                                             # a protected table inline in the notebook
    out.text("summary", markdown_text)
    out.finish()                                                 # workbook, manifest piece, audit cells

Results (hipfrac.results) carry their own disclosure metadata: which columns are counts of what, which are
derived from them, the dimensions. Nothing is declared here. Every output is protected against everything
this notebook published before it (hipfrac.protection): small counts, their complements, counts implied
by a row (non-events), what a coarser margin elsewhere would reveal, and the derived values of withheld
counts. `out.figure(name, plot, data, **kwargs)` draws the figure itself from the protected data, so a
figure can never show a withheld value; `out.protect(result)` gives the protected frame for a figure drawn
by hand (then `out.figure(fig, name, data=protected)`).

Plain frames (no metadata) are protected by inference from their column names (counts=/derived= may
name them) and refused in a real-data run (params.real_data: true), where any column without a role,
any small count that could not be protected and any figure drawing individuals stops the notebook.

What is written (output_dir, by the runner a staging folder; interactive runs write to
outputs/.interactive/<run>/<notebook>/, never published):
    tables/<name>.csv         machine-readable, byte-deterministic, withheld cells empty
    tables/<name>.meta.json   run, notebook, title, column roles, withheld cells (no timestamps)
    tables/<name>.md / .tex   human-readable (labels in params.lang), footer explaining "s"
    <notebook>.xlsx           one sheet per table (written by finish), deterministic zip
    figures/<name>.png / .pdf 300 dpi PNG and vector PDF, run id in the metadata, no creation date
    figures/<name>.data.csv   the protected aggregate frame behind the figure (+ .data.meta.json)
    <name>.md                 texts
    outputs.json              this notebook's piece of the run manifest
The cells of every output (values included, withheld ones too) go to the run's private audit store
($HIPFRAC_AUDIT_DIR/<notebook>.jsonl, set by the runner; never published) for the run-level audit
(python -m hipfrac audit), whose plan ($HIPFRAC_AUDIT_PLAN) a re-execution applies.
"""

from __future__ import annotations

import dataclasses
import io
import json
import numbers
import os
import re
import warnings
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from hipfrac import disclosure, labels, protection, results, tableformat
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


def _where(mask: pd.DataFrame):
    """(rows, columns) of the True cells of a boolean frame."""
    rows, cols = [], []
    for c in mask.columns:
        for i in mask.index[mask[c].to_numpy(bool)]:
            rows.append(i)
            cols.append(c)
    order = sorted(range(len(rows)), key=lambda k: (rows[k], cols[k]))
    return [rows[k] for k in order], [cols[k] for k in order]


def _html_escape(s: str) -> str:
    import html

    return html.escape(str(s))


def _load_plan(path: str | None, notebook: str) -> frozenset:
    """Cells the run-level audit planned to withhold (hipfrac.audit), for a re-execution."""
    if not path or not Path(path).exists():
        return frozenset()
    from hipfrac.sdc import Cell

    plan = json.loads(Path(path).read_text(encoding="utf-8"))
    return frozenset(Cell.from_json(c) for c in plan.get("withhold", []))


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


PROTECTED = "hipfrac_protected"


def _sliced(prot: protection.Protected, frame: pd.DataFrame, what: str) -> protection.Protected:
    """The protection of a row/column selection of a protected frame (e.g. the units flagged outside the
    funnel limits, taken from out.protect(result)): its mask and roles restricted to the selection; its
    cells stay those of the whole result (publishing part of it tells nothing the whole does not).
    A frame with new columns or rows (or edited values) is refused: protect the result again instead."""
    parent = prot.frame
    if frame is parent:
        return prot
    cols = [c for c in frame.columns if c not in parent.columns]
    rows = frame.index.difference(parent.index)
    if cols or len(rows):
        raise ValueError(f"{what}: built from a protected frame with new columns {cols} or rows; protect the "
                         "result itself (compute the new columns before out.protect)")
    sub = parent.loc[frame.index, list(frame.columns)]
    if not sub.equals(frame):
        raise ValueError(f"{what}: values of a protected frame were changed; protect the result itself")
    if frame.index.equals(parent.index) and list(frame.columns) == list(parent.columns):
        return prot
    mcols = [c for c in frame.columns if c in prot.mask.columns]
    mask = prot.mask.iloc[parent.index.get_indexer(frame.index)][mcols].set_axis(frame.index)
    out = dataclasses.replace(prot, frame=frame, mask=mask,
                              roles={c: r for c, r in prot.roles.items() if c in frame.columns})
    out.frame.attrs[PROTECTED] = frame.attrs.get(PROTECTED)
    return out


def _answer_key(notebook: str, kind: str, name: str, frame: pd.DataFrame, private=()) -> None:
    """Tests only: with HIPFRAC_ANSWER_KEY set, the unprotected frame of every output is written there
    (same rows as the published CSV), for the attack tests to score recoveries."""
    d = os.environ.get("HIPFRAC_ANSWER_KEY")
    if not d:
        return
    p = Path(d) / notebook / kind
    p.mkdir(parents=True, exist_ok=True)
    write_csv(frame.drop(columns=[c for c in private if c in frame.columns]).reset_index(drop=True),
              p / f"{name}.csv")


class Exporter:
    """Writes disclosure-checked tables and figures for one notebook of one run."""

    def __init__(self, params, notebook: str, output_dir: str | Path | None = None):
        if not _NAME_RE.match(notebook):
            raise ValueError(f"notebook name {notebook!r}: use letters, digits, '_', '-', '.'")
        self.params = params
        self.notebook = notebook
        self.run = params.run
        self.interactive = output_dir is None
        self.dir = Path(output_dir) if output_dir else params.interactive_dir / notebook
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
        self.registry = protection.Registry()
        self._protected: dict[int, protection.Protected] = {}
        self._inferred = 0
        self._audit: list[tuple[str, object, float | None, str]] = []
        self.forced = _load_plan(os.environ.get("HIPFRAC_AUDIT_PLAN"), notebook)
        if self.interactive:
            self._display(f"*Interactive run: outputs go to `{self.dir}` (not published; only `make` "
                          "publishes a run, after its disclosure audit and scan).*", "markdown")

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

    def _display(self, obj, kind: str = "markdown", name: str = "") -> None:
        """Show obj in the notebook, marked as an Exporter output (the runner keeps only those)."""
        try:
            from IPython import get_ipython
            from IPython.display import Markdown, display
        except ImportError:  # pragma: no cover - IPython is a dependency
            return
        if get_ipython() is None:
            return
        meta = {"hipfrac": {"output": kind, "name": name, "notebook": self.notebook}}
        if kind == "markdown":
            display(Markdown(obj), metadata=meta)
        else:
            display(obj, metadata=meta)

    def _undeclared(self, frame: pd.DataFrame, counts, what: str) -> list[str]:
        """Count-like columns (by name) holding small values that a legacy counts= list left out."""
        others = [c for c in disclosure.detect_counts(frame) if c not in counts]
        left = disclosure.small_cells(frame, self.min_cell, others)
        if not left:
            return []
        if self.strict:
            disclosure.check_no_small_cells(frame, what, self.min_cell, others)
        cols = sorted({c for _, c, _ in left})
        self._warn(f"{what}: count-like column(s) {cols} were not declared in counts= but hold small values; "
                   f"suppressed them as counts")
        return cols

    def _protect(self, data, what: str, counts=None, derived=None, row_totals="auto",
                 by=None) -> protection.Protected:
        """Person-level check, then protection against everything published before (not recorded)."""
        frame = _tidy(data, what)
        disclosure.check_person_level(frame, what)
        token = frame.attrs.get(PROTECTED)
        if token is not None and token in self._protected:
            return _sliced(self._protected[token], frame, what)
        undeclared: list[str] = []
        if not results.is_result(frame):  # a result's own metadata wins over counts= / derived=
            if self.strict and not results.is_result(frame) and counts is None:
                raise DisclosureError(f"{what}: the frame carries no disclosure metadata; export the result of a "
                                      "hipfrac analysis function (or annotate it with hipfrac.results.annotate)")
            if counts is not None:
                undeclared = self._undeclared(frame, counts, what)
            self._inferred += 1  # each plain frame its own universe: it is linked to nothing else
            frame = protection.infer(frame, None if counts is None else list(counts) + undeclared, derived,
                                     row_totals, universe=f"plain:{self.notebook}:{self._inferred}", by=by)
        prot = protection.protect(frame, self.min_cell, registry=self.registry, forced=self.forced,
                                  strict=self.strict, name=what,
                                  protect_missing=self.params.export.protect_missing)
        prot.undeclared = undeclared
        if prot.exposed:
            msg = (f"{what}: {len(prot.exposed)} small count(s) could not be protected here (the run-level audit "
                   f"decides): " + "; ".join(prot.exposed[:5]))
            if self.strict:
                raise DisclosureError(msg)
            self.warnings.append(msg)
        token = id(prot)
        prot.frame.attrs[PROTECTED] = token
        self._protected[token] = prot
        return prot

    def _publish(self, prot: protection.Protected, output: str) -> None:
        """Record what an output published: later outputs are protected against it, the audit sees it."""
        self.registry.record(prot)
        self._audit += [(output, cell, v, st) for cell, v, st in prot.cells]

    # --- interface ---------------------------------------------------------------------------------
    def protect(self, data, counts=None, derived=None, *, by=None, row_totals="auto") -> pd.DataFrame:
        """The protected copy of a result (withheld cells missing), to draw a figure from by hand; pass it
        as `data=` to `figure`, which records it as published. Refuses person-level frames."""
        return self._protect(data, "frame passed to protect()", counts, derived, row_totals, by).frame

    suppress = protect  # the earlier name

    def table(self, df: pd.DataFrame, name: str, *, title: str = "", counts=None, derived=None, by=None,
              row_totals="auto", formats=None, note: str = "", show: bool = False) -> Path:
        """Protect and write one table in every format of params.export.table_formats.

        counts / derived / row_totals: only for plain frames without metadata (refused in a real-data run).
        show: also display the formatted table in the notebook. Returns the path of the CSV.
        """
        self._claim("table", name)
        what = f"table '{name}' (notebook {self.notebook})"
        frame = _tidy(df, what)
        prot = self._protect(frame, what, counts, derived, row_totals, by)
        private = [c for c, r in prot.roles.items() if r == "private"]
        _answer_key(self.notebook, "tables", name, frame, private)
        self._publish(prot, f"table:{name}")
        safe, mask = prot.frame.reset_index(drop=True), prot.mask.reset_index(drop=True)
        tdir = self.dir / "tables"
        tdir.mkdir(parents=True, exist_ok=True)
        fmts = self.params.export.table_formats
        csv_path = tdir / f"{name}.csv"
        write_csv(safe, csv_path, self.params.export.float_digits)
        self._record(csv_path)
        roles = {c: r for c, r in prot.roles.items() if r != "private"}
        used_counts = [c for c, r in roles.items() if r == "count"]
        meta = {
            "run": self.run, "notebook": self.notebook, "table": name, "title": title, "note": note,
            "params_fingerprint": self.params.fingerprint(), "min_cell": self.min_cell,
            "real_data": self.strict, "rows": len(safe), "columns": [str(c) for c in safe.columns],
            "count_columns": used_counts, "roles": roles,
            "suppressed": {**prot.summary(), "cells": [[int(i), str(c)] for i, c in zip(*_where(mask[used_counts]))]},
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
                            "suppressed": prot.summary(), "undeclared_counts": getattr(prot, "undeclared", [])})
        if show:
            self._show_human(human, title, name)
        return csv_path

    def show(self, data, *, title: str = "", formats=None, columns=None) -> None:
        """Display a protected table in the notebook (formatted; withheld cells "s"); it counts as
        published. columns: the columns to show (default all)."""
        what = f"displayed table (notebook {self.notebook})"
        prot = self._protect(data, what)
        self._publish(prot, f"show:{len(self._audit)}")
        safe, mask = prot.frame.reset_index(drop=True), prot.mask.reset_index(drop=True)
        if columns is not None:
            safe, mask = safe[list(columns)], mask[list(columns)]
        used = [c for c, r in prot.roles.items() if r == "count" and c in safe.columns]
        human = tableformat.format_table(safe, mask, lang=self.lang, counts=used, formats=formats)
        self._show_human(human, title, "")

    def _show_human(self, human: pd.DataFrame, title: str, name: str) -> None:
        html = (f"<p><b>{_html_escape(title)}</b></p>" if title else "") + human.to_html(index=False, escape=True)
        try:
            from IPython.display import HTML
        except ImportError:  # pragma: no cover
            return
        self._display(HTML(html), "table", name)

    def figure(self, fig_or_name, name_or_plot=None, data=None, *, title: str = "", counts=None, derived=None,
               show: bool = False, **plot_kwargs) -> Path:
        """Save a figure as PNG (params.export.dpi) and PDF, with the protected data behind it.

        Preferred: ``out.figure(name, plot, data, title=..., **kwargs)``: `data` (a result, or a dict of
        results for plot functions taking several frames) is protected first and the figure is drawn by
        ``plot(protected, **kwargs)`` (or ``plot(**protected_dict, **kwargs)``), so it cannot show a
        withheld value. Also accepted: ``out.figure(fig, name, data=protected)`` for a figure drawn by
        hand from `out.protect(...)`; data that was not protected is protected for the data file, and in a
        real-data run the figure is refused when that withheld anything.
        In a real-data run a figure whose artists draw one mark per person (a scatter of patients) is
        refused. Files are written by a background process (params export.figure_workers); they exist
        once `finish()` has returned. show: display the figure in the notebook. Returns the PNG path.
        """
        if isinstance(fig_or_name, str):
            name, plot, fig = fig_or_name, name_or_plot, None
            if not callable(plot):
                raise TypeError("out.figure(name, plot, data, ...): plot must be a function drawing the figure")
        else:
            fig, name, plot = fig_or_name, name_or_plot, None
        self._claim("figure", name)
        what = f"figure '{name}' (notebook {self.notebook})"
        fdir = self.dir / "figures"
        fdir.mkdir(parents=True, exist_ok=True)
        info = {"name": name, "title": title, "data": data is not None, "unsuppressed_small_cells": 0}
        frames = data if isinstance(data, dict) else ({"": data} if data is not None else {})
        prots = {}
        for key, frame in frames.items():
            label = what + (f" data '{key}'" if key else "")
            tidy = _tidy(frame, label)
            was_protected = tidy.attrs.get(PROTECTED) in self._protected
            if plot is None and not was_protected:
                left = disclosure.small_cells(tidy, self.min_cell, counts)
                if left:
                    if self.strict:
                        disclosure.check_no_small_cells(tidy, what, self.min_cell, counts)
                    info["unsuppressed_small_cells"] += len(left)
                    self._warn(f"{what}: drawn from {len(left)} unsuppressed small count(s); draw it with "
                               f"out.figure(name, plot, data) (a real-data run would stop here)")
            prots[key] = self._protect(tidy, label, counts, derived)
            private = [c for c, r in prots[key].roles.items() if r == "private"]
            _answer_key(self.notebook, "figures", name + (f".{key}" if key else ""), tidy, private)
        if plot is not None:
            safe = {k: p.frame for k, p in prots.items()}
            fig = plot(safe[""], **plot_kwargs) if list(safe) == [""] else plot(**safe, **plot_kwargs)
        if fig is None:
            raise ValueError(f"{what}: the plot function returned no figure")
        if self.strict:
            from hipfrac.figures import inspect as figinspect

            rows = max((len(p.frame) for p in prots.values()), default=None)
            marks = figinspect.individual_marks(fig, n_rows=rows)
            if marks:
                raise DisclosureError(f"{what}: draws individual marks ({'; '.join(marks[:3])}); a real-data "
                                      "figure shows aggregates only")
        for key, prot in prots.items():
            self._publish(prot, f"figure:{name}" + (f":{key}" if key else ""))
            stem = f"{name}.data" if not key else f"{name}.{key}.data"
            p = fdir / f"{stem}.csv"
            write_csv(prot.frame.reset_index(drop=True), p, self.params.export.float_digits)
            self._record(p)
            mp = fdir / f"{stem}.meta.json"
            roles = {c: r for c, r in prot.roles.items() if r != "private"}
            mp.write_text(json.dumps({"run": self.run, "notebook": self.notebook, "figure": name, "title": title,
                                      "min_cell": self.min_cell, "roles": roles,
                                      "count_columns": [c for c, r in roles.items() if r == "count"],
                                      "suppressed": prot.summary()}, indent=1, ensure_ascii=False) + "\n",
                          encoding="utf-8")
            self._record(mp)
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
        if show:
            self._display(fig, "figure", name)
        if plot is not None:
            import matplotlib.pyplot as plt

            plt.close(fig)
        return Path(jobs[0][0]) if jobs else None

    def wait_figures(self) -> None:
        """Block until every figure handed to `figure()` is written (finish() calls this)."""
        self._saver.wait()

    def text(self, name: str, text: str, *, show: bool = True) -> Path:
        """Write a Markdown text (e.g. a results paragraph generated from the numbers) as <name>.md, and
        show it in the notebook."""
        self._claim("text", name)
        path = self.dir / f"{name}.md"
        path.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
        self.texts.append(name)
        if show:
            self._display(text, "markdown", name)
        return self._record(path)

    def say(self, markdown: str) -> None:
        """Show a short Markdown note in the notebook (not written to a file; scanned with the notebook)."""
        self._display(markdown, "markdown")

    def finish(self) -> None:
        """Wait for the figures, write the XLSX workbook, the notebook's manifest piece (outputs.json) and
        its cells for the run-level audit; show a one-line summary."""
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
        self._write_audit()
        sup = part["suppressed_cells"]
        self._display(f"*{len(self.tables)} tables, {len(self.figures)} figures and {len(self.texts)} texts "
                      f"written; {sup['primary']} small counts withheld, {sup['secondary']} more to protect them, "
                      f"{sup['derived']} derived values with them.*", "markdown")

    def _write_audit(self) -> None:
        d = os.environ.get("HIPFRAC_AUDIT_DIR")
        if not d:
            return
        path = Path(d) / f"{self.notebook}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = [json.dumps({"output": o, "cell": c.to_json(), "value": v, "status": st}, ensure_ascii=False)
                 for o, c, v, st in self._audit]
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text("\n".join(lines) + ("\n" if lines else ""), encoding="utf-8")
        tmp.replace(path)

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
