"""The torch-threads benchmark, run as ``python -m benchmarks.threads`` (see :mod:`.run`)."""
