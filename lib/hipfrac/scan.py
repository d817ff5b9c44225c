"""Output scanner: `python -m hipfrac scan outputs/<run>` checks every file of a run for
person-level content before anything leaves a secure server.

What it reads: every file of the run - tables (CSV, XLSX sheets, Markdown, HTML and LaTeX tables),
their sidecars, texts, manifests, executed notebooks (code, Markdown cells and every output: text/plain
including pandas DataFrame and Series reprs, text/html tables, text/markdown, print and error output).
Images (PNG, PDF) are not read: the aggregate frame behind each figure is saved beside it as
<name>.data.csv and scanned, and figures that draw individuals are refused by the Exporter
(`hipfrac.figures.inspect.individual_marks`).

What it looks for, by name and by shape:
  - pseudonymous ids in the formats of the registry contract (hipfrac.schema): person P1234567,
    operation O12345678, episode E123456789, municipal service K123456789, dispensing R123456789,
    and 11-digit national identity numbers;
  - id-like columns whatever their name: many distinct hash-like values (hex, base64, UUID, long digit
    strings) or letter+digit codes unique per row;
  - exact dates of birth or death (a day-precision date in a column named like birth/death, or next to
    such a word in text), and columns holding many distinct day-precision dates whatever their name
    (first-of-month dates and regular grids - weekly, daily series - are periods, not events);
  - record-like tables: identifier columns or rows of cohort variables (hipfrac.disclosure rules), and,
    by shape, large tables (SHAPE.person_rows rows, or SHAPE.person_fraction of the run's `cohort_rows`
    from manifest.json) whose rows are unique only through high-cardinality columns: no dense key of
    dimension columns and not a curve;
  - small counts (1..min_cell-1) in any count-like column: named like a count (n, events, n_*, English
    and Norwegian words: antall, pasienter, døde, ...), declared a count in the table's sidecar
    (`count_columns` or `roles`), cells written as "n (%)", the cells of a crosstab (columns named by
    years, hospitals, regions, categories), or, whatever its name, an integer non-negative column that
    is not a year, a code, a flag, a key of the table, a statistic or a duration. A sidecar
    <name>.meta.json (tables/ and figures/<name>.data.meta.json) with `roles`
    {column: count|dimension|derived|statistic|label} exempts statistic, label and dimension columns;
  - small counts in prose: a number 1..min_cell-1 (digits or number words, English and Norwegian) tied
    to a person or event noun ("3 patients died", "tre pasienter", "deaths: 2", "n = 3").
Every finding names the file, the place (table, sheet, notebook cell and output), and where it applies
the column, row and value. Ids and dates are never printed: only a masked example (P12***).

Limits (what the shape rules let through, by design, to keep false positives low): whole numbers in
columns named like a statistic, a duration, a percentage, a rate, money or a number of units (df, k,
*_days, *_years, units_*, share, expected, cost, "%" in the header) unless the sidecar says count;
columns of only 0 and 1 (flags); person extracts below the row thresholds without ids or dates;
a bare number printed by a cell (`3`); "one"/"en" before a noun without a count context ("one patient
may have several fractures"); the pixels of figures. The old sidecar format (`count_columns`) only
marks counts: a column it does not list is still checked by its shape.

Exit status 0 when clean, 1 with a list of findings otherwise.
"""

from __future__ import annotations

import csv
import html as _html
import io
import json
import math
import re
import sys
import zipfile
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd

from hipfrac import digest, disclosure, labels

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
_ANY_ID_RE = re.compile(r"\d{7}")  # every contract id holds 7 digits in a row: a cheap first pass
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
class ShapeRules:
    """Thresholds of the shape rules (module default: `SHAPE`).

    Attributes
    ----------
    person_rows : int
        A table with this many rows is large whatever the run.
    person_fraction : float
        ... or with this share of the run's persons (`cohort_rows` in manifest.json, when recorded).
    person_min_rows : int
        The fraction rule applies from this many rows.
    unique_share : float
        "Mostly unique": share of distinct rows (or of distinct values in one column).
    key_levels : int
        Most distinct values of a dimension column (hospital, year, age band, ...).
    key_density : float
        A key of dimension columns is dense (an aggregate) when the table holds this share of the
        combinations of their levels; person rows unique by chance (age x sex x hospital) are sparse.
    id_min_distinct : int
        Fewest distinct values for an id-like column.
    date_min_distinct : int
        Fewest distinct day-precision dates for a column of exact dates.
    """

    person_rows: int = 1000
    person_fraction: float = 0.5
    person_min_rows: int = 100
    unique_share: float = 0.9
    key_levels: int = 100
    key_density: float = 0.05
    id_min_distinct: int = 10
    date_min_distinct: int = 10


SHAPE = ShapeRules()


@dataclass(frozen=True)
class Finding:
    """One finding: file, place in the file, kind, and (where it applies) column, row and value.

    `value` is the cell as found for small counts; ids and dates are only ever a masked example.
    """

    path: str
    where: str
    kind: str
    detail: str
    column: str | None = None
    row: int | str | None = None
    value: str | None = None

    def __str__(self) -> str:
        loc = []
        if self.column is not None:
            loc.append(f"column {self.column!r}")
        if self.row is not None:
            loc.append(f"row {self.row}")
        if self.value is not None:
            loc.append(f"value {self.value}")
        tail = f" ({', '.join(loc)})" if loc else ""
        return f"{self.path} [{self.where}] {self.kind}: {self.detail}{tail}"


# --- masking: ids and dates never appear in a finding ------------------------------------------
def _mask(value) -> str:
    """A masked example of an id or date: its first 3 characters, then ***."""
    s = str(value).strip()
    return (s[:3] if len(s) > 4 else s[:1]) + "***"


def _mask_date(d: str) -> str:
    """A masked date: nothing of it but its first characters (2016-04-12 -> 201***)."""
    return _mask(d)


def _mask_text(text: str) -> str:
    """text with every contract id, long digit run and exact date masked."""
    text = _DAY_DATE_RE.sub(lambda m: _mask_date(m.group(0)), text)
    for rx in _ID_RES.values():
        text = rx.sub(lambda m: _mask(m.group(0)), text)
    return re.sub(r"\d{7,}", lambda m: _mask(m.group(0)), text)


# --- count columns by name or label --------------------------------------------------------------
@lru_cache(maxsize=1)
def _count_headers() -> frozenset[str]:
    heads = set()
    for key in disclosure.COUNT_NAMES:
        if labels.has(key):
            for lang in labels.LANGS:
                heads.add(labels.t(key, lang).lower())
    return frozenset(heads)


# words of a column name that make it a count (English and Norwegian); the column must then hold only
# whole numbers (a name like "deaths_avoided" with 1.3 is an expected number, not a count)
COUNT_WORDS = frozenset({
    "n", "antall", "count", "counts", "number", "freq", "frequency", "events", "deaths", "dead", "died",
    "deceased", "cases", "patients", "persons", "people", "individuals", "operations", "operated",
    "reoperations", "reoperated", "fractures", "admissions", "admitted", "women", "men", "observed",
    "survivors", "starters", "pasienter", "personer", "døde", "dode", "dødsfall", "dodsfall", "hendelser",
    "tilfeller", "brudd", "operasjoner", "operert", "opererte", "reoperasjoner", "reopererte", "innlagte",
    "innleggelser", "kvinner", "menn", "behandlede", "overlevende", "registreringer",
})
# ... unless another word says it is a rate, a share or a model quantity
NOT_COUNT_WORDS = frozenset({
    "pct", "percent", "prosent", "share", "andel", "rate", "rater", "ratio", "prop", "proportion", "mean",
    "median", "avg", "average", "snitt", "gjennomsnitt", "per", "pr", "expected", "forventet", "avoided",
    "unngåtte", "smr", "lower", "upper", "se", "sd", "ci", "hr", "or", "rr", "p", "prevented",
})
# names of integer columns that are not counts of persons: degrees of freedom, orders, codes, numbers
# of units or strata, replicates, durations and times (checked after the count names: "deaths_days"
# stays a count)
_NONCOUNT_NAME_RE = re.compile(
    r"^(?:df|dof|k|rank|order|step|steg|bin|lag|knots?|seed|version|versjon|level|nivå|cause|årsak|code|kode|ref"
    r"|(?:boot_)?replicates?|iterations?|folds?|units(?:_\w+)?|enheter|areas|strata(?:_\w+)?"
    r"|(?:\w+_)?(?:days?|weeks?|months?|years?|hours?|minutes?|time|age|dager|uker|måneder|år|timer|alder|tid)"
    r"|(?:start|stop|end|horizon|window|duration|period|interval|tidspunkt|periode|varighet)(?:_\w+)?)$")
NOT_COUNT_ROLES = frozenset({"statistic", "label", "dimension"})
COUNT_ROLES = frozenset({"count", "private"})


_NON_WORD_RE = re.compile(r"[^0-9a-zæøåé]+")


@lru_cache(maxsize=4096)
def _norm_name(name) -> str:
    return _NON_WORD_RE.sub("_", str(name).strip().lower()).strip("_")


def _is_count_header(name) -> bool:
    """Count column by name as before: hipfrac.disclosure rules and their labels."""
    return disclosure.is_count_col(name) or str(name).strip().lower() in _count_headers()


def _count_word(name) -> bool:
    """A count word in the name (English or Norwegian) and no rate/share/model word."""
    words = set(_norm_name(name).split("_"))
    return bool(words & COUNT_WORDS) and not words & NOT_COUNT_WORDS


# money and model quantities: never counts of persons
_MONEY_WORDS = frozenset({"cost", "costs", "saving", "savings", "price", "kr", "nok", "eur", "usd", "kostnad",
                          "kostnader", "besparelse", "besparelser", "pris", "budget", "budsjett"})


def _noncount_name(name) -> bool:
    """Names of columns that are not counts of persons even when they hold whole numbers: statistics
    (df, k), orders and codes, numbers of units or strata, times and durations, percentages, rates,
    expected or avoided numbers, money."""
    norm = _norm_name(name)
    words = set(norm.split("_"))
    return bool(_NONCOUNT_NAME_RE.match(norm) or "%" in str(name) or words & NOT_COUNT_WORDS or words & _MONEY_WORDS)


