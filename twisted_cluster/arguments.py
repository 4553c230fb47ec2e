"""
AMP argument types for values larger than AMP's 65,535 bytes per value.

AMP limits every value of a box to 65,535 bytes, but not the number of keys
in a box.  L{BigBytes} and L{BigUnicode} split a value over as many keys as
it needs (C{name} holds the count, C{name.1}, C{name.2}, ... the chunks) and
join it back on the other side.  Both ends must declare the argument with the
same type, as with any AMP argument.
"""

from __future__ import annotations

from typing import Any

from twisted.protocols import amp

#: The most bytes one AMP value may hold.
MAX_VALUE_LENGTH = amp.MAX_VALUE_LENGTH


class BigBytes(amp.Argument):
    """
    A C{bytes} value of any length, sent in chunks of at most
    L{MAX_VALUE_LENGTH} bytes.
    """

    def toBox(self, name: bytes, strings: Any, objects: Any, proto: Any) -> None:
        value = self.retrieve(objects, amp._wireNameToPythonIdentifier(name), proto)
        if value is None and self.optional:
            return
        data = self.toBytes(value)
        chunks = [
            data[start : start + MAX_VALUE_LENGTH]
            for start in range(0, len(data), MAX_VALUE_LENGTH)
        ]
        strings[name] = b"%d" % (len(chunks),)
        for number, chunk in enumerate(chunks, 1):
            strings[b"%s.%d" % (name, number)] = chunk

    def fromBox(self, name: bytes, strings: Any, objects: Any, proto: Any) -> None:
        key = amp._wireNameToPythonIdentifier(name)
        count = self.retrieve(strings, name, proto)
        if count is None and self.optional:
            objects[key] = None
            return
        chunks = [strings.pop(b"%s.%d" % (name, n)) for n in range(1, int(count) + 1)]
        objects[key] = self.fromBytes(b"".join(chunks))

    def toBytes(self, value: Any) -> bytes:
        """
        The bytes that carry C{value}; a subclass encodes its own type.

        @raise TypeError: when C{value} is not of this argument's type.
        """
        if not isinstance(value, bytes):
            raise TypeError(f"BigBytes needs bytes, not {type(value).__name__}")
        return value

    def fromBytes(self, data: bytes) -> Any:
        """
        The value that L{toBytes} made C{data} from.
        """
        return data


class BigUnicode(BigBytes):
    """
    A C{str} value of any length, sent as UTF-8 in chunks.
    """

    def toBytes(self, value: Any) -> bytes:
        if not isinstance(value, str):
            raise TypeError(f"BigUnicode needs str, not {type(value).__name__}")
        return value.encode("utf-8")

    def fromBytes(self, data: bytes) -> Any:
        return data.decode("utf-8")
