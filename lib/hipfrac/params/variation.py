"""Params for notebook-level analysis settings of `hipfrac.variation`."""

from .base import Section


class VariationParams(Section):
    """Analysis settings (owned by the module; add fields with defaults and docs)."""
