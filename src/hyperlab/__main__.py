"""`python -m hyperlab` does what `hyperlab` does."""

from __future__ import annotations

from hyperlab.cli import entry

if __name__ == "__main__":
    entry()
