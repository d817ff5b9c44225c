"""Figures of treatment variation (notebook 01): funnel, caterpillar, hospital grid, trends, tile map,
heat table. Each function takes tidy, already disclosure-checked frames (suppressed cells are NaN and
are drawn as "not shown") and returns a matplotlib Figure. Proportions are fractions in [0, 1] and are
labelled in percent.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from hipfrac import variation
from hipfrac.figures import style

LEVEL_COLOURS = {"green": style.TARGET_COLOURS["high"], "yellow": style.TARGET_COLOURS["moderate"],
                 "red": style.TARGET_COLOURS["low"], "none": "#D9D9D9"}


def _pct(ax, axis="y"):
    from matplotlib.ticker import PercentFormatter

    (ax.yaxis if axis == "y" else ax.xaxis).set_major_formatter(PercentFormatter(1.0, decimals=0))


def funnel_plot(units: pd.DataFrame, target: float, title: str = "", levels: Sequence[float] = (0.95, 0.998),
                tau2: float | None = None, label_outside: bool = True, unit_col: str = "unit",
                xlabel: str = "Patients (n)", ylabel: str = "Proportion", method: str = "quantile", ax=None,
                limits: str = "exact", legend: bool = True, value_col: str = "prop"):
    """Funnel plot of unit proportions against their denominators.

    units: columns unit_col, n, prop (NaN = suppressed, not drawn) and optionally outside_<L> flags
      ("high"/"low"/"") from `hipfrac.variation.funnel_table`.
    target: the centre line (national value or target). Limits: exact binomial (variation.funnel_limits,
      `method`), solid for the inner, dashed for the outer level; with tau2, the additive random-effects
      limits of the outer level as a dotted line. Units outside the outer limit are labelled.
    ax: draw into this axes (e.g. a panel of `panels`) instead of a new figure.
    limits: "exact" (binomial) or "normal" (normal approximation, for case-mix adjusted funnels whose
      flags come from z-scores).
    value_col: the column of the proportions (e.g. "std_rate" of risk-adjusted mortality).
    """
    fig, ax = style.subplots("onehalf", aspect=0.7) if ax is None else (ax.figure, ax)
    if value_col != "prop":
        units = units.assign(prop=units[value_col])
    d = units.dropna(subset=["n", "prop"])
    nmax = max(float(d["n"].max()) if len(d) else 10.0, 10.0) * 1.08
    grid = np.unique(np.round(np.geomspace(1, nmax, 400))).astype(int)
    if limits == "exact":
        lim = variation.funnel_limits(grid, target, levels, method=method)
    else:
        lim = variation.overdispersed_limits(grid, target, phi=1.0, levels=levels)
    styles = ["-", "--"]
    for level, ls in zip(levels, styles):
        name = f"{100 * level:.10g}"
        where = "post" if limits == "exact" else "mid"
        ax.step(grid, lim[f"lower_{name}"], where=where, color=style.GREY, ls=ls, lw=0.9,
                label=f"{name} % limits ({'exact binomial' if limits == 'exact' else 'normal approx.'})")
        ax.step(grid, lim[f"upper_{name}"], where=where, color=style.GREY, ls=ls, lw=0.9)
    if tau2 is not None and tau2 > 0:
        od = variation.overdispersed_limits(grid, target, tau2=tau2, levels=(levels[-1],), model="additive")
        name = f"{100 * levels[-1]:.10g}"
        ax.plot(grid, od[f"lower_{name}"], color=style.PALETTE[0], ls=":", lw=0.9,
                label=f"{name} % limits, overdispersion-adjusted (additive)")
        ax.plot(grid, od[f"upper_{name}"], color=style.PALETTE[0], ls=":", lw=0.9)
    ax.axhline(target, color="black", lw=0.8, label=f"centre {100 * target:.1f} %")
    outer = f"outside_{100 * levels[-1]:.10g}"
    flag = d[outer] if outer in d.columns else pd.Series("", index=d.index)
    inside = flag.fillna("") == ""
    ax.scatter(d.loc[inside, "n"], d.loc[inside, "prop"], s=14, color=style.PALETTE[0], alpha=0.8,
               edgecolor="white", linewidth=0.4, zorder=3, label="unit")
    ax.scatter(d.loc[~inside, "n"], d.loc[~inside, "prop"], s=22, color=style.PALETTE[3], marker="D",
               zorder=4, label=f"outside {100 * levels[-1]:.10g} %")
    if label_outside:
        for r in d.loc[~inside].itertuples():
            ax.annotate(str(getattr(r, unit_col)), (r.n, r.prop), fontsize=6, xytext=(3, 2),
                        textcoords="offset points")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    _pct(ax)
    ax.set_xlim(0, nmax)
    lo = min(float(d["prop"].min()) if len(d) else target, float(lim[f"lower_{100 * levels[-1]:.10g}"].iloc[-1]))
    ax.set_ylim(max(0, lo - 0.05), min(1.0, max(float(d["prop"].max()) if len(d) else target, target) + 0.05))
    if legend:
        shared_legend(fig, ax)
    if title:
        ax.set_title(title)
    return fig


def shared_legend(fig, ax, ncol: int = 3):
    """One legend for the figure, below the panels, from the handles of ax."""
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=ncol, fontsize=5.5)


def panels(n: int, ncols: int = 3, width: str = "double", aspect: float = 0.8):
    """A figure with n panels in a grid of ncols columns (extra axes hidden); returns (fig, axes list)."""
    nrows = int(np.ceil(n / ncols))
    fig, axs = style.subplots(width, aspect=aspect * nrows / ncols, nrows=nrows, ncols=ncols, squeeze=False)
    axes = list(axs.ravel())
    for a in axes[n:]:
        a.set_visible(False)
    return fig, axes[:n]


def caterpillar_plot(effects: pd.DataFrame, title: str = "", unit_col: str = "group",
                     highlight: Sequence[str] = ()):
    """Shrunken unit effects (odds ratios against the average unit) with intervals, sorted.

    effects: columns unit_col, odds_ratio, or_lower, or_upper (from RandomInterceptFit.unit_effects).
    highlight: units drawn in a contrasting colour (e.g. those outside funnel limits).
    """
    d = effects.dropna(subset=["odds_ratio"]).sort_values("odds_ratio").reset_index(drop=True)
    fig, ax = style.subplots("onehalf", aspect=max(0.5, 0.022 * len(d) + 0.2))
    y = np.arange(len(d))
    hl = d[unit_col].astype(str).isin([str(h) for h in highlight]).to_numpy()
    col = np.where(hl, style.PALETTE[3], style.PALETTE[0])
    ax.hlines(y, d["or_lower"], d["or_upper"], color=col, lw=1)
    ax.scatter(d["odds_ratio"], y, color=col, s=10, zorder=3)
    ax.axvline(1.0, color="black", lw=0.8)
    ax.set_xscale("log")
    ax.set_yticks(y)
    ax.set_yticklabels(d[unit_col].astype(str), fontsize=5)
    ax.set_xlabel("Odds ratio vs the average unit (shrunken estimate, 95 % interval)")
    if title:
        ax.set_title(title)
    return fig


def hospital_grid(results: pd.DataFrame, indicator_titles: dict | None = None, region_col: str = "region",
                  title: str = "", show_n: bool = True):
    """The registries' familiar view: units (rows, grouped by region) x indicators (columns), each
    cell coloured by target level with the percentage and, with show_n, the denominator in brackets;
    "low n", * (low coverage) and suppressed ("s") cells are shown as such (never dropped).

    results: columns indicator, unit, region_col, n, prop, level, low_n_flag, low_coverage.
    """
    d = results.copy()
    inds = list(dict.fromkeys(d["indicator"]))
    units = d[[region_col, "unit"]].drop_duplicates().sort_values([region_col, "unit"])
    ulist = list(units["unit"])
    fig, ax = style.subplots("double", aspect=max(0.6, 0.017 * len(ulist) + 0.15))
    import matplotlib as mpl

    key = d.drop_duplicates(["unit", "indicator"]).set_index(["unit", "indicator"])
    names = ["#FFFFFF", "#EFEFEF", LEVEL_COLOURS["green"], LEVEL_COLOURS["yellow"], LEVEL_COLOURS["red"],
             LEVEL_COLOURS["none"], "#FFFFFF"]
    code = {"green": 2, "yellow": 3, "red": 4, "none": 5}
    img = np.full((len(ulist), len(inds)), 6)
    for i, u in enumerate(ulist):
        for j, ind in enumerate(inds):
            if (u, ind) not in key.index:
                continue
            r = key.loc[(u, ind)]
            if pd.isna(r["prop"]):
                img[i, j], txt = 0, "s"
            elif bool(r["low_n_flag"]):
                img[i, j], txt = 1, "low n"
            else:
                img[i, j] = code.get(r["level"], 5)
                txt = f"{100 * r['prop']:.0f}"
            if bool(r.get("low_coverage", False)) and not pd.isna(r["prop"]):
                txt += "*"
            if show_n and not pd.isna(r["n"]) and txt != "s":
                txt += f" ({int(r['n'])})"
            ax.text(j + 0.5, i + 0.5, txt, ha="center", va="center", fontsize=4.5 if not show_n else 3.6,
                    in_layout=False)  # inside its cell: not measured for the layout
    ax.imshow(img, cmap=mpl.colors.ListedColormap(names), vmin=-0.5, vmax=6.5, aspect="auto",
              extent=(0, len(inds), len(ulist), 0), interpolation="nearest")
    for i in range(len(ulist) + 1):
        ax.axhline(i, color="white", lw=0.4)
    for j in range(len(inds) + 1):
        ax.axvline(j, color="white", lw=0.6)
    ax.set_xlim(0, len(inds))
    ax.set_ylim(len(ulist), 0)
    ax.set_xticks(np.arange(len(inds)) + 0.5)
    labels = [(indicator_titles or {}).get(i, i) for i in inds]
    ax.set_xticklabels(labels, rotation=40, ha="right", fontsize=5.5)
    ax.set_yticks(np.arange(len(ulist)) + 0.5)
    ax.set_yticklabels(ulist, fontsize=5)
    ax.grid(False)
    # region separators and names
    regs = list(units[region_col])
    for i in range(1, len(regs)):
        if regs[i] != regs[i - 1]:
            ax.axhline(i, color="black", lw=0.8)
    starts = [0] + [i for i in range(1, len(regs)) if regs[i] != regs[i - 1]]
    for s in starts:
        ax.text(len(inds) + 0.1, s + 0.2, regs[s], fontsize=6, va="top", fontweight="bold", clip_on=False)
    handles = [plt.Rectangle((0, 0), 1, 1, color=LEVEL_COLOURS[k]) for k in ("green", "yellow", "red", "none")]
    fig.legend(handles, ["target met (green)", "moderate (yellow)", "low (red)", "no target"],
               loc="outside lower center", ncol=4, fontsize=6)
    ax.set_title(title or "Target achievement, % of eligible patients (n) (low n: below minimum; * low coverage; "
                 "s: suppressed)", fontsize=7)
    return fig


def trend_plot(national: pd.DataFrame, by_group: pd.DataFrame | None = None, group_col: str = "unit",
               target: float | None = None, title: str = "", ax=None, legend: bool = True):
    """Yearly proportions: national line with its CI band and one line per group (e.g. region).

    national: year, prop, lower, upper. by_group: group_col, year, prop (NaN = suppressed).
    """
    fig, ax = style.subplots("onehalf", aspect=0.6) if ax is None else (ax.figure, ax)
    nat = national.sort_values("year")
    ax.fill_between(nat["year"], nat["lower"], nat["upper"], color="black", alpha=0.12, lw=0)
    ax.plot(nat["year"], nat["prop"], color="black", lw=1.6, label="Norway")
    if by_group is not None:
        for k, (g, d) in enumerate(by_group.sort_values("year").groupby(group_col, sort=True)):
            ax.plot(d["year"], d["prop"], lw=1, marker="o", ms=2.5, color=style.PALETTE[k % 7], label=str(g))
    if target is not None:
        ax.axhline(target, color=LEVEL_COLOURS["green"], ls="--", lw=0.9, label=f"target {100 * target:.0f} %")
    _pct(ax)
    ax.set_xlabel("Year of fracture")
    ax.set_ylabel("Proportion")
    if legend:
        ax.legend(fontsize=5.5, ncol=2)
    if title:
        ax.set_title(textwrap.fill(title, 40), fontsize=7)
    return fig


def tile_map(values: pd.DataFrame, grid: pd.DataFrame, value_col: str = "prop", title: str = "",
             vmin: float | None = None, vmax: float | None = None, fmt: str = "{:.0%}", ax=None):
    """Tile map of Norway's referral areas: one square per area at its fixed grid position
    (hipfrac.geography.tile_grid()), coloured by value (sequential, colour-blind-safe), labelled with
    the area name and value. values: referral_area, value_col (NaN = not shown, grey)."""
    import matplotlib as mpl

    g = grid.merge(values[["referral_area", value_col]], on="referral_area", how="left")
    fig, ax = style.subplots("single", aspect=1.35) if ax is None else (ax.figure, ax)
    v = g[value_col].astype(float)
    lo = float(np.nanmin(v)) if vmin is None and v.notna().any() else (vmin or 0.0)
    hi = float(np.nanmax(v)) if vmax is None and v.notna().any() else (vmax or 1.0)
    if hi <= lo:
        hi = lo + 1e-9
    cmap = mpl.colormaps[style.SEQUENTIAL_CMAP]
    norm = mpl.colors.Normalize(lo, hi)
    for r in g.itertuples():
        val = getattr(r, value_col)
        c = style.GREY if pd.isna(val) else cmap(norm(val))
        ax.add_patch(plt.Rectangle((r.col, -r.row), 0.95, 0.95, facecolor=c, edgecolor="white"))
        light = pd.isna(val) or norm(val) < 0.6
        name = textwrap.fill(str(r.referral_area).replace("-", "- "), 9).replace("- ", "-")
        # labels inside their tile: left out of the layout computation (measuring hundreds of texts
        # there was most of the figure's saving time)
        ax.text(r.col + 0.475, -r.row + 0.62, name, ha="center", va="center", fontsize=2.6,
                color="white" if light else "black", linespacing=0.9, in_layout=False)
        ax.text(r.col + 0.475, -r.row + 0.22, "–" if pd.isna(val) else fmt.format(val), ha="center",
                va="center", fontsize=4.5, color="white" if light else "black", in_layout=False)
    ax.set_xlim(-0.1, g["col"].max() + 1.05)
    ax.set_ylim(-g["row"].max() - 0.1, 1.05)
    ax.set_aspect("equal")
    ax.axis("off")
    sm = mpl.cm.ScalarMappable(norm=norm, cmap=cmap)
    fig.colorbar(sm, ax=ax, shrink=0.4, fraction=0.08, format=mpl.ticker.PercentFormatter(1.0, decimals=0))
    if title:
        ax.set_title(textwrap.fill(title, 32), fontsize=6)
    return fig


def heat_table(values: pd.DataFrame, row_col: str = "indicator", col_col: str = "unit", value_col: str = "prop",
               row_labels: dict | None = None, title: str = ""):
    """Heat table (e.g. indicator x region): each cell the proportion in percent, coloured by its
    difference from the row (indicator) mean in percentage points (diverging colours)."""
    import matplotlib as mpl

    wide = values.pivot(index=row_col, columns=col_col, values=value_col)
    wide = wide.reindex(list(dict.fromkeys(values[row_col])))
    diff = wide.sub(wide.mean(axis=1), axis=0) * 100
    lim = max(1.0, float(np.nanmax(np.abs(diff.to_numpy()))) if np.isfinite(diff.to_numpy()).any() else 1.0)
    fig, ax = style.subplots("onehalf", aspect=0.12 * len(wide) / 1.5 + 0.25)
    cmap = mpl.colormaps[style.DIVERGING_CMAP]
    im = ax.imshow(diff.to_numpy(float), cmap=cmap, vmin=-lim, vmax=lim, aspect="auto")
    for i in range(wide.shape[0]):
        for j in range(wide.shape[1]):
            val = wide.iat[i, j]
            ax.text(j, i, "s" if pd.isna(val) else f"{100 * val:.1f}", ha="center", va="center", fontsize=5.5,
                    in_layout=False)  # inside its cell: not measured for the layout
    ax.set_xticks(range(wide.shape[1]))
    ax.set_xticklabels(wide.columns, rotation=20, ha="right", fontsize=6)
    ax.set_yticks(range(wide.shape[0]))
    ax.set_yticklabels([(row_labels or {}).get(r, r) for r in wide.index], fontsize=6)
    ax.grid(False)
    fig.colorbar(im, ax=ax, shrink=0.7, label="percentage points from the indicator mean")
    if title:
        ax.set_title(title, fontsize=7)
    return fig


# --------------------------------------------------------------------------------------------------
# figure-level functions for out.figure(name, plot, data, ...): each draws a whole figure from protected
# results (withheld values are missing) and says what it left out
# --------------------------------------------------------------------------------------------------
WITHHELD_NOTE = "{k} withheld (small counts: not drawn)"


def withheld_note(fig, k: int, text: str = WITHHELD_NOTE) -> None:
    """A note under the figure saying how many units or values were withheld (so a gap never reads as
    missing data)."""
    if k:
        fig.text(0.01, 0.005, text.format(k=k), fontsize=5, color=style.GREY, ha="left", va="bottom")


def _hidden(frame: pd.DataFrame, col: str) -> int:
    return int(frame[col].isna().sum()) if col in frame.columns else 0


def target_grid(data: pd.DataFrame, titles: dict | None = None, region_col: str = "region"):
    """`hospital_grid` of a protected per-unit result; withheld cells ("s") explained under the figure."""
    fig = hospital_grid(data, titles, region_col=region_col)
    withheld_note(fig, _hidden(data, "prop"), "s: {k} cells withheld (small counts, or to protect them)")
    return fig


def funnel_pair(crude: pd.DataFrame, adjusted: pd.DataFrame, *, target: float, national: float,
                levels: Sequence[float], tau2: float | None = None, title: str = ""):
    """Crude (exact binomial limits around `target`, with the overdispersion-adjusted outer limit) and
    case-mix adjusted (normal limits around the national proportion) funnels side by side."""
    fig, (a1, a2) = panels(2, ncols=2, aspect=0.6)
    funnel_plot(crude, target, "crude", levels, tau2=tau2, ax=a1, legend=False)
    funnel_plot(adjusted, national, "case-mix adjusted", levels, ax=a2, ylabel="Standardised proportion",
                limits="normal", legend=False)
    shared_legend(fig, a1)
    if title:
        fig.suptitle(title, fontsize=8)
    withheld_note(fig, max(_hidden(crude, "prop"), _hidden(adjusted, "prop")), "{k} units withheld (not drawn)")
    return fig


def caterpillar(effects: pd.DataFrame, *, title: str = "", highlight: Sequence[str] = ()):
    """`caterpillar_plot` of protected unit effects (column `unit`); withheld units counted under it."""
    fig = caterpillar_plot(effects, title, unit_col="unit", highlight=highlight)
    withheld_note(fig, _hidden(effects, "odds_ratio"), "{k} units withheld (not drawn)")
    return fig


def trend_panels(national: pd.DataFrame, by_group: pd.DataFrame, *, indicators: Sequence[tuple[str, str, float | None]],
                 ncols: int = 3):
    """One `trend_plot` panel per indicator (id, title, target): national line and CI, one line per group
    (withheld years are gaps, counted under the figure)."""
    fig, axes = panels(len(indicators), ncols=ncols, aspect=0.8)
    for k, ((iid, title, target), ax) in enumerate(zip(indicators, axes)):
        trend_plot(national[national["indicator"] == iid], by_group[by_group["indicator"] == iid], target=target,
                   title=title, ax=ax, legend=(k == 0))
    withheld_note(fig, _hidden(by_group, "prop"), "{k} region-years withheld (gaps in the lines)")
    return fig


def tile_map_panels(areas: pd.DataFrame, *, grid: pd.DataFrame, titles: dict, value_col: str = "std_prop",
                    ncols: int = 4):
    """One `tile_map` per indicator of `areas` (column `unit` = referral area); withheld areas grey."""
    inds = list(dict.fromkeys(areas["indicator"]))
    fig, axes = panels(len(inds), ncols=ncols, aspect=1.3)
    for iid, ax in zip(inds, axes):
        vals = areas[areas["indicator"] == iid].rename(columns={"unit": "referral_area"})
        tile_map(vals, grid, value_col=value_col, title=titles.get(iid, iid), ax=ax)
    withheld_note(fig, _hidden(areas, value_col), "–: {k} area values withheld (small counts)")
    return fig


def heat(values: pd.DataFrame, *, row_labels: dict | None = None, title: str = ""):
    """`heat_table` of a protected result; withheld cells ("s") explained under the figure."""
    fig = heat_table(values, row_labels=row_labels, title=title)
    withheld_note(fig, _hidden(values, "prop"), "s: {k} cells withheld (small counts, or to protect them)")
    return fig
