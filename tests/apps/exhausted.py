"""
An app whose factory fails with EMFILE while L{exhausted} is true, as an
app out of descriptors does when it opens a file for each connection.
"""

import errno
import os

from twisted.internet.protocol import Factory, Protocol

#: Whether building a protocol fails for lack of descriptors.
exhausted = True


class _Exhausted(Factory):
    protocol = Protocol

    def buildProtocol(self, addr):
        if exhausted:
            raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))
        return super().buildProtocol(addr)


factory = _Exhausted()