# --- labels that head the columns of a crosstab ----------------------------------------------------
@lru_cache(maxsize=1)
def _unit_labels() -> frozenset[str]:
    """Hospitals, trusts, regions, referral areas, municipalities, category codes and their labels,
    and total labels (lower case): column headers of a crosstab."""
    out = {str(x).lower() for x in disclosure.TOTAL_LABELS}
    out |= {"missing", "unknown", "ukjent", "mangler", "other", "annet", "annen", "sum", "total", "totalt"}
    try:
        from hipfrac import geography

        h = geography.hospitals()
        for col in ("hospital", "hospital_name", "trust", "region", "referral_area"):
            out |= {str(x).lower() for x in h[col]}
        out |= {str(x).lower() for x in geography.referral_areas()["referral_area"]}
        out |= {str(x).lower() for x in geography.municipalities()["municipality_name"]}
    except Exception:  # reference data missing: crosstabs by year and category still found
        pass
    try:
        from importlib import resources

        import yaml

        text = resources.files("hipfrac").joinpath("data/cohort_dictionary.yaml").read_text(encoding="utf-8")
        for spec in (yaml.safe_load(text) or {}).get("columns", {}).values():
            for code in (spec or {}).get("codes", []) or []:
                code = str(code)
                if not re.fullmatch(r"[\d\s.+-]+", code):  # numeric codes ("1-2", "3+") are not labels
                    out.add(code.lower())
                    for lang in labels.LANGS:
                        out.add(labels.t(code, lang).lower())
    except Exception:
        pass
    return frozenset(out)


def _unit_like_header(h: str) -> bool:
    s = str(h).strip()
    return bool(re.fullmatch(r"(?:19|20)\d{2}", s)) or s.lower() in _unit_labels()


# --- numbers ------------------------------------------------------------------------------------
_THOUSANDS_RE = re.compile(r"-?\d{1,3}(,\d{3})+(\.\d+)?")
_DECIMAL_COMMA_RE = re.compile(r"-?\d+,\d+")


def _to_number(v):
    if v is None:
        return None
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    s = str(v).strip().replace("\u00a0", "").replace("\u2009", "").replace("\u2212", "-")
    s = s.replace(",", "") if _THOUSANDS_RE.fullmatch(s) else s.replace(" ", "")
    s = s.replace(",", ".") if _DECIMAL_COMMA_RE.fullmatch(s) else s
    try:
        return float(s)
    except ValueError:
        return None


_NPCT_RE = re.compile(r"(\d{1,3}(?:[ \u00a0\u2009,]\d{3})*|\d+)\s*\(\s*\d+(?:[.,]\d+)?\s*%?\s*\)")
_MARKER_RE = re.compile(r"(?i)^(?:[<≤>≥]\s*\d+|[-–—.*x]+|\.\.|n/?a|nan|none|null|<na>|nat|s|supp\w*|withheld|prikket"
                        r"|skjult|inf|-inf|true|false)$")
_DISK_DATE_RE = re.compile(r"^\s*\d{4}-\d{2}-\d{2}(?:[ T]\d{2}:\d{2}(?::\d{2})?)?\s*$")  # as hipfrac.disclosure
_CELL_DATE_RE = re.compile(r"^\s*((?:18|19|20)\d{2})-([01]\d)-([0-3]\d)(?:[ T]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?\s*$"
                           r"|^\s*([0-3]\d)\.([01]\d)\.((?:18|19|20)\d{2})\s*$")


@dataclass(frozen=True)
class _Cell:
    num: float | None  # the number (plain, or the n of "n (%)")
    npct: bool  # written "n (%)"
    marker: bool  # a suppression mark or a missing value ("<5", "–", "NaN")
    date: int | None  # day number of a day-precision date (None if not a date)
    first_of_month: bool
    lead_zero: bool  # digits with a leading zero: a code ("0301")


_CELLS: dict[str, _Cell] = {}


def _cell(s: str) -> _Cell:
    c = _CELLS.get(s)
    if c is not None:
        return c
    num, npct, marker, date, fom, lead0 = None, False, False, None, False, False
    t = s.strip()
    if _MARKER_RE.match(t):
        marker = True
    else:
        num = _to_number(t)
        if num is not None and not math.isfinite(num):
            num, marker = None, True
        if num is None:
            m = _NPCT_RE.fullmatch(t)
            if m:
                num, npct = _to_number(m.group(1)), True
            else:
                m = _CELL_DATE_RE.match(t)
                if m:
                    y, mo, d = (m.group(1), m.group(2), m.group(3)) if m.group(1) else (m.group(6), m.group(5), m.group(4))
                    try:
                        date = (datetime(int(y), int(mo), int(d)) - datetime(1800, 1, 1)).days
                        fom = d == "01"
                    except ValueError:
                        date = None
        elif len(t) > 1 and t[0] == "0" and t.isdigit():
            lead0 = True
    c = _Cell(num, npct, marker, date, fom, lead0)
    if len(_CELLS) > 500_000:
        _CELLS.clear()
    _CELLS[s] = c
    return c


# --- id-like shapes -------------------------------------------------------------------------------
_ID_SHAPES = (
    ("UUID", re.compile(r"(?i)[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")),
    ("hex hash", re.compile(r"(?=[0-9a-f]*[a-f])(?=[0-9a-f]*\d)[0-9a-f]{12,}|(?=[0-9A-F]*[A-F])(?=[0-9A-F]*\d)[0-9A-F]{12,}")),
    ("base64 hash", re.compile(r"(?=\S*[a-z])(?=\S*[A-Z])(?=\S*\d)[A-Za-z0-9+/_-]{16,}={0,2}")),
    ("long number", re.compile(r"\d{12,}")),
)
_CODE_RE = re.compile(r"[A-Za-z]{1,4}[-_]?\d{5,}|\d{5,}[-_]?[A-Za-z]{1,3}")  # not ICD-10 codes (S7200)
_FILE_RE = re.compile(r"(?i)^(?:.*[/\\].*|[\w.-]+\.(?:csv|parquet|xlsx?|sav|dta|sas7bdat|json|ya?ml|txt|ipynb|py|zip|gz))$")


def _id_shape(values) -> tuple[str, int] | None:
    """(shape, matching values) when nearly all values have one id-like shape."""
    vals = list(values)
    for name, rx in _ID_SHAPES:
        k = sum(1 for v in vals if rx.fullmatch(v))
        if k >= 0.9 * len(vals):
            return name, k
    k = sum(1 for v in vals if _CODE_RE.fullmatch(v))
    if k >= 0.9 * len(vals):
        return "letter+digit code", k
    return None


# --- checks on text -------------------------------------------------------------------------------
def _first_of_month(date: str) -> bool:
    return date.endswith("-01") or date.startswith("01.")


def scan_text(text: str, path: str, where: str) -> list[Finding]:
    """Id patterns, exact dates of birth/death, record-like runs of dated lines.

    Parameters
    ----------
    text : str
        The text (a file, a notebook cell's source or output, the cells of a table).
    path, where : str
        File (relative to the run) and place in it, for the findings.

    Returns
    -------
    list of Finding
        Ids and dates are masked in the findings.
    """
    out = []
    if _ANY_ID_RE.search(text):
        for kind, rx in _ID_RES.items():
            hits = sorted(set(rx.findall(text)))
            if hits:
                line = text.count("\n", 0, text.find(hits[0])) + 1
                out.append(Finding(path, where, f"pseudonymous id ({kind})",
                                   f"{len(hits)} value(s), value withheld, e.g. {_mask(hits[0])}",
                                   row=f"line {line}", value=_mask(hits[0])))
    if not _DAY_DATE_RE.search(text):
        return out
    m = _BD_TEXT_RE.search(text)
    if m:
        out.append(Finding(path, where, "exact date of birth or death",
                           f"{_mask_text(m.group(0)[:80])!r} (value withheld)",
                           row=f"line {text.count(chr(10), 0, m.start()) + 1}"))
    # many lines holding distinct exact dates look like records; first-of-month dates are periods
    # of a time series (monthly counts), not events of a person
    days, dated, first = set(), set(), None
    for m in _DAY_DATE_RE.finditer(text):
        d = m.group(0)
        if not _first_of_month(d):
            days.add(d)
            line_start = text.rfind("\n", 0, m.start()) + 1
            dated.add(line_start)
            first = line_start if first is None else first
    if len(dated) >= RECORD_TEXT_LINES and len(days) >= RECORD_TEXT_LINES:
        end = text.find("\n", first)
        line = text[first:end if end >= 0 else len(text)]
        out.append(Finding(path, where, "record-like text",
                           f"{len(dated)} lines holding distinct exact dates, e.g. {_mask_text(line.strip()[:80])!r}",
                           row=f"line {text.count(chr(10), 0, first) + 1}"))
    return out


# --- small counts in prose ----------------------------------------------------------------------
_EN_NUMBERS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9}
_NO_NUMBERS = {"én": 1, "ett": 1, "en": 1, "ei": 1, "to": 2, "tre": 3, "fire": 4, "fem": 5, "seks": 6, "sju": 7,
               "syv": 7, "åtte": 8, "ni": 9}
_ARTICLES = {"one", "en", "ei", "ett"}  # also "a"/"an": tied to a noun only when a count is meant
_EN_NOUNS = (r"patients?|persons?|people|individuals?|cases?|deaths?|died|dead|deceased|fractures?|operated"
             r"|operations?|reoperations?|reoperated|events?|wom[ae]n|m[ae]n|females?|males?|survivors?|residents?"
             r"|admissions?|admitted|starters?")
_NO_NOUNS = (r"pasient(?:er|en|ene)?|person(?:er|en|ene)?|døde|dode|døydde|dødsfall(?:et|ene)?|dodsfall"
             r"|tilfell(?:e|er|et|ene)|brudd(?:et|ene)?|opererte?|operasjon(?:er|en|ene)?|reopererte?"
             r"|reoperasjon(?:er|en|ene)?|hendelse(?:r|n|ne)?|kvinne(?:r|ne|n)?|menn(?:ene)?|mann(?:en)?"
             r"|innlagte|innleggelse(?:r|n|ne)?|behandlede|overlevende|beboere")
_NOUNS = f"{_EN_NOUNS}|{_NO_NOUNS}"
_NUM_WORDS = "|".join(sorted(set(_EN_NUMBERS) | set(_NO_NUMBERS), key=len, reverse=True))
_STOP_FILLERS = (r"per|pr|in|i|at|på|ved|out|of|av|and|og|or|eller|to|til|from|fra|than|enn|with|med|for|by"
                 r"|who|som|the|a|an|years?|år|months?|days?|weeks?|hours?")
