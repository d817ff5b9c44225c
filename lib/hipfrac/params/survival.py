"""Params for notebook-level analysis settings of `hipfrac.survival`."""

from .base import Section


class SurvivalParams(Section):
    """Analysis settings (owned by the module; add fields with defaults and docs)."""
