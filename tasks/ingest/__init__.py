"""Ingest loop: validate, classify, scrub and fingerprint events, store signatures and samples."""
