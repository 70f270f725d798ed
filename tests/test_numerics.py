"""Numerics: casts are bit-exact with ml_dtypes; packing round-trips exactly."""

from __future__ import annotations

import json

import ml_dtypes
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import effai.numerics as nx
from effai.errors import InputError

FLOATS = ["fp16", "bf16", "fp8_e4m3", "fp8_e5m2", "fp4_e2m1"]
DT = {
    "fp16": np.float16,
    "bf16": ml_dtypes.bfloat16,
    "fp8_e4m3": ml_dtypes.float8_e4m3fn,
    "fp8_e5m2": ml_dtypes.float8_e5m2,
    "fp4_e2m1": ml_dtypes.float4_e2m1fn,
}
UINT = {np.dtype(np.float32): np.uint32, np.dtype(np.float64): np.uint64, np.dtype(np.float16): np.uint16}


def _bits(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a).view(UINT[a.dtype])


def _reference(x: np.ndarray, fmt: str) -> np.ndarray:
    with np.errstate(over="ignore", invalid="ignore"):
        return x.astype(DT[fmt]).astype(x.dtype)


def _grid(fmt: str) -> np.ndarray:
    """Every finite value of a <=16-bit format (all bit patterns), as float64."""
    dt = np.dtype(DT[fmt])
    if dt.itemsize == 2:
        pats = np.arange(2**16, dtype=np.uint16)
    else:
        pats = np.arange(256, dtype=np.uint8)
    with np.errstate(invalid="ignore"):
        vals = pats.view(dt).astype(np.float64)
    if fmt == "fp4_e2m1":  # stored one per byte; only the low 4 bits are meaningful
        vals = np.arange(16, dtype=np.uint8).view(dt).astype(np.float64)
    return np.unique(vals[np.isfinite(vals)])


def _interesting(fmt: str) -> np.ndarray:
    """Representable values, exact ties between neighbours, just-off ties, overflow, NaN, Inf."""
    g = _grid(fmt)
    mids = (g[:-1] + g[1:]) / 2
    fi = ml_dtypes.finfo(DT[fmt])
    top = float(fi.max)
    extra = [top * 1.01, top * 1.5, top * 2, -top * 1.07, np.inf, -np.inf, np.nan, 0.0, -0.0,
             float(fi.smallest_subnormal) / 2, float(fi.smallest_subnormal) * 0.51, 1e-45, -1e-45]
    return np.concatenate([g, mids, np.nextafter(mids, np.inf), np.nextafter(mids, -np.inf), extra])


@pytest.mark.parametrize("fmt", FLOATS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16])
def test_cast_bit_exact_on_grid_ties_overflow(fmt, dtype):
    x = _interesting(fmt)
    with np.errstate(over="ignore"):
        x = x.astype(dtype)
    out = nx.cast(x, fmt)
    assert out.dtype == x.dtype
    np.testing.assert_array_equal(_bits(out), _bits(_reference(x, fmt)))


finite_or_not = st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=True, width=32)


@settings(max_examples=60, deadline=None)
@given(x=arrays(np.float32, st.integers(1, 64), elements=finite_or_not), fmt=st.sampled_from(FLOATS))
def test_cast_bit_exact_float32_property(x, fmt):
    np.testing.assert_array_equal(_bits(nx.cast(x, fmt)), _bits(_reference(x, fmt)))


@settings(max_examples=60, deadline=None)
@given(
    x=arrays(np.float64, st.integers(1, 32), elements=st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=True)),
    fmt=st.sampled_from(FLOATS),
)
def test_cast_bit_exact_float64_property(x, fmt):
    with np.errstate(over="ignore"):
        np.testing.assert_array_equal(_bits(nx.cast(x, fmt)), _bits(_reference(x, fmt)))


@settings(max_examples=40, deadline=None)
@given(x=arrays(np.float32, st.integers(1, 32), elements=finite_or_not), fmt=st.sampled_from(FLOATS))
def test_cast_torch_tensor_matches_numpy(x, fmt):
    t = torch.from_numpy(x.copy())
    out = nx.cast(t, fmt)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
    np.testing.assert_array_equal(_bits(out.numpy()), _bits(_reference(x, fmt)))


