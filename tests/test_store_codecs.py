"""Codecs and tensors: every dtype round-trips bit for bit, whatever the bits are."""

from __future__ import annotations

import os
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coralx.errors import InvalidValue, StoreCorrupted
from coralx.store import codecs
from coralx.store.base import chunk_id_of
from coralx.store.memory import MemoryChunkStore
from coralx.store.tensors import DTYPES, chunk_spans, dtype_by_name, dtype_of, to_numpy

ALL = [d.name for d in DTYPES]


def _special(name: str) -> np.ndarray:
    """Values that trip lossy or careless codecs: signed zeros, NaN payloads, infinities,
    subnormals and the extremes of the type, as raw bit patterns."""
    dtype = dtype_by_name(name)
    bits = dtype.itemsize * 8
    patterns = [0, 1, (1 << bits) - 1, 1 << (bits - 1), (1 << (bits - 1)) - 1, 2, 3]
    if dtype.ordering == "float" and name in ("F16", "F32", "F64", "BF16"):
        info = {
            "F16": (5, 10),
            "F32": (8, 23),
            "F64": (11, 52),
            "BF16": (8, 7),
        }[name]
        exp, man = info
        inf = ((1 << exp) - 1) << man
        patterns += [
            inf,  # +inf
            inf | (1 << (bits - 1)),  # -inf
            inf | 1,  # signalling NaN with payload 1
            inf | (1 << (man - 1)) | 5,  # quiet NaN with a payload
            (1 << (bits - 1)) | inf | 3,  # negative NaN with a payload
            1,  # smallest subnormal
            (1 << man) - 1,  # largest subnormal
            (1 << (bits - 1)) | 1,  # negative subnormal
            inf - 1,  # largest finite
        ]
    return np.array(patterns, dtype=dtype.uint).view(dtype.numpy)


@pytest.mark.parametrize("name", ALL)
def test_special_values_round_trip_standalone_and_delta(name: str) -> None:
    dtype = dtype_by_name(name)
    values = _special(name)
    raw = values.view(np.uint8)
    for blob in (
        codecs.encode_standalone(raw, dtype),
        codecs.encode_delta(raw, raw[::-1].copy(), dtype, "ab" * 32),
    ):
        out = np.empty(raw.size, np.uint8)
        head = codecs.parse_header(blob)
        base = raw[::-1].copy() if head.codec == codecs.CODEC_DELTA else None
        codecs.decode_into(blob, out, base)
        assert out.tobytes() == raw.tobytes()
        assert head.dtype == name


@st.composite
def raw_pairs(draw: st.DrawFn) -> tuple[str, bytes, bytes]:
    name = draw(st.sampled_from(ALL))
    width = dtype_by_name(name).itemsize
    n = draw(st.integers(0, 300))
    a = draw(st.binary(min_size=n * width, max_size=n * width))
    b = draw(st.binary(min_size=n * width, max_size=n * width))
    return name, a, b


@settings(max_examples=300, deadline=None)
@given(raw_pairs())
def test_any_bits_round_trip(pair: tuple[str, bytes, bytes]) -> None:
    name, a, b = pair
    dtype = dtype_by_name(name)
    raw = np.frombuffer(a, np.uint8)
    base = np.frombuffer(b, np.uint8)
    out = np.empty(raw.size, np.uint8)
    codecs.decode_into(codecs.encode_standalone(raw, dtype), out)
    assert out.tobytes() == a
    out[:] = 0
    codecs.decode_into(codecs.encode_delta(raw, base, dtype, "cd" * 32), out, base)
    assert out.tobytes() == a


def test_delta_is_smaller_for_a_small_noise_step() -> None:
    rng = np.random.default_rng(0)
    old = rng.normal(0, 0.02, 100_000).astype(np.float32)
    new = (old + rng.normal(0, 2e-6, old.size).astype(np.float32)).astype(np.float32)
    dtype = dtype_by_name("F32")
    alone = codecs.encode_standalone(old.view(np.uint8), dtype)
    delta = codecs.encode_delta(old.view(np.uint8), new.view(np.uint8), dtype, "00" * 32)
    assert len(delta) < 0.6 * len(alone)


def test_incompressible_chunk_is_stored_raw() -> None:
    data = np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8)
    blob = codecs.encode_standalone(data, dtype_by_name("U8"))
    assert codecs.parse_header(blob).codec == codecs.CODEC_RAW
    assert len(blob) < data.size + codecs.HEADER_MAX


def test_damaged_header_and_payload_are_reported() -> None:
    dtype = dtype_by_name("F32")
    raw = np.arange(1000, dtype=np.float32).view(np.uint8)
    blob = bytearray(codecs.encode_standalone(raw, dtype))
    out = np.empty(raw.size, np.uint8)
    with pytest.raises(StoreCorrupted):
        codecs.decode_into(b"XXXX" + bytes(blob[4:]), out)
    with pytest.raises(StoreCorrupted):
        codecs.decode_into(bytes(blob[:20]), out)
    with pytest.raises(StoreCorrupted):
        codecs.decode_into(bytes(blob), np.empty(raw.size - 4, np.uint8))


