"""A batch materialization engine for Feast's Redis online store (Feast's `batch_engine` plug-in
point): chunked DuckDB reads of the latest row per entity, column-wise encoding, pipelined writes,
progress and resumable chunks. See engine.py."""
