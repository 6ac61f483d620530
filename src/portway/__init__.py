"""Portway: an API management platform."""
