"""The llama.cpp round trip, run as ``python -m benchmarks.interop_llama_cpp`` or ``make interop``
(see :mod:`.run`).
"""

from .run import SOURCE_ENV, llama_cpp_source, round_trip

__all__ = ["SOURCE_ENV", "llama_cpp_source", "round_trip"]
