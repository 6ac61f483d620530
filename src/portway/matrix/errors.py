"""Errors of the matrix package, under Portway's hierarchy.

PortwayError
├── ConfigError                 settings or inventory that fail validation (names the field)
└── MatrixError                 a matrix that cannot be built or used as asked
    └── UnexpressibleFlow       a firewall generator cannot write a flow without widening it
"""

from __future__ import annotations

from portway.errors import ConfigError, PortwayError

__all__ = ["ConfigError", "MatrixError", "UnexpressibleFlow"]


class MatrixError(PortwayError):
    """A matrix that cannot be built, or a request the matrix cannot answer."""


class UnexpressibleFlow(MatrixError):
    """A generator was asked for a flow its target cannot express exactly.

    Raised instead of writing a wider rule (any port, any address) than the matrix allows.
    """

    def __init__(self, generator: str, flow: str, reason: str) -> None:
        super().__init__(f"{generator}: cannot express flow {flow}: {reason}")
        self.generator = generator
        self.flow = flow
        self.reason = reason
