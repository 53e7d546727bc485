"""Lossless chunk codecs: byte planes + zstd, and a delta against a base chunk.

Every encoded chunk starts with a small header naming its codec, dtype, length and, for a
delta, the id of its base chunk. Decoding rebuilds the exact raw bytes; the caller verifies
them against the chunk id (the BLAKE3 of the raw bytes), so a codec bug or a damaged file can
never hand back wrong weights silently.

Standalone: the chunk's bytes are split into byte planes (every element's byte 0, then every
byte 1, ...), so the slowly varying sign/exponent bytes sit together, and zstd compresses them.
Delta: both chunks' elements are read as unsigned integers of their width (a float's bit
pattern), subtracted with wrap-around (lossless for every bit pattern: NaN payloads,
infinities, subnormals), zigzag-mapped so small negative differences become small positive
integers, and stored as byte planes + zstd. For floats of one sign the integer difference is
the distance in representable values, so a training step is a small integer; only a weight
that crosses zero costs a large one. (The first round's delta first folded floats into an
order-preserving integer map; on real fine-tunes that is both slower and 3-4% bigger, because
weight decay moves positive and negative weights the same way in magnitude. It is still
decoded: :data:`CODEC_DELTA_ORDERED`.)

>>> blob = encode_standalone(raw, dtype)
>>> decode_into(blob, out)            # out: a writable uint8 buffer of len(raw) bytes
"""

from __future__ import annotations

import struct
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import StoreCorrupted
from . import kernels
from .tensors import DType, dtype_by_name

__all__ = [
    "CODEC_DELTA",
    "CODEC_DELTA_ORDERED",
    "CODEC_PLANES",
    "CODEC_RAW",
    "Header",
    "decode_into",
    "encode_delta",
    "encode_standalone",
    "parse_header",
]

MAGIC = b"CXK1"
CODEC_RAW = 0
CODEC_PLANES = 1
CODEC_DELTA_ORDERED = 2  # written by coralx before 0.3: decoded, never written
CODEC_DELTA = 3
CODEC_NAMES = {
    CODEC_RAW: "raw",
    CODEC_PLANES: "planes+zstd",
    CODEC_DELTA_ORDERED: "delta (ordered)",
    CODEC_DELTA: "delta",
}
DELTA_CODECS = frozenset({CODEC_DELTA, CODEC_DELTA_ORDERED})
# Level 1 measured best on weights: on float32 it is both faster and smaller than level 3
# (the mantissa planes are noise either way; level 1's Huffman tables suit the exponent plane).
ZSTD_LEVEL = 1
# magic, codec, chain, dtype name length, raw length
_FIXED = struct.Struct("<4sBBBQ")
HEADER_MAX = _FIXED.size + 16 + 32


@dataclass(frozen=True)
class Header:
    """What an encoded chunk says about itself.

    ``chain`` on a whole chunk counts the delta versions that lead to it (bounded by the
    writer); ``base`` is the id of the chunk a delta applies to.
    """

    codec: int
    dtype: str
    raw_len: int
    chain: int
    base: str | None
    size: int

    @property
    def is_delta(self) -> bool:
        """Whether the chunk is stored as a difference to :attr:`base`."""
        return self.codec in DELTA_CODECS

    @property
    def codec_name(self) -> str:
        return CODEC_NAMES.get(self.codec, f"unknown({self.codec})")


def _pack_header(codec: int, dtype: DType, raw_len: int, chain: int, base: str | None) -> bytes:
    name = dtype.name.encode("ascii")
    head = _FIXED.pack(MAGIC, codec, min(chain, 255), len(name), raw_len) + name
    if codec in DELTA_CODECS:
        assert base is not None
        head += bytes.fromhex(base)
    return head


