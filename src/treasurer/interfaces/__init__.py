"""Thin entry points: the HTTP API and the CLI."""
