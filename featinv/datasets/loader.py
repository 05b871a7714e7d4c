"""Loader processes (``--workers N``): how their batches come over, and how their failures end
a run in one line.

A batch's pixels go to the training process through shared memory. ``collate`` moves them there
inside the loader process, where a failure (a full or size-limited ``/dev/shm``, too many open
files) can be sent as a ``LoaderFailure``; left to the queue's sending thread, it printed a
traceback there and the batch never came, so training waited for ever. ``loader_batches``
turns that, an error raised in a process, a process killed or gone, and a loader silent for
``LOADER_TIMEOUT`` seconds into one ``DataError`` that says what failed and what to do.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterator

import torch
from torch.utils.data import DataLoader, get_worker_info

from ..errors import DataError, FeatinvError, printable


LOADER_TIMEOUT = 600  # s without a batch from the loader processes: one hangs (a safety net)


@dataclass(frozen=True)
class LoaderFailure:
    """What a loader process sends in place of a batch it cannot hand over."""

    reason: str


def _os_reason(exc: BaseException) -> str:
    """``File too large`` of torch's 'unable to write to file </torch_...>: File too large
    (27)', else the message's first line."""
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    found = re.search(r":\s*([^:<>]+?)\s*\(\d+\)\s*$", text)
    return found.group(1) if found else text


def collate(items):
    """Collate ``TrainImages`` items into (indices, images, names) lists (sizes differ).

    In a loader process the pixels are moved into shared memory here, where a failure (a full
    or size-limited ``/dev/shm``: 'File too large', 'No space left on device'; too many open
    files) can be sent as a ``LoaderFailure``: left to the queue's sending thread, it printed a
    traceback there and the batch never came, so training waited for ever."""
    indices, images, names = zip(*items)
    if get_worker_info() is not None:
        try:
            for image in images:
                if isinstance(image, torch.Tensor):
                    image.share_memory_()
        except (RuntimeError, OSError) as exc:
            return LoaderFailure(f"cannot write shared memory ({_os_reason(exc)})")
    return list(indices), list(images), list(names)


def _failed(reason: str) -> DataError:
    return DataError(f"A data-loader worker failed: {reason}; try --workers 0 (the training "
                     "process then reads the images itself).")


def _worker_error(exc: BaseException) -> BaseException:
    """The one-line error for an exception a ``DataLoader`` of loader processes raised: a
    featinv error raised in a process keeps its class and message (torch prefixes it with the
    process's traceback); a process killed, gone or silent past ``timeout`` is a
    ``DataError`` saying so."""
    text = str(exc)
    if "Original Traceback" in text:  # raised in the process and sent over: its last line
        last = [line for line in text.strip().splitlines() if line.strip()][-1]
        message = last.split(": ", 1)[1] if ": " in last else last
        if isinstance(exc, FeatinvError):
            return type(exc)(message)
        return _failed(printable(message))
    if "timed out" in text:
        return _failed(f"no batch came for {LOADER_TIMEOUT} s")
    return _failed(printable(text.strip().splitlines()[0] if text.strip() else
                             type(exc).__name__).rstrip(". "))


def loader_batches(loader: DataLoader) -> Iterator:
    """The batches of ``loader``; with loader processes, a failure in one of them (an error, a
    ``LoaderFailure``, a process killed or silent for ``LOADER_TIMEOUT`` s) ends the iteration
    with one line that says what failed (``DataError``), the processes shut down."""
    if not loader.num_workers:
        yield from loader
        return
    batches = iter(loader)
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        except Exception as exc:  # noqa: BLE001 (sorted out here)
            if not isinstance(exc, (FeatinvError, RuntimeError, OSError)) \
                    and "Original Traceback" not in str(exc):
                raise  # not the loader's: the main process's own code failed
            error = _worker_error(exc)
        else:
            if not isinstance(batch, LoaderFailure):
                yield batch
                continue
            error = _failed(batch.reason)
        shutdown = getattr(batches, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()  # now, not at exit: the others may be blocked handing over batches
        raise error from None


def ignore_sigint(_worker: int) -> None:
    """Loader processes leave Ctrl-C to the training process, which saves and exits cleanly."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
