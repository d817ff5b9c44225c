"""Params for notebook-level analysis settings of `hipfrac.prevention`."""

from .base import Section


class PreventionParams(Section):
    """Analysis settings (owned by the module; add fields with defaults and docs)."""
