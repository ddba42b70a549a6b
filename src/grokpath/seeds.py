"""Seeded random streams keyed by name, so adding a domain never changes another's draws."""

from __future__ import annotations

import zlib

import numpy as np


def domain_rng(seed: int, domain: str, *streams: int) -> np.random.Generator:
    """A generator fixed by (seed, domain, *streams), independent of the order domains come in."""
    return np.random.default_rng([int(seed), zlib.crc32(domain.encode()), *(int(s) for s in streams)])