_PROSE_FWD = re.compile(
    rf"(?<![\w.,/#§±+\-–—<>≤≥=])(?P<num>\d+|{_NUM_WORDS})"
    r"(?P<of>[ \u00a0](?:of|av)(?:[ \u00a0](?:the|these|those|them|whom|disse|dem|de))?)?"
    rf"(?P<fill>(?:[ \u00a0](?!(?:{_STOP_FILLERS})\b)[^\W\d_][\w\-]*){{0,2}}?)"
    rf"[ \u00a0](?P<noun>{_NOUNS})(?![\w\-])", re.IGNORECASE)
_PROSE_REV = re.compile(
    rf"(?<![\w.])(?P<noun>{_NOUNS}|n)\"?[ \u00a0]?(?:[:=]|[ \u00a0](?:was|were|var))[ \u00a0]?(?P<num>\d+)"
    r"(?![\w\-–]|[.,]\d|[ \u00a0]?%|[ \u00a0]?‰)", re.IGNORECASE)
_LABEL_WORDS = frozenset({
    "table", "tabell", "tab", "figure", "fig", "figur", "version", "versjon", "v", "step", "steg", "model",
    "modell", "chapter", "kapittel", "section", "seksjon", "avsnitt", "notebook", "cell", "celle", "item", "punkt",
    "line", "linje", "page", "side", "appendix", "vedlegg", "supplement", "no", "nr", "grade", "grad", "class",
    "klasse", "asa", "type", "stage", "level", "nivå", "week", "uke", "day", "dag", "month", "måned", "year", "år",
    "cohort", "kohort", "group", "gruppe", "quintile", "kvintil", "decile", "arm", "scenario", "k", "m", "p", "q",
    "df", "lag", "round", "runde", "period", "periode", "phase", "fase", "wave", "visit", "dose",
})
_COMPARATOR_RE = re.compile(
    r"(?:[<≤>≥~≈]|\b(?:under|below|above|over|fewer than|less than|more than|at least|at most|up to|between"
    r"|færre enn|mindre enn|mer enn|flere enn|minst|maks|maksimalt|inntil|opptil|mellom|approximately|about|ca\.?|omtrent"
    r"|cirka|around|rundt))\s*$", re.IGNORECASE)
_RANGE_BEFORE_RE = re.compile(r"(?:\d\s*(?:[-–—/]|\bto\b|\btil\b|\bor\b|\beller\b|\band\b|\bog\b)\s*"
                              r"|(?:\d+|\b(?:one|en|ett|ei))\s+(?:in|av|out of|of)\s+)$", re.IGNORECASE)
_AFTER_NOT_COUNT = re.compile(r"^[ \u00a0]*(?:per|pr\.?|each|every|hver|hvert|i året|a year|per year|/)\b", re.IGNORECASE)
_RESTRICTIVE_BEFORE = re.compile(r"\b(?:only|just|exactly|a total of|in total|of whom|including|kun|bare|nøyaktig"
                                 r"|totalt|i alt|hvorav|derav)\s*$", re.IGNORECASE)
_EVENT_AFTER = re.compile(r"^[ \u00a0]+(?:\w+[ \u00a0]+)?(?:died|was|were|had|received|underwent|døde|døydde|ble|fikk"
                          r"|omkom|hadde)\b", re.IGNORECASE)
_NON_PERSON_AFTER = re.compile(r"^[ \u00a0]+(?:hospitals?|units?|regions?|areas?|trusts?|studies|years?|months?|days?"
                               r"|weeks?|categories|levels?|models?|groups?|sykehus|enheter|regioner|områder|år|dager"
                               r"|måneder|uker|kategorier|grupper)\b", re.IGNORECASE)
_LAST_WORD_RE = re.compile(r"([\wæøå]+)\.?\s*$")
_THOUSANDS_BEFORE_RE = re.compile(r"\d[ \u00a0]$")
_NO_NOUN_RE = re.compile(rf"(?:{_NO_NOUNS})$", re.IGNORECASE)
_EN_NOUN_RE = re.compile(rf"(?:{_EN_NOUNS})$", re.IGNORECASE)


def _prose_value(num: str) -> int | None:
    low = num.lower()
    if low.isdigit():
        return None if (len(low) > 1 and low[0] == "0") else int(low)
    return _EN_NUMBERS.get(low, _NO_NUMBERS.get(low))


def scan_prose(text: str, path: str, where: str, min_cell: int = 5) -> list[Finding]:
    """Small counts written in prose: a number 1..min_cell-1 tied to a person or event noun.

    Forms: "3 patients at Kirkenes died", "two women", "4 operated", "2 of the patients", "tre pasienter
    døde", "to av pasientene", "deaths: 2", "døde = 3", "n = 3", JSON ``"deaths": 3``. Not counts (and not
    flagged): labels ("Table 3", "figure 2", "version 2", "ASA 3 patients", "k = 3"), units of time and
    other nouns ("1 year", "3 months", "4 categories"), decimals and percentages ("95 % CI", "p = 0.03",
    "2.3 deaths per 100 person-years"), ratios ("1 in 4 patients", "one fracture per patient"),
    thresholds and ranges ("fewer than 3 patients", "1-4 patients"), thousands ("1 204 patients"),
    English "to"/Norwegian "en" as words, and fixed-width tables (numbers and nouns in different columns
    are separated by more than one space).

    Parameters
    ----------
    text : str
        Prose (Markdown, a notebook's text output, JSON).
    path, where : str
        File and place, for the findings.
    min_cell : int, default 5
        Smallest count allowed.

    Returns
    -------
    list of Finding
        One finding per text with the number of small counts and the first of them.
    """
    hits = []
    for m in _PROSE_FWD.finditer(text):
        v = _prose_value(m.group("num"))
        if v is None or not 1 <= v < min_cell:
            continue
        num, noun = m.group("num").lower(), m.group("noun")
        before = text[max(0, m.start() - 40):m.start()]
        after = text[m.end():m.end() + 40]
        if not num.isdigit():
            if num in _EN_NUMBERS and not _EN_NOUN_RE.match(noun):
                continue
            if num not in _EN_NUMBERS and not _NO_NOUN_RE.match(noun):
                continue  # "to patients" is English "to"; "fire pasienter" is Norwegian, "fire patients" not
        if num in _ARTICLES and not (_RESTRICTIVE_BEFORE.search(before) or _EVENT_AFTER.match(after)):
            continue  # "one patient may have several fractures", "en pasient kan ha flere brudd"
        last = _LAST_WORD_RE.search(before)
        if last and last.group(1).lower() in _LABEL_WORDS:
            continue
        if _COMPARATOR_RE.search(before) or _RANGE_BEFORE_RE.search(before) or _THOUSANDS_BEFORE_RE.search(before):
            continue
        if _AFTER_NOT_COUNT.match(after):
            continue
        hits.append((m.start(), m.group(0), v))
    for m in _PROSE_REV.finditer(text):
        v = _prose_value(m.group("num"))
        if v is None or not 1 <= v < min_cell:
            continue
        after = text[m.end():m.end() + 40]
        if _NON_PERSON_AFTER.match(after) or _AFTER_NOT_COUNT.match(after):
            continue
        hits.append((m.start(), m.group(0), v))
    if not hits:
        return []
    hits.sort()
    pos, snippet, v = hits[0]
    line = text.count("\n", 0, pos) + 1
    ctx = " ".join(text[max(0, pos - 30):pos + len(snippet) + 30].split())
    return [Finding(path, where, "small count in text",
                    f"{len(hits)} number(s) between 1 and {min_cell - 1} tied to persons or events, first "
                    f"{snippet.strip()!r} in {_mask_text(ctx)!r}", row=f"line {line}", value=str(v))]


# --- sidecars: roles of columns -------------------------------------------------------------------
class Roles:
    """Roles of the columns of one table, from its sidecar <name>.meta.json.

    Accepts the current format (`count_columns`: the count columns) and the new optional `roles`
    mapping {column: "count"|"dimension"|"derived"|"statistic"|"label"} (also "private"). Columns are
    matched by name and by their English and Norwegian labels (the Markdown, LaTeX and XLSX copies of a
    table carry labels as headers). A column listed in `count_columns` is a count whatever `roles` says.

    Parameters
    ----------
    meta : dict
        The parsed sidecar.
    """

    def __init__(self, meta: dict):
        roles = meta.get("roles") if isinstance(meta.get("roles"), dict) else {}
        table = {str(k): str(v).strip().lower() for k, v in roles.items()}
        for c in meta.get("count_columns") or []:
            table[str(c)] = "count"
        self.table = table
        self.by_header: dict[str, str | None] = {}
        for c, r in table.items():
            self.by_header[c.strip().lower()] = r
        for c, r in table.items():
            for lang in labels.LANGS:
                alias = labels.t(c, lang).strip().lower()
                if alias in table or alias == c.strip().lower():
                    continue
                old = self.by_header.get(alias, r)
                # two columns with one label: the conservative role wins (count, else unknown)
                self.by_header[alias] = r if old == r else ("count" if "count" in (old, r) else None)

    def role(self, header) -> str | None:
        """Role of a column (by name or label), None when the sidecar does not say."""
        return self.by_header.get(str(header).strip().lower())


_META_CACHE: dict[str, dict | None] = {}


def _read_meta(path: Path) -> dict | None:
    key = str(path)
    if key not in _META_CACHE:
        try:
            _META_CACHE[key] = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
        except (OSError, ValueError):
            _META_CACHE[key] = None
    return _META_CACHE[key]


def sidecar_roles(path: Path) -> Roles | None:
    """Roles from the sidecar of a table file.

    Parameters
    ----------
    path : Path
        tables/<name>.{csv,md,tex} (sidecar tables/<name>.meta.json) or figures/<name>.data.csv
        (sidecar figures/<name>.data.meta.json).

    Returns
    -------
    Roles or None
        None when the file has no (readable) sidecar.
    """
    meta = _read_meta(path.with_suffix(".meta.json"))
    return Roles(meta) if isinstance(meta, dict) else None


def _sheet_roles(xlsx: Path, title: str) -> Roles | None:
    """Roles of an XLSX sheet: the sidecar of the table of that name (sheet names are cut at 31
    characters) in tables/ next to the workbook."""
    tdir = xlsx.parent / "tables"
    meta = _read_meta(tdir / f"{title}.meta.json")
    if meta is None and len(title) >= 31 and tdir.is_dir():
        cands = [p for p in tdir.glob("*.meta.json") if p.name.startswith(title)]
        meta = _read_meta(cands[0]) if len(cands) == 1 else None
    return Roles(meta) if isinstance(meta, dict) else None