def test_cast_keeps_torch_half_and_bf16_dtypes():
    t = torch.tensor([1.0, 3.14159, 1e5, float("nan")], dtype=torch.bfloat16)
    out = nx.cast(t, "fp8_e5m2")
    assert out.dtype == torch.bfloat16
    ref = t.float().numpy().astype(ml_dtypes.float8_e5m2).astype(np.float32)
    np.testing.assert_array_equal(out.float().numpy(), ref)


def test_overflow_semantics_and_saturation():
    x = np.array([1e6, -1e6, np.inf, -np.inf, np.nan], np.float32)
    assert np.isnan(nx.cast(x, "fp8_e4m3")[:4]).all()  # e4m3fn: no Inf, overflow is NaN
    assert nx.cast(x, "fp8_e5m2")[:4].tolist() == [np.inf, -np.inf, np.inf, -np.inf]
    sat = nx.cast(x, "fp8_e5m2", saturate=True)
    assert sat[:2].tolist() == [57344.0, -57344.0] and np.isinf(sat[2:4]).all() and np.isnan(sat[4])
    sat4 = nx.cast(x, "fp8_e4m3", saturate=True)
    assert sat4[:4].tolist() == [448.0, -448.0, 448.0, -448.0] and np.isnan(sat4[4])
    assert nx.cast(x, "fp16")[:4].tolist() == [np.inf, -np.inf, np.inf, -np.inf]


@settings(max_examples=30, deadline=None)
@given(x=arrays(np.float64, st.integers(1, 16), elements=st.floats(-400, 400)), fmt=st.sampled_from(FLOATS))
def test_stochastic_rounding_picks_a_neighbour(x, fmt):
    g = _grid(fmt)
    out = nx.cast(x, fmt, rounding="stochastic", saturate=True, seed=1)
    lo = g[np.clip(np.searchsorted(g, x, side="right") - 1, 0, g.size - 1)]
    hi = g[np.clip(np.searchsorted(g, x, side="left"), 0, g.size - 1)]
    ok = (out == lo) | (out == hi) | (np.abs(x) >= g.max())
    assert ok.all()


def test_stochastic_rounding_is_unbiased():
    x = np.full(20000, 1.0 + 1 / 512, np.float64)  # a quarter of the way from 1 to 1+2^-7 in bf16
    out = nx.cast(x, "bf16", rounding="stochastic", seed=0)
    assert set(np.unique(out)) == {1.0, 1.0078125}
    assert abs(out.mean() - x[0]) < 2e-4


def test_ste_gradient_flows():
    t = torch.tensor([0.3, -1.7, 2.2], requires_grad=True)
    nx.cast(t, "fp8_e4m3").sum().backward()
    assert t.grad.tolist() == [1.0, 1.0, 1.0]


# ---------------------------------------------------------------- integer formats
@settings(max_examples=40, deadline=None)
@given(
    x=arrays(np.float32, st.tuples(st.integers(1, 6), st.integers(1, 20)), elements=st.floats(-100, 100, width=32)),
    fmt=st.sampled_from(["int8", "int4", "int2"]),
    gran=st.sampled_from(["tensor", "channel", "group"]),
    symmetric=st.booleans(),
)
def test_int_cast_error_bounded_by_half_step(x, fmt, gran, symmetric):
    q = nx.quantize_tensor(x, fmt, granularity=gran, group_size=4, symmetric=symmetric)
    f = nx.get(fmt)
    assert q.codes.min() >= f.qmin and q.codes.max() <= f.qmax
    y = nx.cast(x, fmt, granularity=gran, group_size=4, symmetric=symmetric)
    assert y.dtype == x.dtype and y.shape == x.shape
    assert nx.max_abs_error(x, y) <= float(q.scale.max()) * 0.5 * (1 + 1e-5) + 1e-6


def test_channel_and_group_granularity_beat_tensor():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(8, 64)).astype(np.float32) * np.logspace(-2, 1, 8, dtype=np.float32)[:, None]
    e_t = nx.sqnr_db(w, nx.cast(w, "int4"))
    e_c = nx.sqnr_db(w, nx.cast(w, "int4", granularity="channel"))
    e_g = nx.sqnr_db(w, nx.cast(w, "int4", granularity="group", group_size=16))
    assert e_t < e_c <= e_g + 0.5


