"""Hostile files get clear errors, never tracebacks: crafted safetensors headers (and a fuzz
test of the parser), configs that are folders or binary, `coralx add` of each."""

from __future__ import annotations

import itertools
import json
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coralx import Repository
from coralx.cli.main import cli
from coralx.errors import InvalidConfig, InvalidWeightsFile
from coralx.store.safetensors_io import parse_header, read_safetensors


def _file(path: Path, header: Any, data: bytes = b"", raw: bytes | None = None) -> Path:
    text = raw if raw is not None else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)
    return path


def _entry(dtype: str, shape: list[Any], offsets: list[Any]) -> dict[str, Any]:
    return {"dtype": dtype, "shape": shape, "data_offsets": offsets}


CRAFTED = {
    "deep": (None, b"{" + b'"a":[' * 10_000 + b"]" * 10_000 + b"}", "nests"),
    "metadata_list": ({"__metadata__": ["x"]}, None, "__metadata__"),
    "metadata_values": ({"__metadata__": {"a": 1}}, None, "__metadata__"),
    "float_dim": ({"t": _entry("F32", [0, 1e300], [0, 0])}, None, "integers"),
    "huge_shape": ({"t": _entry("F32", [2**40, 0, 2**40], [0, 0])}, None, "too large"),
    "negative_dim": ({"t": _entry("F32", [-1, 4], [0, 16])}, None, "between 0"),
    "bool_dim": ({"t": _entry("F32", [True], [0, 4])}, None, "integers"),
    "span_mismatch": ({"t": _entry("F32", [4], [0, 12])}, None, "takes 16 bytes"),
    "past_end": ({"t": _entry("F32", [8], [0, 32])}, None, "past the data section"),
    "reversed": ({"t": _entry("F32", [0], [8, 4])}, None, "begin <= end"),
    "overlap": (
        {"a": _entry("F32", [2], [0, 8]), "b": _entry("F32", [2], [4, 12])},
        None,
        "overlap",
    ),
    "unknown_dtype": ({"t": _entry("F33", [1], [0, 4])}, None, "dtype"),
    "dtype_not_str": ({"t": _entry(7, [1], [0, 4])}, None, "dtype must be a string"),  # type: ignore[arg-type]
    "extra_key": ({"t": {**_entry("F32", [1], [0, 4]), "x": 1}}, None, "nothing else"),
    "not_object": ([1, 2], None, "not a JSON object"),
    "not_utf8": (None, b'{"\xff": 1}', "UTF-8"),
    "not_json": (None, b"{nope", "not JSON"),
    "duplicate": (None, b'{"t": 1, "t": 2}', "twice"),
    "entry_not_object": ({"t": [1]}, None, "an entry must be an object"),
}


@pytest.mark.parametrize("case", sorted(CRAFTED))
def test_crafted_headers_are_invalid_weights_files(tmp_path: Path, case: str) -> None:
    header, raw, rule = CRAFTED[case]
    path = _file(tmp_path / f"{case}.safetensors", header, b"\0" * 16, raw)
    with pytest.raises(InvalidWeightsFile, match=rule) as info:
        read_safetensors(path)
    assert str(path) in str(info.value)


def test_bad_header_lengths(tmp_path: Path) -> None:
    short = tmp_path / "short.safetensors"
    short.write_bytes(b"\1\2")
    with pytest.raises(InvalidWeightsFile, match="shorter"):
        read_safetensors(short)
    claims = tmp_path / "claims.safetensors"
    claims.write_bytes(struct.pack("<Q", 1000) + b"{}")
    with pytest.raises(InvalidWeightsFile, match="claims 1000"):
        read_safetensors(claims)
    huge = tmp_path / "huge.safetensors"
    huge.write_bytes(struct.pack("<Q", 2**62) + b"{}")
    with pytest.raises(InvalidWeightsFile, match="limit"):
        read_safetensors(huge)


