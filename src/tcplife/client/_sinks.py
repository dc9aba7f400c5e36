"""
What the client writes its output to: files, or anything with their
C{write} and C{flush}.
"""

from __future__ import annotations

from typing import Protocol


class ByteSink(Protocol):
    """
    A binary file, as far as writing goes.
    """

    def write(self, data: bytes, /) -> object: ...

    def flush(self) -> object: ...


class TextSink(Protocol):
    """
    A text file, as far as writing goes.
    """

    def write(self, text: str, /) -> object: ...

    def flush(self) -> object: ...
