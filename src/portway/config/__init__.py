"""Typed models of everything an operator configures, validated on write and compiled once for workers."""