def test_ternary_twn_and_binary_xnor():
    w = np.array([[0.9, -0.05, -1.1, 0.2], [0.01, 0.02, -0.03, 0.5]], np.float32)
    q = nx.quantize_tensor(w, "ternary", granularity="channel")
    d0 = 0.7 * np.abs(w[0]).mean()
    assert q.codes[0].tolist() == [1, 0, -1, 0] and np.isclose(q.scale[0], np.abs(w[0])[np.abs(w[0]) > d0].mean())
    b = nx.quantize_tensor(w, "binary", granularity="channel")
    assert set(np.unique(b.codes)) <= {-1, 1}
    assert np.allclose(b.scale, np.abs(w).mean(axis=1))


def test_int_metrics():
    assert nx.mse([0, 0], [1, 1]) == 1.0
    assert nx.sqnr_db([1.0, 2.0], [1.0, 2.0]) == float("inf")
    assert nx.max_abs_error(np.zeros(3), np.array([0, -2, 1.0])) == 2.0


# ---------------------------------------------------------------- packing
RANGES = {"int8": (-128, 127), "int4": (-8, 7), "int2": (-2, 1), "ternary": (-1, 1)}


@settings(max_examples=80, deadline=None)
@given(data=st.data(), fmt=st.sampled_from(["int8", "int4", "int2", "ternary", "binary"]))
def test_pack_round_trip_exact(data, fmt):
    if fmt == "binary":
        q = data.draw(st.lists(st.sampled_from([-1, 1]), max_size=200))
    else:
        lo, hi = RANGES[fmt]
        q = data.draw(st.lists(st.integers(lo, hi), max_size=200))
    buf = nx.pack(np.array(q, dtype=np.int8), fmt)
    assert len(buf) == nx.packed_nbytes(len(q), fmt)
    assert nx.unpack(buf, fmt, len(q)).tolist() == q


def test_pack_sizes():
    n = 10_000
    q = np.zeros(n, np.int8)
    assert len(nx.pack(q, 4)) == n // 2 and len(nx.pack(q, 2)) == n // 4 and len(nx.pack(np.ones(n), 1)) == n // 8


def test_pack_rejects_out_of_range():
    with pytest.raises(InputError, match=r"\[-8, 7\]"):
        nx.pack([8], 4)
    with pytest.raises(InputError, match="binary"):
        nx.pack([0], "binary")
    with pytest.raises(InputError, match="at most"):
        nx.unpack(b"\x00", 4, 3)


# ---------------------------------------------------------------- table and bad input
def test_table_has_every_format():
    rows = {r["name"]: r for r in nx.table()}
    assert set(rows) == {"fp32", "fp16", "bf16", "fp8_e4m3", "fp8_e5m2", "fp4_e2m1", "int8", "int4", "int2", "ternary", "binary"}
    assert rows["bf16"]["eps"] == 2**-7 and rows["fp8_e5m2"]["max"] == 57344.0
    assert rows["fp4_e2m1"]["smallest_subnormal"] == 0.5 and rows["int4"]["min"] == -8
    for r in rows.values():
        assert r["bits"] > 0 and r["hardware"]


def test_bad_inputs():
    with pytest.raises(InputError, match="unknown format 'bf61'"):
        nx.cast([1.0], "bf61")
    with pytest.raises(InputError, match="group_size"):
        nx.cast([1.0], "int4", granularity="group")
    with pytest.raises(InputError, match="NaN or Inf"):
        nx.cast([np.nan], "int8")
    with pytest.raises(InputError, match="rounding"):
        nx.cast([1.0], "bf16", rounding="up")


def test_cli_table_and_cast():
    from typer.testing import CliRunner

    from effai.cli import app

    r = CliRunner().invoke(app, ["numerics", "table", "--json"])
    assert r.exit_code == 0, r.output
    assert {row["name"] for row in json.loads(r.output)} >= {"fp8_e4m3", "binary"}
    r = CliRunner().invoke(app, ["numerics", "cast", "--format", "bf16", "1.00390625", "3.14159", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["format"] == "bf16" and out["output"] == [1.0, 3.140625]
    r = CliRunner().invoke(app, ["numerics", "cast", "--format", "fp8_e4m3", "1000"])
    assert r.exit_code == 0 and "nan" in r.output.lower()
