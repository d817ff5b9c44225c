"""Params for the synthetic registry generator (`hipfrac.synth`)."""

from typing import Literal

from pydantic import Field

from .base import Section


class SynthParams(Section):
    """How the synthetic linked registry is generated.

    scale: 1.0 = Norway (about 9,000 hip fractures a year); 0.02 for tests; 4.0 Nordic-size.
    years: first and last calendar year of fractures (inclusive).
    out_dir: where the extracts and truth.json are written (relative to the project root).
    """

    enabled: bool = True
    seed: int = 2026
    scale: float = Field(1.0, gt=0, le=10)
    years: tuple[int, int] = (2008, 2024)
    format: Literal["csv", "parquet"] = "csv"
    imperfections: bool = True
    out_dir: str = "data/synthetic/default"
