"""Heal loop: fix proposals (patterns, rules, LLM, rollback), validation, approval, applying on a
branch."""