@pytest.mark.parametrize("nbytes", [0, 4, 12, 16, 20, 36])
def test_chunk_spans_are_element_aligned_and_cover_everything(nbytes: int) -> None:
    spans = list(chunk_spans(nbytes, 4, chunk_bytes=10))
    assert all((s.stop - s.start) % 4 == 0 for s in spans)
    assert sum(s.stop - s.start for s in spans) == nbytes
    assert all(s.stop - s.start <= 10 for s in spans)


def test_dtype_table_knows_numpy_types_and_rejects_others() -> None:
    import ml_dtypes

    assert dtype_of(np.zeros(1, ml_dtypes.bfloat16)).name == "BF16"
    assert dtype_of(np.zeros(1, ml_dtypes.float8_e4m3fn)).name == "F8_E4M3"
    assert dtype_of(np.zeros(1, ">f4")).name == "F32"
    for bad in (np.array([object()]), np.array(["text"]), np.zeros(2, np.complex64)):
        with pytest.raises(InvalidValue):
            dtype_of(bad)
    with pytest.raises(InvalidValue):
        to_numpy([1.0, 2.0], "w")
    with pytest.raises(InvalidValue):
        dtype_by_name("F4")


def test_big_endian_input_is_stored_little_endian() -> None:
    array = to_numpy(np.arange(5, dtype=">f4"), "w")
    assert array.dtype == np.dtype("<f4")
    assert array.tolist() == [0, 1, 2, 3, 4]


def test_store_get_follows_delta_and_verifies() -> None:
    store = MemoryChunkStore()
    dtype = dtype_by_name("F32")
    new = np.linspace(0, 1, 1000, dtype=np.float32).view(np.uint8)
    old = (np.linspace(0, 1, 1000, dtype=np.float32) + np.float32(1e-6)).view(np.uint8)
    new_id, _ = store.put(new, dtype)
    old_id, _ = store.put(old, dtype)
    saved = store.put_delta(old_id, old, new_id, new, dtype)
    assert saved > 0
    assert store.read_header(old_id).base == new_id
    assert store.base_chain(old_id) == [new_id]
    assert store.get(old_id).tobytes() == old.tobytes()
    assert chunk_id_of(store.get(new_id)) == new_id


# -- chunks written before 0.3: a delta in the order-preserving integer map -------------------


def _ordered(u: np.ndarray) -> np.ndarray:
    """The first round's map of float bit patterns to integers that sort like the values,
    written out independently of the codec: negatives flipped whole, positives' sign set."""
    sign = np.uint32(1 << 31)
    return np.where(u & sign, ~u, u | sign).astype(np.uint32)


def _old_delta_blob(new: np.ndarray, base: np.ndarray, base_id: str, chain: int) -> bytes:
    d = (_ordered(new.view(np.uint32)) - _ordered(base.view(np.uint32))).view(np.int32)
    zz = ((d.astype(np.int64) << 1) ^ (d.astype(np.int64) >> 31)).astype(np.uint32)
    planes = zz.view(np.uint8).reshape(-1, 4).T.copy()
    import zstandard

    head = struct.pack("<4sBBBQ", b"CXK1", codecs.CODEC_DELTA_ORDERED, chain, 3, new.nbytes)
    return head + b"F32" + bytes.fromhex(base_id) + zstandard.compress(planes.tobytes())


def test_deltas_written_before_0_3_still_decode_alone_and_in_chains() -> None:
    rng = np.random.default_rng(3)
    v0 = rng.normal(0, 0.05, 5000).astype(np.float32)
    v1 = (v0 * 0.999 + rng.normal(0, 1e-4, v0.size)).astype(np.float32)
    v2 = (v1 * 0.999 + rng.normal(0, 1e-4, v0.size)).astype(np.float32)
    dtype = dtype_by_name("F32")
    whole = codecs.encode_standalone(v0.view(np.uint8), dtype)
    old1 = _old_delta_blob(v1, v0, "11" * 32, 1)
    old2 = _old_delta_blob(v2, v1, "22" * 32, 2)
    assert codecs.parse_header(old1).is_delta and codecs.parse_header(old1).base == "11" * 32
    out = np.empty(v0.nbytes, np.uint8)
    codecs.decode_into(old1, out, v0.view(np.uint8))
    assert out.tobytes() == v1.tobytes()
    chain = [(b, codecs.parse_header(b)) for b in (whole, old1, old2)]
    codecs.decode_chain(chain, out)
    assert out.tobytes() == v2.tobytes()
    # a chain that goes on from an old delta with a new one decodes too
    v3 = (v2 + 1e-4).astype(np.float32)
    new3 = codecs.encode_delta(v3.view(np.uint8), v2.view(np.uint8), dtype, "33" * 32)
    codecs.decode_chain([*chain, (new3, codecs.parse_header(new3))], out)
    assert out.tobytes() == v3.tobytes()
    assert codecs.parse_header(new3).codec == codecs.CODEC_DELTA != codecs.CODEC_DELTA_ORDERED


