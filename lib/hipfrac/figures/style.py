"""One shared look for every figure: theme, colour-blind-safe palette, target colours, journal sizes.

    from hipfrac.figures import style
    style.apply()                                   # once per notebook (the figure functions call it too)
    fig, ax = style.subplots("single")              # 85 mm wide, readable at journal column width
    ax.bar(x, y, color=style.target_colour(value, green=0.9, yellow=0.8))

Palette: Okabe & Ito (2008), distinguishable with the common colour-vision deficiencies.
Target achievement uses the registries' traffic lights (green = high, yellow = moderate, red = low),
always together with a text or marker cue, never colour alone.
Sizes: journal column widths in millimetres (single 85, one-and-a-half 120, double 175).
"""

from __future__ import annotations

from contextlib import contextmanager

import matplotlib as mpl

MM_PER_INCH = 25.4
WIDTHS_MM = {"single": 85.0, "onehalf": 120.0, "double": 175.0}

# Okabe-Ito colour-blind-safe qualitative palette (black last).
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#56B4E9", "#CC79A7", "#F0E442", "#000000"]
# Sequential / diverging colormaps that are perceptually uniform and colour-blind-safe.
SEQUENTIAL_CMAP = "viridis"
DIVERGING_CMAP = "RdBu_r"
# Registries' target achievement colours (SKDE results portal style): high / moderate / low.
TARGET_COLOURS = {"high": "#3BAA34", "moderate": "#FDC300", "low": "#E2001A"}
GREY = "#7F7F7F"  # units shown without value (low N, suppressed)

RC = {
    "figure.dpi": 100,
    "savefig.dpi": 300,
    "font.size": 8,
    "axes.titlesize": 9,
    "axes.labelsize": 8,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "legend.fontsize": 7,
    "legend.frameon": False,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.5,
    "lines.linewidth": 1.2,
    "lines.markersize": 4,
    "axes.prop_cycle": mpl.cycler(color=PALETTE),
    "image.cmap": SEQUENTIAL_CMAP,
    "pdf.fonttype": 42,          # TrueType in PDFs: editable text for journals
    "ps.fonttype": 42,
    "svg.hashsalt": "hipfrac",   # deterministic SVG ids
    "figure.constrained_layout.use": True,
}


def apply() -> None:
    """Set the shared theme (seaborn 'ticks' context + hipfrac rcParams) globally."""
    import seaborn as sns

    sns.set_theme(context="paper", style="ticks", palette=PALETTE, rc=RC)
    mpl.rcParams.update(RC)


@contextmanager
def use():
    """Context manager applying the theme temporarily."""
    with mpl.rc_context():
        apply()
        yield


def figsize(width: str | float = "single", aspect: float = 0.75) -> tuple[float, float]:
    """(width, height) in inches for a journal width ("single", "onehalf", "double" or mm) and
    aspect = height / width."""
    mm = WIDTHS_MM[width] if isinstance(width, str) else float(width)
    w = mm / MM_PER_INCH
    return (w, w * aspect)


def subplots(width: str | float = "single", aspect: float = 0.75, **kw):
    """plt.subplots with the theme applied and a journal-width figure size."""
    import matplotlib.pyplot as plt

    apply()
    return plt.subplots(figsize=figsize(width, aspect), **kw)


def target_level(value: float | None, green: float, yellow: float, higher_is_better: bool = True) -> str | None:
    """"high", "moderate" or "low" achievement of a target (value and limits on the same scale),
    None when value is missing (e.g. suppressed)."""
    if value is None or value != value:
        return None
    if not higher_is_better:
        value, green, yellow = -value, -green, -yellow
    return "high" if value >= green else "moderate" if value >= yellow else "low"


def target_colour(value: float | None, green: float, yellow: float, higher_is_better: bool = True) -> str:
    """Traffic-light colour of a value against its green / yellow limits (grey when missing)."""
    level = target_level(value, green, yellow, higher_is_better)
    return TARGET_COLOURS[level] if level else GREY


def ci_err(estimate, lower, upper):
    """Error-bar half-widths (2 x n, never negative) for matplotlib's errorbar.

    A bootstrap percentile or simulation interval need not contain the point estimate (few
    replicates, skewed statistics); matplotlib refuses negative half-widths, so they are clipped to 0
    and the interval is still drawn from its own ends where it lies on one side.
    """
    import numpy as np

    est = np.asarray(estimate, dtype=float)
    return np.clip(np.vstack([est - np.asarray(lower, dtype=float), np.asarray(upper, dtype=float) - est]), 0, None)
