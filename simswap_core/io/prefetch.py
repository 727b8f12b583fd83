"""Background threads for a streaming run: decoding ahead of the compute, and encoding behind it.

``Prefetcher(make, depth)`` iterates ``make()`` (e.g. ``source.batches(8)``) in a background thread, at most
``depth`` items ahead of the consumer; ``BackgroundWriter(sink, depth)`` calls ``sink.write(batch, result)`` in a
background thread, in order, with at most ``depth`` writes waiting. Both are bounded (memory does not grow with
the input's length), both hand an exception of their thread to the caller (the same exception object, raised at
the caller's next ``next()`` / ``write()`` / ``finish()``), and both stop promptly on ``close()`` / ``stop()``
(the item in progress is finished, queued ones are dropped). ``depth=0`` runs everything in the caller's thread.

The threads are started with SIGINT and SIGTERM blocked, so those signals always reach the main thread (where
Python raises KeyboardInterrupt) and never land in a worker while the main thread holds them (``signals_held``).
"""
from __future__ import annotations

import queue
import signal
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, Generic, TypeVar

T = TypeVar("T")

_POLL = 0.05          # seconds between checks of the stop flag while waiting on a queue
_END = object()       # end of the items


class _Failure:
    """An exception raised in a worker thread, carried to the caller."""

    def __init__(self, error: BaseException):
        self.error = error


@contextmanager
def signals_held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM while inside (delivered on leaving), in the main thread of a POSIX process."""
    can = hasattr(signal, "pthread_sigmask") and threading.current_thread() is threading.main_thread()
    held = {signal.SIGINT, signal.SIGTERM}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held) if can else None
    try:
        yield
    finally:
        if previous is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def start_quiet_thread(target: Callable[[], None], name: str) -> threading.Thread:
    """A daemon thread running ``target``, started with SIGINT / SIGTERM blocked (a new thread inherits the
    signal mask of the thread that starts it), so the process's signals are handled by the main thread only."""
    thread = threading.Thread(target=target, name=name, daemon=True)
    previous = None
    if hasattr(signal, "pthread_sigmask"):
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        thread.start()
    finally:
        if previous is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)
    return thread


def _check_depth(depth: Any, what: str) -> int:
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 0:
        raise ValueError(f"{what}: depth must be an integer >= 0, got {depth!r}")
    return depth


class Prefetcher(Generic[T]):
    """Iterate ``make()`` in a background thread, at most ``depth`` items ahead (``depth=0``: in the caller's thread).

    Use as an iterator; ``close()`` (also on ``with`` exit) stops the thread: the item being made is finished, the
    iterator is closed in its own thread (a generator's ``finally`` / ``with`` blocks run there, e.g. the video
    file is closed), queued items are dropped. An exception raised by ``make()`` or the iterator is raised by
    ``next()`` after the items made before it.
    """

    def __init__(self, make: Callable[[], Iterable[T]], depth: int = 2, *, name: str = "simswap-reader"):
        self.depth = _check_depth(depth, "Prefetcher")
        self._make = make
        self._stop = threading.Event()
        self._done = False
        self._thread: threading.Thread | None = None
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max(self.depth, 1))
        self._iterator: Iterator[T] | None = None
        if self.depth == 0:
            self._iterator = iter(make())
        else:
            self._thread = start_quiet_thread(self._work, name)

    # -- worker thread ---------------------------------------------------------------------------------------
    def _put(self, item: Any) -> bool:
        """Queue ``item``, waiting for room; False when stopped meanwhile."""
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=_POLL)
                return True
            except queue.Full:
                continue
        return False

    def _work(self) -> None:
        iterator: Iterator[T] | None = None
        try:
            iterator = iter(self._make())
            for item in iterator:
                if not self._put(item):
                    return
            self._put(_END)
        except BaseException as e:  # handed to the caller
            self._put(_Failure(e))
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                try:
                    close()
                except BaseException as e:  # handed to the caller
                    self._put(_Failure(e))

    # -- caller ----------------------------------------------------------------------------------------------
    def __iter__(self) -> Prefetcher[T]:
        return self

    def __next__(self) -> T:
        if self._done:
            raise StopIteration
        if self._iterator is not None:
            return next(self._iterator)
        while True:
            try:
                item = self._queue.get(timeout=_POLL)
                break
            except queue.Empty:
                assert self._thread is not None
                if not self._thread.is_alive() and self._queue.empty():
                    self._done = True
                    raise RuntimeError("Prefetcher: the reader thread ended without a result") from None
        if item is _END:
            self._done = True
            raise StopIteration
        if isinstance(item, _Failure):
            self._done = True
            raise item.error
        return item

    def close(self) -> None:
        """Stop the thread and drop what it read ahead (idempotent)."""
        self._done = True
        self._stop.set()
        if self._iterator is not None:
            close = getattr(self._iterator, "close", None)
            self._iterator = None
            if close is not None:
                close()
        if self._thread is not None:
            while self._thread.is_alive():
                _drain(self._queue)
                self._thread.join(timeout=_POLL)
            _drain(self._queue)
            self._thread = None

    def __enter__(self) -> Prefetcher[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class BackgroundWriter:
    """``sink.write(batch, result)`` in a background thread, in order, at most ``depth`` writes waiting
    (``depth=0``: written at once in the caller's thread).

    write() hands a pair over (and raises the writer's exception if it failed earlier); finish() waits until every
    pair is written and raises the writer's exception if any; stop() drops the pairs still waiting and waits for
    the write in progress (call it before ``sink.abort()``). The sink's close / abort stay with the caller.
    """

    def __init__(self, sink: Any, depth: int = 2, *, name: str = "simswap-writer"):
        self.depth = _check_depth(depth, "BackgroundWriter")
        self.sink = sink
        self._error: BaseException | None = None
        self._stop = threading.Event()
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max(self.depth, 1))
        self._thread = start_quiet_thread(self._work, name) if self.depth > 0 else None

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is _END or self._stop.is_set():
                return
            try:
                self.sink.write(*item)
            except BaseException as e:  # handed to the caller
                self._error = e
                return

    def _raise_failure(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            self._stop.set()
            raise error

    def write(self, batch: Any, result: Any) -> None:
        """Write (or queue) one batch with its result."""
        self._raise_failure()
        if self._thread is None:
            self.sink.write(batch, result)
            return
        while True:
            try:
                self._queue.put((batch, result), timeout=_POLL)
                return
            except queue.Full:
                self._raise_failure()
                if not self._thread.is_alive():
                    raise RuntimeError("BackgroundWriter: the writer thread has stopped") from None

    def finish(self) -> None:
        """Wait until everything queued is written; the writer's exception, if any, is raised here."""
        if self._thread is not None:
            while self._thread.is_alive():
                try:
                    self._queue.put(_END, timeout=_POLL)
                    break
                except queue.Full:
                    self._raise_failure()
            self._thread.join()
            self._thread = None
        self._raise_failure()

    def stop(self) -> None:
        """Drop what waits, let the write in progress end, stop the thread (idempotent; raises nothing)."""
        self._stop.set()
        if self._thread is not None:
            while self._thread.is_alive():
                _drain(self._queue)
                try:
                    self._queue.put_nowait(_END)
                except queue.Full:
                    pass
                self._thread.join(timeout=_POLL)
            self._thread = None
        _drain(self._queue)
        self._error = None


def _drain(q: queue.Queue[Any]) -> None:
    while True:
        try:
            q.get_nowait()
        except queue.Empty:
            return
