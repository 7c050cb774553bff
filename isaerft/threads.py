"""How many threads torch uses while isaerft works, and the one place that sets them.

:func:`isaerft.training.train` (so also every run an audit trains), the CLI's ``audit`` and
``audit-dataset`` (their forward passes too) and the demo run inside :func:`torch_threads`,
which sets the count for the duration of the work and restores the caller's setting afterwards
(also on an exception): a library must not leave torch's global state changed. The count is
chosen by :func:`resolve_threads`; the first of these that is set wins:

1. the environment variable ``ISAERFT_THREADS`` (the machine's say: on a busy machine one
   ``export ISAERFT_THREADS=1`` keeps every run at one thread, without editing any recipe);
2. the recipe's ``trainer.threads``;
3. ``OMP_NUM_THREADS``, torch's own variable, when it holds an integer >= 1;
4. the default, :func:`default_threads`: ``min(2, cores - 1)``, at least 1.

Organism builds are the exception: they always run with
:data:`isaerft.organism.build.BUILD_THREADS` threads (through :func:`torch_threads` too),
because the thread count changes the rounding of float reductions and a build must not depend
on the machine's core count (the processor's instruction set can still change it: see
docs/quickstart.md).

The CLI prints the choice at the start of ``isaerft train``, ``demo``, ``audit`` and
``audit-dataset`` (:meth:`ThreadChoice.describe`), and a run's ``summary.json`` records it as
``torch_threads``.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from isaerft.configbase import ConfigError

THREADS_ENV = "ISAERFT_THREADS"
"""Environment variable that overrides every other thread setting."""
MAX_DEFAULT_THREADS = 2
"""The default never uses more threads than this (see :func:`default_threads`)."""


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS tells, else all)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not on every platform
        return max(1, os.cpu_count() or 1)


def default_threads(cores: int | None = None) -> int:
    """``min(2, cores - 1)``, at least 1: the thread count used when nothing else is set.

    The models isaerft trains on CPU are small (the organisms' ``d_model`` is 64 and 128), so
    their matrices give extra threads little to share, while a thread beyond the cores that
    are actually free is pathological: torch's thread team meets at a barrier after each
    operation, and a member that another process has pushed off its core stalls the rest
    until it is scheduled again. On a 2-core machine with other work running, torch's own
    default (one thread per core) trained the small organism's poison recipe at 270 tokens/s
    against 1,863 with one thread. Leaving one core to everything else and never asking for
    more than two bounds that worst case, at the price of at most the second thread's gain on
    an idle machine. ``python -m benchmarks.threads`` measures 1, 2 and torch's default threads for
    training, an audit's forward passes and a build step (``docs/benchmarks.md``); revisit
    this rule with its numbers. Large models on many free cores want more: set
    ``trainer.threads`` or ``ISAERFT_THREADS``.
    """
    cores = usable_cores() if cores is None else cores
    return max(1, min(MAX_DEFAULT_THREADS, cores - 1))


@dataclass(frozen=True)
class ThreadChoice:
    """A resolved thread count and where it came from.

    Attributes:
        n: the number of torch threads.
        source: ``"ISAERFT_THREADS"``, ``"trainer.threads"``, ``"OMP_NUM_THREADS"`` or
            ``"default"``.
        note: what the source said, for :meth:`describe`.
    """

    n: int
    source: str
    note: str

    def describe(self) -> str:
        """The one line the CLI prints at start."""
        noun = "thread" if self.n == 1 else "threads"
        return f"isaerft: using {self.n} torch {noun} ({self.note})"


HOW_TO_CHANGE = f"set trainer.threads=N or {THREADS_ENV}=N to change"


def resolve_threads(
    configured: int | None = None, environ: Mapping[str, str] | None = None
) -> ThreadChoice:
    """The thread count for work configured with ``configured`` (a recipe's
    ``trainer.threads``), by the precedence in this module's docstring.

    Raises:
        isaerft.configbase.ConfigError: ``ISAERFT_THREADS`` is set but not an integer >= 1.
    """
    env = os.environ if environ is None else environ
    raw = env.get(THREADS_ENV, "").strip()
    if raw:
        value = _positive_int(raw)
        if value is None:
            raise ConfigError(
                f"{THREADS_ENV}={raw!r} is invalid: must be an integer >= 1 (or unset, for "
                "trainer.threads or the default)"
            )
        over = f", over trainer.threads={configured}" if configured is not None else ""
        return ThreadChoice(value, THREADS_ENV, f"{THREADS_ENV}={value}{over}")
    if configured is not None:
        return ThreadChoice(
            configured,
            "trainer.threads",
            f"trainer.threads={configured}; {THREADS_ENV} overrides it",
        )
    omp = _positive_int(env.get("OMP_NUM_THREADS", "").strip())
    if omp is not None:
        return ThreadChoice(omp, "OMP_NUM_THREADS", f"OMP_NUM_THREADS={omp}; {HOW_TO_CHANGE}")
    cores = usable_cores()
    return ThreadChoice(
        default_threads(cores),
        "default",
        f"default: min({MAX_DEFAULT_THREADS}, cores - 1) with {cores} cores; {HOW_TO_CHANGE}",
    )


def _positive_int(text: str) -> int | None:
    try:
        value = int(text)
    except ValueError:
        return None
    return value if value >= 1 else None


_chosen = False
"""Whether a :func:`torch_threads` block is open: the count was chosen by a caller."""


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` torch (intra-op) threads; the caller's count after, also when
    the block raises."""
    import torch

    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"torch_threads(n={n!r}): n must be an integer >= 1")
    global _chosen
    before, outer = torch.get_num_threads(), _chosen
    if n != before:
        torch.set_num_threads(n)
    _chosen = True
    try:
        yield
    finally:
        _chosen = outer
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


_F = TypeVar("_F", bound=Callable[..., Any])


def with_default_threads(fn: _F) -> _F:
    """Run ``fn`` under :func:`torch_threads` with :func:`resolve_threads`'s count (the
    library entry points that are not a training, e.g. ``audit_runs``), unless a caller
    already chose the count (the CLI, from a recipe's ``trainer.threads``): that choice holds."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if _chosen:
            return fn(*args, **kwargs)
        with torch_threads(resolve_threads().n):
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
