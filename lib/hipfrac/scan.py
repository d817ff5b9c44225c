"""Output scanner: `python -m hipfrac scan outputs/<run>` checks every file of a run for
person-level content before anything leaves a secure server.

What it looks for, in every file (tables, sidecars, texts, manifests, executed notebooks: their code
and their outputs - text/plain, text/html, text/markdown, streams, errors):
  - pseudonymous ids in the formats of the registry contract (hipfrac.schema): person P1234567,
    operation O12345678, episode E123456789, municipal service K123456789, dispensing R123456789,
    and 11-digit national identity numbers;
  - exact dates of birth or death: a day-precision date in a column named like birth/death, or next
    to such a word in text;
  - record-like tables (CSV, XLSX sheets, Markdown and HTML tables): identifier columns, or many rows
    of cohort variables / distinct exact dates with no count column (hipfrac.disclosure rules);
  - small counts: 1..min_cell-1 in a count column (n, events, deaths, n_*, ... and their labels).
Images (PNG, PDF) are not read; the aggregate frame behind each figure is saved beside it as
<name>.data.csv and scanned.

Exit status 0 when clean, 1 with a list of findings (file, place, what) otherwise.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd

from hipfrac import disclosure, labels

# Id formats of the registry contract (hipfrac.schema: PERSON_ID and the *_id patterns); tests check
# that these agree with the schema.
ID_PATTERNS = {
    "person id": r"P\d{7}",
    "operation id": r"O\d{8}",
    "episode id": r"E\d{9}",
    "municipal service id": r"K\d{9}",
    "dispensing id": r"R\d{9}",
    "national identity number": r"\d{11}",
}
# an id stands alone: not part of a longer word or number (digits after a decimal point are not ids)
_ID_RES = {k: re.compile(rf"(?<![A-Za-z0-9.,]){v}(?![A-Za-z0-9]|[.,]\d)") for k, v in ID_PATTERNS.items()}
_DATE = r"(?:18|19|20)\d{2}-[01]\d-[0-3]\d|[0-3]\d\.[01]\d\.(?:18|19|20)\d{2}"
_BD_WORDS = (r"(?<![A-Za-zæøåÆØÅ])(?:birth|born|dob|death|died|dod|deceased|f[øo]dsels?dato|f[øo]dt|d[øo]ds?dato"
             r"|d[øo]de?)(?![a-zæøå])")
_BD_TEXT_RE = re.compile(rf"{_BD_WORDS}[^\n]{{0,40}}?(?<!\d)({_DATE})(?!\d)|(?<!\d)({_DATE})(?!\d)[^\n]{{0,25}}?{_BD_WORDS}",
                         re.IGNORECASE)
_DAY_DATE_RE = re.compile(rf"(?<!\d)(?:{_DATE})(?!\d)")
TEXT_SUFFIXES = {".md", ".txt", ".tex", ".json", ".html", ".htm", ".csv", ".tsv", ".log", ".yaml", ".yml"}
SKIP_SUFFIXES = {".png", ".pdf", ".jpg", ".jpeg", ".svg", ".gif", ".zip", ".parquet"}
RECORD_TEXT_LINES = 10
MAX_FINDINGS_PER_FILE = 20


@dataclass(frozen=True)
class Finding:
    path: str
    where: str
    kind: str
    detail: str

    def __str__(self) -> str:
        return f"{self.path} [{self.where}] {self.kind}: {self.detail}"


# --- count columns by name or label --------------------------------------------------------------
def _count_headers() -> set[str]:
    heads = set()
    for key in disclosure.COUNT_NAMES:
        for lang in labels.LANGS:
            if labels.has(key):
                heads.add(labels.t(key, lang).lower())
    return heads


def _is_count_header(name) -> bool:
    return disclosure.is_count_col(name) or str(name).strip().lower() in _count_headers()


def _to_number(v):
    if v is None:
        return None
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    s = str(v).strip().replace("\u00a0", "").replace("\u2009", "").replace("\u2212", "-")
    s = s.replace(",", "") if re.fullmatch(r"-?\d{1,3}(,\d{3})+(\.\d+)?", s) else s.replace(" ", "")
    s = s.replace(",", ".") if re.fullmatch(r"-?\d+,\d+", s) else s
    try:
        return float(s)
    except ValueError:
        return None


# --- checks ------------------------------------------------------------------------------------
def _first_of_month(date: str) -> bool:
    return date.endswith("-01") or date.startswith("01.")


def scan_text(text: str, path: str, where: str) -> list[Finding]:
    """Id patterns, exact dates of birth/death, record-like runs of dated lines."""
    out = []
    for kind, rx in _ID_RES.items():
        hits = sorted(set(rx.findall(text)))
        if hits:
            out.append(Finding(path, where, f"pseudonymous id ({kind})",
                               f"{len(hits)} value(s), e.g. {hits[0]}"))
    m = _BD_TEXT_RE.search(text)
    if m:
        out.append(Finding(path, where, "exact date of birth or death", repr(m.group(0)[:80])))
    # many lines holding distinct exact dates look like records; first-of-month dates are periods
    # of a time series (monthly counts), not events of a person
    dated = [ln for ln in text.splitlines() if any(not _first_of_month(d) for d in _DAY_DATE_RE.findall(ln))]
    days = {d for ln in dated for d in _DAY_DATE_RE.findall(ln) if not _first_of_month(d)}
    if len(dated) >= RECORD_TEXT_LINES and len(days) >= RECORD_TEXT_LINES:
        out.append(Finding(path, where, "record-like text",
                           f"{len(dated)} lines holding distinct exact dates, e.g. {dated[0].strip()[:80]!r}"))
    return out


def scan_frame(df: pd.DataFrame, path: str, where: str, min_cell: int) -> list[Finding]:
    """A table as read back: person-level shape, id values, small counts."""
    out = []
    if df.empty:
        return out
    df = df.copy()
    df.columns = [str(c) for c in df.columns]
    for r in disclosure.person_level_reasons(df):
        out.append(Finding(path, where, "person-level table", r))
    blob = "\n".join(df.astype(str).agg(" ".join, axis=1))
    out += [f for f in scan_text(blob, path, where) if f.kind != "record-like text"]
    for c in df.columns:
        if not _is_count_header(c):
            continue
        vals = df[c].map(_to_number)
        # counts are whole numbers; model-based expected numbers (1.1 deaths avoided) are not
        small = [(i, v) for i, v in enumerate(vals) if v is not None and 1 <= v < min_cell and float(v).is_integer()]
        if small:
            i, v = small[0]
            out.append(Finding(path, where, "small count",
                               f"{len(small)} cell(s) in column '{c}' between 1 and {min_cell - 1}, "
                               f"first in row {i + 1}: {v:g}"))
    return out


class _HTMLTables(HTMLParser):
    """Minimal HTML table reader (stdlib only): a list of row lists per table."""

    def __init__(self):
        super().__init__()
        self.tables, self._row, self._cell, self._depth = [], None, None, 0

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
            self._depth += 1
        elif tag == "tr" and self._depth:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            if self._row and self.tables:
                self.tables[-1].append(self._row)
            self._row = None
        elif tag == "table":
            self._depth = max(0, self._depth - 1)

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def _rows_to_frame(rows: list[list[str]]) -> pd.DataFrame:
    rows = [r for r in rows if any(x.strip() for x in r)]
    if len(rows) < 2:
        return pd.DataFrame()
    width = max(len(r) for r in rows)
    header = rows[0] + [f"col{i}" for i in range(len(rows[0]), width)]
    body = [r + [""] * (width - len(r)) for r in rows[1:]]
    header = [h if h else f"col{i}" for i, h in enumerate(header)]
    seen = {}
    for i, h in enumerate(header):  # unique names
        if h in seen:
            header[i] = f"{h}.{i}"
        seen[h] = 1
    return pd.DataFrame(body, columns=header).replace("", None)


def html_tables(html: str) -> list[pd.DataFrame]:
    p = _HTMLTables()
    p.feed(html)
    return [_rows_to_frame(t) for t in p.tables]


def markdown_tables(text: str) -> list[pd.DataFrame]:
    """Pipe tables of a Markdown text as frames of strings."""
    frames, block = [], []
    for line in [*text.splitlines(), ""]:
        if line.strip().startswith("|"):
            block.append(line.strip())
            continue
        if len(block) >= 2:
            rows = [[c.strip() for c in re.split(r"(?<!\\)\|", b.strip("|"))] for b in block]
            rows = [r for r in rows if not all(re.fullmatch(r":?-{3,}:?", c) for c in r if c)]
            frames.append(_rows_to_frame(rows))
        block = []
    return frames


def scan_notebook(path: Path, rel: str, min_cell: int) -> list[Finding]:
    nb = json.loads(path.read_text(encoding="utf-8"))
    out = []
    for k, cell in enumerate(nb.get("cells", [])):
        src = "".join(cell.get("source", "")) if isinstance(cell.get("source"), list) else cell.get("source", "")
        out += scan_text(src, rel, f"cell {k} source")
        for j, o in enumerate(cell.get("outputs", []) or []):
            where = f"cell {k} output {j}"
            texts = []
            if o.get("output_type") == "stream":
                texts.append(("text", _join(o.get("text", ""))))
            elif o.get("output_type") == "error":
                texts.append(("text", "\n".join(o.get("traceback", [])) + "\n" + str(o.get("evalue", ""))))
            for mime, val in (o.get("data") or {}).items():
                if mime in ("text/plain", "text/markdown", "text/latex"):
                    texts.append(("text", _join(val)))
                elif mime == "text/html":
                    texts.append(("html", _join(val)))
            for kind, text in texts:
                if kind == "html":
                    for t, frame in enumerate(html_tables(text)):
                        out += scan_frame(frame, rel, f"{where} html table {t}", min_cell)
                    text = re.sub(r"<[^>]+>", " ", text)
                else:
                    for t, frame in enumerate(markdown_tables(text)):
                        out += scan_frame(frame, rel, f"{where} table {t}", min_cell)
                out += scan_text(text, rel, where)
    return out


def _join(v) -> str:
    return "".join(v) if isinstance(v, list) else str(v)


def scan_xlsx(path: Path, rel: str, min_cell: int) -> list[Finding]:
    from openpyxl import load_workbook

    out = []
    wb = load_workbook(path, read_only=True, data_only=True)
    for ws in wb.worksheets:
        rows = [["" if v is None else str(v) for v in r] for r in ws.iter_rows(values_only=True)]
        start = next((i for i, r in enumerate(rows) if sum(bool(x.strip()) for x in r) >= 2), None)
        if start is None:
            out += scan_text("\n".join(" ".join(r) for r in rows), rel, f"sheet {ws.title}")
            continue
        end = next((i for i in range(start, len(rows)) if not any(x.strip() for x in rows[i])), len(rows))
        out += scan_frame(_rows_to_frame(rows[start:end]), rel, f"sheet {ws.title}", min_cell)
        out += scan_text("\n".join(" ".join(r) for r in rows[:start] + rows[end:]), rel, f"sheet {ws.title} notes")
    wb.close()
    return out


def scan_file(path: Path, root: Path, min_cell: int = 5) -> list[Finding]:
    """Findings in one file."""
    rel = path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)
    suffix = path.suffix.lower()
    if suffix in SKIP_SUFFIXES:
        return []
    try:
        if suffix == ".ipynb":
            return scan_notebook(path, rel, min_cell)
        if suffix == ".xlsx":
            return scan_xlsx(path, rel, min_cell)
        if suffix in (".csv", ".tsv"):
            df = pd.read_csv(path, dtype=str, keep_default_na=False, sep="\t" if suffix == ".tsv" else ",")
            df = df.replace("", None)
            return scan_frame(df, rel, "table", min_cell) + [
                f for f in scan_text(path.read_text(encoding="utf-8", errors="replace"), rel, "text")
                if f.kind == "exact date of birth or death"]
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return [Finding(rel, "file", "unreadable", "not UTF-8 text and not a known binary format")]
    except Exception as exc:  # a file we cannot parse is itself a finding: nobody checked it
        return [Finding(rel, "file", "unreadable", f"{type(exc).__name__}: {exc}")]
    out = []
    if suffix in (".md", ".txt"):
        for t, frame in enumerate(markdown_tables(text)):
            out += scan_frame(frame, rel, f"table {t}", min_cell)
    elif suffix in (".html", ".htm"):
        for t, frame in enumerate(html_tables(text)):
            out += scan_frame(frame, rel, f"html table {t}", min_cell)
        text = re.sub(r"<[^>]+>", " ", text)
    return out + scan_text(text, rel, "text")


def scan_run(run_dir: str | Path, min_cell: int = 5, include_supplement: bool = True) -> list[Finding]:
    """Findings in every file of a run directory (sorted, at most MAX_FINDINGS_PER_FILE per file)."""
    root = Path(run_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"no such output run directory: {root}")
    findings = []
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if not p.is_file() or any(part.startswith((".tmp-", ".old-")) for part in rel.parts):
            continue
        if not include_supplement and rel.parts[0] == "supplement":
            continue
        findings += scan_file(p, root, min_cell)[:MAX_FINDINGS_PER_FILE]
    return findings


def run_min_cell(root: Path, default: int = 5) -> int:
    """params.export.min_cell recorded in the run's manifest (or a notebook's piece), else default."""
    man = root / "manifest.json"
    try:
        if man.exists():
            return int(json.loads(man.read_text(encoding="utf-8"))["params"]["export"]["min_cell"])
        for part in sorted(root.glob("*/outputs.json")):
            return int(json.loads(part.read_text(encoding="utf-8"))["min_cell"])
    except (KeyError, ValueError, TypeError):
        pass
    return default


def cli(args) -> int:
    """python -m hipfrac scan outputs/<run> [--min-cell N]"""
    root = Path(args.path)
    min_cell = args.min_cell or run_min_cell(root)
    try:
        findings = scan_run(root, min_cell)
    except FileNotFoundError as exc:
        print(f"scan: {exc}", file=sys.stderr)
        return 2
    n_files = sum(1 for p in root.rglob("*") if p.is_file())
    if findings:
        print(f"scan: {len(findings)} finding(s) in {root} - nothing from this run may leave the server "
              f"until they are fixed:", file=sys.stderr)
        for f in findings:
            print(f"  - {f}", file=sys.stderr)
        return 1
    print(f"scan: {root}: {n_files} files checked, no person-level content or small counts found")
    return 0
