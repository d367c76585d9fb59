"""Where Monte Carlo and permutation work is handed to workers: seeded chunks in, per-iteration maxima out.

The unit of work is a :class:`Chunk` of at most ``CHUNK_SIZE`` iterations. Chunk ``c``
draws all its random numbers from ``chunk_rng(seed, c)``, the ``c``-th child of
``numpy.random.SeedSequence(seed)`` (PCG64), so a result depends on the seed only: not on
the number of workers, not on which worker ran which chunk, and the first ``k`` iterations
of a longer run are those of a run of ``k`` (chunks are whole except the last).

An executor maps a function over chunks and yields the results in chunk order:
``map(fn, chunks, *shared)`` calls ``fn(chunk, *shared)``; ``shared`` (a null engine, a
permutation statistic) is handed to each worker once. Two are here: :class:`ThreadExecutor`
(local threads; the numba kernels release the GIL) and :class:`DaskExecutor` (a Dask
distributed cluster: ``"local"`` starts one on this machine, ``tcp://HOST:PORT`` joins a
running one; lost workers' chunks are recomputed). :func:`run_chunks` is the one loop over
chunks that every corrector and permutation driver uses: progress by callback, early stopping
at checkpoints. :func:`scheduler` sends every null run inside it to a Dask cluster (as joblib's
``parallel_backend`` does); :func:`default_executor` is what the correctors use.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import os
import secrets
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from neurochange.inference import stopping

#: Iterations per seeded random stream (the chunk), for every Monte Carlo and permutation null.
CHUNK_SIZE = 100
#: How the random streams are derived (recorded in provenance).
RANDOM_STREAMS = "numpy SeedSequence(seed).spawn: chunk c uses child c (PCG64)"


@dataclass(frozen=True)
class Chunk:
    """Iterations ``start`` to ``start + count`` (exclusive) of a run: chunk ``index`` of its seed."""

    index: int
    start: int
    count: int


def chunk_rng(seed: int, index: int, stream: tuple[int, ...] = ()) -> np.random.Generator:
    """The generator of chunk ``index``: child ``(*stream, index)`` of ``SeedSequence(seed)``.

    ``stream`` separates independent uses of one seed (e.g. the two groups of a balanced
    subtraction); the default stream is the plain ``c``-th child, ``SeedSequence(seed).spawn(n)[c]``.
    """
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(*stream, int(index))))


def chunks(stop: int, start: int = 0) -> list[Chunk]:
    """The chunks covering iterations ``start`` to ``stop`` (``start`` a multiple of ``CHUNK_SIZE``)."""
    if start % CHUNK_SIZE:
        raise ValueError(f"chunks start at a multiple of {CHUNK_SIZE}, got {start}")
    return [Chunk(s // CHUNK_SIZE, s, min(CHUNK_SIZE, stop - s)) for s in range(start, stop, CHUNK_SIZE)]


def resolve_seed(seed: int | None) -> int:
    """The seed to use: the one given, or a fresh one drawn from the OS (to be printed and recorded)."""
    return int(seed) if seed is not None else secrets.randbelow(2**31 - 1)


def n_workers(n_cores: int | None) -> int:
    """Worker threads for ``n_cores`` (None or <= 0: every core this process may run on)."""
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if n_cores is None or n_cores <= 0:
        return available
    return max(1, min(int(n_cores), available))


class Executor(Protocol):
    """What a corrector needs from an executor."""

    n_workers: int  # chunks that run at once
    local_workers: int  # of those, how many share this process's objects (work spaces to allocate here)

    def map(self, fn: Callable, items: Iterable, *shared) -> Iterator:
        """``fn(item, *shared)`` for every item, results yielded in the order of ``items``."""

    def release(self) -> None:
        """Forget the shared objects of a finished run."""


class ThreadExecutor:
    """Local worker threads (one when ``n_workers`` is 1: no pool at all)."""

    kind = "threads"

    def __init__(self, n_cores: int | None = None):
        self.n_workers = n_workers(n_cores)
        self.local_workers = self.n_workers
        self._pool = ThreadPoolExecutor(self.n_workers) if self.n_workers > 1 else None

    def map(self, fn: Callable, items: Iterable, *shared) -> Iterator:
        call = functools.partial(_call, fn, shared)
        return map(call, items) if self._pool is None else self._pool.map(call, items)

    def release(self) -> None:
        """Nothing to forget: threads share the caller's objects."""

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()

    def __enter__(self) -> "ThreadExecutor":
        return self

    def __exit__(self, *exc) -> bool:
        self.close()
        return False


def _call(fn: Callable, shared: tuple, item):
    return fn(item, *shared)


