"""Benchmarks of Treasurer; ``make bench`` runs :mod:`benchmarks.run`."""
