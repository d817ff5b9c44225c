"""Figures of notebook 00 (data and cohort): flowchart, coverage, registrations, completeness, incidence.

Every function takes the *protected* results (``out.figure(name, plot, result)`` draws
``plot(protected)``; from hipfrac.overview, hipfrac.coverage and hipfrac.incidence) and returns a matplotlib
Figure. A withheld value (missing in the protected frame) is drawn as withheld, with a legend entry, never
as a blank that reads as missing data.
"""

from __future__ import annotations

import textwrap

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from hipfrac import geography
from hipfrac.figures import style

__all__ = ["completeness_heatmap", "coverage_dotplot", "coverage_heatmap", "flowchart_figure",
           "incidence_dotplot", "registrations_heatmap"]

REGION_COLOURS = dict(zip(geography.REGIONS, style.PALETTE))
WITHHELD_COLOUR = "#BBBBBB"
WITHHELD_LABEL = "withheld (small numbers)"


def _withheld_patch():
    from matplotlib.patches import Patch

    return Patch(facecolor=WITHHELD_COLOUR, edgecolor="0.4", hatch="////", lw=0.4, label=WITHHELD_LABEL)


def _grid(frame: pd.DataFrame, index: str, columns: str, values: str) -> tuple[pd.DataFrame, np.ndarray]:
    """Wide values and a mask of the withheld cells (a row present with a missing value; absent
    combinations are empty, not withheld)."""
    f = frame[[index, columns, values]].copy()
    f["_present"] = 1.0
    f[values] = pd.to_numeric(f[values], errors="coerce").astype(float)
    wide = f.pivot(index=index, columns=columns, values=values).sort_index()
    present = f.pivot(index=index, columns=columns, values="_present").reindex_like(wide)
    withheld = present.notna().to_numpy() & wide.isna().to_numpy()
    return wide, withheld


def _draw_withheld(ax, withheld: np.ndarray) -> bool:
    """Hatched grey cells over an imshow grid where values are withheld; True if any."""
    from matplotlib.patches import Rectangle

    for r, c in np.argwhere(withheld):
        ax.add_patch(Rectangle((c - 0.5, r - 0.5), 1, 1, facecolor=WITHHELD_COLOUR, edgecolor="0.4", hatch="////",
                               lw=0.2))
    return bool(withheld.any())


def _fmt(n) -> str:
    """A count for the flowchart; a withheld (disclosure-suppressed) count is shown as such."""
    return "withheld" if pd.isna(n) else f"{int(n):,}".replace(",", " ")


def flowchart_figure(flow: pd.DataFrame, title: str = "") -> plt.Figure:
    """Vertical flowchart: a box with the count entering each step, exclusions to the right.

    flow: step, label, n_in, n_excluded, n_out (steps excluding nobody are folded into one note)."""
    style.apply()
    shown = flow[flow["n_excluded"].fillna(1) != 0].reset_index(drop=True)
    k = len(shown)
    fig, ax = plt.subplots(figsize=style.figsize("double", aspect=0.12 * (k + 2)))
    ax.set_axis_off()
    ax.set_xlim(0, 1)
    ax.set_ylim(-(k + 1), 1)
    box = dict(boxstyle="round,pad=0.4", fc="white", ec="0.3", lw=0.8)
    ex_box = dict(boxstyle="round,pad=0.3", fc="#F2F2F2", ec="0.5", lw=0.6)
    ax.text(0.25, 0, f"Hip fracture events in the extracts\nn = {_fmt(flow['n_in'].iloc[0])}", ha="center",
            va="center", bbox=box)
    for i, r in shown.iterrows():
        y = -(i + 1)
        ax.annotate("", xy=(0.25, y + 0.3), xytext=(0.25, y + 0.7),
                    arrowprops=dict(arrowstyle="-|>", color="0.3", lw=0.8))
        ax.plot([0.25, 0.5], [y + 0.5, y + 0.5], color="0.5", lw=0.6)
        label = "\n".join(textwrap.wrap(str(r["label"]), 60))
        ax.text(0.52, y + 0.5, f"Excluded: {label}\nn = {_fmt(r['n_excluded'])}", ha="left", va="center",
                bbox=ex_box, fontsize=6.5)
        last = i == k - 1
        text = f"Analysis cohort (index fractures)\nn = {_fmt(r['n_out'])}" if last else f"n = {_fmt(r['n_out'])}"
        ax.text(0.25, y, text, ha="center", va="center", bbox=box)
    skipped = flow[flow["n_excluded"] == 0]["label"].tolist()
    if skipped:
        ax.text(0.0, -(k + 0.8), "No exclusions: " + "; ".join(skipped), fontsize=5.5, color="0.4",
                ha="left", va="center", wrap=True)
    if title:
        ax.set_title(title)
    return fig


