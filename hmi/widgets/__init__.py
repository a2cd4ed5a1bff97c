"""Reusable widgets: they take plain values and render them; they call no service."""
