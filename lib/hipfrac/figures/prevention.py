"""Figures for secondary prevention (notebook 04). Each function takes tidy, already disclosure-checked
frames from hipfrac.prevention (the protected copies the Exporter passes to `out.figure(name, plot, result)`)
and returns a matplotlib Figure. Withheld values (missing) are drawn as grey crosses on the axis with a
legend entry "withheld", never as a blank that would read as missing data."""

from __future__ import annotations

import numpy as np
import pandas as pd

from hipfrac.figures import style

# Published reference points (seed 001: Danish Health Authority 2012; seed 002: Swedish care pathway).
DANISH_SECOND_HIP = {1.0: 0.09, 5.0: 0.20}
SWEDISH_PERSISTENCE = {1.0: 0.50, 3.0: 0.20}  # 50 % still collect after 1 year, < 20 % after 3 years


WITHHELD = "withheld (small count)"


def _withheld(ax, xs, ys, *, label: bool = True) -> None:
    """Grey crosses where a value is withheld, with one legend entry."""
    xs, ys = list(xs), list(ys)
    if xs:
        ax.scatter(xs, ys, marker="x", color=style.GREY, s=18, zorder=4, clip_on=False,
                   label=WITHHELD if label else None)


def _has_withheld(ax) -> bool:
    return WITHHELD in ax.get_legend_handles_labels()[1]


def _pct(ax, axis="x"):
    from matplotlib.ticker import PercentFormatter

    (ax.xaxis if axis == "x" else ax.yaxis).set_major_formatter(PercentFormatter(1.0, decimals=None))


def uptake_by_unit(frame: pd.DataFrame, unit: str, *, value: str = "prop", lower: str = "lower",
                   upper: str = "upper", national=None, target: float | None = None, title: str = "") -> object:
    """Dot-and-interval chart of treatment shares per unit (sorted by value; withheld values as grey
    crosses with a legend entry).

    frame: one row per unit with `unit`, `value`, `lower`, `upper` (e.g. medication_uptake for one
    indicator, or uptake_by_units with value="std_rate", lower="std_lower", upper="std_upper").
    national: the national share (a number, or a frame whose "prop" column holds it; withheld: no line).
    """
    if isinstance(national, pd.DataFrame):
        v = pd.to_numeric(national["prop"], errors="coerce").dropna()
        national = float(v.iloc[0]) if len(v) else None
    if (lower, upper) != ("lower", "upper"):
        frame = frame.drop(columns=[c for c in ("lower", "upper") if c in frame.columns]).rename(
            columns={lower: "lower", upper: "upper"})
    d = frame.sort_values([value, unit], na_position="first").reset_index(drop=True)
    fig, ax = style.subplots("single", aspect=max(0.5, 0.09 * len(d) + 0.25))
    y = np.arange(len(d))
    ok = d[value].notna()
    ax.errorbar(d.loc[ok, value], y[ok], xerr=[d.loc[ok, value] - d.loc[ok, "lower"],
                                             d.loc[ok, "upper"] - d.loc[ok, value]],
                fmt="o", color=style.PALETTE[0], ecolor=style.GREY, capsize=0)
    _withheld(ax, [0] * int((~ok).sum()), y[~ok.to_numpy()])
    if national is not None:
        ax.axvline(national, color="black", lw=0.8, ls="--", label=f"national {national:.1%}")
    if target is not None:
        ax.axvline(target, color=style.TARGET_COLOURS["high"], lw=0.8, ls=":", label=f"target {target:.0%}")
    ax.set_yticks(y, d[unit].astype(str))
    right = np.nanmax([d["upper"].astype(float).max(), national or 0, target or 0])
    ax.set_xlim(0, 1.1 * right if np.isfinite(right) and right > 0 else 1)
    _pct(ax)
    ax.set_xlabel("Share treated")
    if national is not None or target is not None or not ok.all():
        ax.legend(loc="best")
    ax.set_title(title)
    return fig


