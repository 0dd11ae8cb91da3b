"""Regress loop: select and run suites, record executions, move confidence and signatures,
report."""