# --- table analysis -------------------------------------------------------------------------------
_STAT_ROW_RE = re.compile(r"(?i)\b(?:mean|median|sd|iqr|q1|q3|std|average|gjennomsnitt|snitt|min|max|range|percentile|persentil)\b")


class _Col:
    """Per-column facts of a table of strings (computed once per distinct value)."""

    def __init__(self, name: str, pos: int, cells: list):
        self.name, self.pos, self.cells = name, pos, cells
        cnt = Counter(x for x in cells if x is not None)
        self.counts = cnt
        self.nonnull = sum(cnt.values())
        self.n_distinct = len(cnt)
        n_num = n_npct = n_marker = n_date = 0
        self.all_int, self.nonneg, self.lead_zero = True, True, False
        nums, dates = set(), set()
        for s, k in cnt.items():
            c = _cell(s)
            if c.marker:
                n_marker += k
            elif c.num is not None:
                n_num += k
                n_npct += k if c.npct else 0
                nums.add(c.num)
                if c.num != int(c.num):
                    self.all_int = False
                if c.num < 0:
                    self.nonneg = False
                self.lead_zero = self.lead_zero or c.lead_zero
            elif c.date is not None:
                n_date += k
                if not c.first_of_month:
                    dates.add(c.date)
        self.n_num, self.n_npct, self.n_marker, self.n_date = n_num, n_npct, n_marker, n_date
        self.nums, self.dates = nums, dates
        base = max(1, self.nonnull - n_marker)
        self.num_share = n_num / base
        self.date_share = n_date / base
        self.text = self.num_share < 0.5 and self.date_share < 0.5
        self._codes = None

    @property
    def numeric_int(self) -> bool:
        """Whole non-negative numbers (at least 90 % of the cells that are not marks)."""
        return self.n_num > 0 and self.num_share >= 0.9 and self.all_int and self.nonneg

    @property
    def years(self) -> bool:
        return bool(self.nums) and all(1900 <= v <= 2100 for v in self.nums)

    @property
    def binary(self) -> bool:
        return self.nums <= {0.0, 1.0}

    def codes(self) -> np.ndarray:
        if self._codes is None:
            self._codes = pd.factorize(np.asarray(self.cells, dtype=object), use_na_sentinel=False)[0]
        return self._codes

    def values(self) -> np.ndarray:
        return np.array([np.nan if x is None or _cell(x).num is None else _cell(x).num for x in self.cells])


def _combos(cols: list[_Col], n: int) -> int:
    combined = np.zeros(n, dtype=np.int64)
    for c in cols:
        codes = c.codes()
        combined = pd.factorize(combined * (int(codes.max()) + 1) + codes)[0]
    return int(combined.max()) + 1 if n else 0


def _greedy_key(cols: list[_Col], n: int, prune: bool = False) -> tuple[list[_Col], int, float]:
    """Left-to-right key: columns that make the rows more distinct, until they are unique; with
    prune, columns the others make redundant (flags, labels of a unit) are dropped again.
    Returns (key columns, distinct combinations, log of the product of their levels)."""
    combined = np.zeros(n, dtype=np.int64)
    distinct, key = 1, []
    for c in cols:
        if not n:
            break
        codes = c.codes()
        new = pd.factorize(combined * (int(codes.max()) + 1) + codes)[0]
        k = int(new.max()) + 1
        if k > distinct:
            key.append(c)
            combined, distinct = new, k
            if distinct >= n:
                break
    if prune and len(key) > 1:
        for c in list(key):
            rest = [x for x in key if x is not c]
            if _combos(rest, n) >= distinct:
                key = rest
    return key, distinct, sum(math.log(max(c.n_distinct, 1)) for c in key)


def _monotone_along(y: np.ndarray, x: np.ndarray, groups: np.ndarray) -> bool:
    """y is non-decreasing or non-increasing in x within each group (with some change): a curve."""
    order = np.lexsort((x, groups))
    y, x, g = y[order], x[order], groups[order]
    dy = np.diff(y)
    ok = (g[1:] == g[:-1]) & (np.diff(x) > 0) & ~np.isnan(dy)
    dy = dy[ok]
    if len(dy) < 3 or not np.any(dy != 0):
        return False
    return bool(np.mean(dy >= 0) >= 0.98 or np.mean(dy <= 0) >= 0.98)


def _row_numbers(c: _Col) -> bool:
    """Consecutive distinct whole numbers (0..n-1, 1..n): an index, not a measure."""
    return (c.numeric_int and c.n_distinct == c.nonnull == len(c.nums) and len(c.nums) > 2
            and max(c.nums) - min(c.nums) + 1 == len(c.nums))


def _is_curve(t: _Table, key: list, limit: float) -> bool:
    """A curve or a grid: along an axis column (time, day) another numeric column is monotone within
    the groups of the dimension columns (survival and numbers at risk fall, a cumulative incidence
    rises), whatever the order of the rows. Person rows have no such pair of columns."""
    gcols = [c for c in key if c.text or c.n_distinct <= 12]
    groups = np.zeros(t.n, dtype=np.int64)
    for c in gcols:
        groups = pd.factorize(groups * (int(c.codes().max()) + 1) + c.codes())[0]
    nums = [c for c in t.cols if c.n_num >= 0.5 * t.n and c.n_distinct > 2 and c not in gcols
            and not _row_numbers(c)]  # a row number says nothing (sorted person rows plus an index)
    values = {id(c): c.values() for c in nums}
    rows = np.arange(t.n, dtype=float)
    # axis candidates: columns written in order (time ascending within each group), then the columns
    # with the most distinct values
    written = [c for c in nums if _monotone_along(values[id(c)], rows, groups)]
    most = sorted((c for c in nums if c.n_distinct > limit), key=lambda c: -c.n_distinct)
    axes = list(dict.fromkeys([*written[:3], *most[:2]])) or nums[:3]
    for x in axes:
        if any(_monotone_along(values[id(y)], values[id(x)], groups) for y in nums if y is not x):
            return True
    return False


def _clean_cells(values: list) -> list:
    out = []
    for v in values:
        if v is None:
            out.append(None)
            continue
        if type(v) is not str:
            if isinstance(v, float) and v != v:
                out.append(None)
                continue
            v = str(v)
        v = v.strip()
        out.append(v or None)
    return out


class _Table:
    """A table to analyse: headers and columns of cleaned strings (None for empty cells)."""

    def __init__(self, header: list[str], columns: list[list], df: pd.DataFrame | None = None):
        self._df = df
        self.n = len(columns[0]) if columns else 0
        self.cols = [_Col(str(name), j, _clean_cells(col)) for j, (name, col) in enumerate(zip(header, columns))]
        self.by_name = {c.name: c for c in self.cols}
        self._labels = None
        self._stat_rows = None

    @classmethod
    def from_frame(cls, df: pd.DataFrame) -> _Table:
        header = [str(c) for c in df.columns]
        columns = df.to_numpy(dtype=object).T.tolist() if len(df) else [[] for _ in header]
        return cls(header, columns, df)

    @classmethod
    def from_rows(cls, header: list[str], body: list[list]) -> _Table:
        return cls(header, [list(c) for c in zip(*body)] if body else [[] for _ in header])

    def frame(self) -> pd.DataFrame:
        """The table as a DataFrame (for hipfrac.disclosure), built when first needed."""
        if self._df is None:
            self._df = pd.DataFrame({c.name: c.cells for c in self.cols}) if len(set(self.by_name)) == len(
                self.cols) else pd.DataFrame(list(zip(*[c.cells for c in self.cols])), columns=[c.name for c in self.cols])
        df = self._df.copy()
        df.columns = [str(c) for c in df.columns]
        return df

    def label_cols(self) -> list[_Col]:
        if self._labels is None:
            self._labels = [c for c in self.cols if c.text]
        return self._labels

    def row_label(self, i: int, skip: _Col | None = None) -> str:
        """The row's labels (first column and text columns), ids and dates masked."""
        cols = [c for c in [*self.label_cols(), self.cols[0]] if c is not skip]
        cols = list(dict.fromkeys(cols))[:2]
        parts = [c.cells[i] for c in cols if c.cells[i]]
        return _mask_text(" / ".join(parts)[:60]) if parts else ""

    def stat_rows(self) -> set[int]:
        """Rows whose labels say they hold a statistic (mean, median, SD, ...), not a count."""
        if self._stat_rows is None:
            out = set()
            for c in self.label_cols():
                hit = {s for s in c.counts if _STAT_ROW_RE.search(s)}
                if hit:
                    out |= {i for i, x in enumerate(c.cells) if x in hit}
            self._stat_rows = out
        return self._stat_rows


_DATED_REASON_RE = re.compile(r"rows with distinct exact dates in '(.*)' and no count column")


def _date_grid(c: _Col) -> bool:
    """A column of dates that are periods: first days of months, or a regular grid (weekly, daily)."""
    if not c.dates:
        return c.n_date > 0
    ds = sorted(c.dates)
    steps = Counter(b - a for a, b in zip(ds, ds[1:]))
    return bool(steps) and steps.most_common(1)[0][1] >= 0.8 * (len(ds) - 1)


def _exact_dates(c: _Col, rules: ShapeRules) -> bool:
    """Many distinct day-precision dates that are not a grid of periods: dates of events of persons."""
    return c.date_share >= 0.8 and len(c.dates) >= rules.date_min_distinct and not _date_grid(c)


def _crosstab_columns(t: _Table) -> set[str]:
    """Columns of a crosstab: headed by years or unit/category labels and holding whole numbers."""
    unit = [c for c in t.cols if _unit_like_header(c.name)]
    if len(unit) < 2:
        return set()
    numeric = [c for c in t.cols if c.n_num > 0 and c.num_share >= 0.8]
    hits = [c for c in unit if c in numeric]
    if len(hits) >= 2 and len(hits) >= 0.4 * len(numeric):
        return {c.name for c in hits}
    return set()


def _dimension_ints(t: _Table) -> set[str]:
    """Integer columns that are part of the table's key (cause 1/2, bin, years 1/5/10, a step
    number): they classify rows, they do not count persons."""
    cands = [c for c in t.cols if (c.text or c.numeric_int) and not _row_numbers(c)]
    key, _, _ = _greedy_key(cands, t.n)
    out = {c.name for c in key if c.numeric_int and c.n_distinct <= 0.5 * c.nonnull}
    first = t.cols[0]
    if first.numeric_int and first.n_distinct == first.nonnull:  # row numbers, a pandas index, steps
        vals = [_cell(x).num for x in first.cells if x is not None and _cell(x).num is not None]
        if first.name in ("col0", "index") or all(a < b for a, b in zip(vals, vals[1:])):
            out.add(first.name)
    return out