def parse_header(blob: bytes | memoryview) -> Header:
    """Read an encoded chunk's header; :class:`StoreCorrupted` if it is not one."""
    if len(blob) < _FIXED.size:
        raise StoreCorrupted("a chunk file is truncated (shorter than its header)")
    magic, codec, chain, name_len, raw_len = _FIXED.unpack_from(blob, 0)
    if magic != MAGIC or codec not in CODEC_NAMES:
        raise StoreCorrupted("a chunk file has no valid coralx chunk header")
    pos = _FIXED.size
    dtype = bytes(blob[pos : pos + name_len]).decode("ascii", errors="replace")
    pos += name_len
    base = None
    if codec in DELTA_CODECS:
        if len(blob) < pos + 32:
            raise StoreCorrupted("a delta chunk file is truncated inside its header")
        base = bytes(blob[pos : pos + 32]).hex()
        pos += 32
    return Header(codec, dtype, raw_len, chain, base, pos)


# -- per-thread state: zstd contexts and scratch buffers ---------------------------------------
# zstd contexts are not thread-safe; scratch buffers are reused because fresh memory is slow
# (every new multi-MiB numpy array is page-faulted in).

_local = threading.local()


def _cctx() -> Any:
    ctx = getattr(_local, "cctx", None)
    if ctx is None:
        import zstandard

        # Level 1 with a long minimum match and a tiny hash table: on weight planes this is
        # both faster and smaller than the default levels (the planes are literals, not
        # repeats; short matches only cost time and sequences). Measured in
        # docs/architecture.md.
        params = zstandard.ZstdCompressionParameters.from_level(ZSTD_LEVEL, min_match=7, hash_log=6)
        ctx = _local.cctx = zstandard.ZstdCompressor(compression_params=params)
    return ctx


def _dctx() -> Any:
    ctx = getattr(_local, "dctx", None)
    if ctx is None:
        import zstandard

        ctx = _local.dctx = zstandard.ZstdDecompressor()
    return ctx


def scratch(slot: str, nbytes: int) -> np.ndarray[Any, Any]:
    """A per-thread reusable uint8 buffer of at least ``nbytes`` (a view of exactly that)."""
    buffers: dict[str, np.ndarray[Any, Any]] = getattr(_local, "buffers", None) or {}
    _local.buffers = buffers
    buf = buffers.get(slot)
    if buf is None or buf.size < nbytes:
        buf = buffers[slot] = np.empty(max(nbytes, 1), dtype=np.uint8)
    return buf[:nbytes]


# -- byte planes ---------------------------------------------------------------------------


def _as_bytes(raw: Any) -> np.ndarray[Any, np.dtype[np.uint8]]:
    return np.frombuffer(raw, dtype=np.uint8) if not isinstance(raw, np.ndarray) else raw


