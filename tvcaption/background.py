"""Run an iterator in a worker thread, a few items ahead: decoding overlaps what consumes it."""

from __future__ import annotations

from collections.abc import Iterable, Iterator


def in_background(items: Iterable, depth: int = 4) -> Iterator:
    """Iterate ``items`` in a worker thread, ``depth`` items ahead: decoding overlaps model work.

    An exception in the worker is raised here; leaving the loop early stops the worker.
    """
    import queue
    import threading

    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    end = object()

    def work() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        q.put((item, None), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put((end, None))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            q.put((end, exc))
        finally:
            close = getattr(items, "close", None)
            if stop.is_set() and close:
                close()

    worker = threading.Thread(target=work, name="tvcaption-decode", daemon=True)
    worker.start()
    try:
        while True:
            item, exc = q.get()
            if item is end:
                if exc is not None:
                    raise exc
                return
            yield item
    finally:
        stop.set()
        while worker.is_alive():
            try:
                q.get_nowait()
            except queue.Empty:
                worker.join(0.05)
