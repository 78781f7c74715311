"""Execution engines."""
