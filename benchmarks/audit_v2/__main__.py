"""``python -m benchmarks.audit_v2``: the command line of :mod:`benchmarks.audit_v2.run`."""

from .run import main

if __name__ == "__main__":
    raise SystemExit(main())
