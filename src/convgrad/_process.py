"""Everything convgrad holds for the whole process, in one place.

Each object below is the only holder of its kind of state, with its size bound and its
lifetime; nothing else in convgrad keeps process-wide state (the planner's choice memo,
``_plan._choose``, the steps of ``_rules`` and the tap geometry of ``implicit`` and
``phase`` are pure functions' bounded ``lru_cache``s).

============================  ==========================================  =================
object                        what it holds (bound)                       lifetime
============================  ==========================================  =================
``jobs``                      a pool of ``CORES`` threads that run the     first parallel call
                              jobs of one call side by side                to exit; a forked
                                                                           child builds its own
``blas``                      the BLAS thread counts saved while any       while a call's jobs
                              call's jobs run (BLAS then has one thread,   run, and until a
                              process-wide: threadpoolctl), and a restore  restore BLAS
                              BLAS ignored, until it takes                 ignored takes
``workspaces``                reused work buffers, per thread, at most     until evicted (LRU)
                              ``KEEP_BYTES`` for all threads together      or the thread ends
``workspace_limit``           the default workspace limit (256 MiB), and   process; ``with``
                              per-context overrides (a ``ContextVar``)     blocks per context
``autotune_cache``            the fastest algorithm per call signature     process
                              (at most ``AUTOTUNE_ENTRIES``, LRU)
``compile_notice``            whether the one-line compile notice was      process
                              printed
``kernel_builds``             which compiled kernels are ready (a few      process; builds
                              dozen keys) and the threads building         end with their
                              others in the background                     thread
``recorders``                 the algorithm names that open                per ``with`` block
                              ``_plan.recording()`` blocks collect
============================  ==========================================  =================

Never changed: ``os.environ``, numba's or OpenMP's settings, signal handlers. Added to
numba: one listener on its compile events, which reacts to convgrad's kernels only (the
notice). The compiled
loops are serial ``nogil`` functions that ``jobs`` runs side by side, so no OpenMP (or
other numba threading layer) runs in the process and a forked child is safe.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import itertools
import os
import queue
import sys
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Sequence

import numpy as np


def _usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, as ``nproc`` reports: a
    container or ``taskset`` may allow fewer than the machine has)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # no affinity on this platform
        return os.cpu_count() or 1


CORES = _usable_cores()  # jobs in flight at once: one per core


# ----------------------------------------------------------------------------- BLAS


@functools.cache
def blas_controllers():
    """threadpoolctl's controllers of the BLAS libraries loaded now (NumPy's)."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController().select(user_api="blas")


def blas_threads() -> int:
    """The fewest threads any loaded BLAS allows now (a caller's ``threadpool_limits``), a
    restore still pending counted as done (``BlasLimit``)."""
    pending = blas.pending()
    return min(
        (pending.get(lib, lib.num_threads) for lib in blas_controllers().lib_controllers),
        default=CORES,
    )


RESTORE_RETRY_S = (1e-4, 0.05)  # the first and the longest wait between tries of a restore


