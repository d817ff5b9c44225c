"""Writing figures to files, in the notebook's process or in a background process.

Rendering a figure at 300 dpi and as a PDF with embedded fonts costs about a second, more than most
computations behind it; a notebook with twenty figures spent half its time in `savefig`. The
exporter (`hipfrac.export.Exporter.figure`) therefore pickles each figure and hands it to a
`FigureSaver` with one worker process (params `export.figure_workers`), so the notebook computes
the next result while the last figure is written; when the worker falls behind, the notebook's
process saves the next figure itself. `FigureSaver.wait()` (called by
`Exporter.finish`) blocks until every file is written and raises, naming the figure, if one failed.

The worker renders with the notebook's rcParams at the time the figure was handed over (sent along
with it), so the files are the same bytes as when saved in the notebook's own process (tested).
This module imports only matplotlib: the worker starts in about a second.
"""

from __future__ import annotations

import io
import pickle
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from types import FunctionType

import matplotlib as mpl

# rcParams that are not about drawing and must not be copied into the worker
_SKIP_RC = {"backend", "backend_fallback", "interactive"}


class _Pickler(pickle.Pickler):
    """Refuses what a worker process could not unpickle: functions and classes defined in the notebook
    itself (module __main__: pickled by reference, they do not exist in the worker)."""

    def reducer_override(self, obj):
        if isinstance(obj, (type, FunctionType)) and getattr(obj, "__module__", None) == "__main__":
            raise pickle.PicklingError(f"{obj!r} is defined in the notebook")
        return NotImplemented


def _dumps(fig) -> bytes:
    buf = io.BytesIO()
    _Pickler(buf, protocol=pickle.HIGHEST_PROTOCOL).dump(fig)
    return buf.getvalue()


def save(fig, jobs: list[tuple[str, str, dict]]) -> None:
    """Save fig once per job: (path, format, savefig keyword arguments)."""
    for path, fmt, kwargs in jobs:
        fig.savefig(Path(path), format=fmt, **kwargs)


def _rc_snapshot() -> dict:
    return {k: v for k, v in mpl.rcParams.items() if k not in _SKIP_RC}


def _save_pickled(blob: bytes, rc: dict, jobs: list[tuple[str, str, dict]]) -> list[str]:
    """Worker side: restore the rcParams and the figure, save it, return the paths written."""
    mpl.use("agg")
    with mpl.rc_context(rc):
        fig = pickle.loads(blob)
        save(fig, jobs)
    return [p for p, _, _ in jobs]


class FigureSaver:
    """Saves figures in `workers` background processes (0 = in this process, synchronously).

    submit(fig, jobs, name) returns at once when the figure can be pickled and the workers are not
    behind (otherwise it saves in this process); wait() returns when every submitted figure is written.
    """

    def __init__(self, workers: int = 1):
        self.workers = int(workers)
        self._pool: ProcessPoolExecutor | None = None
        self._pending: list[tuple[str, Future]] = []

    def submit(self, fig, jobs: list[tuple[str, str, dict]], name: str) -> None:
        blob = None
        # when the workers are behind (more figures waiting than workers), this process saves the
        # figure itself: the load balances between computing and drawing without tuning
        backlog = sum(not f.done() for _, f in self._pending)
        if self.workers > 0 and backlog <= self.workers:
            try:
                blob = _dumps(fig)
            except Exception:  # noqa: BLE001 - e.g. a lambda or notebook-defined formatter: save here
                blob = None
        if blob is None:
            save(fig, jobs)
            return
        if self._pool is None:
            import multiprocessing

            # spawn, not fork: the notebook kernel runs threads (zmq) that a fork would copy mid-state
            self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"))
        self._pending.append((name, self._pool.submit(_save_pickled, blob, _rc_snapshot(), jobs)))

    def wait(self) -> None:
        """Block until every submitted figure is written; raise RuntimeError naming the first figure
        that failed (the others are still waited for)."""
        pending, self._pending = self._pending, []
        failed = None
        for name, fut in pending:
            try:
                fut.result()
            except Exception as exc:  # noqa: BLE001 - re-raised below with the figure named
                failed = failed or (name, exc)
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        if failed:
            raise RuntimeError(f"figure {failed[0]!r} could not be saved: {failed[1]!r}") from failed[1]
