"""The generator's random streams. Event ``k`` draws from ``numpy.random.default_rng([seed, k,
stream])`` with separate streams for the source, the path and the noise, so that changing one part
(e.g. switching the noise off) leaves the others bit-identical; the split of the events into
train/dev/test has a stream of its own.
"""

from __future__ import annotations

import numpy as np

__all__ = ["SOURCE", "PATH", "NOISE", "event_rng", "split_rng"]

SOURCE, PATH, NOISE = 0, 1, 2
_SPLIT = 2**31 - 1  # an event index that is never used


def event_rng(seed: int, event: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), int(event), int(stream)])


def split_rng(seed: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), _SPLIT])
