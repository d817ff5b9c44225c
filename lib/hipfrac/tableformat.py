"""Human-readable formatting of result tables (Markdown, LaTeX, XLSX), one set of rules for all.

Column kinds (found by name unless `formats={column: kind}` says otherwise):
  int    counts and other integers: 1,234 (en) / 1 234 (no)
  pct    proportions on 0-1 (prop, proportion, share, risk, surv*, cuminc, cif, coverage, *_prop,
         *_rate_pct...) shown as percent with one decimal: 84.2 (en) / 84,2 (no); their CI limits too
  ratio  hazard / odds / rate ratios (hr, or, rr, irr, smr, sir, *_hr, *_or ...): two decimals, and
         when CI limits exist the three columns become one "1.52 (1.31-1.77)"
  p      p-values: three decimals, "<0.001"
  float  other numbers: two decimals (`formats` may give "float0", "float1", "float3")
  text   as is (category codes labelled when a label exists)
Suppressed cells show as "s" (see labels "suppressed_note"); other missing values as an en dash.
CI limits are columns named lower/upper, ci_lower/ci_upper, lcl/ucl, lo/hi or <estimate>_lower/_upper.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from hipfrac import labels
from hipfrac.disclosure import is_count_col

SUPPRESSED = "s"
MISSING = "\u2013"
_PCT_RE = re.compile(r"^(prop|proportion|share|risk|surv|survival|net_survival|cuminc|cif|coverage|pct_of|"
                     r"mortality|achieved|rate_adj|crude_prop|std_prop)$|(_prop|_share|_risk|_surv|_cuminc|_cif|"
                     r"_coverage|_proportion)$|^(prop|surv|cuminc|cif)_", re.IGNORECASE)
_RATIO_RE = re.compile(r"^(hr|or|rr|irr|smr|sir|ratio|eq|mor|shr|csh)$|(_hr|_or|_rr|_irr|_smr|_ratio)$|^(hr|or|rr)_",
                       re.IGNORECASE)
_P_RE = re.compile(r"^(p|p_value|pvalue|p\.value|pval)$|(_p|_pvalue|_p_value)$", re.IGNORECASE)
_LOWER = ("lower", "ci_lower", "lcl", "lo", "ci_lo", "lower_ci", "lower95")
_UPPER = ("upper", "ci_upper", "ucl", "hi", "ci_hi", "upper_ci", "upper95")


def ci_pairs(columns) -> dict[str, tuple[str, str]]:
    """estimate column -> (lower, upper) columns, found by name."""
    cols = list(columns)
    pairs = {}
    for est in cols:
        for lo, hi in zip(_LOWER, _UPPER):
            for lo_c, hi_c in ((f"{est}_{lo}", f"{est}_{hi}"),):
                if lo_c in cols and hi_c in cols:
                    pairs[est] = (lo_c, hi_c)
    generic = [(lo, hi) for lo, hi in zip(_LOWER, _UPPER) if lo in cols and hi in cols]
    if generic:
        lo, hi = generic[0]
        taken = {c for v in pairs.values() for c in v}
        cand = [c for c in cols if c not in taken and c not in (lo, hi)
                and (_RATIO_RE.search(str(c)) or _PCT_RE.search(str(c)) or str(c) in ("estimate", "est", "rate"))]
        if cand and cand[0] not in pairs:
            # the estimate is the candidate placed before the limits
            before = [c for c in cand if cols.index(c) < cols.index(lo)]
            pairs[(before or cand)[-1]] = (lo, hi)
    return pairs


def column_kinds(df: pd.DataFrame, counts=(), formats=None) -> dict[str, str]:
    """Kind of each column (see module doc)."""
    formats = dict(formats or {})
    kinds = {}
    pairs = ci_pairs(df.columns)
    for c in df.columns:
        s = df[c]
        name = str(c)
        if c in formats:
            kinds[c] = formats[c]
        elif c in counts or is_count_col(name):
            kinds[c] = "int" if pd.api.types.is_numeric_dtype(s) or s.dtype == object else "text"
        elif not pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s):
            kinds[c] = "text"
        elif _P_RE.search(name):
            kinds[c] = "p"
        elif _RATIO_RE.search(name):
            kinds[c] = "ratio"
        elif _PCT_RE.search(name):
            kinds[c] = "pct"
        elif pd.api.types.is_integer_dtype(s):
            kinds[c] = "int"
        else:
            kinds[c] = "float"
    for est, (lo, hi) in pairs.items():
        for lim in (lo, hi):
            if lim not in formats:
                kinds[lim] = kinds[est] if kinds[est] in ("pct", "ratio", "float") else "float"
    return kinds


def _num(x: float, decimals: int, lang: str, thousands: bool = True) -> str:
    text = f"{x:,.{decimals}f}" if thousands else f"{x:.{decimals}f}"
    if lang == "no":
        text = text.replace(",", "\u00a0").replace(".", ",")
    return text.replace("-", "\u2212") if x < 0 else text


def format_value(x, kind: str, lang: str = "en") -> str:
    """One value as text for a human-readable table."""
    if x is None or (isinstance(x, float) and np.isnan(x)) or x is pd.NA or x is pd.NaT:
        return MISSING
    if isinstance(x, (bool, np.bool_)):
        return labels.t("yes" if x else "no", lang)
    if kind == "text":
        return labels.t(x, lang) if isinstance(x, str) and labels.has(x) else str(x)
    try:
        v = float(x)
    except (TypeError, ValueError):
        return str(x)
    if kind == "int":
        return _num(v, 0, lang) if float(v).is_integer() else _num(v, 1, lang)
    if kind == "pct":
        return _num(100 * v, 1, lang)
    if kind == "ratio":
        return _num(v, 2, lang, thousands=False)
    if kind == "p":
        return ("<0,001" if lang == "no" else "<0.001") if v < 0.001 else _num(v, 3, lang, thousands=False)
    if kind.startswith("float"):
        d = int(kind[5:]) if kind[5:] else 2
        return _num(v, d, lang)
    raise ValueError(f"unknown column format {kind!r}; use int, pct, ratio, p, float, float0..float3 or text")


def format_table(df: pd.DataFrame, mask: pd.DataFrame | None = None, *, lang: str = "en", counts=(),
                 formats=None) -> pd.DataFrame:
    """Strings for a human-readable table: labelled headers, formatted numbers, "s" where suppressed.

    Ratio estimates with CI limits are merged into one column "est (lower-upper)".
    """
    kinds = column_kinds(df, counts, formats)
    if mask is None:
        mask = pd.DataFrame(False, index=df.index, columns=df.columns)
    out = {}
    merged = {}
    for est, (lo, hi) in ci_pairs(df.columns).items():
        if kinds.get(est) == "ratio":
            merged[est] = (lo, hi)
    skip = {c for v in merged.values() for c in v}
    for c in df.columns:
        if c in skip:
            continue
        vals = [SUPPRESSED if m else format_value(x, kinds[c], lang)
                for x, m in zip(df[c].tolist(), mask[c].tolist())]
        if c in merged:
            lo, hi = merged[c]
            los = [format_value(x, "ratio", lang) for x in df[lo].tolist()]
            his = [format_value(x, "ratio", lang) for x in df[hi].tolist()]
            vals = [v if v in (SUPPRESSED, MISSING) or a == MISSING else f"{v} ({a}\u2013{b})"
                    for v, a, b in zip(vals, los, his)]
            header = labels.t(c, lang) if labels.has(c) else f"{c} (95% CI)"
        else:
            header = labels.t(c, lang)
            if kinds[c] == "pct" and not labels.has(c):
                header = f"{c} (%)"
        out[header] = vals
    return pd.DataFrame(out, index=range(len(df)))


# --- writers ------------------------------------------------------------------------------------
def _md_escape(s: str) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


def to_markdown(table: pd.DataFrame, title: str = "", notes=()) -> str:
    """A GitHub-flavoured Markdown table with an optional title line and footnotes."""
    cols = [_md_escape(c) for c in table.columns]
    lines = []
    if title:
        lines += [f"**{_md_escape(title)}**", ""]
    lines.append("| " + " | ".join(cols) + " |")
    align = ["---" if table[c].map(lambda v: not _numeric_text(v)).any() else "---:" for c in table.columns]
    lines.append("| " + " | ".join(align) + " |")
    for row in table.itertuples(index=False):
        lines.append("| " + " | ".join(_md_escape(v) for v in row) + " |")
    if notes:
        lines.append("")
        lines += [f"*{_md_escape(n)}*  " for n in notes]
    return "\n".join(lines) + "\n"


def _numeric_text(v: str) -> bool:
    return bool(re.match(r"^[\u2212<]?[\d\u00a0,. ]+(\s*\(.*\))?$", str(v))) or v in (SUPPRESSED, MISSING)


_TEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                "\u2212": "$-$", "\u2013": "--", "\u00a0": "~", "<": r"\textless{}", ">": r"\textgreater{}"}


def tex_escape(s) -> str:
    return "".join(_TEX_SPECIAL.get(ch, ch) for ch in str(s))


def to_latex(table: pd.DataFrame, title: str = "", label: str = "", notes=()) -> str:
    """A booktabs LaTeX table (needs \\usepackage{booktabs}); notes go below the rule."""
    align = "".join("l" if table[c].map(lambda v: not _numeric_text(v)).any() else "r" for c in table.columns)
    lines = [r"\begin{table}[htbp]", r"\centering"]
    if title:
        lines.append(r"\caption{" + tex_escape(title) + "}")
    if label:
        lines.append(r"\label{tab:" + re.sub(r"[^A-Za-z0-9:_-]", "-", label) + "}")
    lines += [r"\begin{tabular}{" + align + "}", r"\toprule",
              " & ".join(tex_escape(c) for c in table.columns) + r" \\", r"\midrule"]
    for row in table.itertuples(index=False):
        lines.append(" & ".join(tex_escape(v) for v in row) + r" \\")
    lines.append(r"\bottomrule")
    lines.append(r"\end{tabular}")
    for n in notes:
        lines.append(r"\par\smallskip{\footnotesize " + tex_escape(n) + "}")
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"
