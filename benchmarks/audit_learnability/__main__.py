"""``python -m benchmarks.audit_learnability``: the command line of :mod:`benchmarks.audit_learnability.run`."""

from .run import main

if __name__ == "__main__":
    raise SystemExit(main())