# -- the compiled decode loops (store/_kernels.c) against numpy ------------------------------


def _reference_join(planes: np.ndarray, width: int) -> np.ndarray:
    """Elements from byte planes, the slow obvious way (a transposed copy)."""
    return np.ascontiguousarray(planes.reshape(width, -1).T).reshape(-1)


def test_the_compiled_loops_are_built_where_a_compiler_is() -> None:
    """The install (hatch_build.py) compiles them; without a compiler coralx falls back."""
    import shutil

    from coralx.store import kernels

    if not (shutil.which("cc") or shutil.which("gcc")):
        pytest.skip("no C compiler here: coralx uses its numpy loops")
    if os.environ.get("CORALX_NO_KERNELS"):
        pytest.skip("CORALX_NO_KERNELS is set: the numpy loops are asked for")
    assert kernels.available(), f"{kernels.LIBRARY} was not built at install"


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from([2, 4, 8]),
    st.integers(0, 3000),
    st.randoms(use_true_random=False),
)
def test_compiled_loops_give_numpys_bytes(width: int, n: int, rnd: object) -> None:
    from coralx.store import kernels

    if not kernels.available():
        pytest.skip("the compiled loops are not built here")
    seed = rnd.getrandbits(32)  # type: ignore[attr-defined]
    rng = np.random.default_rng(seed)
    planes = rng.integers(0, 256, n * width, dtype=np.uint8)
    base = rng.integers(0, 256, n * width, dtype=np.uint8)
    joined = _reference_join(planes, width)
    out = np.full(n * width, 7, np.uint8)
    assert kernels.join(planes, width, out)
    assert out.tobytes() == joined.tobytes()
    # the delta: zigzag undone and the base added, wrapping (numpy's own loops)
    uint = np.dtype(f"<u{width}")
    z = joined.view(uint)
    expect = base.view(uint) + ((z >> uint.type(1)) ^ (uint.type(0) - (z & uint.type(1))))
    assert kernels.join_delta(planes, width, base, out)
    assert out.tobytes() == expect.tobytes()
    in_place = base.copy()  # the base may be the output
    assert kernels.join_delta(planes, width, in_place, in_place)
    assert in_place.tobytes() == expect.tobytes()
    # and back: the planes of the elements, and of their zigzag difference to the base
    again = np.full(n * width, 9, np.uint8)
    assert kernels.split(joined, width, again)
    assert again.tobytes() == planes.tobytes()
    again[:] = 9
    assert kernels.split_delta(expect.view(np.uint8), base, width, again)
    assert again.tobytes() == planes.tobytes()


def test_compiled_loops_refuse_what_they_cannot_take() -> None:
    from coralx.store import kernels

    if not kernels.available():
        pytest.skip("the compiled loops are not built here")
    planes = np.zeros(16, np.uint8)
    assert not kernels.join(planes, 3, np.empty(16, np.uint8))  # a width they have no loop for
    assert not kernels.join(planes, 4, np.empty(32, np.uint8)[::2])  # not contiguous
    frozen = np.empty(16, np.uint8)
    frozen.flags.writeable = False
    assert not kernels.join(planes, 4, frozen)
    assert not kernels.split(planes, 4, frozen)
    with pytest.raises(ValueError):
        kernels.join_delta(planes, 4, np.zeros(16, np.uint8), np.empty(12, np.uint8))
    with pytest.raises(ValueError):
        kernels.split_delta(planes, np.zeros(12, np.uint8), 4, np.empty(16, np.uint8))


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "numpy"])
@pytest.mark.parametrize("name", ["F32", "BF16", "F64", "U8"])
def test_chunks_decode_alike_with_and_without_the_compiled_loops(
    name: str, compiled: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    from coralx.store import kernels

    if compiled and not kernels.available():
        pytest.skip("the compiled loops are not built here")
    if not compiled:
        monkeypatch.setattr(kernels, "_load", lambda: None)
    dtype = dtype_by_name(name)
    rng = np.random.default_rng(3)
    base = rng.integers(0, 256, 4096 * dtype.itemsize, dtype=np.uint8)
    new = base.copy()
    new[:: dtype.itemsize] ^= rng.integers(0, 4, new.size // dtype.itemsize, dtype=np.uint8)
    whole = codecs.encode_standalone(base, dtype)
    delta = codecs.encode_delta(new, base, dtype, "ab" * 32)
    if compiled:  # the other path encodes the same bytes
        monkeypatch.setattr(kernels, "_load", lambda: None)
        assert codecs.encode_standalone(base, dtype) == whole
        assert codecs.encode_delta(new, base, dtype, "ab" * 32) == delta
        monkeypatch.undo()
    out = np.empty(base.size, np.uint8)
    codecs.decode_into(whole, out)
    assert out.tobytes() == base.tobytes()
    codecs.decode_into(delta, out, base)
    assert out.tobytes() == new.tobytes()
    out[:] = 0
    codecs.decode_chain(
        [(whole, codecs.parse_header(whole)), (delta, codecs.parse_header(delta))], out
    )
    assert out.tobytes() == new.tobytes()
