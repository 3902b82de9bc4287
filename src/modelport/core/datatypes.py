"""The tensor datatypes of the Open Inference Protocol (V2): the one list of their names.

Every table keyed by a datatype (NumPy dtypes in ``protocol.v2``, Triton's config types in
``api.v2_routes``, the model config's schema) is built from or checked against these.
"""

from __future__ import annotations

from typing import Literal, get_args

Datatype = Literal[
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
    "FP16", "FP32", "FP64", "BYTES",
]
DATATYPES: tuple[str, ...] = get_args(Datatype)
NUMERIC: frozenset[str] = frozenset(DATATYPES) - {"BYTES"}
