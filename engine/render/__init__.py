"""Renderers: turn results and diagnostics into text for people (evaluation never prints)."""