def _person_shape(t: _Table, n_total: int, cohort_rows: int | None, rules: ShapeRules) -> str | None:
    """Why a large table looks like one row per person (None: it looks like aggregates)."""
    n = t.n
    large = n_total >= rules.person_rows or (
        bool(cohort_rows) and n_total >= max(rules.person_min_rows, rules.person_fraction * cohort_rows))
    if not large or n < 3:
        return None
    near = [c for c in t.cols if c.nonnull >= 0.5 * n and c.n_distinct >= rules.unique_share * c.nonnull]
    rows = len(set(map(tuple, zip(*[c.cells for c in t.cols])))) if t.cols else 0
    if rows < rules.unique_share * n and not near:
        return None
    limit = max(2, min(rules.key_levels, 0.2 * n))
    # dimension candidates: labels (text) of up to key_levels levels, then whole numbers of few levels
    # (year, horizon); never continuous measures
    low = ([c for c in t.cols if c.text and 0 < c.n_distinct <= rules.key_levels]
           + [c for c in t.cols if not c.text and c.numeric_int and 0 < c.n_distinct <= limit])
    key, distinct, logprod = _greedy_key(low, n, prune=True)
    if distinct >= 0.98 * n and math.log(max(distinct, 1)) - logprod >= math.log(rules.key_density):
        return None  # a dense key of dimension columns: an aggregate table
    if _is_curve(t, key, limit):
        return None  # a curve or a grid (time ascending, survival or numbers at risk descending)
    total = f"{n_total} rows" + (f" ({n} shown)" if n_total != n else "")
    high = sorted((c for c in t.cols if c not in key and c.n_distinct > limit), key=lambda c: -c.n_distinct)
    apart = ", ".join(f"{c.name!r} ({c.n_distinct} distinct)" for c in (high or near)[:4])
    what = f"{rows} distinct rows" + (f" told apart by {apart}" if apart else "")
    dims = f"; the dimension columns {', '.join(repr(c.name) for c in key[:4])} do not key them" if key else ""
    share = f", {n_total / cohort_rows:.0%} of the run's {cohort_rows} persons," if cohort_rows else ""
    return f"{total}{share} with {what}{dims}: looks like one row per person"


def _person_level_by_name_possible(t: _Table) -> bool:
    """Cheap pre-check: could hipfrac.disclosure.person_level_reasons find anything? (It is only
    called when it could: same findings, a fraction of the time.)"""
    id_re, bd_re = getattr(disclosure, "_ID_RE", None), getattr(disclosure, "_BIRTH_DEATH_RE", None)
    if id_re is None or bd_re is None:
        return True
    names = [c.name for c in t.cols]
    if any(s.lower() in disclosure.ID_NAMES or id_re.search(s.lower()) or bd_re.search(s) for s in names):
        return True
    if t.n < getattr(disclosure, "RECORD_MIN_ROWS", 10):
        return False
    if any(any(_DISK_DATE_RE.match(s) for s in c.counts) for c in t.cols):
        return True
    cohort = [s for s in names if s in disclosure.cohort_columns()]
    return len(cohort) >= 3 and any(s in disclosure.PERSON_LEVEL_COLUMNS for s in names)


def scan_frame(df: pd.DataFrame, path: str, where: str, min_cell: int = 5, *, roles: Roles | None = None,
               cohort_rows: int | None = None, n_rows: int | None = None, rules: ShapeRules | None = None,
               text_scanned: bool = False) -> list[Finding]:
    """A table as read back: person-level shape, ids, exact dates, small counts.

    Parameters
    ----------
    df : pandas.DataFrame
        The table (cells as strings or numbers; headers as written).
    path, where : str
        File (relative to the run) and place in it (table, sheet, notebook output).
    min_cell : int, default 5
        Smallest count allowed: 1..min_cell-1 in a count-like column is a finding.
    roles : Roles, optional
        Column roles from the table's sidecar (statistic, label and dimension columns are not counts).
    cohort_rows : int, optional
        Number of persons of the run (manifest `cohort_rows`): a table of that order of rows is large.
    n_rows : int, optional
        Rows of the table when `df` shows only some of them (a truncated pandas repr).
    rules : ShapeRules, optional
        Thresholds (default `SHAPE`).
    text_scanned : bool, default False
        The caller scans the text the table was read from for ids: do not scan the cells again.

    Returns
    -------
    list of Finding
    """
    if df is None or df.empty or len(df.columns) == 0:
        return []
    return _scan_table(_Table.from_frame(df), path, where, min_cell, roles=roles, cohort_rows=cohort_rows,
                       n_rows=n_rows, rules=rules, text_scanned=text_scanned)


def _scan_table(t: _Table, path: str, where: str, min_cell: int = 5, *, roles: Roles | None = None,
                cohort_rows: int | None = None, n_rows: int | None = None, rules: ShapeRules | None = None,
                text_scanned: bool = False) -> list[Finding]:
    rules = rules or SHAPE
    out: list[Finding] = []
    if not t.n or not t.cols:
        return out
    reasons = disclosure.person_level_reasons(t.frame()) if _person_level_by_name_possible(t) else []
    # dates of a time series (first of the month, or a regular weekly/daily grid) are periods, not
    # events: the name rule does not know Norwegian count columns ("antall" per week)
    # events are reported by the rule on columns of exact dates below (with row and masked value)
    reasons = [r for r in reasons if not ((m := _DATED_REASON_RE.search(r)) and m.group(1) in t.by_name
                                          and (_date_grid(t.by_name[m.group(1)])
                                               or _exact_dates(t.by_name[m.group(1)], rules)))]
    for r in reasons:
        col = re.match(r"column '([^']*)'", r) or re.search(r"in '([^']*)'", r)
        out.append(Finding(path, where, "person-level table", r, column=col.group(1) if col else None))
    if not text_scanned:
        blob = "\n".join(" ".join("" if x is None else x for x in row) for row in zip(*[c.cells for c in t.cols]))
        out += [f for f in scan_text(blob, path, where) if f.kind != "record-like text"]
    reported = {f.column for f in out if f.column}

    # person rows by shape
    why = _person_shape(t, n_rows or t.n, cohort_rows, rules)
    if why:
        out.append(Finding(path, where, "person-level table", why))

    for c in t.cols:
        role = roles.role(c.name) if roles else None
        # columns of exact dates, whatever their name
        if c.name not in reported and role != "statistic" and _exact_dates(c, rules):
            i = next(i for i, x in enumerate(c.cells) if x and _cell(x).date is not None and not _cell(x).first_of_month)
            out.append(Finding(path, where, "exact dates",
                               f"column '{c.name}' holds {len(c.dates)} distinct day-precision dates (value "
                               f"withheld, e.g. {_mask_date(c.cells[i])}): dates of events of persons",
                               column=c.name, row=i + 1, value=_mask_date(c.cells[i])))
        # id-like columns, whatever their name
        if c.text and c.n_distinct >= rules.id_min_distinct and c.name not in reported:
            shape = _id_shape(c.counts)
            unique_enough = shape and (c.n_distinct >= 0.95 * c.nonnull if shape[0] == "letter+digit code"
                                       else c.n_distinct >= 0.5 * c.nonnull)
            if unique_enough and not (shape[0].endswith("hash") and _file_digests(t, c)):
                ex = next(iter(c.counts))
                out.append(Finding(path, where, "id-like column",
                                   f"column '{c.name}' holds {c.n_distinct} distinct {shape[0]} values in {c.nonnull} "
                                   f"rows (value withheld, e.g. {_mask(ex)}): an identifier of persons or records",
                                   column=c.name, row=c.cells.index(ex) + 1, value=_mask(ex)))
    out += _small_counts(t, path, where, min_cell, roles)
    return out


def _file_digests(t: _Table, c: _Col) -> bool:
    """Hashes next to file names (a provenance table: input files and their sha256) are digests of
    files, not ids of persons."""
    return any(o is not c and o.text and o.nonnull and sum(k for s, k in o.counts.items() if _FILE_RE.match(s))
               >= 0.9 * o.nonnull for o in t.cols)


def _small_counts(t: _Table, path: str, where: str, min_cell: int, roles: Roles | None) -> list[Finding]:
    out = []
    crosstab = None
    dims = None
    for c in t.cols:
        role = roles.role(c.name) if roles else None
        if role in NOT_COUNT_ROLES:
            continue
        per_cell = False  # whole-number cells of a column named like a count, as before
        if role in COUNT_ROLES:
            reason, per_cell = "a count in the table's sidecar", True
        elif _is_count_header(c.name):
            reason, per_cell = "a count by its name", True
        else:
            if c.n_num == 0:
                continue
            if crosstab is None:
                crosstab = _crosstab_columns(t)
            if c.name in crosstab:
                reason = "a cell of a crosstab by " + ("year" if re.fullmatch(r"\d{4}", c.name.strip()) else "unit or category")
            elif c.n_npct >= 0.5 * max(1, c.n_num) and c.num_share >= 0.5:
                reason = "written n (%)"
            elif _count_word(c.name) and c.numeric_int:
                reason = "a count by its name"
            elif _noncount_name(c.name) or not c.numeric_int or c.years or c.lead_zero or c.binary:
                continue
            else:
                if dims is None:
                    dims = _dimension_ints(t)
                if c.name in dims:
                    continue
                reason = "whole non-negative numbers: a count whatever its name"
            if not c.all_int or not c.nonneg:
                continue
        skip = set() if per_cell else t.stat_rows()
        small = []
        for i, x in enumerate(c.cells):
            if x is None or i in skip:
                continue
            v = _cell(x).num
            if v is not None and 1 <= v < min_cell and float(v).is_integer():
                small.append((i, v, x))
        if small:
            i, v, x = small[0]
            label = t.row_label(i, skip=c)
            out.append(Finding(path, where, "small count",
                               f"{len(small)} cell(s) in column '{c.name}' between 1 and {min_cell - 1}, "
                               f"first in row {i + 1}{f' ({label})' if label else ''}: {x} ({reason})",
                               column=c.name, row=i + 1, value=x))
    return out


