"""Health loop: the failure-rate rule, probes and the readiness score."""