def uptake_funnel(funnel: pd.DataFrame, limits: pd.DataFrame, *, target: float, title: str = "") -> object:
    """Funnel plot: unit proportions against their denominators with exact binomial limits.

    funnel: hipfrac.variation.funnel_table frame (n, prop, outside_95, outside_99.8 ...);
    limits: hipfrac.variation.funnel_limits over a grid of n (lower_95, upper_95, lower_99.8, upper_99.8).
    """
    fig, ax = style.subplots("single")
    for lvl, ls in (("95", "--"), ("99.8", "-")):
        ax.plot(limits["n"], limits[f"lower_{lvl}"], color=style.GREY, ls=ls, lw=0.8, label=f"{lvl} % limits")
        ax.plot(limits["n"], limits[f"upper_{lvl}"], color=style.GREY, ls=ls, lw=0.8)
    ax.axhline(target, color="black", lw=0.8)
    out = funnel.get("outside_99.8", pd.Series("", index=funnel.index)).fillna("")
    colours = np.where(out == "high", style.PALETTE[2], np.where(out == "low", style.PALETTE[3], style.PALETTE[0]))
    n = pd.to_numeric(funnel["n"], errors="coerce").astype(float)
    prop = pd.to_numeric(funnel["prop"], errors="coerce").astype(float)
    ok = (n.notna() & prop.notna()).to_numpy()
    ax.scatter(n[ok], prop[ok], s=10, c=colours[ok], zorder=3)
    _withheld(ax, n[~ok & n.notna().to_numpy()], [0] * int((~ok & n.notna().to_numpy()).sum()))
    hidden = int(n.isna().sum())
    if hidden:
        ax.plot([], [], ls="none", marker="x", color=style.GREY, label=f"{hidden} unit(s) withheld entirely")
    ax.set_xlabel("Patients (n)")
    ax.set_ylabel("Share treated")
    _pct(ax, "y")
    ax.set_ylim(bottom=0)
    ax.legend(loc="upper right")
    ax.set_title(title)
    return fig


def uptake_trend(trend: pd.DataFrame, *, x: str = "year", group: str = "indicator", title: str = "") -> object:
    """Treatment share over calendar years, one line (with 95 % band) per group."""
    fig, ax = style.subplots("single")
    for i, (key, g) in enumerate(trend.sort_values(x).groupby(group, sort=True)):
        c = style.PALETTE[i % len(style.PALETTE)]
        p = pd.to_numeric(g["prop"], errors="coerce").astype(float)
        ax.plot(g[x], p, marker="o", color=c, label=str(key))
        ax.fill_between(g[x], pd.to_numeric(g["lower"], errors="coerce").astype(float),
                        pd.to_numeric(g["upper"], errors="coerce").astype(float), color=c, alpha=0.15, lw=0)
        _withheld(ax, g.loc[p.isna().to_numpy(), x], [0] * int(p.isna().sum()), label=not _has_withheld(ax))
    ax.set_xlabel("Year of fracture")
    ax.set_ylabel("Share treated")
    _pct(ax, "y")
    ax.set_ylim(bottom=0)
    ax.legend(title=group.replace("_", " "))
    ax.set_title(title)
    return fig


def cif_by_group(cif: pd.DataFrame, *, by: str | None = None, reference: dict | None = None,
                 title: str = "") -> object:
    """Cumulative incidence of a new fracture at the horizons (points with 95 % CI) per group, with
    optional published reference points (years -> share, e.g. DANISH_SECOND_HIP)."""
    fig, ax = style.subplots("single")
    groups = [(None, cif)] if by is None else list(cif.groupby(by, sort=True))
    k = len(groups)
    for i, (key, g) in enumerate(groups):
        off = (i - (k - 1) / 2) * 0.12
        c = style.PALETTE[i % len(style.PALETTE)]
        g = g.sort_values("years")
        v, lo, hi = (pd.to_numeric(g[k], errors="coerce").astype(float) for k in ("cif", "lower", "upper"))
        ax.errorbar(g["years"] + off, v, yerr=[v - lo, hi - v],
                    fmt="o-", color=c, capsize=0, label="all" if key is None else str(key))
        _withheld(ax, g.loc[v.isna().to_numpy(), "years"] + off, [0] * int(v.isna().sum()),
                  label=not _has_withheld(ax))
    if reference:
        ax.scatter(list(reference), list(reference.values()), marker="x", color="black", zorder=4,
                   label="Denmark (seed 001)")
    ax.set_xlabel("Years since the hip fracture")
    ax.set_ylabel("Cumulative incidence")
    _pct(ax, "y")
    ax.set_ylim(bottom=0)
    ax.legend()
    ax.set_title(title)
    return fig