class BlasLimit:
    """BLAS limited to one thread while any call's jobs run; the first call to enter saves
    the thread counts, the last to leave restores them (a limit another thread set
    meanwhile is undone then). Calls each library's own setter (about 5 us a call).

    OpenBLAS ignores a raise of its thread count while another thread is inside one of its
    calls (0.3.31: ``openblas_set_num_threads(2)`` had no effect during another thread's
    single-threaded sgemm, and the process kept one BLAS thread for good). So a restore is
    read back; one that did not take is pending: a short-lived thread tries it again, at
    waits growing from 0.1 to 50 ms, until it takes or a call enters (whose exit restores
    it), and meanwhile the pending counts are the ones in force (``blas_threads``, and
    what the next call saves)."""

    def __init__(self):
        self._reset()

    def _reset(self):
        self._lock = threading.Lock()
        self._users = 0
        self._saved: list = []  # (controller, thread count) to restore
        self._pending: list = []  # (controller, thread count) a restore has not set yet
        self._retrying = False

    @property
    def users(self) -> int:
        """Calls inside now."""
        return self._users

    def pending(self) -> dict:
        """{controller: thread count} of a restore not taken yet."""
        return dict(self._pending)

    def __enter__(self):
        with self._lock:
            if self._users == 0:
                pending, self._pending = dict(self._pending), []
                self._saved = [
                    (c, pending.get(c, c.num_threads)) for c in blas_controllers().lib_controllers
                ]
                for controller, threads in self._saved:
                    if threads != 1:
                        controller.set_num_threads(1)
            self._users += 1

    def __exit__(self, *exc):
        with self._lock:
            self._users -= 1
            if self._users == 0:
                self._restore()

    def _restore(self):
        saved, self._saved = self._saved, []
        self._pending = _set_counts([(c, n) for c, n in saved if n != 1])
        if self._pending and not self._retrying:
            self._retrying = True
            threading.Thread(target=self._retry, name="convgrad_blas_restore", daemon=True).start()

    def _retry(self):
        wait = RESTORE_RETRY_S[0]
        while True:
            time.sleep(wait)
            with self._lock:
                if self._users == 0:
                    self._pending = _set_counts(self._pending)
                if self._users or not self._pending:  # done, or a call's exit will do it
                    self._retrying = False
                    return
            wait = min(2 * wait, RESTORE_RETRY_S[1])

    def after_fork_in_child(self):
        """A child counts no running call; a limit the parent held at the fork is lifted."""
        self._lock, self._users, self._retrying = threading.Lock(), 0, False
        self._saved = self._saved + [p for p in self._pending if p not in self._saved]
        self._pending = []
        try:
            self._restore()
        except Exception:  # noqa: BLE001 - best effort in a fresh child
            pass


def _set_counts(counts: list) -> list:
    """Set each (controller, thread count); those that did not take (read back)."""
    missed = []
    for controller, threads in counts:
        controller.set_num_threads(threads)
        if controller.num_threads != threads:
            missed.append((controller, threads))
    return missed


# ----------------------------------------------------------------------------- jobs


class _Batch:
    """The jobs of one ``JobPool.run``: each thread that joins takes the next job not yet
    taken until none is left (a helper that starts late takes fewer, or none), results
    by index, the first error (after which the jobs left are taken but not run).

    The caller waits for the helpers that joined, never for one that has not started: a
    sleeping thread can take 50-100 us to wake, longer than a small call's work, and once
    every job is taken a helper that joins late finds none and runs nothing."""

    __slots__ = ("job", "args", "results", "error", "next", "active", "lock", "idle")

    def __init__(self, job: Callable, args: Sequence):
        self.job, self.args, self.results, self.error = job, args, [None] * len(args), None
        self.next = itertools.count()  # next(...) is atomic under the GIL
        self.active, self.lock, self.idle = 0, threading.Lock(), threading.Event()
        self.idle.set()  # no helper inside

    def work(self) -> None:
        for index in self.next:
            if index >= len(self.args):
                return
            if self.error is None:
                try:
                    self.results[index] = self.job(self.args[index])
                except BaseException as error:  # noqa: BLE001 - re-raised by the caller
                    self.error = self.error or error

    def drain(self) -> None:
        """Take every job left without running it (the caller is leaving early)."""
        for index in self.next:
            if index >= len(self.args):
                return

    def help(self) -> None:
        with self.lock:  # joined before taking a job: the caller waits for this thread
            self.active += 1
            self.idle.clear()
        try:
            self.work()
        finally:
            with self.lock:
                self.active -= 1
                if self.active == 0:
                    self.idle.set()


# a call's work (2 x multiply-adds of the dense correlation) below which its jobs run on
# the calling thread: waking a sleeping helper and passing the GIL between two threads
# cost 50-100 us on a VM, as much as this much work of compiled loops or small GEMMs
# (measured on two threads: direct 4.7 MFLOP 1.5x slower on the pool, 19 MFLOP 1.06x
# faster; gemm and implicit 4.7 MFLOP 1.8x slower, 42 MFLOP 1.1-1.2x faster)
SERIAL_WORK = 16e6


