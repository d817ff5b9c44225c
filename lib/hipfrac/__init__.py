"""hipfrac: inequality in hip fracture treatment and outcomes in Norway.

Pipeline: registry extracts (synthetic or real) -> schema validation -> cohort (DuckDB linkage)
-> analyses returning tidy DataFrames -> disclosure-checked tables and figures in outputs/<run>/.

Modules (one concern each): params, schema, geography, synth, ingest, cohort, charlson, indicators,
variation, survival, relsurv, competing, risk, prevention, export, disclosure, scan, manifest,
supplement, figures.*, runner, bench.
"""

__version__ = "0.1.0"