def persistence_bars(per: pd.DataFrame, *, reference: dict | None = SWEDISH_PERSISTENCE, title: str = "") -> object:
    """Share of starters still dispensed 1 and 3 years after starting, with the Swedish figures."""
    fig, ax = style.subplots("single", aspect=0.6)
    x = np.arange(len(per))
    v, lo, hi = (pd.to_numeric(per[k], errors="coerce").astype(float).to_numpy() for k in ("prop", "lower", "upper"))
    ax.bar(x, np.nan_to_num(v), color=style.PALETTE[0], label="this cohort")
    ax.errorbar(x, v, yerr=[v - lo, hi - v], fmt="none", ecolor="black", capsize=2)
    _withheld(ax, x[np.isnan(v)], [0] * int(np.isnan(v).sum()))
    if reference:
        ref = [reference.get(float(t), np.nan) for t in per["years"]]
        ax.scatter(x, ref, marker="D", color=style.PALETTE[1], zorder=3, label="Sweden (seed 002)")
    ax.set_xticks(x, [f"{t:g} year{'s' if t != 1 else ''}" for t in per["years"]])
    ax.set_ylabel("Still dispensed")
    _pct(ax, "y")
    ax.set_ylim(0, 1)
    ax.legend()
    ax.set_title(title)
    return fig


def scenario_shares(sc: pd.DataFrame, *, unit: str, title: str = "") -> object:
    """Current and scenario treatment shares per unit (dots) for each scenario (panels)."""
    scen = list(dict.fromkeys(sc["scenario"]))
    fig, axes = style.subplots("onehalf", aspect=0.5, ncols=len(scen), sharey=True)
    axes = np.atleast_1d(axes)
    for ax, name in zip(axes, scen):
        g = sc[sc["scenario"] == name].reset_index(drop=True)
        y = np.arange(len(g))
        now = pd.to_numeric(g["share"], errors="coerce").astype(float)
        then = pd.to_numeric(g["scenario_share"], errors="coerce").astype(float)
        ax.hlines(y, now, then, color=style.GREY)
        ax.scatter(now, y, color=style.PALETTE[3], label="now", zorder=3)
        ax.scatter(then, y, color=style.PALETTE[2], label="scenario", zorder=3)
        _withheld(ax, [0] * int(now.isna().sum()), y[now.isna().to_numpy()])
        ax.set_yticks(y, g[unit].astype(str))
        ax.set_xlim(0, 1)
        _pct(ax)
        ax.set_title(name.replace("_", " "))
    axes[0].legend(loc="lower right")
    fig.suptitle(title)
    return fig


def budget_participation(part: pd.DataFrame, *, currency: str = "NOK", title: str = "") -> object:
    """Annual savings and costs (millions) by participation share (seed 001's table 4 as bars)."""
    fig, ax = style.subplots("single", aspect=0.65)
    x = np.arange(len(part))
    w = 0.38
    sv, co = (pd.to_numeric(part[k], errors="coerce").astype(float) / 1e6 for k in ("savings", "costs"))
    ax.bar(x - w / 2, sv.fillna(0), w, color=style.PALETTE[2], label="savings")
    ax.bar(x + w / 2, co.fillna(0), w, color=style.PALETTE[3], label="costs")
    _withheld(ax, np.r_[x[sv.isna().to_numpy()] - w / 2, x[co.isna().to_numpy()] + w / 2],
              [0] * int(sv.isna().sum() + co.isna().sum()))
    ax.set_xticks(x, [f"{p:.0%}" for p in part["participation"]])
    ax.set_xlabel("Participation")
    ax.set_ylabel(f"Million {currency} per year")
    ax.legend()
    ax.set_title(title)
    return fig


def hr_forest(rows: pd.DataFrame, *, label: str = "analysis", title: str = "") -> object:
    """Forest plot of hazard ratios (hr, lower, upper) per row, log scale, line at 1. label: a column, or
    "outcome: analysis" to join those two columns."""
    if label == "outcome: analysis":
        rows = rows.assign(_label=rows["outcome"].astype(str).str.replace("_", " ") + ": " + rows["analysis"].astype(str))
        label = "_label"
    fig, ax = style.subplots("single", aspect=max(0.35, 0.12 * len(rows) + 0.2))
    y = np.arange(len(rows))[::-1]
    ax.errorbar(rows["hr"], y, xerr=[rows["hr"] - rows["lower"], rows["upper"] - rows["hr"]], fmt="s",
                color=style.PALETTE[0], capsize=0)
    ax.axvline(1, color="black", lw=0.8)
    ax.set_xscale("log")
    ax.set_yticks(y, rows[label].astype(str))
    ax.set_xlabel("Hazard ratio (log scale)")
    ax.set_title(title)
    return fig
