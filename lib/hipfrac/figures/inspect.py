"""Inspect a matplotlib Figure for marks that draw individual persons.

A published figure must show aggregates (curves, bars, one dot per hospital), never one mark per
patient: a scatter of 2,000 patients' ages and waiting times is a person-level table in picture form.
The image files themselves are not read by the output scanner (``hipfrac.scan``), so the Exporter
checks the Figure object before saving it; in strict mode (``real_data: true``) any finding is fatal.

What counts as individual marks:

* scatter plots (``PathCollection``, also strip and swarm plots) and ``Line2D`` artists drawn with
  markers (``ax.plot(x, y, "o")``, box-plot fliers, censoring ticks on a curve) whose number of
  points exceeds ``max_points`` (default 200), or exceeds ``per_row`` times the number of rows of the
  aggregate frame behind the figure (when ``n_rows`` is given and there are at least ``min_points``);
* the same counted over all marker artists of one axes (many small scatters, one per hospital, add up);
* rug plots (``EventCollection``, one tick per event) above the same thresholds.

Ignored: lines without markers (curves, steps: a Kaplan-Meier curve of 2,000 points is fine), bars and
other patches, images, hexbin and 2D histograms (``PolyCollection``, ``QuadMesh``: binned counts),
filled areas, error bars (``LineCollection``) and text.

    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import matplotlib.pyplot as plt
    >>> fig, ax = plt.subplots()
    >>> _ = ax.scatter(range(300), range(300))
    >>> individual_marks(fig)
    ['axes 1 (untitled): scatter of 300 points (more than 200: one mark per person?)']
"""

from __future__ import annotations

from matplotlib.collections import EventCollection, PathCollection
from matplotlib.lines import Line2D

MAX_POINTS = 200
PER_ROW = 3
MIN_POINTS = 50

__all__ = ["individual_marks", "MAX_POINTS", "PER_ROW", "MIN_POINTS"]


def _has_marker(line: Line2D) -> bool:
    marker = line.get_marker()
    return marker not in (None, "None", "none", "", " ") and line.get_markersize() > 0


def _n_points(artist) -> int:
    if isinstance(artist, Line2D):
        return len(artist.get_xdata(orig=False))
    if isinstance(artist, EventCollection):
        return len(artist.get_positions())
    return len(artist.get_offsets())


def _all_axes(fig):
    yield from fig.axes
    for sub in getattr(fig, "subfigs", []) or []:  # axes of subfigures are not in fig.axes
        yield from _all_axes(sub)


def _axes_name(ax, i: int) -> str:
    title = ax.get_title() or ax.get_title(loc="left") or ax.get_title(loc="right")
    if not title:
        title = " / ".join(x for x in (ax.get_xlabel(), ax.get_ylabel()) if x)
    return f"axes {i} ({title!r})" if title else f"axes {i} (untitled)"


def individual_marks(fig, n_rows: int | None = None, *, max_points: int = MAX_POINTS, per_row: float = PER_ROW,
                     min_points: int = MIN_POINTS) -> list[str]:
    """Artists of a figure that look like one mark per person.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        The figure to inspect (axes of subfigures included).
    n_rows : int, optional
        Number of rows of the aggregate frame behind the figure (``out.figure(fig, name, data=frame)``).
        A figure that draws more than ``per_row`` marks per row of its data drew them from something
        else, typically person-level data.
    max_points : int, default 200
        More marks than this in one artist (or in all marker artists of one axes) is a finding whatever
        the data.
    per_row : float, default 3
        Marks allowed per row of the aggregate frame (only with ``n_rows``).
    min_points : int, default 50
        The ``per_row`` rule applies from this many marks (a dozen dots over a 3-row frame are labels,
        not persons).

    Returns
    -------
    list of str
        One human-readable description per finding: axes (number and title), artist kind and number of
        points. Empty when the figure draws only aggregates.
    """
    limit_rows = None if n_rows is None else per_row * max(int(n_rows), 0)

    def too_many(n: int) -> str | None:
        if n > max_points:
            return f"more than {max_points}: one mark per person?"
        if limit_rows is not None and n >= min_points and n > limit_rows:
            return f"more than {per_row:g} per row of its {n_rows}-row data frame: drawn from person-level data?"
        return None

    out = []
    for i, ax in enumerate(_all_axes(fig), start=1):
        name = _axes_name(ax, i)
        marks = []  # (kind, n)
        for coll in ax.collections:
            if isinstance(coll, EventCollection):
                marks.append(("rug plot (one tick per event)", _n_points(coll)))
            elif isinstance(coll, PathCollection):  # scatter, strip/swarm plots; not hexbin/hist2d/fills
                marks.append(("scatter", _n_points(coll)))
        for line in ax.lines:
            if _has_marker(line):
                kind = "line with markers" if line.get_linestyle() not in ("None", "none", "", " ") else "markers"
                marks.append((f"{kind} ({line.get_marker()!s})", _n_points(line)))
        flagged = False
        for kind, n in marks:
            why = too_many(n)
            if why:
                out.append(f"{name}: {kind} of {n} points ({why})")
                flagged = True
        total = sum(n for _, n in marks)
        if not flagged and len(marks) > 1:
            why = too_many(total)
            if why:
                out.append(f"{name}: {total} points in {len(marks)} marker artists ({why})")
    return out
