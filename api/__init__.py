"""How the outside uses immunity: the HTTP service (`app`: native, Sentry-compatible ingest, reads,
fix decisions, health), its client (`client`: `immunity.Client`) and the in-process Python API
(`inprocess`), all running the same pipelines as the flows."""