#: Environment variable naming the default Dask scheduler (``local`` or ``tcp://HOST:PORT``).
ENV_SCHEDULER = "NEUROCHANGE_SCHEDULER"
#: Seconds to wait for a scheduler before giving up.
CONNECT_TIMEOUT_S = 10
#: Seconds to wait for a first worker when the scheduler has none (e.g. batch jobs still queued).
WORKER_WAIT_S = 60


class DaskExecutor:
    """Chunks on a Dask distributed cluster: ``address`` ``"local"`` (a ``LocalCluster`` of ``n_cores``
    one-thread worker processes on this machine) or a scheduler's ``tcp://HOST:PORT``.

    Shared objects are scattered to every worker once (per object); a chunk whose worker is lost is
    run again elsewhere (up to ``retries`` more times), with the same result, since a chunk's draws
    depend on its seed and index only.
    """

    kind = "dask"

    def __init__(self, address: str, n_cores: int | None = None, retries: int = 3):
        from neurochange.errors import InputError

        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise InputError("a Dask scheduler needs the distributed package: pip install 'neurochange[dask]'",
                             field="scheduler") from None
        self.address, self.retries = address, retries
        self._cluster = None
        try:
            if address == "local":
                self._cluster = LocalCluster(n_workers=n_workers(n_cores), threads_per_worker=1, processes=True,
                                             dashboard_address=None, silence_logs=40)
                self.client = Client(self._cluster)
            else:
                self.client = _connect(Client, address)
        except Exception as exc:  # refused, timed out, or something that is not a Dask scheduler answered
            self.close()
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise InputError(f"cannot reach the Dask scheduler {address!r}: {reason}; give a running scheduler's "
                             "tcp://HOST:PORT (not its dashboard's), or 'local' to start one here",
                             field="scheduler") from None
        if not self.client.scheduler_info()["workers"]:
            try:
                self.client.wait_for_workers(1, timeout=WORKER_WAIT_S)
            except (TimeoutError, OSError):
                self.close()
                raise InputError(f"the Dask scheduler {address!r} has no workers (waited {WORKER_WAIT_S} s): start "
                                 f"some (dask worker {address} --nthreads 1), or wait until queued jobs have "
                                 "started, then run again", field="scheduler") from None
        threads = sum(w.get("nthreads", 1) for w in self.client.scheduler_info()["workers"].values())
        self.n_workers = max(1, threads)
        self.local_workers = 1
        self._scattered: dict[int, tuple] = {}

    def _share(self, obj):
        if id(obj) not in self._scattered:  # the object is kept, so its id is not reused
            self._scattered[id(obj)] = (obj, self.client.scatter(obj, broadcast=True, hash=False))
        return self._scattered[id(obj)][1]

    def map(self, fn: Callable, items: Iterable, *shared) -> Iterator:
        """As :meth:`Executor.map`; a chunk whose workers die each time it is tried (the scheduler's
        ``allowed-failures``, or every copy of the shared objects lost), or a lost scheduler, is one
        :class:`~neurochange.errors.ClusterError`."""
        from distributed import KilledWorker
        from distributed.client import FutureCancelledError
        from distributed.comm.core import CommClosedError

        from neurochange.errors import ClusterError

        items = list(items)
        handles = [[self._share(obj)] * len(items) for obj in shared]
        futures = self.client.map(fn, items, *handles, pure=False, retries=self.retries)
        try:
            for item, future in zip(items, futures):
                try:
                    yield future.result()
                except (KilledWorker, FutureCancelledError):  # retried until the workers (or the shared data) died
                    raise ClusterError(f"{_describe(item)} could not finish: the Dask workers running it died "
                                       "each time (a crash or too little memory on a worker; see the workers' "
                                       "logs)") from None
                except CommClosedError as exc:  # the connection to the scheduler was lost
                    raise ClusterError(f"lost the Dask scheduler {self.address!r} during the run: {exc}") from None
        finally:
            self.client.cancel([f for f in futures if not f.done()])

    def release(self) -> None:
        """Drop the scattered copies of a finished run's shared objects from the workers."""
        futures = [future for _, future in self._scattered.values()]
        self._scattered = {}
        if futures:
            self.client.cancel(futures)

    def close(self) -> None:
        self._scattered = {}
        for part in ("client", "_cluster"):
            obj = getattr(self, part, None)
            if obj is not None:
                obj.close()

    def __enter__(self) -> "DaskExecutor":
        return self

    def __exit__(self, *exc) -> bool:
        self.close()
        return False


def _connect(client_class, address: str):
    """A client of the scheduler at ``address``, or the error that prevented it; gives up after
    :data:`CONNECT_TIMEOUT_S` even where the handshake never ends (a server that is not Dask's)."""
    outcome: dict = {}

    def connect():
        try:
            outcome["client"] = client_class(address, timeout=CONNECT_TIMEOUT_S)
        except BaseException as exc:  # handed to the caller's thread
            outcome["error"] = exc

    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    thread.join(CONNECT_TIMEOUT_S + 5)
    if "error" in outcome:
        raise outcome["error"]
    if "client" not in outcome:
        raise TimeoutError(f"no Dask scheduler answered within {CONNECT_TIMEOUT_S} s")
    return outcome["client"]


