"""``python -m benchmarks.interop_llama_cpp``: the command line of :mod:`benchmarks.interop_llama_cpp.run`."""

from .run import main

if __name__ == "__main__":
    raise SystemExit(main())
