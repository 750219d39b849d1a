"""Shared memory between `policykb scrub`'s parent and its pool workers, for the bulk of a chunk.

A chunk of 5,000 claims is about 7 MB of JSONL in and 33 MB of results out (ref/c20k). Through
the pool's pipe each byte was copied into a pickle, through the kernel and out of a pickle on
both sides; measured, that pipe was the largest part of the parent's CPU after startup. Here the
parent and its workers share one anonymous mapping, made before the workers are forked: chunk k
goes through slot k % count (its lines in, then its output lines back over them), and the pipe
carries only which slot and how many bytes. A chunk that does not fit travels through the pipe
as before, so a slot's size bounds memory, never correctness.

The caller keeps a slot's bytes from being overwritten while it reads them: engine.batch feeds
the pool at most `count` chunks ahead of the one it is writing (its _ReadAhead).
"""

from __future__ import annotations

import contextlib
import mmap
import multiprocessing

# Bytes of a slot per claim of a chunk: ref/c20k averages 1.4 kB in and 6.7 kB out per claim.
SLOT_BYTES_PER_CLAIM = 16 * 1024
_MADV_REMOVE = getattr(mmap, "MADV_REMOVE", -1)  # Linux: free a shared mapping's pages
MIN_SLOT_BYTES = 1 << 20


class Slots:
    """`count` slots of `size` bytes each, in one mapping shared with processes forked later."""

    def __init__(self, count: int, size: int) -> None:
        self.count = count
        self.size = size
        self._mem = mmap.mmap(-1, count * size)  # MAP_SHARED | MAP_ANONYMOUS, pages made on use

    @classmethod
    def for_pool(cls, chunks_in_flight: int, chunk: int) -> Slots | None:
        """Slots for a pool that keeps `chunks_in_flight` chunks of `chunk` claims going, or None
        when the pool's workers will not be forked (only a fork inherits the mapping)."""
        if multiprocessing.get_start_method() != "fork":
            return None
        return cls(chunks_in_flight, max(MIN_SLOT_BYTES, chunk * SLOT_BYTES_PER_CLAIM))

    def put(self, slot: int, data: bytes) -> bool:
        """Copy `data` into `slot`; False (nothing copied) when it does not fit."""
        if len(data) > self.size:
            return False
        start = (slot % self.count) * self.size
        self._mem[start : start + len(data)] = data
        return True

    def put_all(self, slot: int, parts: list[bytes]) -> int | None:
        """Copy `parts` one after another into `slot`: their total size, or None (nothing
        copied) when they do not fit."""
        total = sum(map(len, parts))
        if total > self.size:
            return None
        at = (slot % self.count) * self.size
        mem = self._mem
        for part in parts:
            end = at + len(part)
            mem[at:end] = part
            at = end
        return total

    def take(self, slot: int, size: int) -> bytes:
        """A copy of the first `size` bytes of `slot`."""
        start = (slot % self.count) * self.size
        return self._mem[start : start + size]

    def release(self, slot: int) -> None:
        """Give `slot`'s pages back to the system (it reads as zeros until written again). Every
        process that touched a page of the mapping counts it in its memory, so without this each
        worker, and the parent, would hold every slot it ever used (up to the chunk's input and
        output, tens of MB, per slot); with it, only the slots in use."""
        start = (slot % self.count) * self.size
        with contextlib.suppress(OSError, ValueError):  # not on this system: the pages stay, as before
            self._mem.madvise(_MADV_REMOVE, start, self.size)

    def view(self, slot: int, size: int) -> memoryview:
        """The first `size` bytes of `slot`, not copied: release the view before the slot is
        used again."""
        start = (slot % self.count) * self.size
        return memoryview(self._mem)[start : start + size]
