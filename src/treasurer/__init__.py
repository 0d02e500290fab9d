"""Treasurer."""
