"""The password of the masking tests: no file, message or record may show it."""

from __future__ import annotations

SECRET = "s3cr3t-Pa55"
STORAGE = f"postgresql://alice:{SECRET}@db.example.org:5432/optuna"
