"""Text files in whatever encoding they are stored, read for a model and written back the same way.

A task's editable file may be UTF-8 (with or without a byte order mark), UTF-16 or UTF-32
with a byte order mark, a Python file that declares its coding (PEP 263), or a legacy
single-byte file (Latin-1, Windows-1252). It is read into ``str`` with ``\\n`` line ends and
written back in its own encoding, byte order mark and line ends, so that an edit changes
only the lines it meant to. A file that is none of these (NUL bytes, no byte order mark)
is not text: :class:`NotText` says so, naming the file.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass
from pathlib import Path

# Longest first: UTF-32's little-endian mark begins with UTF-16's.
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
_CODING = re.compile(rb"^[ \t\f]*#.*?coding[:=][ \t]*([-\w.]+)")  # PEP 263, on line 1 or 2
_C1 = re.compile(rb"[\x80-\x9f]")  # where Windows-1252 and Latin-1 differ


class NotText(ValueError):
    """A file that cannot be read as text; the message names it and says why."""


@dataclass(frozen=True)
class Form:
    """How a text file is stored: its encoding, byte order mark and line end."""

    encoding: str = "utf-8"
    bom: bytes = b""
    newline: str = "\n"

    @property
    def label(self) -> str:
        """The encoding as a person says it: ``utf-16-le with a byte order mark``."""
        return f"{self.encoding} with a byte order mark" if self.bom else self.encoding

    def encode(self, text: str) -> bytes:
        """``text`` (``\\n`` line ends) as this file stores it; UnicodeEncodeError if the encoding cannot hold it."""
        if self.newline != "\n":
            text = text.replace("\n", self.newline)
        return self.bom + text.encode(self.encoding)


def _declared(data: bytes) -> str:
    """The encoding a PEP 263 comment on the first two lines declares, if Python knows it."""
    for line in data.split(b"\n", 2)[:2]:
        found = _CODING.match(line)
        if found:
            try:
                return codecs.lookup(found.group(1).decode("ascii")).name
            except (LookupError, UnicodeDecodeError):
                return ""
    return ""


def _encoding(data: bytes, name: str) -> tuple[str, bytes]:
    """The encoding of ``data`` and its byte order mark: the mark, a declaration, UTF-8, then single-byte."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return encoding, bom
    if b"\x00" in data:  # as git judges: UTF-8 and legacy text have no NUL byte
        raise NotText(f"{name} is not a text file: it holds NUL bytes and has no UTF-16 or UTF-32 byte order mark")
    declared = _declared(data)
    for encoding in (declared, "utf-8") if declared else ("utf-8",):
        try:
            data.decode(encoding)
            return encoding, b""
        except UnicodeDecodeError:
            pass
    # Not UTF-8: a legacy single-byte file. Both decode any byte and write it back unchanged;
    # Windows-1252 only where the file uses its printable characters in 0x80-0x9f.
    if _C1.search(data):
        try:
            data.decode("cp1252")
            return "cp1252", b""
        except UnicodeDecodeError:
            pass
    return "latin-1", b""


def decode(data: bytes, name: str) -> tuple[str, Form]:
    """``data`` as text with ``\\n`` line ends, and how to store it again; NotText if it is not text."""
    encoding, bom = _encoding(data, name)
    text = data[len(bom) :].decode(encoding)
    newline = "\n"
    if "\r\n" in text and text.count("\r\n") == text.count("\n"):  # only a file that is CRLF throughout
        newline, text = "\r\n", text.replace("\r\n", "\n")
    return text, Form(encoding, bom, newline)


def load(path: Path, name: str = "") -> tuple[str, Form]:
    """The text of the file at ``path`` and its form; OSError if unreadable, NotText if not text."""
    return decode(path.read_bytes(), name or path.name)


def read_text(path: Path) -> tuple[str, str]:
    """The text of the file at ``path`` (``\\n`` line ends) and its encoding, e.g. ``latin-1``.

    For showing a file to an agent. Raises OSError when it cannot be read and
    :class:`NotText` (a ValueError) when it is not text.
    """
    text, form = load(path)
    return text, form.label
