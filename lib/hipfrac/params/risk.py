"""Params for notebook-level analysis settings of `hipfrac.risk`."""

from .base import Section


class RiskParams(Section):
    """Analysis settings (owned by the module; add fields with defaults and docs)."""
