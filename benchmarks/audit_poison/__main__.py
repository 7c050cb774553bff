"""``python -m benchmarks.audit_poison``: the command line of :mod:`benchmarks.audit_poison.run`."""

from .run import main

if __name__ == "__main__":
    raise SystemExit(main())