# --- readers ----------------------------------------------------------------------------------------
class _HTMLTables(HTMLParser):
    """Minimal HTML table reader (stdlib only): per table, its header rows and body rows."""

    def __init__(self):
        super().__init__()
        self.tables, self._row, self._cell, self._depth, self._head = [], None, None, 0, False
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        if tag in ("style", "script"):
            self._skip += 1
        elif tag == "table":
            self.tables.append(([], []))
            self._depth += 1
        elif tag == "thead":
            self._head = True
        elif tag == "tbody":
            self._head = False
        elif tag == "tr" and self._depth:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []
        elif tag == "br" and self._cell is not None:
            self._cell.append(" ")

    def handle_endtag(self, tag):
        if tag in ("style", "script"):
            self._skip = max(0, self._skip - 1)
        elif tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            if self._row and self.tables:
                self.tables[-1][0 if self._head else 1].append(self._row)
            self._row = None
        elif tag == "thead":
            self._head = False
        elif tag == "table":
            self._depth = max(0, self._depth - 1)

    def handle_data(self, data):
        if self._cell is not None and not self._skip:
            self._cell.append(data)


def _normalize(rows: list[list[str]]) -> tuple[list[str], list[list]] | None:
    """(header, body) of rows read from a text: blank rows dropped, first row the header (blank and
    repeated names made unique), rows padded, empty cells None. None when there is no body."""
    rows = [r for r in rows if any(x.strip() for x in r)]
    if len(rows) < 2:
        return None
    width = max(len(r) for r in rows)
    header = rows[0] + [f"col{i}" for i in range(len(rows[0]), width)]
    header = [h if h else f"col{i}" for i, h in enumerate(header)]
    seen = {}
    for i, h in enumerate(header):  # unique names
        if h in seen:
            header[i] = f"{h}.{i}"
        seen[h] = 1
    body = [[x if x != "" else None for x in r] + [None] * (width - len(r)) for r in rows[1:]]
    return header, body


def _frame(table: tuple[list[str], list[list]] | None) -> pd.DataFrame:
    return pd.DataFrame() if table is None else pd.DataFrame(table[1], columns=table[0])


def _rows_to_frame(rows: list[list[str]]) -> pd.DataFrame:
    return _frame(_normalize(rows))


def _table(table: tuple[list[str], list[list]] | None) -> _Table | None:
    return None if table is None else _Table.from_rows(*table)


def _merge_header(head: list[list[str]]) -> list[str]:
    """One header from pandas' header rows: index names (a row with only leading cells) fill the
    leading cells; further column levels are joined."""
    header = list(head[0])
    for row in head[1:]:
        filled = [i for i, x in enumerate(row) if x]
        if filled and max(filled) < len(row) and all(not x for x in row[max(filled) + 1:]) and (
                max(filled) < sum(1 for x in header if not x) + 1):
            for i in filled:  # index names
                if i < len(header):
                    header[i] = row[i]
                else:
                    header.append(row[i])
        else:
            header = [" ".join(x for x in (a, b) if x) for a, b in
                      zip(header + [""] * (len(row) - len(header)), row + [""] * (len(header) - len(row)))]
    return header


def html_tables(html: str) -> list[pd.DataFrame]:
    """Tables of an HTML text (pandas `to_html` and Styler output included).

    Parameters
    ----------
    html : str
        The HTML.

    Returns
    -------
    list of pandas.DataFrame
        One frame of strings per table, headed by its header row(s) (index names fill the leading
        header cells, further column levels are joined).
    """
    return [_frame(t) for t in _html_rows(html)]


def _html_rows(html: str) -> list[tuple[list[str], list[list]] | None]:
    p = _HTMLTables()
    p.feed(html)
    return [_normalize([_merge_header(head)] + body if len(head) > 1 else head + body) for head, body in p.tables]


def markdown_tables(text: str) -> list[pd.DataFrame]:
    """Pipe tables of a Markdown text.

    Parameters
    ----------
    text : str
        The Markdown.

    Returns
    -------
    list of pandas.DataFrame
        One frame of strings per table (first row as header, empty cells missing).
    """
    return [_frame(t) for t in _md_rows(text)]


_MD_SPLIT_RE = re.compile(r"(?<!\\)\|")
_MD_RULE_RE = re.compile(r":?-{3,}:?")


def _md_rows(text: str) -> list[tuple[list[str], list[list]] | None]:
    tables, block = [], []
    for line in [*text.splitlines(), ""]:
        if line.strip().startswith("|"):
            block.append(line.strip())
            continue
        if len(block) >= 2:
            rows = [[c.strip() for c in _MD_SPLIT_RE.split(b.strip("|"))] for b in block]
            rows = [r for r in rows if not all(_MD_RULE_RE.fullmatch(c) for c in r if c)]
            tables.append(_normalize(rows))
        block = []
    return tables


def _without_md_tables(text: str) -> str:
    return "\n".join("" if ln.strip().startswith("|") else ln for ln in text.splitlines())


_TEX_MULTICOL_RE = re.compile(r"\\multicolumn\{[^{}]*\}\{[^{}]*\}")
_TEX_CMD_ARG_RE = re.compile(r"\\[A-Za-z]+\*?(?:\[[^\]]*\])?\{([^{}]*)\}")
_TEX_ESC_RE = re.compile(r"\\([%_&#$])")
_TEX_CMD_RE = re.compile(r"\\[A-Za-z]+\*?")
_TEX_SPACE_RE = re.compile(r"\\[,;:! ]")


def _tex_cell(s: str) -> str:
    if "\\" not in s and "{" not in s and "~" not in s and "--" not in s:
        return " ".join(s.split())
    s = _TEX_MULTICOL_RE.sub("", s)
    for _ in range(3):
        s = _TEX_CMD_ARG_RE.sub(r"\1", s)
    s = _TEX_ESC_RE.sub(r"\1", s).replace("~", " ").replace("--", "–")
    s = _TEX_CMD_RE.sub("", s)
    s = _TEX_SPACE_RE.sub(" ", s)
    return " ".join(s.replace("{", "").replace("}", "").split())


_TABULAR_RE = re.compile(r"\\begin\{(tabular\*?|tabularx|longtable)\}((?:\{(?:[^{}]|\{[^{}]*\})*\}|\[[^\]]*\])*)"
                         r"(.*?)\\end\{\1\}", re.S)


def latex_tables(text: str) -> list[pd.DataFrame]:
    """tabular / tabularx / longtable environments of a LaTeX text.

    Parameters
    ----------
    text : str
        The LaTeX.

    Returns
    -------
    list of pandas.DataFrame
        One frame of strings per environment (rules dropped, simple commands and escapes undone).
    """
    return [_frame(t) for t in _tex_rows(text)]


_TEX_RULES_RE = re.compile(r"\\(?:toprule|midrule|bottomrule|hline|cline\{[^}]*\}|cmidrule(?:\([^)]*\))?\{[^}]*\}"
                           r"|endhead|endfirsthead|endfoot|endlastfoot)")
_TEX_ROW_RE = re.compile(r"\\\\(?:\[[^\]]*\])?")
_TEX_AMP_RE = re.compile(r"(?<!\\)&")


def _tex_rows(text: str) -> list[tuple[list[str], list[list]] | None]:
    tables = []
    for m in _TABULAR_RE.finditer(text):
        body = _TEX_RULES_RE.sub("", m.group(3))
        rows = [[_tex_cell(c) for c in _TEX_AMP_RE.split(r)] for r in _TEX_ROW_RE.split(body)]
        tables.append(_normalize(rows))
    return tables


_WRAP_RE = re.compile(r"\s+\\$")
_FOOTER_RE = re.compile(r"^\[(\d+) rows x (\d+) columns\]$")
_SERIES_FOOTER_RE = re.compile(r"^(?:Name: (?P<name>.*?), )?(?:Length: (?P<len>\d+), )?dtype: \w+$")


def _fw_segments(lines: list[str]) -> list[tuple[int, int]]:
    """Column spans of fixed-width lines (a pandas repr): runs of positions separated by positions that
    are blank on every line - two or more, or one where the header line has text on both sides
    (pandas separates string columns by a single space: "alder kjønn")."""
    width = max(len(ln) for ln in lines)
    blank = np.ones(width, dtype=bool)
    for ln in lines:
        blank &= np.frombuffer(ln.ljust(width).encode("utf-32-le"), dtype=np.uint32) == 32
    head = lines[0].ljust(width + 1)
    segs, start, p = [], None, 0
    while p < width:
        if not blank[p]:
            start = p if start is None else start
            p += 1
            continue
        q = p
        while q < width and blank[q]:
            q += 1
        if start is not None and q < width and (q - p >= 2 or (head[p - 1] != " " and head[q] != " ")):
            segs.append((start, p))
            start = None
        p = q
    if start is not None:
        segs.append((start, width))
    return segs


def fixed_width_tables(text: str) -> list[tuple[pd.DataFrame, int | None, tuple[int, int]]]:
    """DataFrame and Series reprs in a text (pandas `print(df)`, `repr(df)`, `print(series)`).

    Parameters
    ----------
    text : str
        A notebook's text/plain or stream output.

    Returns
    -------
    list of (frame, total rows, (first line, last line))
        The frame of the shown rows (strings), the number of rows of the printed frame when the repr
        was truncated ("[80000 rows x 45 columns]", "Length: 80000"), else None, and the lines it spans.
    """
    lines = [_WRAP_RE.sub("", ln.rstrip()) for ln in text.splitlines()]
    out = []
    i = 0
    while i < len(lines):
        if not lines[i].strip():
            i += 1
            continue
        j = i
        while j < len(lines) and lines[j].strip():
            j += 1
        block = lines[i:j]
        total = None
        if j + 1 < len(lines) and _FOOTER_RE.match(lines[j + 1].strip()):
            total = int(_FOOTER_RE.match(lines[j + 1].strip()).group(1))
        frame = None
        m = _SERIES_FOOTER_RE.match(block[-1].strip()) if block else None
        if m and len(block) >= 2:
            frame = _series_frame(block[:-1], m.group("name"))
            total = int(m.group("len")) if m.group("len") else total
        elif len(block) >= 2 and not block[0].startswith("Traceback"):
            frame = _frame_from_fixed(block)
        if frame is not None and not frame.empty:
            out.append((frame, total, (i, j)))
        i = j
    return out


_TWO_SPACES_RE = re.compile(r"\s{2,}")


