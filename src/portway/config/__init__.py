"""Typed models of everything an operator configures: validated on write, compiled once."""
