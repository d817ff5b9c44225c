"""The single way tables and figures leave a notebook: disclosure-checked, provenance-stamped.

INTERFACE (stable; notebooks and modules rely on it):

    from hipfrac.export import Exporter
    out = Exporter(params, notebook="01_treatment_variation", output_dir=output_dir)
    safe = out.suppress(df, counts=["n", "events"], derived={"events": ["prop", "lower", "upper"]})
    out.table(df, "indicator_overview", title="...", counts=[...], derived={...})  # suppresses itself
    out.figure(fig, "funnel_surgery_48h", title="...", data=safe_frame_behind_the_figure)
    out.text("summary", markdown_text)
    out.finish()   # writes the notebook's listing; call at the end of the notebook

counts: count columns whose values 1..min_cell-1 are suppressed (None: detected by name).
derived: count column -> columns computed from it (suppressed with it).
output_dir: where to write (the runner passes a temporary directory; None = outputs/<run>/<notebook>).

NOTE: first implementation (CSV + PNG, simple suppression); issue 9 completes it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

COUNT_NAMES = ("n", "events", "deaths", "observed", "count", "n_patients", "cases", "numerator", "denominator")


def _is_count_col(name: str) -> bool:
    low = str(name).lower()
    return low in COUNT_NAMES or low.startswith("n_") or low.endswith("_n") or low.startswith("count")


class Exporter:
    """Writes disclosure-checked tables and figures for one notebook of one run."""

    def __init__(self, params, notebook: str, output_dir: str | Path | None = None):
        self.params = params
        self.notebook = notebook
        self.dir = Path(output_dir) if output_dir else params.output_dir / notebook
        self.dir.mkdir(parents=True, exist_ok=True)
        self.min_cell = params.export.min_cell
        self.written: list[Path] = []

    def suppress(self, df: pd.DataFrame, counts=None, derived=None) -> pd.DataFrame:
        """Copy of df with counts 1..min_cell-1, and columns derived from them, set to missing."""
        out = df.copy()
        counts = [c for c in df.columns if _is_count_col(c)] if counts is None else list(counts)
        derived = derived or {}
        for c in counts:
            vals = pd.to_numeric(out[c], errors="coerce")
            small = (vals >= 1) & (vals < self.min_cell)
            if small.any():
                out[c] = out[c].astype("object").where(~small, np.nan)
                for d in derived.get(c, []):
                    out[d] = out[d].astype("object").where(~small, np.nan)
        return out

    def table(self, df: pd.DataFrame, name: str, *, title: str = "", counts=None, derived=None) -> Path:
        safe = self.suppress(df, counts, derived)
        path = self.dir / "tables" / f"{name}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        safe.to_csv(path, index=False, lineterminator="\n")
        self.written.append(path)
        return path

    def figure(self, fig, name: str, *, title: str = "", data: pd.DataFrame | None = None) -> Path:
        path = self.dir / "figures" / f"{name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=self.params.export.dpi, bbox_inches="tight", metadata={"Title": title})
        self.written.append(path)
        return path

    def text(self, name: str, text: str) -> Path:
        path = self.dir / f"{name}.md"
        path.write_text(text, encoding="utf-8")
        self.written.append(path)
        return path

    def finish(self) -> list[Path]:
        return list(self.written)
