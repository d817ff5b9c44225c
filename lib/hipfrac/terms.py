"""Model terms from params, parsed (never evaluated) and turned into a design matrix.

A term is one or more factors joined by ":" (an interaction); a factor is a column name or one of a short
list of named transforms of a column:

    age                 the column as is (numeric)
    C(age_band)         categorical (treatment coding, first level of the sorted values as reference)
    log(charlson)       natural logarithm
    spline(age, 4)      B-spline with 4 degrees of freedom (patsy's bs, df 2-10)
    C(sex):age          interaction

    parsed = terms.parse(["C(sex)", "spline(age, 4)"], key="prevention.model_terms")
    terms.check_columns(parsed, cohort.columns)
    X = terms.design(cohort, parsed)      # intercept + columns named as patsy/statsmodels name them

The text of a term is tokenised and matched against this grammar; anything else (I(...), np.*, calls of
other functions, attributes, arithmetic, string literals, `__import__`) is a TermError naming the term.
The design matrix is built by patsy from a formula that hipfrac writes itself from the parsed terms (only
checked column names and the whitelisted transforms), in an evaluation environment holding only those
transforms.
"""

from __future__ import annotations

import keyword
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = ["Factor", "Term", "TermError", "check_columns", "check_identifiers", "columns", "design", "formula",
           "parse", "parse_term"]

IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_TOKEN = re.compile(r"\s*(?:(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<int>[0-9]+)|(?P<op>[(),:]))")
TRANSFORMS = {"C": "categorical", "log": "natural logarithm", "spline": "B-spline, spline(x, df)"}
SPLINE_DF = (2, 10)


class TermError(ValueError):
    """A model term is not a column name or a whitelisted transform of one (message names the term)."""


def check_identifiers(names: Iterable[str], key: str) -> tuple[str, ...]:
    """Names that must be plain column names (letters, digits, underscores; not a Python keyword, no
    leading double underscore). Returns them as a tuple; ValueError naming `key` otherwise."""
    names = tuple(names)
    bad = [n for n in names if not isinstance(n, str) or not IDENT.match(n) or keyword.iskeyword(n)
           or n.startswith("__")]
    if bad:
        raise ValueError(f"{key}: {bad} are not column names (letters, digits and underscores only)")
    return names


@dataclass(frozen=True)
class Factor:
    kind: str            # "column", "C", "log", "spline"
    column: str
    df: int | None = None

    def patsy(self) -> str:
        if self.kind == "column":
            return self.column
        if self.kind == "spline":
            return f"bs({self.column}, df={self.df})"
        return f"{self.kind}({self.column})"


@dataclass(frozen=True)
class Term:
    text: str
    factors: tuple[Factor, ...]

    def patsy(self) -> str:
        return ":".join(f.patsy() for f in self.factors)


def _tokens(text: str, what: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise TermError(f"{what}: unexpected {text[pos:].strip()[:20]!r}")
        kind = m.lastgroup
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


def parse_term(text: str, key: str = "model term") -> Term:
    """Parse one term (see the module doc); TermError naming the term and `key` otherwise."""
    what = f"{key}: model term {text!r}"
    if not isinstance(text, str) or not text.strip():
        raise TermError(f"{what}: a term must be a non-empty string")
    toks = _tokens(text, what)
    factors, i = [], 0

    def need(kind, value=None):
        nonlocal i
        if i >= len(toks) or toks[i][0] != kind or (value is not None and toks[i][1] != value):
            got = toks[i][1] if i < len(toks) else "the end"
            raise TermError(f"{what}: expected {value or kind} at {got!r}; terms are column names, "
                            f"{', '.join(f'{k}(...)' for k in TRANSFORMS)} and interactions a:b")
        i += 1
        return toks[i - 1][1]

    while True:
        name = need("name")
        if i < len(toks) and toks[i] == ("op", "("):
            if name not in TRANSFORMS:
                raise TermError(f"{what}: {name}(...) is not an allowed transform (allowed: "
                                f"{', '.join(f'{k}: {v}' for k, v in TRANSFORMS.items())})")
            need("op", "(")
            col = need("name")
            df = None
            if name == "spline":
                need("op", ",")
                df = int(need("int"))
                if not SPLINE_DF[0] <= df <= SPLINE_DF[1]:
                    raise TermError(f"{what}: spline degrees of freedom must be {SPLINE_DF[0]}-{SPLINE_DF[1]}")
            need("op", ")")
            factors.append(Factor(name, col, df))
        else:
            factors.append(Factor("column", name))
        if i == len(toks):
            break
        need("op", ":")
    for f in factors:
        try:
            check_identifiers([f.column], what)
        except ValueError as exc:
            raise TermError(str(exc)) from None
    return Term(text.strip(), tuple(factors))


def parse(terms: Iterable[str], key: str = "model terms") -> list[Term]:
    """Parse every term; TermError for the first that is not allowed, or a term listed twice."""
    out = [parse_term(t, key) for t in terms]
    seen = [t.patsy() for t in out]
    twice = sorted({s for s in seen if seen.count(s) > 1})
    if twice:
        raise TermError(f"{key}: model term(s) listed twice: {twice}")
    return out


def columns(parsed: Sequence[Term]) -> list[str]:
    """The columns the terms use, in first-use order."""
    out: list[str] = []
    for t in parsed:
        for f in t.factors:
            if f.column not in out:
                out.append(f.column)
    return out


def check_columns(parsed: Sequence[Term], available: Iterable[str]) -> None:
    """TermError naming the term when it uses a column the data lack."""
    avail = set(available)
    for t in parsed:
        for f in t.factors:
            if f.column not in avail:
                raise TermError(f"model term {t.text!r}: {f.column!r} is not a column of the data")


def formula(parsed: Sequence[Term]) -> str:
    """The right-hand side hipfrac writes from parsed terms ("1" when there are none)."""
    return " + ".join(t.patsy() for t in parsed) if parsed else "1"


def design(data, parsed: Sequence[Term]):
    """Design matrix (pandas DataFrame, intercept first) of the parsed terms on `data`; the data must hold
    every column (check_columns) and no missing values in them."""
    import numpy as np
    import patsy
    import patsy.builtins

    check_columns(parsed, data.columns)
    used = columns(parsed)
    env = patsy.EvalEnvironment([{"log": np.log, "bs": patsy.bs, "C": patsy.builtins.C}])
    return patsy.dmatrix(formula(parsed), data[used] if used else data, eval_env=env, NA_action="raise",
                         return_type="dataframe")
