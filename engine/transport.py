"""Shared memory between `policykb scrub`'s parent and its pool workers, for the bulk of a chunk.

A chunk of 10,000 claims is about 14 MB of JSONL in and 67 MB of results out (ref/c20k). Through
the pool's pipe each byte was copied into a pickle, through the kernel and out of a pickle on
both sides. Here the parent and its workers share one in-memory file (memfd), made before the
workers are forked: chunk k goes through slot k % count (its lines in, then its output lines back
over them), and the pipe carries only which slot and how many bytes. A chunk that does not fit
travels through the pipe as before, so a slot's size bounds memory, never correctness.

No process maps a slot's pages: they are written and read with pwrite/pread, and the parent hands
a chunk's output to the output file with sendfile, kernel to kernel. A page mapped by a process
counts in its resident memory (ru_maxrss), once in each process that touched it although it is
shared, and a first touch costs a page fault: mapped, the slots counted in the parent and in both
workers (~80 MB apiece at 10,000 claims a chunk) and cost the parent a fault per 4 kB written.
The slots' pages still exist while a chunk is in flight, in the file (the system's shared memory,
`Shmem` in /proc/meminfo) rather than in any process: at most a chunk's input or output per slot.

The caller keeps a slot's bytes from being overwritten while it reads them: engine.batch feeds
the pool at most `count` chunks ahead of the one it is writing (its _ReadAhead).
"""

from __future__ import annotations

import contextlib
import mmap
import multiprocessing
import os
import tempfile
from typing import IO

# Bytes of a slot per claim of a chunk: ref/c20k averages 1.4 kB in and 6.7 kB out per claim.
SLOT_BYTES_PER_CLAIM = 16 * 1024
_MADV_REMOVE = getattr(mmap, "MADV_REMOVE", -1)  # Linux: free a shared file's pages
MIN_SLOT_BYTES = 1 << 20


def _iov_max() -> int:
    """Buffers one pwritev takes: the system's IOV_MAX (1024 on Linux and macOS), at most 1024."""
    try:
        return max(16, min(1024, os.sysconf("SC_IOV_MAX")))
    except (AttributeError, ValueError, OSError):
        return 16  # the least POSIX allows


_IOV_MAX = _iov_max()
_PIECE = 4 << 20  # bytes read at a time where sendfile cannot write


def _shared_file() -> int:
    """A file descriptor of an unnamed file in memory (Linux), else of an unlinked temporary file."""
    if hasattr(os, "memfd_create"):
        with contextlib.suppress(OSError):
            return os.memfd_create("policykb-slots", os.MFD_CLOEXEC)
    fd, path = tempfile.mkstemp(prefix="policykb-slots-")
    os.unlink(path)
    return fd


class Slots:
    """`count` slots of `size` bytes each, in one file shared with processes forked later."""

    def __init__(self, count: int, size: int) -> None:
        self.count = count
        self.size = size
        self._fd = _shared_file()
        os.ftruncate(self._fd, count * size)  # a hole: pages are made only when written
        # mapped only to give pages back (madvise); never read or written through, so never resident
        self._mem = mmap.mmap(self._fd, count * size)

    @classmethod
    def for_pool(cls, chunks_in_flight: int, chunk: int) -> Slots | None:
        """Slots for a pool that keeps `chunks_in_flight` chunks of `chunk` claims going, or None
        when the pool's workers will not be forked (only a fork inherits the file)."""
        if multiprocessing.get_start_method() != "fork":
            return None
        return cls(chunks_in_flight, max(MIN_SLOT_BYTES, chunk * SLOT_BYTES_PER_CLAIM))

    def put(self, slot: int, data: bytes) -> bool:
        """Copy `data` into `slot`; False (nothing copied) when it does not fit."""
        if len(data) > self.size:
            return False
        self._write((slot % self.count) * self.size, [data])
        return True

    def put_all(self, slot: int, parts: list[bytes]) -> int | None:
        """Copy `parts` one after another into `slot`: their total size, or None (nothing
        copied) when they do not fit."""
        total = sum(map(len, parts))
        if total > self.size:
            return None
        self._write((slot % self.count) * self.size, parts)
        return total

    def _write(self, at: int, parts: list[bytes]) -> None:
        fd = self._fd
        for i in range(0, len(parts), _IOV_MAX):
            batch = parts[i : i + _IOV_MAX]
            want = sum(map(len, batch))
            done = os.pwritev(fd, batch, at)
            if done < want:  # a short write (not seen on a memfd): the rest one piece at a time
                rest = memoryview(b"".join(batch))[done:]
                while rest:
                    n = os.pwrite(fd, rest, at + done)
                    rest, done = rest[n:], done + n
            at += want

    def take(self, slot: int, size: int) -> bytes:
        """A copy of the first `size` bytes of `slot`."""
        start = (slot % self.count) * self.size
        data = os.pread(self._fd, size, start)
        if len(data) < size:  # a short read (not seen on a memfd)
            parts = [data]
            got = len(data)
            while got < size:
                piece = os.pread(self._fd, size - got, start + got)
                if not piece:
                    raise OSError(f"slot {slot % self.count} holds {got} bytes, not {size}")
                parts.append(piece)
                got += len(piece)
            data = b"".join(parts)
        return data

    def send(self, slot: int, size: int, out: IO[bytes]) -> None:
        """Write the first `size` bytes of `slot` to `out`: with sendfile, without copying them
        through this process, where the system allows it (a file or a pipe on Linux; not a file
        opened to append); else read and written a few MB at a time."""
        start = (slot % self.count) * self.size
        sent = 0
        try:
            fd = out.fileno()
        except (AttributeError, OSError, ValueError):  # e.g. an io.BytesIO
            fd = -1
        if fd >= 0 and hasattr(os, "sendfile"):
            out.flush()
            with contextlib.suppress(OSError):
                while sent < size:
                    n = os.sendfile(fd, self._fd, start + sent, size - sent)
                    if n == 0:
                        break
                    sent += n
        while sent < size:
            piece = os.pread(self._fd, min(_PIECE, size - sent), start + sent)
            if not piece:
                raise OSError(f"slot {slot % self.count} holds {sent} bytes, not {size}")
            out.write(piece)
            sent += len(piece)

    def release(self, slot: int) -> None:
        """Give `slot`'s pages back to the system (it reads as zeros until written again): without
        this the file would keep the largest chunk that ever went through each slot."""
        start = (slot % self.count) * self.size
        with contextlib.suppress(OSError, ValueError):  # not on this system: the pages stay, as before
            self._mem.madvise(_MADV_REMOVE, start, self.size)

    def close(self) -> None:
        """Let go of the file (its pages go once every process that shares it has closed it)."""
        self._mem.close()
        with contextlib.suppress(OSError):
            os.close(self._fd)
