"""Seeds derived from an artefact's identity, so any model can be rebuilt alone.

``derive_seed("oracle", 3, 17)`` is the same on every machine and in every shard layout: changing
``models_per_job`` regroups models without changing any of them.
"""

from __future__ import annotations

import hashlib


def derive_seed(*parts: object, base: int = 0) -> int:
    """A 63-bit seed from a tuple of identifying parts (stage, forget set, model index, ...)."""
    text = "/".join(str(p) for p in (base, *parts))
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little") >> 1