def _describe(item) -> str:
    """A chunk's words for an error message: ``the chunk of iterations 300-399`` for a :class:`Chunk`."""
    if isinstance(item, Chunk):
        return f"the chunk of iterations {item.start}-{item.start + item.count - 1}"
    return "a task"


_SCHEDULED: contextvars.ContextVar = contextvars.ContextVar("neurochange_executor", default=None)


@contextlib.contextmanager
def scheduler(address: str | None, n_cores: int | None = None):
    """Within this block, every Monte Carlo and permutation null runs on the Dask cluster ``address``
    (``"local"`` or ``tcp://HOST:PORT``; None: :data:`ENV_SCHEDULER`, else local threads as usual)."""
    address = address or os.environ.get(ENV_SCHEDULER) or None
    if address is None:
        yield None
        return
    with DaskExecutor(address, n_cores) as executor, using(executor):
        yield executor


@contextlib.contextmanager
def using(executor):
    """Within this block, every null run that is not handed an executor runs on ``executor`` (left open)."""
    token = _SCHEDULED.set(executor)
    try:
        yield executor
    finally:
        _SCHEDULED.reset(token)


def scheduled_executor():
    """The :func:`scheduler` (or :func:`using`) block's executor, or None outside such a block."""
    return _SCHEDULED.get()


def default_executor(n_cores: int | None = None):
    """A context manager giving the executor to use: the :func:`scheduler` block's cluster, else
    :class:`ThreadExecutor` with ``n_cores`` threads."""
    scheduled = _SCHEDULED.get()
    return contextlib.nullcontext(scheduled) if scheduled is not None else ThreadExecutor(n_cores)


@dataclass(frozen=True)
class StopRule:
    """Early stopping: stop once the ``confidence`` interval of the 0.95 quantile of every
    watched null lies within ``precision`` times its estimate, checked every ``check_every``
    iterations (a multiple of ``CHUNK_SIZE``; see :mod:`neurochange.inference.stopping`)."""

    precision: float
    confidence: float = 0.999
    check_every: int = 1000

    def __post_init__(self):
        if not self.precision > 0:
            raise ValueError(f"early_stop must be a positive relative precision, got {self.precision}")
        if self.check_every < CHUNK_SIZE or self.check_every % CHUNK_SIZE:
            raise ValueError(f"check_every must be a positive multiple of {CHUNK_SIZE}, got {self.check_every}")


@dataclass
class ChunkRun:
    """What :func:`run_chunks` returns: the chunk results in order, iterations run, stopping record."""

    results: list
    n_done: int
    stopped: bool
    intervals: dict


def run_chunks(task: Callable[..., object], n_iters: int, executor: Executor, *,
               watch: Callable[[list], dict] | None = None, stop: StopRule | None = None,
               progress: Callable[[int, int], None] | None = None, consume: Callable | None = None,
               batch: int | None = None, shared: tuple = ()) -> ChunkRun:
    """Run ``task(chunk, *shared)`` on every chunk of ``n_iters`` iterations through ``executor``.

    ``consume(result)``, when given, receives each chunk's result in chunk order (to fold
    large per-chunk arrays into running totals) and what it returns is kept instead.
    ``watch(results)`` returns the nulls early stopping watches (name -> 1-D array over the
    iterations so far); with ``stop``, the run ends at the first checkpoint where all are
    known to the rule's precision. ``progress(done, n_iters)`` after each chunk. ``batch``:
    chunks handed out at once (default: 8 per worker; never past the next checkpoint).
    """
    if int(n_iters) < 1:
        raise ValueError(f"n_iters must be positive, got {n_iters}")
    batch = batch or max(1, 8 * executor.n_workers)
    results: list = []
    done, stopped, intervals = 0, False, {}
    while done < n_iters and not stopped:
        stop_at = n_iters if stop is None else min(n_iters, (done // stop.check_every + 1) * stop.check_every)
        upto = min(stop_at, done + batch * CHUNK_SIZE)
        todo = chunks(upto, done)
        for chunk, result in zip(todo, executor.map(task, todo, *shared)):
            results.append(result if consume is None else consume(result))
            if progress is not None:
                progress(chunk.start + chunk.count, n_iters)
        done = upto
        if stop is not None and watch is not None and (done % stop.check_every == 0 or done == n_iters):
            stopped, intervals = stopping.thresholds_known(watch(results), stop.precision, stop.confidence)
    if shared:
        executor.release()
    return ChunkRun(results, done, bool(stopped and done < n_iters), intervals)