class JobPool:
    """convgrad's one parallel runtime: ``CORES`` threads that run one call's independent
    jobs side by side (compiled ``nogil`` loops and single-threaded BLAS alike). A lean
    queue of batches that helper threads join; a helper that wakes late takes fewer
    jobs, and the caller never waits for one that has not started."""

    def __init__(self, blas: BlasLimit):
        self._blas = blas
        self._local = threading.local()
        self._reset()

    def _reset(self):
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue | None = None
        self._simulated: tuple[int, list[int]] | None = None  # see ``simulate``

    def _tasks(self) -> queue.SimpleQueue:
        """The pool's queue, its threads started on first use (daemons: they never keep
        the process alive, and hold no job between calls)."""
        with self._lock:
            if self._queue is None:
                self._queue = queue.SimpleQueue()
                for k in range(CORES):
                    threading.Thread(
                        target=self._serve, args=(self._queue,), name=f"convgrad_{k}", daemon=True
                    ).start()
            return self._queue

    def _serve(self, tasks: queue.SimpleQueue) -> None:
        self._local.in_pool = True
        while True:
            tasks.get().help()

    def in_pool(self) -> bool:
        """Whether this thread is one of the pool's (a job must not wait on new jobs)."""
        return getattr(self._local, "in_pool", False)

    def cores(self) -> int:
        """Cores to cut work for: CORES, or the simulated machine's (``simulate``)."""
        return CORES if self._simulated is None else self._simulated[0]

    def workers(self, jobs: int) -> int:
        """Threads worth using for ``jobs`` independent jobs: at most one per core, and no
        more than the BLAS threads the caller allows (so a caller's
        ``threadpool_limits(1)``, e.g. a dask worker's, keeps convgrad on its thread);
        one inside ``serial``; at most its share in a pass run ``side_by_side``."""
        if self._simulated is not None:
            return max(1, min(jobs, self._simulated[0]))
        share = getattr(self._local, "share", None)
        if jobs <= 1 or CORES <= 1 or getattr(self._local, "serial", False):
            return 1
        if share is not None:  # a pass side by side with another (``side_by_side``)
            return max(1, min(jobs, share))
        if self.in_pool():
            return 1
        return max(1, min(jobs, CORES, blas_threads()))

    def side_by_side(self, calls: Sequence[Callable[[], object]], shares: Sequence[int]) -> list:
        """``[call() for call in calls]``, the calls at once: each on a thread of its own
        (the first on the caller's) with ``shares[i]`` threads for its own jobs, in a copy
        of the caller's context (its workspace limit, recordings, build waits). BLAS has
        one thread meanwhile. A call whose thread starts late runs after the others on
        the caller's thread, still with its share."""
        context = contextvars.copy_context()

        def call_with_share(index: int):
            previous = getattr(self._local, "share", None)
            self._local.share = shares[index]
            try:
                return context.copy().run(calls[index])
            finally:
                self._local.share = previous

        threads = self.workers(len(calls))
        if threads <= 1 or self._simulated is not None:
            return [call_with_share(i) for i in range(len(calls))]
        with self._blas:
            return self._on_threads(threads, call_with_share, range(len(calls)))

    @contextlib.contextmanager
    def serial(self, on: bool = True):
        """Inside the block (this thread), jobs run on the calling thread: a call whose
        work is under SERIAL_WORK. ``on=False``: no change."""
        previous = getattr(self._local, "serial", False)
        self._local.serial = previous or on
        try:
            yield
        finally:
            self._local.serial = previous

    @contextlib.contextmanager
    def simulate(self, cores: int):
        """Form jobs as on a machine with ``cores`` cores (BLAS's threads aside), run them
        on the calling thread, and collect in the yielded list how many threads each
        call's jobs would keep busy there (for benchmarks: how the same code would split
        the work on a larger machine). Not for
        use while other threads call convgrad."""
        counts: list[int] = []
        self._simulated = (cores, counts)
        try:
            yield counts
        finally:
            self._simulated = None

    def run(self, job: Callable, args: Sequence, *, blas: bool = True) -> list:
        """``[job(a) for a in args]`` on the calling thread and ``workers(len(args)) - 1``
        pool threads, each taking the next job not yet taken (more jobs than threads
        balance a helper that starts late). ``blas``: the jobs call BLAS, which is then
        single-threaded while they run (convgrad never runs threaded BLAS itself: a job
        started while BLAS's own workers spin after a threaded call runs at half speed).
        With one thread (one job, a pool thread, a caller's BLAS limit of one) the jobs
        run here, BLAS untouched."""
        threads = self.workers(len(args))
        if self._simulated is not None:  # threads these jobs would keep busy there
            self._simulated[1].append(threads)
        if threads <= 1 or self._simulated is not None:
            return [job(a) for a in args]
        with self._blas if blas else contextlib.nullcontext():
            return self._on_threads(threads, job, args)

    def _on_threads(self, threads: int, job: Callable, args: Sequence) -> list:
        """``run``'s jobs on the caller and ``threads - 1`` pool threads."""
        batch = _Batch(job, args)
        tasks = self._tasks()
        for _ in range(threads - 1):
            tasks.put(batch)
        try:
            batch.work()
        finally:
            batch.drain()  # none left to start, even after an interrupt
            batch.idle.wait()  # the helpers that joined are done before BLAS is back
        if batch.error is not None:
            raise batch.error
        return batch.results

    def after_fork_in_child(self):
        """A forked child has none of the parent's threads: it starts a pool of its own
        (the parent's would queue jobs no thread ever runs)."""
        self._reset()


