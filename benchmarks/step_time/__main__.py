"""``python -m benchmarks.step_time``: the command line of :mod:`benchmarks.step_time.run`."""

from .run import main

if __name__ == "__main__":
    main()