def to_planes(raw: np.ndarray[Any, Any], width: int) -> np.ndarray[Any, Any]:
    """(n*width,) bytes -> (width, n) byte planes, in a per-thread scratch buffer."""
    if width == 1:
        return raw
    planes = scratch("planes", raw.size).reshape(width, raw.size // width)
    if kernels.split(raw, width, planes.reshape(-1)):
        return planes
    if width == 2:
        # As 16-bit integers: the low byte by truncation, the high one by a shift;
        # contiguous passes, about twice as fast as a strided transposing copy.
        wide = raw.view("<u2")
        high = scratch("high", raw.size).view("<u2")
        np.copyto(planes[0], wide, casting="unsafe")
        np.right_shift(wide, np.uint16(8), out=high)
        np.copyto(planes[1], high, casting="unsafe")
        return planes
    if width == 4:
        # As 32-bit integers, each plane a shift and a truncating copy: contiguous passes,
        # about 45% faster than the transposing copy (measured in docs/architecture.md).
        wide = raw.view("<u4")
        shifted = scratch("high", raw.size).view("<u4")
        np.copyto(planes[0], wide, casting="unsafe")
        for i in (1, 2, 3):
            np.right_shift(wide, np.uint32(8 * i), out=shifted)
            np.copyto(planes[i], shifted, casting="unsafe")
        return planes
    np.copyto(planes, raw.reshape(-1, width).T)
    return planes


def from_planes(planes: np.ndarray[Any, Any], width: int, out: np.ndarray[Any, Any]) -> None:
    """Write (width, n) byte planes back into interleaved bytes ``out``: the compiled loop
    (``kernels.py``) where it is built, else the numpy passes below."""
    if kernels.join(planes, width, out):
        return
    if width == 1:
        out[:] = planes
        return
    rows = planes.reshape(width, -1)
    if width == 2:
        # As 16-bit integers (high plane, shifted, or the low one): contiguous passes, about
        # twice as fast as two byte columns with a stride of 2.
        wide = out.view("<u2")
        np.copyto(wide, rows[1])
        np.left_shift(wide, np.uint16(8), out=wide)
        np.bitwise_or(wide, rows[0], out=wide)
        return
    if width == 4:
        # Two 16-bit halves joined as above, then the halves joined as 32-bit integers:
        # contiguous passes, about 40% faster than four byte columns with a stride of 4.
        n = rows.shape[1]
        halves = scratch("halves", 4 * n).view("<u2")
        low, high = halves[:n], halves[n:]
        for half, (a, b) in ((low, (0, 1)), (high, (2, 3))):
            np.copyto(half, rows[b])
            np.left_shift(half, np.uint16(8), out=half)
            np.bitwise_or(half, rows[a], out=half)
        wide32 = out.view("<u4")
        np.copyto(wide32, high)
        np.left_shift(wide32, np.uint32(16), out=wide32)
        np.bitwise_or(wide32, low, out=wide32)
        return
    grid = out.reshape(-1, width)
    # Column by column measured several times faster than one transposed copy.
    for i in range(width):
        grid[:, i] = rows[i]


# -- order-preserving integers and zigzag, in place -------------------------------------------


def _ordered_into(u: np.ndarray[Any, Any], out: np.ndarray[Any, Any], dtype: DType) -> None:
    """out = u mapped so that integer order is value order (floats: fold the sign)."""
    if dtype.ordering != "float":
        np.copyto(out, u)
        return
    bits = dtype.itemsize * 8
    signed = f"<i{dtype.itemsize}"
    # all ones for negatives, else zero; then with the sign bit set
    np.right_shift(u.view(signed), bits - 1, out=out.view(signed))
    np.bitwise_or(out, u.dtype.type(1 << (bits - 1)), out=out)
    np.bitwise_xor(out, u, out=out)


def _unordered_inplace(o: np.ndarray[Any, Any], tmp: np.ndarray[Any, Any], dtype: DType) -> None:
    if dtype.ordering != "float":
        return
    bits = dtype.itemsize * 8
    signed = f"<i{dtype.itemsize}"
    np.right_shift(o.view(signed), bits - 1, out=tmp.view(signed))
    np.invert(tmp, out=tmp)  # ones where the value was negative
    np.bitwise_or(tmp, o.dtype.type(1 << (bits - 1)), out=tmp)
    np.bitwise_xor(o, tmp, out=o)


def _zigzag_inplace(d: np.ndarray[Any, Any], tmp: np.ndarray[Any, Any], itemsize: int) -> None:
    signed = f"<i{itemsize}"
    np.right_shift(d.view(signed), itemsize * 8 - 1, out=tmp.view(signed))
    np.left_shift(d, d.dtype.type(1), out=d)
    np.bitwise_xor(d, tmp, out=d)


def _unzigzag_inplace(z: np.ndarray[Any, Any], tmp: np.ndarray[Any, Any]) -> None:
    one = z.dtype.type(1)
    np.bitwise_and(z, one, out=tmp)
    np.subtract(z.dtype.type(0), tmp, out=tmp)  # 0 or all ones (wraps)
    np.right_shift(z, one, out=z)
    np.bitwise_xor(z, tmp, out=z)


# -- encode / decode ---------------------------------------------------------------------------


def encode_standalone(raw: Any, dtype: DType, chain: int = 0) -> bytes:
    """Encode a chunk on its own: byte planes + zstd, or the raw bytes when that is smaller."""
    return b"".join(encode_standalone_parts(raw, dtype, chain))


def encode_standalone_parts(raw: Any, dtype: DType, chain: int = 0) -> list[Any]:
    """:func:`encode_standalone` as (header, payload) pieces, to write without joining."""
    data = _as_bytes(raw)
    packed = _cctx().compress(to_planes(data, dtype.itemsize))
    if len(packed) >= data.size:
        return [_pack_header(CODEC_RAW, dtype, data.size, chain, None), data]
    return [_pack_header(CODEC_PLANES, dtype, data.size, chain, None), packed]


def delta_planes(raw: Any, base_raw: Any, dtype: DType) -> np.ndarray[Any, Any]:
    """The zigzag integer difference of ``raw`` against ``base_raw`` as byte planes
    (scratch): one compiled pass (``kernels.py``), else four numpy passes over the chunk,
    then the plane split."""
    a = _as_bytes(raw)
    n = a.size
    if dtype.itemsize > 1:
        planes = scratch("planes", n)
        if kernels.split_delta(a, _as_bytes(base_raw), dtype.itemsize, planes):
            return planes.reshape(dtype.itemsize, n // dtype.itemsize)
    d = scratch("delta", n).view(dtype.uint)
    tmp = scratch("tmp", n).view(dtype.uint)
    np.subtract(a.view(dtype.uint), _as_bytes(base_raw).view(dtype.uint), out=d)  # wraps
    _zigzag_inplace(d, tmp, dtype.itemsize)
    return to_planes(d.view(np.uint8), dtype.itemsize)


def encode_delta(raw: Any, base_raw: Any, dtype: DType, base_id: str) -> bytes:
    """Encode a chunk as its difference to ``base_raw`` (the raw bytes of chunk ``base_id``,
    the same length)."""
    return b"".join(encode_delta_parts(raw, base_raw, dtype, base_id))


def encode_delta_parts(
    raw: Any, base_raw: Any, dtype: DType, base_id: str, chain: int = 0
) -> list[Any]:
    """:func:`encode_delta` as (header, payload) pieces. ``chain`` on a delta is its place
    among the versions on the same base (1 for the first), which the writer bounds."""
    if len(_as_bytes(raw)) != len(_as_bytes(base_raw)):
        raise ValueError("a delta needs a base of the same length")
    packed = _cctx().compress(delta_planes(raw, base_raw, dtype))
    return [_pack_header(CODEC_DELTA, dtype, len(_as_bytes(raw)), chain, base_id), packed]


def _decompress_into(payload: memoryview, planes: np.ndarray[Any, Any]) -> None:
    try:
        reader = _dctx().stream_reader(payload, read_across_frames=False)
        view = planes.data
        pos = 0
        while pos < planes.size:
            got = reader.readinto(view[pos:])
            if not got:
                break
            pos += got
        extra = reader.read(1)
    except Exception as exc:  # zstandard.ZstdError: the payload is damaged
        raise StoreCorrupted(f"a chunk's compressed data is damaged: {exc}") from None
    if pos != planes.size or extra:
        raise StoreCorrupted("a chunk's compressed data decodes to the wrong length")


def decode_into(
    blob: bytes | memoryview,
    out: np.ndarray[Any, Any],
    base_raw: np.ndarray[Any, Any] | None = None,
    header: Header | None = None,
) -> Header:
    """Decode an encoded chunk into ``out`` (a writable uint8 array of its raw length).

    A delta needs ``base_raw``, the raw bytes of its base chunk (not ``out`` itself).
    The caller verifies ``out`` against the chunk id.
    """
    head = header or parse_header(blob)
    if head.raw_len != out.size:
        raise StoreCorrupted(f"a chunk decodes to {head.raw_len} bytes where {out.size} belong")
    payload = memoryview(blob)[head.size :]
    if head.codec == CODEC_RAW:
        if len(payload) != out.size:
            raise StoreCorrupted("a raw chunk file has the wrong length")
        out[:] = np.frombuffer(payload, dtype=np.uint8)
        return head
    dtype = dtype_by_name(head.dtype)
    if out.size % dtype.itemsize:
        raise StoreCorrupted("a chunk's length is not a whole number of elements")
    if head.codec == CODEC_PLANES:
        _planes_into(payload, head, dtype, out)
        return head
    if base_raw is None or base_raw.size != out.size:
        raise StoreCorrupted("a delta chunk's base is missing or has the wrong length")
    if head.codec == CODEC_DELTA:
        planes = scratch("planes", head.raw_len)
        _decompress_into(payload, planes)
        if kernels.join_delta(planes, dtype.itemsize, base_raw, out):
            return head  # planes joined, zigzag undone and the base added, in one pass
        from_planes(planes, dtype.itemsize, out)
    else:
        _planes_into(payload, head, dtype, out)
    tmp = scratch("tmp", out.size).view(dtype.uint)
    _apply_delta(out.view(dtype.uint), base_raw.view(dtype.uint), tmp, head.codec, dtype)
    return head


def _planes_into(
    payload: memoryview, head: Header, dtype: DType, out: np.ndarray[Any, Any]
) -> None:
    planes = scratch("planes", head.raw_len)
    _decompress_into(payload, planes)
    from_planes(planes, dtype.itemsize, out)


def _apply_delta(
    z: np.ndarray[Any, Any],
    base: np.ndarray[Any, Any],
    tmp: np.ndarray[Any, Any],
    codec: int,
    dtype: DType,
) -> None:
    """z (a decoded zigzag difference, as unsigned integers) becomes ``base`` plus it, in
    place. ``base`` may not be ``z``; ``tmp`` is scratch of the same size."""
    _unzigzag_inplace(z, tmp)
    if codec == CODEC_DELTA:
        np.add(z, base, out=z)  # wraps
        return
    _ordered_into(base, tmp, dtype)
    np.add(z, tmp, out=z)
    _unordered_inplace(z, tmp, dtype)


def decode_chain(chain: list[tuple[bytes, Header]], out: np.ndarray[Any, Any]) -> None:
    """Decode a delta chain into ``out``: ``chain`` lists the encoded chunks from the whole
    one to the delta asked for (each a delta against the one before it).

    Each step costs one decompression and one addition into ``out``. (Chains longer than
    one delta are only found in stores written before 0.3, whose writer chained versions.)
    """
    whole_blob, whole = chain[0]
    if whole.is_delta:
        raise StoreCorrupted("a delta chain does not start with a whole chunk")
    dtype = dtype_by_name(whole.dtype)
    decode_into(whole_blob, out, None, whole)
    acc = out.view(dtype.uint)
    for blob, head in chain[1:]:
        if not head.is_delta or head.dtype != whole.dtype or head.raw_len != out.size:
            raise StoreCorrupted("a delta chain mixes dtypes, lengths or codecs")
        if head.codec == CODEC_DELTA:
            planes = scratch("planes", head.raw_len)
            _decompress_into(memoryview(blob)[head.size :], planes)
            if kernels.join_delta(planes, dtype.itemsize, out, out):
                continue  # added to ``out`` in place, in one pass
        # numpy's passes need two more buffers (taken only here: fresh memory is slow)
        tmp = scratch("tmp", out.size).view(dtype.uint)
        step = scratch("step", out.size)
        z = step.view(dtype.uint)
        if head.codec == CODEC_DELTA:
            from_planes(planes, dtype.itemsize, step)
        else:
            _planes_into(memoryview(blob)[head.size :], head, dtype, step)
        _unzigzag_inplace(z, tmp)
        if head.codec == CODEC_DELTA:
            np.add(acc, z, out=acc)
        else:
            _ordered_into(acc, tmp, dtype)
            np.add(tmp, z, out=acc)
            _unordered_inplace(acc, tmp, dtype)
