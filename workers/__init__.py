"""Everything that consumes: the worker runtime, the per-verb handling and the outcome reporting."""
