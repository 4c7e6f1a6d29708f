"""Named, independent random streams derived from one seed.

Every random choice certify makes (which chunks the certificate scores, which chunks a
search over settings scores, which text calibrates a data-dependent quantizer, which
units sampled mode draws) comes from its own child stream of one root seed, via
numpy's ``SeedSequence`` spawn keys. Child streams of one root are statistically
independent, and a child's state is never the root's own state, so no choice of seed
makes the search sample equal the certification sample ("no seed maps to itself").
docs/MATH.md, "Seeds and searches", says why this matters for the bound.
"""

from __future__ import annotations

import enum
import hashlib
from typing import Any

import numpy as np

from certify._jcs import canonical_bytes
from certify.errors import InvalidInputError

__all__ = ["Stream", "child_generator", "child_seed_sequence", "derive_seed"]


class Stream(enum.IntEnum):
    """The purpose of a random stream; the value is its spawn key (never reuse one)."""

    CERTIFICATION = 1
    SEARCH = 2
    CALIBRATION = 3
    UNITS = 4
    PILOT = 5


def child_seed_sequence(seed: int, stream: Stream, *extra: int) -> np.random.SeedSequence:
    """The ``SeedSequence`` of ``stream`` under the root ``seed`` (``extra`` nests further).

    >>> a = child_generator(7, Stream.CERTIFICATION).integers(0, 2**32, 4)
    >>> b = child_generator(7, Stream.SEARCH).integers(0, 2**32, 4)
    >>> bool((a == b).all())
    False
    """
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise InvalidInputError(f"must be an integer ≥ 0, got {seed!r}", field="seed")
    return np.random.SeedSequence(entropy=int(seed), spawn_key=(int(stream), *extra))


def child_generator(seed: int, stream: Stream, *extra: int) -> np.random.Generator:
    """A PCG64 generator for ``stream`` under the root ``seed``."""
    return np.random.Generator(np.random.PCG64(child_seed_sequence(seed, stream, *extra)))


def derive_seed(inputs: dict[str, Any]) -> int:
    """The default seed: the first 53 bits of sha256 over the RFC 8785 form of ``inputs``.

    ``inputs`` are fixed before any loss is seen (the artifact's sha256, the data's
    fingerprint, S, P and s), so the sample cannot be chosen after looking at losses,
    and anyone can recompute the seed from what the certificate records. 53 bits keep
    it an exact JSON number (I-JSON) wherever the certificate is read.

    >>> derive_seed({"artifact_sha256": "ab", "samples": 2}) == derive_seed(
    ...     {"samples": 2, "artifact_sha256": "ab"})
    True
    """
    digest = hashlib.sha256(canonical_bytes(inputs)).digest()
    return int.from_bytes(digest[:8], "big") >> 11
