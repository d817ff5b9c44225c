"""Figures of risk factors for death after hip fracture (notebook 03). Every function takes tidy,
aggregate frames from `hipfrac.risk` / `hipfrac.competing` (already disclosure-suppressed where they
carry counts) and returns a matplotlib Figure; nothing here computes estimates.

    forest_plot(frames)                hazard ratios with 95 % CIs, one or several models side by side
    importance_plot(anova, cdrop, paf) ranked relative importance (chi2 - df, C-index drop, PAF)
    schoenfeld_plot(smooth)            binned scaled Schoenfeld residuals (beta(t)) per term
    piecewise_plot(pw, terms)          time-specific hazard ratios by period since the fracture
    cif_plot(cif, group)               cumulative incidence of a second hip fracture (and death) by group
    adjusted_survival_plot(curves)     model-based survival of typical patient profiles
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from hipfrac.figures import style

DPY = 365.25


def forest_plot(summary: pd.DataFrame, *, model_col: str | None = None, label_col: str = "term",
                title: str = "", xlabel: str = "Hazard ratio (95 % CI, log scale)", max_terms: int = 60):
    """Forest plot. summary: rows with `label_col`, hr, lower, upper (reference rows with hr 1 and no
    CI are drawn as open markers); several models (column `model_col`) are dodged vertically."""
    import matplotlib.pyplot as plt

    style.apply()
    s = summary.copy()
    labels = list(dict.fromkeys(s[label_col].astype(str)))[:max_terms]
    s = s[s[label_col].astype(str).isin(labels)]
    models = list(dict.fromkeys(s[model_col])) if model_col else [None]
    k = len(models)
    fig, ax = plt.subplots(figsize=style.figsize("onehalf", aspect=max(0.45, 0.04 * len(labels) + 0.15)))
    ypos = {lab: len(labels) - 1 - i for i, lab in enumerate(labels)}
    width = 0.7
    for j, m in enumerate(models):
        g = s if m is None else s[s[model_col] == m]
        off = 0.0 if k == 1 else (j - (k - 1) / 2) * width / k
        y = np.array([ypos[str(v)] for v in g[label_col]]) + off
        hr, lo, up = (pd.to_numeric(g[c], errors="coerce").to_numpy(float) for c in ("hr", "lower", "upper"))
        col = style.PALETTE[j % len(style.PALETTE)]
        has_ci = np.isfinite(lo) & np.isfinite(up)
        ax.errorbar(hr[has_ci], y[has_ci], xerr=style.ci_err(hr[has_ci], lo[has_ci], up[has_ci]), fmt="o",
                    color=col, ms=3, elinewidth=1, capsize=0, label=None if m is None else str(m))
        ax.plot(hr[~has_ci], y[~has_ci], "o", mfc="white", color=col, ms=3)
    ax.axvline(1, color="black", lw=0.7)
    ax.set_xscale("log")
    ax.set_yticks(list(ypos.values()), list(ypos.keys()))
    ax.set_ylim(-0.7, len(labels) - 0.3)
    ax.set_xlabel(xlabel)
    ax.grid(axis="y", visible=False)
    if k > 1:
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    if title:
        ax.set_title(title)
    return fig


def importance_plot(anova: pd.DataFrame, cdrop: pd.DataFrame | None = None, paf: pd.DataFrame | None = None,
                    *, labels: dict | None = None, title: str = ""):
    """Ranked relative importance: chi-square minus df (Harrell) per factor; optionally the drop in
    C-index (right panel) and attributable fractions with CIs (third panel)."""
    import matplotlib.pyplot as plt

    style.apply()
    labels = labels or {}
    a = anova.sort_values("chi2_minus_df", ascending=True, kind="mergesort")
    panels = 1 + (cdrop is not None) + (paf is not None)
    fig, axes = plt.subplots(1, panels, figsize=style.figsize("double", aspect=0.42), squeeze=False,
                             gridspec_kw={"width_ratios": [2] + [1.3] * (panels - 1)})
    axes = axes[0]
    names = [labels.get(f, f) for f in a.factor]
    ax = axes[0]
    ax.barh(names, a.chi2_minus_df, color=style.PALETTE[0])
    ax.axvline(0, color="black", lw=0.7)
    ax.set_xlabel("Partial Wald χ² − df")
    ax.set_title("Harrell's anova")
    i = 1
    if cdrop is not None:
        c = cdrop.set_index("factor").reindex(a.factor)
        axes[i].barh(names, c.c_drop, color=style.PALETTE[1])
        axes[i].axvline(0, color="black", lw=0.7)
        axes[i].set_xlabel("Drop in C-index when left out")
        axes[i].set_yticklabels([])
        axes[i].set_title("Discrimination")
        i += 1
    if paf is not None:
        p = paf.reset_index(drop=True)
        y = np.arange(len(p))
        axes[i].errorbar(100 * p.paf, y, xerr=style.ci_err(100 * p.paf, 100 * p.lower, 100 * p.upper), fmt="o",
                         color=style.PALETTE[2], capsize=0)
        paf_labels = {"delay_band": "Surgery > 48 h", "nonguideline_implant": "Non-guideline implant"}
        axes[i].set_yticks(y, [paf_labels.get(f, labels.get(f, f)) for f in p.factor])
        axes[i].set_ylim(-0.8, len(p) - 0.2)
        axes[i].axvline(0, color="black", lw=0.7)
        axes[i].set_xlabel(f"PAF of death by day {int(p.day.iloc[0])} (%)")
        axes[i].set_title("Modifiable factors")
    if title:
        fig.suptitle(title)
    return fig


def schoenfeld_plot(smooth: pd.DataFrame, *, terms=None, ncols: int = 3, title: str = ""):
    """beta(t) from binned scaled Schoenfeld residuals (hipfrac.risk.schoenfeld_smooth) against time
    since the fracture (years, log scale), with 95 % limits, the model's constant coefficient (dashed)
    and 0 (grey). A flat band around the dashed line supports proportional hazards."""
    import matplotlib.pyplot as plt

    style.apply()
    terms = list(dict.fromkeys(smooth.term)) if terms is None else list(terms)
    nrows = int(np.ceil(len(terms) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=style.figsize("double", aspect=0.28 * nrows + 0.05),
                             squeeze=False, sharex=True)
    for ax, term in zip(axes.flat, terms):
        g = smooth[smooth.term == term]
        x = g.time_days / DPY
        ax.fill_between(x, g.lower, g.upper, color=style.PALETTE[0], alpha=0.2, linewidth=0)
        ax.plot(x, g.beta_t, "o-", color=style.PALETTE[0], ms=2.5)
        ax.axhline(g.coef.iloc[0], color="black", ls="--", lw=0.8)
        ax.axhline(0, color=style.GREY, lw=0.6)
        ax.set_xscale("log")
        ax.set_title(term, fontsize=7)
    for ax in list(axes.flat)[len(terms):]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("Years since fracture")
    fig.supylabel("β(t) (log hazard ratio)")
    if title:
        fig.suptitle(title)
    return fig


def piecewise_plot(pw: pd.DataFrame, *, terms=None, title: str = ""):
    """Time-specific hazard ratios (hipfrac.risk.piecewise_cox): one row per term, periods dodged."""
    s = pw if terms is None else pw[pw.term.isin(terms)]
    return forest_plot(s, model_col="period", title=title)


def cif_plot(cif: pd.DataFrame, group: str | None = None, *, causes=(1,), cause_labels: dict | None = None,
             title: str = "", ylabel: str = "Cumulative incidence"):
    """Aalen–Johansen cumulative incidence curves (hipfrac.competing.cumulative_incidence on a time
    grid; suppressed points are not drawn) by `group`, causes as line styles, years on the x axis."""

    style.apply()
    cause_labels = cause_labels or {}
    fig, ax = style.subplots("onehalf", aspect=0.6)
    groups = list(dict.fromkeys(cif[group])) if group else [None]
    for i, gv in enumerate(groups):
        g = cif if gv is None else cif[cif[group] == gv]
        for j, c in enumerate(causes):
            h = g[g.cause == c].sort_values("time")
            col = style.PALETTE[i % len(style.PALETTE)]
            lab = " – ".join(str(v) for v in (gv, cause_labels.get(c, None if len(causes) == 1 else c)) if v is not None)
            ax.step(h.time / DPY, pd.to_numeric(h.cif, errors="coerce"), where="post", color=col,
                    ls=["-", "--", ":"][j % 3], label=lab or None)
            if "lower" in h:
                ax.fill_between(h.time / DPY, pd.to_numeric(h.lower, errors="coerce"),
                                pd.to_numeric(h.upper, errors="coerce"), step="post", color=col, alpha=0.1, linewidth=0)
    ax.set_xlabel("Years since fracture")
    ax.set_ylabel(ylabel)
    ax.set_ylim(bottom=0)
    withheld = "step" not in cif.columns and pd.to_numeric(cif["cif"], errors="coerce").isna().any()
    if withheld:
        from hipfrac.figures.survival import withheld_legend

        withheld_legend(ax, loc="upper left")
    elif group or len(causes) > 1:
        ax.legend(loc="upper left")
    if title:
        ax.set_title(title)
    return fig


def adjusted_survival_plot(curves: pd.DataFrame, *, title: str = "", ylabel: str = "Survival (model-based)"):
    """Model-based survival (hipfrac.risk.adjusted_survival) of typical patient profiles."""
    style.apply()
    fig, ax = style.subplots("onehalf", aspect=0.6)
    for i, (name, g) in enumerate(curves.groupby("profile", sort=False)):
        ax.plot(g.day / DPY, g.survival, color=style.PALETTE[i % len(style.PALETTE)], label=str(name))
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("Years since fracture")
    ax.set_ylabel(ylabel)
    ax.legend(loc="lower left")
    if title:
        ax.set_title(title)
    return fig
