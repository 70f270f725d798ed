"""Efficient numerics: formats, casting into them, error metrics, and bit packing.

>>> import effai.numerics as nx
>>> nx.get("fp8_e4m3").max, nx.get("int4").bits
(448.0, 4)
>>> nx.cast([1.0, 2.7], "fp4_e2m1").tolist()
[1.0, 3.0]
"""

from effai.numerics.cast import QTensor, cast, max_abs_error, mse, quantize_tensor, sqnr_db
from effai.numerics.formats import Format, formats, get, table
from effai.numerics.pack import pack, packed_nbytes, unpack

__all__ = [
    "Format",
    "QTensor",
    "cast",
    "formats",
    "get",
    "max_abs_error",
    "mse",
    "pack",
    "packed_nbytes",
    "quantize_tensor",
    "sqnr_db",
    "table",
    "unpack",
]