def test_a_valid_file_still_reads(tmp_path: Path) -> None:
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    header = {
        "__metadata__": {"format": "pt"},
        "a": _entry("F32", [2, 3], [0, 24]),
        "empty": _entry("F32", [0, 5], [24, 24]),
        "b": _entry("I64", [1], [24, 32]),
    }
    path = _file(tmp_path / "ok.safetensors", header, a.tobytes() + struct.pack("<q", 7))
    tensors, metadata = read_safetensors(path)
    assert metadata == {"format": "pt"}
    assert np.array_equal(tensors["a"], a) and tensors["empty"].shape == (0, 5)
    assert tensors["b"].tolist() == [7]


def test_coralx_add_of_a_crafted_file_is_one_clear_line(tmp_path: Path) -> None:
    repo = Repository.init(tmp_path / "p")
    path = _file(tmp_path / "evil.safetensors", None, b"", b"[" * 10_000 + b"]" * 10_000)
    result = CliRunner().invoke(cli, ["-C", str(repo.root), "add", str(path)])
    assert result.exit_code == 2
    assert result.output.startswith("error: ") and "evil.safetensors" in result.output
    assert "Traceback" not in result.output


# -- the fuzz test: whatever the header, the parser answers or refuses; nothing else ----------

_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)
_dims = st.lists(st.integers(-2, 2**64) | st.sampled_from([0, 1, 2, 3, 2**40]), max_size=4)
_entries = st.dictionaries(
    st.text(min_size=1, max_size=6),
    st.fixed_dictionaries(
        {
            "dtype": st.sampled_from(["F32", "F16", "BF16", "I8", "U8", "BOOL", "F64", "X"]),
            "shape": _dims,
            "data_offsets": st.lists(st.integers(-4, 80), min_size=2, max_size=2),
        }
    )
    | _json,
    max_size=5,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(header=_entries | _json, data_len=st.integers(0, 64))
def test_fuzz_parse_header_answers_or_refuses(header: Any, data_len: int) -> None:
    raw = json.dumps(header).encode()
    try:
        entries, metadata = parse_header(raw, data_len, "fuzz.safetensors")
    except InvalidWeightsFile as exc:
        assert "fuzz.safetensors" in str(exc)
        return
    spans = sorted((e.begin, e.end) for e in entries if e.end > e.begin)
    for e in entries:
        assert 0 <= e.begin <= e.end <= data_len
        assert int(np.prod(e.shape, dtype=object)) * e.dtype.itemsize == e.end - e.begin
        np.zeros(e.shape, dtype=e.dtype.numpy)  # numpy accepts every shape that passed
    assert all(b1 >= e0 for (_b0, e0), (b1, _e1) in itertools.pairwise(spans))
    assert all(isinstance(v, str) for v in metadata.values())


@settings(max_examples=200, deadline=None)
@given(raw=st.binary(max_size=200), data_len=st.integers(0, 64))
def test_fuzz_parse_header_on_random_bytes(raw: bytes, data_len: int) -> None:
    try:
        parse_header(raw, data_len, "bytes.safetensors")
    except InvalidWeightsFile:
        pass


# -- configs ----------------------------------------------------------------------------------


def test_load_config_of_a_folder_or_binary_is_invalid_config(tmp_path: Path) -> None:
    from coralx.sweeps.config import load_config

    (tmp_path / "folder.yaml").mkdir()
    with pytest.raises(InvalidConfig, match="is a folder"):
        load_config(tmp_path / "folder.yaml")
    with pytest.raises(InvalidConfig, match="is a folder"):
        load_config(tmp_path)
    (tmp_path / "bin.yaml").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(InvalidConfig, match="not UTF-8"):
        load_config(tmp_path / "bin.yaml")
    (tmp_path / "deep.yaml").write_text("a: " + "[" * 3000 + "]" * 3000)
    with pytest.raises(InvalidConfig, match="nests too deeply"):
        load_config(tmp_path / "deep.yaml")