def _series_frame(block: list[str], name: str | None) -> pd.DataFrame | None:
    rows, index_name = [], "index"
    for k, ln in enumerate(block):
        parts = _TWO_SPACES_RE.split(ln.strip())
        if len(parts) == 1 and k == 0:
            index_name = parts[0]
            continue
        if len(parts) < 2:
            if parts == [".."] or parts == ["..."]:
                continue
            return None
        rows.append([" ".join(parts[:-1]), parts[-1]])
    rows = [r for r in rows if r[1] not in ("...", "..")]
    if not rows:
        return None
    return pd.DataFrame(rows, columns=[index_name, name or "value"]).replace("", None)


def _frame_from_fixed(block: list[str]) -> pd.DataFrame | None:
    segs = _fw_segments(block)
    if len(segs) < 2:
        return None
    rows = [[ln[a:b].strip() if a < len(ln) else "" for a, b in segs] for ln in block]
    header = rows[0]
    body = rows[1:]
    if body and body[0][0] and not any(body[0][1:]):  # index name line (set_index, crosstab)
        header = [body[0][0]] + header[1:]
        body = body[1:]
    # a table: most lines fill most columns (prose lines do not line up on two-space gaps)
    filled = [sum(1 for x in r if x) for r in body]
    if not body or np.mean([f >= max(2, 0.5 * len(segs)) for f in filled]) < 0.8:
        return None
    header = [h or ("index" if k == 0 else f"col{k}") for k, h in enumerate(header)]
    keep = [k for k, h in enumerate(header) if h != "..."]
    body = [[r[k] for k in keep] for r in body if not all(x in ("...", "..", "") for x in r)]
    header = [header[k] for k in keep]
    if len(body) < 1 or len(header) < 2:
        return None
    return _rows_to_frame([header] + body)


def _xlsx_date_format(code: str) -> bool:
    code = re.sub(r'"[^"]*"|\[[^\]]*\]|\\.|_.|\*.', "", code)
    return bool(re.search(r"[dmyhs]", code, re.IGNORECASE)) and not re.fullmatch(r"(?i)general", code.strip())


_BUILTIN_DATE_FMTS = set(range(14, 23)) | set(range(27, 37)) | set(range(45, 48)) | set(range(50, 59))


def _attrs(tag: str) -> dict[str, str]:
    return {k.split(":")[-1]: _html.unescape(v) for k, v in re.findall(r'([\w:]+)="([^"]*)"', tag)}


_XL_ROW_RE = re.compile(r"<row\b([^>]*?)(?:/>|>(.*?)</row>)", re.S)
_XL_CELL_RE = re.compile(r"<c\b([^>]*?)(?:/>|>(.*?)</c>)", re.S)
_XL_REF_RE = re.compile(r'\br="([A-Z]+)')
_XL_R_RE = re.compile(r'\br="(\d+)"')
_XL_T_RE = re.compile(r'\bt="(\w+)"')
_XL_S_RE = re.compile(r'\bs="(\d+)"')
_XL_V_RE = re.compile(r"<v>(.*?)</v>", re.S)
_XL_T_TEXT_RE = re.compile(r"<t(?:\s[^>]*)?>(.*?)</t>", re.S)


def _xml_text(fragment: str) -> str:
    return _html.unescape("".join(_XL_T_TEXT_RE.findall(fragment)))


def read_xlsx(path: Path) -> list[tuple[str, list[list[str]]]]:
    """Sheets of a workbook read straight from its XML (about five times faster than openpyxl, with
    the same cells; `scan_xlsx` falls back to openpyxl if this fails).

    Parameters
    ----------
    path : Path
        The .xlsx file.

    Returns
    -------
    list of (str, list of list of str)
        Per sheet its title and its rows (missing rows empty, rows padded to one width); numbers as
        openpyxl reads them, dates (cells with a date format) as ISO strings.
    """
    with zipfile.ZipFile(path) as z:
        names = set(z.namelist())
        wb = z.read("xl/workbook.xml").decode("utf-8")
        rels = z.read("xl/_rels/workbook.xml.rels").decode("utf-8")
        targets = {}
        for tag in re.findall(r"<Relationship\b[^>]*>", rels):
            a = _attrs(tag)
            t = a.get("Target", "")
            targets[a.get("Id")] = t.lstrip("/") if t.startswith("/") else "xl/" + t
        epoch = datetime(1904, 1, 1) if re.search(r'date1904="(?:1|true)"', wb) else datetime(1899, 12, 30)
        shared = []
        if "xl/sharedStrings.xml" in names:
            sst = z.read("xl/sharedStrings.xml").decode("utf-8")
            shared = [_xml_text(re.sub(r"<rPh\b.*?</rPh>", "", si, flags=re.S))
                      for si in re.findall(r"<si>(.*?)</si>", sst, re.S)]
        dates = set()
        if "xl/styles.xml" in names:
            st = z.read("xl/styles.xml").decode("utf-8")
            custom = {int(a["numFmtId"]): a.get("formatCode", "") for a in map(_attrs, re.findall(r"<numFmt\b[^>]*>", st))}
            xfs = re.search(r"<cellXfs\b[^>]*>(.*?)</cellXfs>", st, re.S)
            for k, tag in enumerate(re.findall(r"<xf\b[^>]*>", xfs.group(1) if xfs else "")):
                fid = int(_attrs(tag).get("numFmtId", 0))
                if fid in _BUILTIN_DATE_FMTS or (fid in custom and _xlsx_date_format(custom[fid])):
                    dates.add(k)
        sheets = []
        for tag in re.findall(r"<sheet\b[^>]*>", wb):
            a = _attrs(tag)
            xml = z.read(targets[a["id"]]).decode("utf-8")
            rows: list[list[str]] = []
            for rtag, rbody in _XL_ROW_RE.findall(xml):
                rn = _XL_R_RE.search(rtag)
                rn = rn.group(1) if rn else None
                if rn:
                    while len(rows) < int(rn) - 1:
                        rows.append([])
                row: list[str] = []
                for ctag, cbody in _XL_CELL_RE.findall(rbody or ""):
                    ref = _XL_REF_RE.search(ctag)
                    col = len(row)
                    if ref:
                        col = 0
                        for ch in ref.group(1):
                            col = col * 26 + ord(ch) - 64
                        col -= 1
                    typ = _XL_T_RE.search(ctag)
                    typ = typ.group(1) if typ else "n"
                    sty = _XL_S_RE.search(ctag)
                    v = _XL_V_RE.search(cbody) if cbody else None
                    v = (_html.unescape(v.group(1)) if "&" in v.group(1) else v.group(1)) if v else None
                    if typ == "s":
                        val = shared[int(v)] if v is not None else ""
                    elif typ == "inlineStr":
                        val = _xml_text(cbody or "")
                    elif typ == "b":
                        val = "True" if v == "1" else "False" if v is not None else ""
                    elif v is None:
                        val = ""
                    elif typ == "n" and sty and int(sty.group(1)) in dates:
                        d = epoch + timedelta(days=float(v))
                        val = d.strftime("%Y-%m-%d") if d == datetime(d.year, d.month, d.day) else d.strftime("%Y-%m-%d %H:%M:%S")
                    elif typ == "n" and not v.isdigit():
                        try:  # as openpyxl reads it: the shortest repr of the float
                            val = str(float(v)) if not (v[:1] == "-" and v[1:].isdigit()) else v
                        except ValueError:
                            val = v
                    else:
                        val = v
                    row += [""] * (col - len(row))
                    row.append(val)
                rows.append(row)
            width = max((len(r) for r in rows), default=0)
            sheets.append((a.get("name", ""), [r + [""] * (width - len(r)) for r in rows]))
    return sheets


def _openpyxl_sheets(path: Path) -> list[tuple[str, list[list[str]]]]:
    from openpyxl import load_workbook

    wb = load_workbook(path, read_only=True, data_only=True)
    try:
        return [(ws.title, [["" if v is None else str(v) for v in r] for r in ws.iter_rows(values_only=True)])
                for ws in wb.worksheets]
    finally:
        wb.close()


# --- files ------------------------------------------------------------------------------------------
@dataclass
class _Ctx:
    min_cell: int = 5
    cohort_rows: int | None = None
    rules: ShapeRules = SHAPE


def _scan_markdown(text: str, rel: str, where: str, ctx: _Ctx, roles: Roles | None = None,
                   prefix: str = "") -> list[Finding]:
    out = []
    for k, table in enumerate(_md_rows(text)):
        if table is not None:
            out += _scan_table(_table(table), rel, f"{prefix}table {k}", ctx.min_cell, roles=roles,
                               cohort_rows=ctx.cohort_rows, rules=ctx.rules, text_scanned=True)
    return out + scan_prose(_without_md_tables(text), rel, where, ctx.min_cell)


def _scan_html(text: str, rel: str, where: str, ctx: _Ctx, prefix: str = "") -> tuple[list[Finding], str]:
    out = []
    for k, table in enumerate(_html_rows(text)):
        if table is not None:
            out += _scan_table(_table(table), rel, f"{prefix}html table {k}", ctx.min_cell, cohort_rows=ctx.cohort_rows,
                               rules=ctx.rules, text_scanned=True)
    plain = re.sub(r"(?is)<(style|script)\b.*?</\1>", " ", text)
    prose = re.sub(r"<[^>]+>", " ", re.sub(r"(?is)<table\b.*?</table>", " ", plain))
    out += scan_prose(_html.unescape(prose), rel, where, ctx.min_cell)
    return out, _html.unescape(re.sub(r"<[^>]+>", " ", plain))


def _scan_plain(text: str, rel: str, where: str, ctx: _Ctx, tables: bool = True) -> list[Finding]:
    """Text output of a notebook (print, repr): DataFrame/Series reprs as tables, the rest as prose."""
    out = []
    spans = []
    if tables:
        for t, (frame, total, span) in enumerate(fixed_width_tables(text)):
            out += scan_frame(frame, rel, f"{where} printed table {t}", ctx.min_cell, cohort_rows=ctx.cohort_rows,
                              n_rows=total, rules=ctx.rules, text_scanned=True)
            spans.append(span)
    lines = text.splitlines()
    for a, b in spans:
        lines[a:b] = [""] * (b - a)
    return out + scan_prose("\n".join(lines), rel, where, ctx.min_cell)


