"""Figures for survival and relative survival (notebook 02). Each function takes tidy, aggregate frames
from `hipfrac.survival` / `hipfrac.relsurv` and returns a matplotlib Figure; nothing is computed here
beyond reshaping. Time axes are in years since the fracture (frames carry days; converted here).

Funnel plots and tile maps reuse `hipfrac.figures.variation.funnel_plot` / `tile_map`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from hipfrac.figures import style

DPY = 365.25

__all__ = ["km_plot", "net_survival_plot", "smr_plot", "excess_hazard_plot", "standardised_plot",
           "hazard_ratio_plot", "flexible_curves_plot"]


def _years(days):
    return np.asarray(days, float) / DPY


WITHHELD = "withheld (< min_cell)"


def withheld_legend(ax, **kw) -> None:
    """Add a legend entry saying that a dash / gap is a withheld value, not missing data."""
    from matplotlib.lines import Line2D

    handles, labels = ax.get_legend_handles_labels()
    handles.append(Line2D([], [], color="none", marker="$-$", markeredgecolor="0.3", markersize=6))
    labels.append("– " + WITHHELD)
    ax.legend(handles, labels, **kw)


def km_plot(curves: pd.DataFrame, at_risk: pd.DataFrame | None = None, unit: str | None = None, *,
            title: str = "", ylabel: str = "Survival (Kaplan-Meier)", ci: bool = True):
    """Kaplan-Meier curves per unit with a numbers-at-risk table under the axes.

    curves: unit, time (days), surv, lower, upper, n_risk, step (survival.km_curves: merged steps, n_risk
      at the at-risk times only).
    at_risk: unit, time (days), n_risk at the table's times; None = the rows of `curves` that are not
      merged steps (their n_risk). Withheld numbers (NaN) are drawn as dashes with a legend entry.
    """
    import matplotlib.pyplot as plt

    if at_risk is None:
        at_risk = curves[~curves["step"].astype(bool)] if "step" in curves.columns else curves
    style.apply()
    units = list(dict.fromkeys(curves[unit]))
    fig = plt.figure(figsize=style.figsize("onehalf", aspect=0.62 + 0.035 * len(units)))
    gs = fig.add_gridspec(2, 1, height_ratios=[4, 0.35 + 0.22 * len(units)])
    ax = fig.add_subplot(gs[0])
    tab = fig.add_subplot(gs[1], sharex=ax)
    for i, u in enumerate(units):
        c = curves[curves[unit] == u]
        col = style.PALETTE[i % len(style.PALETTE)]
        ax.step(_years(c["time"]), c["surv"], where="post", color=col, label=str(u))
        if ci:
            ax.fill_between(_years(c["time"]), c["lower"], c["upper"], step="post", color=col, alpha=0.12,
                            linewidth=0)
    ax.set_ylim(0, 1.02)
    ax.set_ylabel(ylabel)
    if at_risk["n_risk"].isna().any():
        withheld_legend(ax, loc="upper right", ncol=1 if len(units) < 6 else 2)
    else:
        ax.legend(loc="upper right", ncol=1 if len(units) < 6 else 2)
    if title:
        ax.set_title(title)
    plt.setp(ax.get_xticklabels(), visible=False)
    # numbers at risk
    tab.set_ylim(-0.5, len(units) - 0.5)
    tab.set_yticks(range(len(units)))
    tab.set_yticklabels([str(u) for u in units][::-1])
    tab.grid(False)
    for sp in ("top", "right", "left"):
        tab.spines[sp].set_visible(False)
    tab.tick_params(axis="y", length=0)
    for i, u in enumerate(units):
        r = at_risk[at_risk[unit] == u]
        for t, n in zip(_years(r["time"]), r["n_risk"]):
            txt = "–" if pd.isna(n) else f"{int(n)}"
            tab.text(t, len(units) - 1 - i, txt, ha="center", va="center", fontsize=6)
    tab.set_xlabel("Years since fracture")
    tab.set_title("Number at risk", fontsize=7, loc="left")
    return fig


def net_survival_plot(net: pd.DataFrame, by: str | None = None, *, expected: pd.DataFrame | None = None,
                      observed: pd.DataFrame | None = None, title: str = ""):
    """Net survival curves (with 95 % CI bands) per group, optionally with expected (population)
    survival and observed (KM) survival for comparison.

    net: [by], time (days), surv, lower, upper. expected: [by], time, expected_surv.
    observed: [by], time, surv.
    """
    fig, ax = style.subplots("single", aspect=0.8)
    groups = list(dict.fromkeys(net[by])) if by else [None]
    for i, g in enumerate(groups):
        c = net if g is None else net[net[by] == g]
        col = style.PALETTE[i % len(style.PALETTE)]
        lab = "Net survival" if g is None else str(g)
        ax.step(_years(c["time"]), c["surv"], where="post", color=col, label=lab)
        ax.fill_between(_years(c["time"]), c["lower"], c["upper"], step="post", color=col, alpha=0.15,
                        linewidth=0)
        if expected is not None:
            e = expected if g is None else expected[expected[by] == g]
            ax.plot(_years(e["time"]), e["expected_surv"], color=col, linestyle=":",
                    label="Expected (population)" if g is None else None)
        if observed is not None:
            o = observed if g is None else observed[observed[by] == g]
            ax.step(_years(o["time"]), o["surv"], where="post", color=col, linestyle="--", linewidth=0.8,
                    label="Observed (KM)" if g is None else None)
    ax.set_xlabel("Years since fracture")
    ax.set_ylabel("Survival")
    ax.set_ylim(0, 1.05)
    if net["surv"].isna().any() and "step" not in net.columns:
        withheld_legend(ax, loc="lower left")
    else:
        ax.legend(loc="lower left")
    if title:
        ax.set_title(title)
    return fig


def smr_plot(smr: pd.DataFrame, by: str = "sex", *, title: str = ""):
    """SMR by band of time since fracture (log scale) with exact Poisson CIs, one series per group.

    smr: by, band, smr, lower, upper (rows in band order; NaN = suppressed)."""
    fig, ax = style.subplots("single", aspect=0.8)
    bands = list(dict.fromkeys(smr["band"]))
    groups = list(dict.fromkeys(smr[by]))
    width = 0.8 / max(len(groups), 1)
    for i, g in enumerate(groups):
        s = smr[smr[by] == g].set_index("band").reindex(bands)
        x = np.arange(len(bands)) + (i - (len(groups) - 1) / 2) * width
        y = s["smr"].to_numpy(float)
        err = style.ci_err(y, s["lower"], s["upper"])
        ax.errorbar(x, y, yerr=err, fmt="o", color=style.PALETTE[i % len(style.PALETTE)], label=str(g),
                    capsize=2)
    ax.axhline(1.0, color=style.GREY, linewidth=0.8)
    ax.set_yscale("log")
    ax.set_xticks(range(len(bands)))
    ax.set_xticklabels(bands, rotation=30, ha="right")
    ax.set_ylabel("SMR (observed / expected deaths)")
    ax.set_xlabel("Time since fracture")
    ax.legend()
    if title:
        ax.set_title(title)
    return fig


def excess_hazard_plot(curve: pd.DataFrame, *, duration: pd.DataFrame | None = None, by: str | None = None,
                       title: str = "", truth: pd.DataFrame | None = None, log: bool = False):
    """Excess hazard (per person-year) by interval of time since fracture, with 95 % CI, and the
    estimated duration of excess mortality marked (vertical line, bootstrap CI shaded).

    curve: [by], start, stop (days), excess_rate, lower, upper. duration: [by], duration_years, lower,
    upper (from relsurv.bootstrap_duration). truth (optional, synthetic data): days, rate_per_year.
    """
    fig, ax = style.subplots("onehalf", aspect=0.55)
    groups = list(dict.fromkeys(curve[by])) if by else [None]
    for i, g in enumerate(groups):
        c = curve if g is None else curve[curve[by] == g]
        col = style.PALETTE[i % len(style.PALETTE)]
        mid = _years((c["start"] + c["stop"]) / 2)
        ax.errorbar(mid, c["excess_rate"], yerr=style.ci_err(c["excess_rate"], c["lower"], c["upper"]),
                    fmt="o", color=col, capsize=2, label="Excess hazard" if g is None else str(g))
        ax.hlines(c["excess_rate"], _years(c["start"]), _years(c["stop"]), color=col, linewidth=1)
        if duration is not None:
            d = duration if g is None else duration[duration[by] == g]
            if len(d):
                r = d.iloc[0]
                ax.axvline(r["duration_years"], color=col, linestyle="--", linewidth=1,
                           label=f"Duration {r['duration_years']:.1f} y ({r['lower']:.1f}-{r['upper']:.1f})")
                ax.axvspan(r["lower"], r["upper"], color=col, alpha=0.08, linewidth=0)
    if truth is not None:
        ax.plot(_years(truth["days"]), truth["rate_per_year"], color="black", linewidth=0.8, label="True")
    ax.axhline(0, color=style.GREY, linewidth=0.8)
    if log:
        ax.set_yscale("symlog", linthresh=0.05)
    ax.set_xlabel("Years since fracture")
    ax.set_ylabel("Excess deaths per person-year")
    ax.legend(loc="upper right")
    if title:
        ax.set_title(title)
    return fig


_FLEX_CI = {"excess_hazard": ("eh_lower", "eh_upper"), "conditional_1y": ("cns_lower", "cns_upper"),
            "net_survival": ("ns_lower", "ns_upper")}


def flexible_curves_plot(curves: pd.DataFrame, *, value: str, groups, title: str = "", ylabel: str = "",
                         log: bool = False, threshold: float | None = None):
    """Curves of the flexible relative survival model (relsurv.flexible_excess_by_groups' `curves`): one
    panel per group type in `groups` ("all", "sex", "age_band", ...), one line per level with its 95 % CI
    band. value: "excess_hazard", "conditional_1y" or "net_survival"; threshold: a horizontal line (e.g.
    the cure threshold of the conditional net survival)."""
    lo_col, hi_col = _FLEX_CI[value]
    groups = [g for g in groups if (curves["group_type"] == g).any()]
    fig, axes = style.subplots("double", aspect=0.32, ncols=len(groups), sharey=True, squeeze=False)
    for ax, gt in zip(axes[0], groups):
        sub = curves[curves["group_type"] == gt]
        for i, (lv, c) in enumerate(sub.groupby("group", sort=False)):
            col = style.PALETTE[i % len(style.PALETTE)]
            x = _years(c["time"])
            ax.plot(x, c[value], color=col, linewidth=1.2, label=str(lv) if gt != "all" else "All patients")
            ax.fill_between(x, c[lo_col], c[hi_col], color=col, alpha=0.15, linewidth=0)
        if threshold is not None:
            ax.axhline(threshold, color=style.GREY, linestyle="--", linewidth=0.8)
        if log:
            ax.set_yscale("log")
        ax.set_xlabel("Years since fracture")
        ax.set_title({"all": "All patients", "sex": "By sex", "age_band": "By age band"}.get(gt, f"By {gt}"))
        ax.legend(loc="best", fontsize=6)
    axes[0][0].set_ylabel(ylabel)
    if title:
        fig.suptitle(title)
    return fig


def standardised_plot(std: pd.DataFrame, unit: str, *, title: str = "", mortality: bool = True):
    """Standardised mortality (or survival) by unit at each time, with bootstrap CIs, as a dot plot
    (one panel per time point). std: unit, time (days), surv, lower, upper."""
    times = sorted(std["time"].unique())
    fig, axes = style.subplots("double", aspect=0.32, ncols=len(times), sharey=True, squeeze=False)
    for ax, t in zip(axes[0], times):
        s = std[std["time"] == t].sort_values(unit)
        y = np.arange(len(s))
        if mortality:
            v, lo, hi = 1 - s["surv"], 1 - s["upper"], 1 - s["lower"]
        else:
            v, lo, hi = s["surv"], s["lower"], s["upper"]
        ax.errorbar(v, y, xerr=style.ci_err(v, lo, hi), fmt="o", color=style.PALETTE[0], capsize=2)
        ax.set_yticks(y)
        ax.set_yticklabels(s[unit])
        ax.set_title(f"{t / DPY:.2g} years" if t >= 300 else f"{t:.0f} days")
        from matplotlib.ticker import PercentFormatter

        ax.xaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
        ax.set_xlabel("Standardised mortality" if mortality else "Standardised survival")
    if title:
        fig.suptitle(title)
    return fig


def hazard_ratio_plot(summary: pd.DataFrame, *, title: str = "", label_col: str = "term",
                      hr: str = "hr", lower: str = "lower", upper: str = "upper", xlabel: str = "Hazard ratio"):
    """Forest plot of hazard ratios (log scale). summary: label_col, hr, lower, upper."""
    s = summary.reset_index(drop=True)
    fig, ax = style.subplots("onehalf", aspect=0.25 + 0.04 * len(s))
    y = np.arange(len(s))[::-1]
    ax.errorbar(s[hr], y, xerr=style.ci_err(s[hr], s[lower], s[upper]), fmt="s",
                color=style.PALETTE[0], capsize=2)
    ax.axvline(1, color=style.GREY, linewidth=0.8)
    ax.set_xscale("log")
    ax.set_yticks(y)
    ax.set_yticklabels(s[label_col])
    ax.set_xlabel(xlabel)
    if title:
        ax.set_title(title)
    return fig
