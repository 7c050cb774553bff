"""``python -m benchmarks.docs``: the command line of :mod:`benchmarks.docs.page`."""

from .page import main

if __name__ == "__main__":
    raise SystemExit(main())