def coverage_dotplot(cov: pd.DataFrame, title: str = "") -> plt.Figure:
    """Coverage per hospital (one dot each, sorted, coloured by region) with the 60 %, 80 % and 90 % lines.

    cov: hospital-level coverage (hipfrac.coverage.coverage_table(..., by=["hospital"], names=...)) with
    hospital_name (or hospital), region, coverage."""
    style.apply()
    cov = cov.assign(coverage=pd.to_numeric(cov["coverage"], errors="coerce").astype(float))
    hidden = cov[cov["coverage"].isna()]
    d = pd.concat([hidden, cov.dropna(subset=["coverage"]).sort_values("coverage")]).reset_index(drop=True)
    name = d["hospital_name"] if "hospital_name" in d else d["hospital"]
    fig, ax = plt.subplots(figsize=style.figsize("onehalf", aspect=0.03 * len(d) + 0.3))
    colours = [REGION_COLOURS.get(r, style.GREY) for r in d.get("region", pd.Series([None] * len(d)))]
    shown = d["coverage"].notna().to_numpy()
    ax.scatter(d.loc[shown, "coverage"] * 100, np.arange(len(d))[shown], c=[c for c, s in zip(colours, shown) if s],
               s=14, zorder=3)
    xmin = min(40, float(d["coverage"].min() * 100) - 5) if shown.any() else 40
    if (~shown).any():
        ax.scatter(np.full((~shown).sum(), xmin + 1.5), np.arange(len(d))[~shown], marker="x", color="0.45", s=12,
                   zorder=3)
    for x, lab, ls in ((60, "60 % (low coverage)", ":"), (80, "80 %", "--"), (90, "90 %", "-")):
        ax.axvline(x, color="0.4", lw=0.7, ls=ls)
        ax.text(x, len(d) - 0.3, lab, rotation=90, fontsize=5.5, ha="right", va="top", color="0.3")
    ax.set_yticks(np.arange(len(d)), name, fontsize=5.5)
    ax.set_xlabel("NHFR coverage against NPR (%)")
    ax.set_xlim(xmin, 101)
    handles = [plt.Line2D([], [], marker="o", ls="", color=c, label=r) for r, c in REGION_COLOURS.items()]
    if (~shown).any():
        handles.append(plt.Line2D([], [], marker="x", ls="", color="0.45", label=WITHHELD_LABEL))
    ax.legend(handles=handles, loc="lower right", fontsize=6)
    if title:
        ax.set_title(title)
    return fig


def coverage_heatmap(cov: pd.DataFrame, title: str = "") -> plt.Figure:
    """Coverage by hospital (rows) and year (columns); cells under 60 % marked with a dot.

    cov: hospital x year coverage (hipfrac.coverage.coverage_table(..., by=["hospital", "year"]))."""
    style.apply()
    name = "hospital_name" if "hospital_name" in cov else "hospital"
    wide, withheld = _grid(cov, name, "year", "coverage")
    fig, ax = plt.subplots(figsize=style.figsize("double", aspect=0.018 * len(wide) + 0.15))
    im = ax.imshow(wide.to_numpy(float) * 100, aspect="auto", cmap=style.SEQUENTIAL_CMAP, vmin=40, vmax=100)
    handles = []
    low = np.argwhere(wide.to_numpy(float) < 0.6)
    if len(low):
        handles.append(ax.scatter(low[:, 1], low[:, 0], marker="o", s=6, color="white", edgecolors="black", lw=0.3,
                                  label="< 60 %"))
    if _draw_withheld(ax, withheld):
        handles.append(_withheld_patch())
    if handles:
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.12, 1), fontsize=6)
    ax.set_yticks(np.arange(len(wide)), wide.index, fontsize=5)
    ax.set_xticks(np.arange(wide.shape[1]), wide.columns, rotation=90, fontsize=6)
    ax.grid(False)
    fig.colorbar(im, ax=ax, label="coverage (%)", shrink=0.6)
    if title:
        ax.set_title(title)
    return fig


def registrations_heatmap(reg: pd.DataFrame, title: str = "") -> plt.Figure:
    """Index fractures per hospital (rows) and year (columns); suppressed cells (missing) grey.

    reg: hospital (or hospital_name), year, n (protected: withheld cells missing, drawn hatched grey)."""
    style.apply()
    name = "hospital_name" if "hospital_name" in reg else "hospital"
    wide, withheld = _grid(reg, name, "year", "n")
    vals = wide.to_numpy(float)
    fig, ax = plt.subplots(figsize=style.figsize("double", aspect=0.018 * len(wide) + 0.15))
    cmap = plt.get_cmap(style.SEQUENTIAL_CMAP).with_extremes(bad="white")
    im = ax.imshow(np.ma.masked_invalid(vals), aspect="auto", cmap=cmap)
    if _draw_withheld(ax, withheld):
        ax.legend(handles=[_withheld_patch()], loc="upper left", bbox_to_anchor=(1.12, 1), fontsize=6)
    ax.set_yticks(np.arange(len(wide)), wide.index, fontsize=5)
    ax.set_xticks(np.arange(wide.shape[1]), wide.columns, rotation=90, fontsize=6)
    ax.grid(False)
    fig.colorbar(im, ax=ax, label="index hip fractures", shrink=0.6)
    if title:
        ax.set_title(title)
    return fig


