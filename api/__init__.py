"""The HTTP service: ingest (native and Sentry-compatible), health; approvals come later."""
