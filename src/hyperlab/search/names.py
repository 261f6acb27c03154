"""Study names a person can read: the search, then the overrides that define the study
(`lr_beta dataset:moons epochs:3`), with a short hash only where the readable part cannot
tell two studies apart. The same command, run again, names the same study."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

# Overrides that say how many trials or workers run, or what they run on: not what the
# study is.
HOW = ("sweep.", "hydra.", "hydra/", "search=", "progress=", "threads=", "device=")
# What a name keeps of an override as it is; the rest becomes "_" (and the name gets a
# hash). Every kept character passes Hydra's grammar unquoted: study=NAME takes it.
_KEPT = re.compile(r"[^A-Za-z0-9_.:/+@-]")
LONGEST = 80


def defining(overrides: Sequence[str]) -> list[str]:
    """The overrides that change the trials (sampler, pruner, data, model...), sorted."""
    # PBT trains other trials than a plain search of the same overrides: its own study.
    return sorted(
        o
        for o in overrides
        if not o.lstrip("+~").startswith(HOW) or o.startswith("sweep.schedule=pbt")
    )


def study_name(search: str, overrides: Sequence[str]) -> str:
    """The study's name: `search` alone, or with its defining overrides as key:value."""
    found = defining(overrides)
    words = [o.lstrip("+~").replace("=", ":", 1) for o in found]
    readable = " ".join([search, *(_KEPT.sub("_", w) for w in words)])
    if readable == " ".join([search, *words]) and len(readable) <= LONGEST:
        return readable
    digest = hashlib.sha1("\n".join(found).encode()).hexdigest()[:8]
    return f"{readable[: LONGEST - 10].rstrip()} @{digest}"


def legacy_name(search: str, overrides: Sequence[str]) -> str:
    """The name studies were given before names were readable (`lr_beta-da39a3ee`): a
    storage holding one under it resumes it under it."""
    digest = hashlib.sha1("\n".join(defining(overrides)).encode()).hexdigest()[:8]
    return f"{search}-{digest}"