def completeness_heatmap(comp: pd.DataFrame, title: str = "") -> plt.Figure:
    """Completeness band by hospital (rows) and variable (columns).

    comp: the protected completeness result (hipfrac.coverage.completeness: hospital, variable, complete):
    the band of each published share (hipfrac.coverage.completeness_band); withheld shares hatched grey."""
    from matplotlib.colors import BoundaryNorm, ListedColormap

    from hipfrac.coverage import COMPLETENESS_BANDS, completeness_band

    style.apply()
    order = list(dict.fromkeys(comp["variable"]))
    band = completeness_band(pd.to_numeric(comp["complete"], errors="coerce").astype(float).to_numpy())
    codes = comp.assign(code=band.map({b: i for i, b in enumerate(COMPLETENESS_BANDS)}).to_numpy())
    wide, withheld = _grid(codes, "hospital", "variable", "code")
    keep = [c for c in order if c in wide.columns]
    withheld = withheld[:, [list(wide.columns).index(c) for c in keep]]
    wide = wide[keep]
    cmap = ListedColormap(plt.get_cmap(style.SEQUENTIAL_CMAP)(np.linspace(0, 1, len(COMPLETENESS_BANDS)))
                          ).with_extremes(bad="white")
    norm = BoundaryNorm(np.arange(-0.5, len(COMPLETENESS_BANDS)), cmap.N)
    fig, ax = plt.subplots(figsize=style.figsize("double", aspect=0.018 * len(wide) + 0.2))
    im = ax.imshow(np.ma.masked_invalid(wide.to_numpy(float)), aspect="auto", cmap=cmap, norm=norm)
    if _draw_withheld(ax, withheld):
        ax.legend(handles=[_withheld_patch()], loc="upper left", bbox_to_anchor=(1.25, 1), fontsize=6)
    ax.set_yticks(np.arange(len(wide)), wide.index, fontsize=5)
    ax.set_xticks(np.arange(wide.shape[1]), wide.columns, rotation=60, ha="right", fontsize=6)
    ax.grid(False)
    cb = fig.colorbar(im, ax=ax, ticks=np.arange(len(COMPLETENESS_BANDS)), shrink=0.6)
    cb.ax.set_yticklabels(COMPLETENESS_BANDS)
    cb.set_label("recorded")
    if title:
        ax.set_title(title)
    return fig


def incidence_dotplot(rates: pd.DataFrame, unit: str = "referral_area", region: pd.Series | None = None,
                      national: float | None = None, title: str = "") -> plt.Figure:
    """Standardised incidence per 100,000 per area with 95 % intervals, sorted, coloured by region.

    rates: hipfrac.incidence.standardised_incidence output (unit, std_rate, lower, upper).
    region: unit -> region mapping for colours (default: the referral areas' regions)."""
    style.apply()
    rates = rates.assign(**{c: pd.to_numeric(rates[c], errors="coerce").astype(float)
                            for c in ("std_rate", "lower", "upper")})
    hidden = rates[rates["std_rate"].isna()]
    d = rates.dropna(subset=["std_rate"]).sort_values("std_rate").reset_index(drop=True)
    if region is None:
        region = geography.referral_areas().set_index("referral_area")["region"]
    reg = d[unit].map(region) if unit != "res_region" else d[unit]
    colours = [REGION_COLOURS.get(r, style.GREY) for r in reg]
    fig, ax = plt.subplots(figsize=style.figsize("onehalf", aspect=0.04 * len(d) + 0.25))
    y = np.arange(len(d))
    ax.errorbar(d["std_rate"], y, xerr=[d["std_rate"] - d["lower"], d["upper"] - d["std_rate"]], fmt="none",
                ecolor="0.5", lw=0.7, zorder=2)
    ax.scatter(d["std_rate"], y, c=colours, s=16, zorder=3)
    if national is not None:
        ax.axvline(national, color="0.3", ls="--", lw=0.7, label="Norway")
    ax.set_yticks(y, d[unit])
    ax.set_xlabel("hip fractures per 100,000 person-years\n(age 50+, age- and sex-standardised)")
    handles = [plt.Line2D([], [], marker="o", ls="", color=c, label=r) for r, c in REGION_COLOURS.items()]
    if len(hidden):
        handles.append(plt.Line2D([], [], ls="", label=f"{WITHHELD_LABEL}: " + ", ".join(map(str, hidden[unit])),
                                  marker="x", color="0.45"))
    ax.legend(handles=handles, loc="lower right", fontsize=6)
    if title:
        ax.set_title(title)
    return fig
