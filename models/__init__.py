"""Shapes: tables, input schemas, settings and the engine. Imports nothing else of ours."""
