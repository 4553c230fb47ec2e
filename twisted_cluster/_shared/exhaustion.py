"""
The errors that mean a process, or the whole system, is out of descriptors
or memory, as opposed to one connection that went wrong.

The master's accept loop pauses on them (accepting again at once would
spin); a worker that cannot adopt a connection for one of them closes it
and logs the episode once, not once per connection.
"""

from __future__ import annotations

import errno

#: C{errno} values of an exhausted process or system.
EXHAUSTED = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
