"""Read one array of a JSON object as the body arrives, item by item, without holding the whole document.

The platform answers some lists in one piece (the service-account list carries every key of every account inline,
tens of megabytes on a large account): ``iter_member_items`` yields that array's items one at a time, each parsed
by the standard library's C decoder as soon as its text is complete; the other members of the object are parsed
and dropped. Memory holds one item and the unread text, never the document.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Iterable, Iterator
from typing import Any

_DECODER = json.JSONDecoder()
_WHITESPACE = " \t\n\r"
# Text read at least before a value that did not parse yet is tried again (doubling keeps the retries linear).
_MIN_READ = 64 * 1024


class _Reader:
    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._utf8 = codecs.getincrementaldecoder("utf-8")()
        self.text = ""
        self.pos = 0
        self.exhausted = False

    def more(self, at_least: int = 1) -> bool:
        """Read until ``at_least`` more characters are buffered (or the body ends); False when nothing came."""
        pieces, got = [], 0
        while got < at_least and not self.exhausted:
            chunk = next(self._chunks, None)
            piece = self._utf8.decode(b"" if chunk is None else chunk, final=chunk is None)
            if chunk is None:
                self.exhausted = True
            pieces.append(piece)
            got += len(piece)
        if got:
            self.text = self.text[self.pos:] + "".join(pieces)
            self.pos = 0
        return bool(got)

    def peek(self) -> str:
        """The next character that is not whitespace ("" at the end of the body), not consumed."""
        while True:
            while self.pos < len(self.text) and self.text[self.pos] in _WHITESPACE:
                self.pos += 1
            if self.pos < len(self.text):
                return self.text[self.pos]
            if not self.more():
                return ""

    def expect(self, allowed: str) -> str:
        char = self.peek()
        if not char or char not in allowed:
            raise ValueError(f"expected one of {allowed!r} at character {self.pos}, found {char!r}")
        self.pos += 1
        return char

    def value(self) -> Any:
        """The next JSON value, parsed once its text is complete (a number is complete when something follows)."""
        self.peek()
        while True:
            try:
                value, end = _DECODER.raw_decode(self.text, self.pos)
            except json.JSONDecodeError:
                if self.exhausted:
                    raise
                self.more(max(_MIN_READ, len(self.text) - self.pos))
                continue
            if end < len(self.text) or self.exhausted:
                self.pos = end
                return value
            self.more()


def iter_member_items(chunks: Iterable[bytes], member: str) -> Iterator[Any]:
    """The items of the array held by ``member`` of the JSON object the chunks spell, one at a time. Raises
    ValueError if the text is not a JSON object, or ``member`` is missing or not an array."""
    reader = _Reader(chunks)
    reader.expect("{")
    found = False
    if reader.peek() == "}":
        reader.pos += 1
    else:
        while True:
            name = reader.value()
            if not isinstance(name, str):
                raise ValueError("a JSON object's member name must be a string")
            reader.expect(":")
            if name == member and reader.peek() == "[":
                found = True
                reader.pos += 1
                if reader.peek() == "]":
                    reader.pos += 1
                else:
                    while True:
                        yield reader.value()
                        if reader.expect(",]") == "]":
                            break
            else:
                reader.value()  # another member: read and dropped
            if reader.expect(",}") == "}":
                break
    if reader.peek():
        raise ValueError("extra data after the JSON object")
    if not found:
        raise ValueError(f"the JSON object has no array {member!r}")