def split_range(total: int, parts: int) -> list[tuple[int, int]]:
    """``parts`` contiguous (start, stop) ranges covering ``range(total)``, sizes within one."""
    parts = max(1, min(parts, total))
    return [(total * i // parts, total * (i + 1) // parts) for i in range(parts)]


# ----------------------------------------------------------------------- workspaces

# workspace kept between calls, all threads together: 128 MiB and 8 MiB per core, room for
# each core's jobs (with a fixed budget, on many cores the threads that come last find it
# taken and allocate fresh buffers on every call)
KEEP_BYTES = 128 * 2**20 + 8 * 2**20 * CORES


class Workspaces:
    """Flat work buffers reused between calls, per thread, at most ``keep_bytes`` kept for
    all threads together (a new buffer evicts its thread's least recently used ones)."""

    def __init__(self, keep_bytes: int):
        self.keep_bytes = keep_bytes
        self._local = threading.local()
        self._lock = threading.Lock()
        self._kept_bytes = 0  # bytes of kept buffers still alive

    @property
    def kept_bytes(self) -> int:
        return self._kept_bytes

    def slots(self) -> list[str]:
        """This thread's kept buffers, least recently used first."""
        return list(self._buffers())

    def _buffers(self) -> dict:
        return self._local.__dict__.setdefault("buffers", {})

    def _forget(self, nbytes: int) -> None:
        with self._lock:
            self._kept_bytes -= nbytes

    def get(self, slot: str, size: int, dtype) -> np.ndarray:
        """A flat workspace of ``size`` elements of ``dtype``; see ``scratch``."""
        dtype = np.dtype(dtype)
        kept = self._buffers()  # least to most recently used
        buffer = kept.pop(slot, None)
        if buffer is not None and buffer.dtype == dtype and buffer.size >= size:
            kept[slot] = buffer
            return buffer[:size]
        del buffer  # its finalizer returns its bytes once it is freed
        buffer = np.empty(size, dtype=dtype)
        while buffer.nbytes <= self.keep_bytes:
            with self._lock:
                if self._kept_bytes + buffer.nbytes <= self.keep_bytes:
                    self._kept_bytes += buffer.nbytes
                    weakref.finalize(buffer, self._forget, buffer.nbytes)
                    kept[slot] = buffer
                    break
            if not kept:
                break
            kept.pop(next(iter(kept)))  # evict this thread's least recently used buffer
        return buffer[:size]

    def clear(self) -> None:
        """Drop this thread's kept buffers (their memory returns once no view holds them)."""
        self._buffers().clear()

    def after_fork_in_child(self):
        self._lock = threading.Lock()


# ------------------------------------------------------------------ workspace limit

DEFAULT_WORKSPACE_LIMIT = 256 * 2**20


def check_limit(nbytes) -> int:
    if isinstance(nbytes, bool) or not isinstance(nbytes, (int, np.integer)) or nbytes < 1:
        raise ValueError(f"workspace limit must be a positive int (bytes), got {nbytes!r}")
    return int(nbytes)


class WorkspaceLimit:
    """The default workspace limit of calls that pass no ``workspace_limit``.

    ``set(n)`` sets it for the process at once; used as a context manager, the setting
    instead holds for the ``with`` block in this thread (or asyncio task) alone, and the
    process default is as if it had never been set, whatever other threads do meanwhile.
    """

    def __init__(self, default: int):
        self._base = default  # the last plain setting
        self._pending: OrderedDict[int, int] = OrderedDict()  # settings not yet settled
        self._lock = threading.Lock()
        self._override: contextvars.ContextVar[int | None] = contextvars.ContextVar(
            "convgrad_workspace_limit", default=None
        )
        self._serial = 0

    def get(self) -> int:
        override = self._override.get()
        if override is not None:
            return override
        with self._lock:
            return next(reversed(self._pending.values())) if self._pending else self._base

    def set(self, nbytes) -> LimitSetting:
        nbytes = check_limit(nbytes)
        previous = self.get()
        with self._lock:
            self._serial += 1
            self._pending[self._serial] = nbytes
            return LimitSetting(self, self._serial, nbytes, previous)

    def _settle(self, serial: int, scoped: bool) -> None:
        """A setting becomes plain (dropped unused: it and every earlier one settle into
        the base) or scoped (entered by ``with``: it leaves the process default)."""
        with self._lock:
            if serial not in self._pending:
                return
            if scoped:
                del self._pending[serial]
                return
            while self._pending:
                first, value = self._pending.popitem(last=False)
                self._base = value
                if first == serial:
                    break

    def after_fork_in_child(self):
        self._lock = threading.Lock()


class LimitSetting:
    """Returned by ``set_workspace_limit``: as a context manager, the limit holds for the
    ``with`` block in this thread only and the previous one comes back on exit."""

    def __init__(self, owner: WorkspaceLimit, serial: int, nbytes: int, previous: int):
        self._owner, self._serial = owner, serial
        self.nbytes, self.previous = nbytes, previous  # the limit set, and the one before
        self._token = None

    def __enter__(self):
        self._token = self._owner._override.set(self.nbytes)
        self._owner._settle(self._serial, scoped=True)
        return self

    def __exit__(self, *exc):
        self._owner._override.reset(self._token)
        return False

    def __del__(self):
        if self._token is None:  # never entered: a plain setting
            self._owner._settle(self._serial, scoped=False)


# -------------------------------------------------------------------- autotune cache

AUTOTUNE_ENTRIES = 4096


class AutotuneCache:
    """The fastest algorithm per call signature, with the seconds each candidate took
    when it was timed; least recently used dropped past ``entries``; thread-safe."""

    def __init__(self, entries: int):
        self.entries = entries
        self._entries: OrderedDict[tuple, tuple[str, dict[str, float]]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple) -> str | None:
        """The winner for ``key``, or None if it was not timed (or was dropped)."""
        with self._lock:
            if key not in self._entries:
                return None
            self._entries.move_to_end(key)
            return self._entries[key][0]

    def timings(self, key: tuple) -> dict[str, float] | None:
        """{algorithm: seconds} of the timing that chose ``key``'s winner, or None."""
        with self._lock:
            entry = self._entries.get(key)
            return None if entry is None else dict(entry[1])

    def items(self) -> list[tuple[tuple, str, dict[str, float]]]:
        """(key, winner, timings) of every entry, least recently used first."""
        with self._lock:
            return [(key, name, dict(times)) for key, (name, times) in self._entries.items()]

    def put(self, key: tuple, name: str, timings: dict[str, float] | None = None) -> None:
        with self._lock:
            self._entries[key] = (name, dict(timings or {}))
            self._entries.move_to_end(key)
            while len(self._entries) > self.entries:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

    def after_fork_in_child(self):
        self._lock = threading.Lock()


# ------------------------------------------------------------------- compile notice

QUIET_ENV = "CONVGRAD_QUIET_COMPILE"  # set to 1 to hide the compile notice


class CompileNotice:
    """One line on stderr the first time convgrad compiles a kernel in this process (a
    compile takes about a second; loading one from numba's disk cache prints nothing).
    Hidden when the environment variable ``CONVGRAD_QUIET_COMPILE`` is ``1``."""

    MESSAGE = (
        "convgrad: compiling its kernels for this machine, once (cached on disk; "
        f"{QUIET_ENV}=1 hides this line) ..."
    )

    def __init__(self):
        self.printed = False
        self._lock = threading.Lock()

    def compiling(self) -> None:
        with self._lock:
            if self.printed:
                return
            self.printed = True
        if os.environ.get(QUIET_ENV, "") not in ("", "0"):
            return
        print(self.MESSAGE, file=sys.stderr, flush=True)

    def after_fork_in_child(self):
        self._lock = threading.Lock()


# -------------------------------------------------------------------- kernel builds


class KernelBuilds:
    """Compiled kernels built in the background, so that no call waits for a compile.

    A key names one compiled variant of an algorithm for one dtype. ``auto`` runs an
    algorithm whose key is ``ready``; otherwise ``start`` builds it on a thread of its
    own (compiled, or loaded from numba's disk cache: 0.3-2 s) while the call, and those
    after it until the build ends, run the best algorithm that needs no build. Build
    threads are not daemons (a compile runs to its end and lands in the disk cache
    even if the program is exiting); a fork first waits for them, as a forked child
    could not finish a compile that a vanished thread held. ``background = False`` builds
    on the calling thread instead (the test suite: reproducible algorithm choices), as do
    calls inside ``on_this_thread()`` (dask's tasks)."""

    def __init__(self):
        self.background = True
        self._waiting: contextvars.ContextVar[bool] = contextvars.ContextVar(
            "convgrad_build_here", default=False
        )
        self._reset()

    @contextlib.contextmanager
    def on_this_thread(self):
        """Calls inside the block (this thread or task) wait for the builds they need."""
        token = self._waiting.set(True)
        try:
            yield
        finally:
            self._waiting.reset(token)

    def _reset(self):
        self._lock = threading.Lock()
        self._ready: set = set()
        self._building: dict = {}  # key -> Thread

    def ready(self, key) -> bool:
        return key in self._ready

    def start(self, key, build: Callable[[], object]) -> bool:
        """Build ``key`` with ``build()`` (once) on a thread of its own, and wait for it
        if ``background`` is off or inside ``on_this_thread``; True if it is ready now."""
        if key in self._ready:
            return True
        with self._lock:
            if key in self._ready:
                return True
            thread = self._building.get(key)
            if thread is None:  # started under the lock: whoever finds it may join it
                thread = threading.Thread(
                    target=self._build, args=(key, build), name="convgrad_build", daemon=False
                )
                self._building[key] = thread
                thread.start()
        if self.background and not self._waiting.get():
            return False
        thread.join()
        return True

    def _build(self, key, build: Callable[[], object]) -> None:
        try:
            build()
        except BaseException:  # noqa: BLE001 - the next call that runs it raises it
            pass
        finally:
            with self._lock:
                self._ready.add(key)
                self._building.pop(key, None)

    def wait(self) -> None:
        """Until no build runs."""
        while True:
            with self._lock:
                threads = list(self._building.values())
            if not threads:
                return
            for thread in threads:
                thread.join()

    def before_fork(self):
        self.wait()

    def after_fork_in_child(self):
        ready = self._ready
        self._reset()
        self._ready = ready


# ------------------------------------------------------------------------ recorders


class Recorders:
    """The algorithm names collected by ``_plan.recording()`` blocks open in this context
    (a ``ContextVar``: one thread's calls never land in another thread's block)."""

    def __init__(self):
        self._open: contextvars.ContextVar[tuple[list[str], ...]] = contextvars.ContextVar(
            "convgrad_recorders", default=()
        )

    @contextlib.contextmanager
    def recording(self):
        names: list[str] = []
        token = self._open.set((*self._open.get(), names))
        try:
            yield names
        finally:
            self._open.reset(token)

    def record(self, name: str) -> None:
        for names in self._open.get():
            names.append(name)

    def after_fork_in_child(self):
        pass


# ----------------------------------------------------------------------- instances

blas = BlasLimit()
jobs = JobPool(blas)
workspaces = Workspaces(KEEP_BYTES)
workspace_limit = WorkspaceLimit(DEFAULT_WORKSPACE_LIMIT)
autotune_cache = AutotuneCache(AUTOTUNE_ENTRIES)
compile_notice = CompileNotice()
kernel_builds = KernelBuilds()
recorders = Recorders()


def _after_fork_in_child() -> None:
    for holder in (
        blas, jobs, workspaces, workspace_limit, autotune_cache, compile_notice, kernel_builds
    ):  # fmt: skip
        holder.after_fork_in_child()


def _before_fork() -> None:
    kernel_builds.before_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_child)
