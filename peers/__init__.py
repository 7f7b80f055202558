"""peers: AI coding-agent sessions that find each other, message each other and coordinate."""

from __future__ import annotations

# Read by hatchling for the package metadata; importlib.metadata would cost
# peers serve tens of milliseconds before it can answer initialize.
__version__ = "0.1.0"

__all__ = ["__version__"]
