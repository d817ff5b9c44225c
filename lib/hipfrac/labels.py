"""English / Norwegian labels for table headers, axis titles, category values and indicator names.

    >>> from hipfrac import labels
    >>> labels.t("hospital", "no")
    'Sykehus'
    >>> labels.t("not_a_key", "no")     # unknown keys are returned as written
    'not_a_key'

The labels live in lib/hipfrac/data/labels.yaml (key -> {en, no}); add a key there when a notebook
shows a new column or category. `lang` is params.lang ("en" default, "no" Norwegian).
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

import yaml

LANGS = ("en", "no")


@lru_cache(maxsize=1)
def table() -> dict[str, dict[str, str]]:
    """All labels: key -> {lang: text}. Raises ValueError if the YAML is malformed."""
    text = resources.files("hipfrac").joinpath("data/labels.yaml").read_text(encoding="utf-8")
    raw = (yaml.safe_load(text) or {}).get("labels", {})
    out = {}
    for key, entry in raw.items():
        if not isinstance(entry, dict) or set(entry) != set(LANGS):
            raise ValueError(f"labels.yaml: key {key!r} must have exactly the languages {LANGS}, got {entry!r}")
        out[str(key)] = {k: str(v) for k, v in entry.items()}
    return out


def has(key) -> bool:
    """True if key has a label."""
    return str(key) in table()


def t(key, lang: str = "en", **fmt) -> str:
    """Label of key in lang ("en" or "no"); key itself when it has no label. fmt fills {placeholders}."""
    if lang not in LANGS:
        raise ValueError(f"unknown label language {lang!r}; use one of {LANGS}")
    entry = table().get(str(key))
    text = entry[lang] if entry else str(key)
    return text.format(**fmt) if fmt else text


def relabel(df, lang: str = "en", columns: bool = True, values=None):
    """Copy of df with column names (and the category values of the `values` columns) labelled."""
    out = df.copy()
    for c in values or []:
        out[c] = out[c].map(lambda v: t(v, lang) if isinstance(v, str) and has(v) else v)
    if columns:
        out.columns = [t(c, lang) for c in out.columns]
    return out
