"""Where a command's output goes: a log file that keeps its head and its tail.

A command writes to a pipe; a thread copies it to the log file as it comes, until half
of the cap is written. After that it keeps only the last half-cap of output in memory
and, when the command ends, writes a line saying how much was cut, then that tail.
The log stays readable while the command runs, a run that writes gigabytes cannot
fill the disk, and the summary lines a run prints at its end are always kept.
Credentials are redacted as the output comes (overnight.secrets.Redactor), before any
of it reaches the file, so a live view of the log or a controller killed mid-run never
leaves one on disk.

What the harness reads back (the metric, an agent's answer) is the sink's own copy of the
last ``keep`` bytes it received from the pipe (:attr:`Sink.received`), never the log
file: the file is written by the harness, but an experiment's processes can write it too.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import threading
from collections import deque
from pathlib import Path
from typing import IO, Any

from overnight import threads
from overnight.secrets import Redactor, Secrets

CHUNK = 1 << 16


class Sink:
    """Copies one stream into a file opened by the caller, within ``cap`` bytes (0: no cap).

    ``secrets``' values never reach the file. After ``finish`` the sink writes nothing
    more, so the caller may close the file even if the stream has not ended.
    """

    def __init__(
        self, stream: IO[bytes], file: IO[bytes], cap: int, secrets: Secrets | None = None, keep: int = 1 << 20
    ) -> None:
        self._stream, self._file, self._cap, self._keep = stream, file, cap, keep
        self._redactor = Redactor(()) if secrets is None else secrets.stream()
        self._lock = threading.Lock()  # the copying thread and finish() both write
        self._finished = False
        self._head_left = cap // 2 if cap else -1
        self._tail: deque[bytes] = deque()
        self._tail_size = 0
        self._received: deque[bytes] = deque()  # the last `keep` bytes from the pipe, for the harness to read
        self._received_size = 0
        self.cut = 0  # bytes dropped from the middle
        self.error: OSError | None = None  # the file could not be written (a full disk)
        self._copying = threads.spawn(self._pump)

    def _pump(self) -> None:
        try:
            while chunk := self._stream.read1(CHUNK) if hasattr(self._stream, "read1") else self._stream.read(CHUNK):
                self._accept(chunk)
            self._accept(b"", last=True)
        except OSError as exc:  # keep draining the pipe so the command is not blocked; remember why
            self.error = self.error or exc
            while self._stream.read(CHUNK):
                pass
        finally:
            self._stream.close()

    def _accept(self, chunk: bytes, last: bool = False) -> None:
        """Redact and keep one piece of the stream; drop it once finish() has run."""
        with self._lock:
            if self._finished:  # a process that escaped the kill still writes: the file may be closed
                return
            data = self._redactor.feed(chunk)
            self._take((data + self._redactor.end()) if last else data)

    def _remember(self, data: bytes) -> None:
        if not data:
            return
        self._received.append(data)
        self._received_size += len(data)
        while self._received_size - len(self._received[0]) >= self._keep:
            self._received_size -= len(self._received.popleft())

    @property
    def received(self) -> str:
        """The last ``keep`` bytes (at least) the pipe delivered, redacted, as text: what the harness reads back."""
        with self._lock:
            data = b"".join(self._received)
        return data[-self._keep :].decode("utf-8", errors="replace")

    def _take(self, chunk: bytes) -> None:
        self._remember(chunk)
        if self._head_left < 0 or self.error is not None:
            self._write(chunk)
            return
        if self._head_left > 0:
            head, chunk = chunk[: self._head_left], chunk[self._head_left :]
            self._head_left -= len(head)
            self._write(head)
        if chunk:
            self._tail.append(chunk)
            self._tail_size += len(chunk)
            while self._tail_size - len(self._tail[0]) >= self._cap // 2:
                dropped = self._tail.popleft()
                self._tail_size -= len(dropped)
                self.cut += len(dropped)

    def _write(self, data: bytes) -> None:
        if self.error is not None:
            return
        try:
            self._file.write(data)
            self._file.flush()
        except OSError as exc:
            self.error = exc

    def finish(self, timeout: float = 10.0) -> None:
        """Wait for the stream's end (at most ``timeout``); write the tail and stop writing.

        What the redactor still holds (the start of a secret that never came whole) and
        the tail, with how much was cut, are written; the stream is then abandoned.
        """
        with contextlib.suppress(Exception):  # _pump keeps what failed in self.error
            self._copying.wait(timeout)
        with self._lock:
            self._finished = True
            self._take(self._redactor.end())
            if self._tail:
                if self.cut:
                    note = f"\n### overnight: {self.cut} bytes of output cut here (the log keeps max_log_mb)\n"
                    self._write(note.encode())
                self._write(b"".join(self._tail))
                self._tail.clear()


def open_log(path: Path, append: bool = True) -> Any:
    """The log at ``path``, to append to (or to write anew). A link or anything but a regular file found there (an experiment
    or an agent may have made it) is replaced by a new file, never written through: the controller's
    rights must not append a command's output to the file a link names."""
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    flags |= os.O_APPEND if append else os.O_TRUNC
    for _ in range(3):
        try:
            fd = os.open(path, flags, 0o644)
        except OSError as err:
            if err.errno not in (errno.ELOOP, errno.ENXIO, errno.EISDIR):  # a link, a FIFO, a folder
                raise
            _remove(path)
            continue
        if stat.S_ISREG(os.fstat(fd).st_mode):
            # Unbuffered: a write that fails (a full disk) fails at once, and nothing is left to fail again at close.
            return os.fdopen(fd, "ab" if append else "wb", buffering=0)
        os.close(fd)
        _remove(path)
    raise OSError(errno.EEXIST, f"could not make the log {path}: something keeps replacing it")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
