"""Params for output writing and disclosure control (`hipfrac.export`)."""

from typing import Literal

from pydantic import Field

from .base import Section


class ExportParams(Section):
    """How tables and figures are written.

    min_cell: counts from 1 to min_cell - 1 are suppressed in every exported table (default 5: 1–4).
    """

    min_cell: int = Field(5, ge=1, le=100)
    table_formats: tuple[Literal["csv", "xlsx", "tex", "md"], ...] = ("csv", "xlsx", "tex", "md")
    figure_formats: tuple[Literal["png", "pdf"], ...] = ("png", "pdf")
    dpi: int = Field(300, ge=50, le=1200)
    code_folded: bool = True
