"""Open HDF5 files from others so that libhdf5 cannot loop forever on them.

libhdf5 (2.0 and before) walks the objects of a global heap collection, the ``GCOL`` block that holds
variable-length strings (attribute values, string datasets), from size to size, and it does not check that a
step moves on: a free-space object of size 0 sends it round the same 16 bytes forever, at 100 % CPU and deaf to
Ctrl-C. One damaged byte in a collection is enough.

``open_hdf5`` hands libhdf5 a Python file object (h5py's ``fileobj`` driver), so every read it makes passes
through ``_GuardedFile``. A read that starts with a collection's signature is checked by ``collection_problem``
before libhdf5 parses it, and a damaged collection raises ``DamagedHeap`` out of the h5py call that needed it
(reading an attribute or a string dataset). libhdf5 loads a collection by reading at the collection's own
address: this driver declares no features, so libhdf5's metadata accumulator, which could fold it into a
larger read, is off. The check walks the collection step by step as libhdf5 does, every step at least one
object header long, so it ends, and so does libhdf5's walk over the same bytes.
"""

from __future__ import annotations

import errno
import io
import os
import struct

import h5py

from .errors import DmcodecError, printable

SIGNATURE = b"GCOL"
VERSION = 1
MIN_SIZE = 4096  #: libhdf5's smallest collection (H5HG_MINSIZE)
ALIGN = 8
_HINT = "the file is damaged or was not written by dmcodec; restore a copy or make it again"


class DamagedHeap(DmcodecError):
    """A global heap collection libhdf5 would loop on or misread: names the file and what is wrong."""

    def __init__(self, path: str | os.PathLike, what: str):
        super().__init__(f"{printable(path)}: {what}; {_HINT}")
        self.path = path
        self.what = what


#: an object header's index and size (its reference count and reserved bytes skipped), by the file's size of lengths
_OBJECT_HEADERS = {size: struct.Struct(f"<H6x{code}") for size, code in ((2, "H"), (4, "I"), (8, "Q"))}


def _number(data: bytes | memoryview, at: int, size: int) -> int:
    return int.from_bytes(data[at:at + size], "little")


def _object_header(data: bytes | memoryview, at: int, length_size: int) -> tuple[int, int]:
    layout = _OBJECT_HEADERS.get(length_size)
    if layout is None:
        return _number(data, at, 2), _number(data, at + 8, length_size)
    index, length = layout.unpack_from(data, at)
    return index, length


def collection_problem(data: bytes | memoryview, length_size: int = 8) -> str | None:
    """What is wrong with the collection at the start of ``data`` (None when it is whole and well-formed).

    Layout (HDF5 file format, global heap): signature, version 1, 3 reserved bytes, the collection's size;
    then objects: an index (u16), a reference count (u16), 4 reserved bytes, a size, then the data padded to
    8 bytes. Index 0 is free space, its size counting its own header; a tail too short for an object header is
    free space too. Refused: a size outside [4096, the bytes there], free space smaller than its header or not
    a multiple of 8 (size 0 is libhdf5's endless loop), an index used twice (so at most 65,536 steps), an
    object running past the collection.
    """
    header = 8 + length_size
    if len(data) < header or bytes(data[:4]) != SIGNATURE:
        return "a global heap collection is cut short inside its header"
    if data[4] != VERSION:
        return f"global heap collection of version {data[4]}, expected {VERSION}"
    size = _number(data, 8, length_size)
    if size < MIN_SIZE:
        return f"a global heap collection claims {size:,} bytes, less than the smallest ({MIN_SIZE:,})"
    if size > len(data):
        return f"a global heap collection claims {size:,} bytes, more than the {len(data):,} that follow it"
    seen: set[int] = set()
    at = header
    while at + header <= size:  # an object header has the collection header's size
        index, length = _object_header(data, at, length_size)
        if index == 0:
            step = length
            if step < header or step % ALIGN:
                return f"global heap free space at byte {at} of its collection has size {length:,}"
        elif index in seen:
            return f"global heap object {index} appears twice in its collection"
        else:
            seen.add(index)
            step = header + -(-length // ALIGN) * ALIGN
        if at + step > size:
            return (f"global heap object {index} at byte {at} of its collection has size {length:,}, past the "
                    f"collection's {size:,} bytes")
        at += step
    return None


class _GuardedFile(io.FileIO):
    """A file whose reads that start a global heap collection are checked before libhdf5 parses them."""

    length_size = 8  #: the file's "size of lengths", set from its superblock once it is open

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        try:
            return super().seek(offset, whence)
        except OverflowError:  # a damaged address: an I/O error, as libhdf5's own driver reports it
            raise OSError(errno.EINVAL, f"address {offset:,} is past any file") from None

    def readinto(self, buffer) -> int:
        start = self.tell()
        view = memoryview(buffer).cast("B")
        count = super().readinto(view) or 0
        view[count:] = bytes(len(view) - count)  # past the end reads as zeros, as with libhdf5's own driver
        self._check(start, view[:count])
        return len(view)

    def read(self, size: int | None = -1) -> bytes:  # older h5py reads through read(), newer through readinto()
        start = self.tell()
        data = super().read(size)
        self._check(start, memoryview(data))
        return data

    def _check(self, start: int, data: memoryview) -> None:
        if bytes(data[:4]) != SIGNATURE:
            return
        size = _number(data, 8, self.length_size) if len(data) >= 8 + self.length_size else 0
        if size > len(data):  # libhdf5 reads 4096 bytes first, then the whole collection: check it whole now
            available = os.fstat(self.fileno()).st_size - start
            if size > available:  # compared before reading, so a claimed size is never allocated
                raise DamagedHeap(self.name, f"global heap collection at byte {start:,} claims {size:,} bytes, "
                                             f"more than the {available:,} the file holds from there")
            data = memoryview(os.pread(self.fileno(), size, start))
        problem = collection_problem(data, self.length_size)
        if problem:
            raise DamagedHeap(self.name, f"{problem} (collection at byte {start:,})")


class GuardedHdf5File(h5py.File):
    """An ``h5py.File`` read through a ``_GuardedFile``, which it closes with itself."""

    def __init__(self, path: str | os.PathLike, mode: str = "r"):
        if mode not in ("r", "r+"):
            raise ValueError(f"a guarded HDF5 file opens an existing file, mode 'r' or 'r+', not {mode!r}")
        self._raw = _GuardedFile(path, mode)
        try:
            super().__init__(self._raw, mode)
        except BaseException:
            self._raw.close()
            raise
        self._raw.length_size = self.id.get_create_plist().get_sizes()[1]

    def close(self) -> None:
        super().close()
        self._raw.close()


def open_hdf5(path: str | os.PathLike, mode: str = "r") -> h5py.File:
    """``h5py.File(path, mode)`` for an existing file (``"r"`` or ``"r+"``), its global heap collections checked
    as libhdf5 loads them.

    A damaged collection raises ``DamagedHeap`` from the h5py call that reads a value stored in it; a file that
    is not HDF5 raises ``OSError`` as ``h5py.File`` does.
    """
    return GuardedHdf5File(path, mode)