def scan_notebook(path: Path, rel: str, min_cell: int, ctx: _Ctx | None = None) -> list[Finding]:
    """Findings in an executed notebook.

    Every cell's source (ids, dates), Markdown cells (tables, prose) and every output: streams and
    text/plain (DataFrame and Series reprs as tables, the rest as prose), text/html (tables, prose),
    text/markdown, text/latex and errors. A frame shown both as HTML and as text/plain is read once,
    from its HTML.

    Parameters
    ----------
    path : Path
        The .ipynb file.
    rel : str
        Its path relative to the run, for the findings.
    min_cell : int
        Smallest count allowed.
    ctx : optional
        Scan context (cohort rows, rules) from `scan_file`.

    Returns
    -------
    list of Finding
    """
    ctx = ctx or _Ctx(min_cell)
    nb = json.loads(path.read_text(encoding="utf-8"))
    out = []
    for k, cell in enumerate(nb.get("cells", [])):
        src = _join(cell.get("source", ""))
        out += scan_text(src, rel, f"cell {k} source")
        if cell.get("cell_type") == "markdown":
            out += _scan_markdown(src, rel, f"cell {k} markdown", ctx, prefix=f"cell {k} markdown ")
        for j, o in enumerate(cell.get("outputs", []) or []):
            where = f"cell {k} output {j}"
            otype = o.get("output_type")
            if otype == "stream":
                text = _join(o.get("text", ""))
                out += _scan_plain(text, rel, where, ctx) + scan_text(text, rel, where)
            elif otype == "error":
                text = "\n".join(o.get("traceback", [])) + "\n" + str(o.get("evalue", ""))
                text = re.sub(r"\x1b\[[0-9;]*m", "", text)
                out += scan_text(text, rel, where) + scan_prose(text, rel, where, ctx.min_cell)
            data = o.get("data") or {}
            html_has_tables = False
            if "text/html" in data:
                html = _join(data["text/html"])
                found, text = _scan_html(html, rel, where, ctx, prefix=f"{where} ")
                html_has_tables = "<table" in html.lower()
                out += found + scan_text(text, rel, where)
            if "text/markdown" in data:
                text = _join(data["text/markdown"])
                out += _scan_markdown(text, rel, where, ctx, prefix=f"{where} ") + scan_text(text, rel, where)
            if "text/plain" in data:
                text = _join(data["text/plain"])
                # the plain repr of a frame shown as HTML is the same table: scanned once, as HTML
                out += _scan_plain(text, rel, where, ctx, tables=not html_has_tables) + scan_text(text, rel, where)
            if "text/latex" in data:
                out += scan_text(_join(data["text/latex"]), rel, where)
    return out


def _join(v) -> str:
    return "".join(v) if isinstance(v, list) else str(v)


def scan_xlsx(path: Path, rel: str, min_cell: int, ctx: _Ctx | None = None) -> list[Finding]:
    """Findings in a workbook.

    Per sheet: its table (the first block of rows with two or more cells, headed by its first row;
    column roles from tables/<sheet>.meta.json next to the workbook) and the notes around it.

    Parameters
    ----------
    path : Path
        The .xlsx file.
    rel : str
        Its path relative to the run, for the findings.
    min_cell : int
        Smallest count allowed.
    ctx : optional
        Scan context (cohort rows, rules) from `scan_file`.

    Returns
    -------
    list of Finding
    """
    ctx = ctx or _Ctx(min_cell)
    try:
        sheets = read_xlsx(path)
    except Exception:  # not the layout the fast reader knows: openpyxl reads anything it can
        sheets = _openpyxl_sheets(path)
    out = []
    for title, rows in sheets:
        start = next((i for i, r in enumerate(rows) if sum(bool(x.strip()) for x in r) >= 2), None)
        if start is None:
            text = "\n".join(" ".join(r) for r in rows)
            out += scan_text(text, rel, f"sheet {title}") + scan_prose(text, rel, f"sheet {title}", ctx.min_cell)
            continue
        end = next((i for i in range(start, len(rows)) if not any(x.strip() for x in rows[i])), len(rows))
        table = _normalize(rows[start:end])
        if table is not None:
            out += _scan_table(_table(table), rel, f"sheet {title}", ctx.min_cell, roles=_sheet_roles(path, title),
                               cohort_rows=ctx.cohort_rows, rules=ctx.rules)
        notes = "\n".join(" ".join(r) for r in rows[:start] + rows[end:])
        out += scan_text(notes, rel, f"sheet {title} notes") + scan_prose(notes, rel, f"sheet {title} notes", ctx.min_cell)
    return out


def scan_file(path: Path, root: Path, min_cell: int = 5, *, cohort_rows: int | None = None,
              rules: ShapeRules | None = None) -> list[Finding]:
    """Findings in one file.

    Parameters
    ----------
    path : Path
        The file.
    root : Path
        The run directory (findings name files relative to it).
    min_cell : int, default 5
        Smallest count allowed.
    cohort_rows : int, optional
        Persons in the run (for the person-level shape rule).
    rules : ShapeRules, optional
        Thresholds of the shape rules (default `SHAPE`).

    Returns
    -------
    list of Finding
    """
    ctx = _Ctx(min_cell, cohort_rows, rules or SHAPE)
    rel = path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)
    suffix = path.suffix.lower()
    if suffix in SKIP_SUFFIXES:
        return []
    try:
        if suffix == ".ipynb":
            return scan_notebook(path, rel, min_cell, ctx)
        if suffix == ".xlsx":
            return scan_xlsx(path, rel, min_cell, ctx)
        if suffix in (".csv", ".tsv"):
            raw = path.read_text(encoding="utf-8", errors="replace")
            rows = list(csv.reader(io.StringIO(raw.lstrip("\ufeff")), delimiter="\t" if suffix == ".tsv" else ","))
            rows = [r for r in rows if r]
            out = []
            if len(rows) >= 2:
                width = max(len(r) for r in rows)
                header = rows[0] + [f"col{i}" for i in range(len(rows[0]), width)]
                body = [[x if x != "" else None for x in r] + [None] * (width - len(r)) for r in rows[1:]]
                out = _scan_table(_Table.from_rows(header, body), rel, "table", min_cell, roles=sidecar_roles(path),
                                  cohort_rows=cohort_rows, rules=ctx.rules)
            return out + [f for f in scan_text(raw, rel, "text") if f.kind == "exact date of birth or death"]
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return [Finding(rel, "file", "unreadable", "not UTF-8 text and not a known binary format")]
    except Exception as exc:  # a file we cannot parse is itself a finding: nobody checked it
        return [Finding(rel, "file", "unreadable", f"{type(exc).__name__}: {exc}")]
    out = []
    if suffix in (".md", ".txt"):
        out += _scan_markdown(text, rel, "text", ctx, roles=sidecar_roles(path))
    elif suffix in (".html", ".htm"):
        found, text = _scan_html(text, rel, "text", ctx)
        out += found
    elif suffix == ".tex":
        roles = sidecar_roles(path)
        for k, table in enumerate(_tex_rows(text)):
            if table is not None:
                out += _scan_table(_table(table), rel, f"latex table {k}", min_cell, roles=roles,
                                   cohort_rows=cohort_rows, rules=ctx.rules, text_scanned=True)
        out += scan_prose(_TABULAR_RE.sub(" ", text), rel, "text", min_cell)
    else:
        out += scan_prose(text, rel, "text", min_cell)
    return out + scan_text(text, rel, "text")


def scan_run(run_dir: str | Path, min_cell: int = 5, include_supplement: bool = True, *,
             cohort_rows: int | None = None, rules: ShapeRules | None = None) -> list[Finding]:
    """Findings in every file of a run directory (sorted, at most MAX_FINDINGS_PER_FILE per file).

    Parameters
    ----------
    run_dir : str or Path
        outputs/<run>.
    min_cell : int, default 5
        Smallest count allowed.
    include_supplement : bool, default True
        Scan the run's supplement/ too.
    cohort_rows : int, optional
        Persons in the run; default: `cohort_rows` of the run's manifest.json when recorded.
    rules : ShapeRules, optional
        Thresholds of the shape rules (default `SHAPE`).

    Returns
    -------
    list of Finding
    """
    root = Path(run_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"no such output run directory: {root}")
    if cohort_rows is None:
        cohort_rows = run_cohort_rows(root)
    _META_CACHE.clear()
    findings = []
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if not p.is_file() or digest.is_hidden(rel):  # never published (hipfrac.digest)
            continue
        if not include_supplement and rel.parts[0] == "supplement":
            continue
        findings += scan_file(p, root, min_cell, cohort_rows=cohort_rows, rules=rules)[:MAX_FINDINGS_PER_FILE]
    return findings


def run_min_cell(root: Path, default: int = 5) -> int:
    """params.export.min_cell recorded in the run's manifest (or a notebook's piece), else default.

    Parameters
    ----------
    root : Path
        The run directory.
    default : int, default 5
        When nothing is recorded.

    Returns
    -------
    int
    """
    man = root / "manifest.json"
    try:
        if man.exists():
            return int(json.loads(man.read_text(encoding="utf-8"))["params"]["export"]["min_cell"])
        for part in sorted(root.glob("*/outputs.json")):
            return int(json.loads(part.read_text(encoding="utf-8"))["min_cell"])
    except (KeyError, ValueError, TypeError):
        pass
    return default


def run_cohort_rows(root: Path) -> int | None:
    """Number of persons of the run.

    Parameters
    ----------
    root : Path
        The run directory.

    Returns
    -------
    int or None
        `cohort_rows` of its manifest.json; None when the manifest or the key is absent (the shape
        rules then use their absolute thresholds only).
    """
    man = Path(root) / "manifest.json"
    try:
        v = json.loads(man.read_text(encoding="utf-8")).get("cohort_rows") if man.exists() else None
        return int(v) if v is not None and int(v) > 0 else None
    except (ValueError, TypeError, AttributeError, OSError):
        return None


def cli(args) -> int:
    """python -m hipfrac scan outputs/<run> [--min-cell N]

    Parameters
    ----------
    args : argparse.Namespace
        `path` (the run directory) and `min_cell` (None: the run's own).

    Returns
    -------
    int
        0 clean, 1 findings (listed on stderr), 2 no such directory.
    """
    root = Path(args.path)
    min_cell = args.min_cell or run_min_cell(root)
    try:
        findings = scan_run(root, min_cell)
    except FileNotFoundError as exc:
        print(f"scan: {exc}", file=sys.stderr)
        return 2
    n_files = len(digest.files(root))
    if findings:
        digest.forget(root)
        print(f"scan: {len(findings)} finding(s) in {root} - nothing from this run may leave the server "
              f"until they are fixed:", file=sys.stderr)
        for f in findings:
            print(f"  - {f}", file=sys.stderr)
        return 1
    rec = digest.record(root, min_cell)
    print(f"scan: {root}: {n_files} files checked, no person-level content or small counts found "
          f"(digest in {rec.name}: publish checks it)")
    return 0
