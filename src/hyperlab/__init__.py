"""hyperlab: a declarative, config-driven experiment runner for tuning neural networks."""

from __future__ import annotations

__version__ = "0.1.0"
