"""The cyclic garbage collector off while a large model is built.

Loading a scenario and computing a matrix allocate hundreds of thousands of dicts,
tuples, big integers and model objects, none of them in reference cycles; each
collection of the oldest generation walks every live object (a second on a 10,000-pod
cluster, several times over while it is built) and frees nothing.  Reference counting
frees everything as usual; any cycle made meanwhile is collected once the collector is
back on.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def no_gc() -> Iterator[None]:
    """The collector off for the block (nested blocks: back on after the outermost)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()
