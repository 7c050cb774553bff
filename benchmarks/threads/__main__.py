"""``python -m benchmarks.threads``: the command line of :mod:`benchmarks.threads.run`."""

from .run import main

if __name__ == "__main__":
    raise SystemExit(main())
