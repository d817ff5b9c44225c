"""Params for output writing and disclosure control (`hipfrac.export`, `hipfrac.disclosure`)."""

from typing import Literal

from pydantic import Field, StrictBool

from .base import Section


class ExportParams(Section):
    """How tables and figures are written.

    min_cell: counts from 1 to min_cell - 1 are suppressed in every exported table (default 5: 1–4).
    protect_missing: treat small counts of *missing values* (a numerator not recorded, a Table 1 level
        "missing", patients not analysed, a fracture missing from one register) as sensitive, like every
        other count (default true: nothing of 1-4 leaves, and the scanner checks every count column). A
        data controller may set false (they describe the registration, not the patients); the cost of true
        on the national synthetic run: surgery within 24/48 h withheld for 33 of 44 hospitals (1-4 missing
        surgery times follow from the hospital's published patients minus the analysed n) and the hospital
        x year coverage table almost entirely withheld. With false, the scan still reports such counts.
    table_formats: formats of every table (CSV is always written, as the machine-readable copy).
    figure_formats: formats of every figure.
    dpi: resolution of PNG figures.
    figure_workers: background processes writing figure files while the notebook goes on computing
        (0 = write each figure in the notebook's own process before `out.figure` returns).
    float_digits: significant digits of floats in CSV tables (fixed, for byte-identical reruns).
    code_folded: in the HTML supplement, code cells are folded (True) or hidden entirely (False);
        `python -m hipfrac supplement --show-code` shows them unfolded.
    """

    min_cell: int = Field(5, ge=1, le=100)
    protect_missing: StrictBool = True
    table_formats: tuple[Literal["csv", "xlsx", "tex", "md"], ...] = ("csv", "xlsx", "tex", "md")
    figure_formats: tuple[Literal["png", "pdf"], ...] = ("png", "pdf")
    dpi: int = Field(300, ge=50, le=1200)
    figure_workers: int = Field(1, ge=0, le=8)
    float_digits: int = Field(6, ge=3, le=17)
    code_folded: bool = True
