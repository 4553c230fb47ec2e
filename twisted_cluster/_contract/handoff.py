"""
The hand-off channel: accepted connections travel from the master to a
worker as file descriptors over a C{SOCK_SEQPACKET} socketpair.

This module is the contract, the wire format both ends follow; the master's
end is L{twisted_cluster._supervision.handoffsender}, the worker's
L{twisted_cluster._worker.handoffreceiver}.

It is kept apart from the AMP control channel on purpose: a batch of
descriptors is one C{sendmsg} with no parsing on either side, and a large
user message on the control channel never delays a connection.

Wire format
===========
  - master to worker, one message per batch: the payload holds one byte per
    descriptor, the index of the listener it was accepted on; the
    descriptors travel as C{SCM_RIGHTS} ancillary data, in the same order.
    A listener index with the L{LISTENING} bit set marks a listening socket
    that the worker accepts on itself (C{--dispatch shared}), not a client
    connection.
  - worker to master: 12 bytes, three unsigned 32-bit integers in network
    order, C{(taken, closed, returned)}.  The message covers the next
    C{taken + returned} descriptors the master sent, oldest first: the
    first C{taken} are the worker's now (the master closes its copies);
    the C{returned} ones after them never reached the worker, and the
    master hands its own copies to another worker.  C{closed} counts the
    worker's connections that closed since its last message.  Adoptions
    and closes are coalesced: one message at most every C{ackDelay}
    seconds, which the master chooses (see L{twisted_cluster._worker.handoffreceiver.HandoffReceiver}), and at once
    when descriptors are returned.

Descriptors the kernel could not deliver
========================================
A worker out of descriptors (C{RLIMIT_NOFILE}), or reading with too small
an ancillary buffer, still receives the whole payload, but the kernel
installs only the descriptors it has room for and discards the rest,
setting C{MSG_CTRUNC}.  It installs them in order and stops at the first
one that does not fit: what arrives is always the first descriptors of
the message, what is lost is its last C{len(payload) - received} ones.
The worker detects it (fewer descriptors than payload bytes), acknowledges
at once what came before them and returns the lost tail in that same
message, so that they are always the last ones it covers; it reads no
further message until that acknowledgement is sent.  The master still
holds its copy of every one of them and hands them to another worker (see
L{twisted_cluster._master.dispatcher}); a listening socket that was lost is closed.

No connection is lost in the hand-off: the master keeps its own copy of
every descriptor it sent until the worker acknowledges it, and it keeps the
worker's end of the socketpair open too (C{peer}).  A message the worker
has not received yet still sits in the receive queue of that end, and a
C{SOCK_SEQPACKET} message is dequeued whole by exactly one C{recvmsg}: the
master can take it back (L{twisted_cluster._supervision.handoffsender.HandoffSender.reclaim}) without any race with
the worker.  So the master knows, at every moment, which connections the
worker never saw:
  - when the worker dies, what is still queued is given back to be served
    by another worker, whole; what the worker had received and not yet
    acknowledged is closed, since it may have read a request from it (the
    client sees its connection closed, as with any request inside a worker
    that crashes);
  - when the worker stalls, what is still queued goes to the other
    workers at once.
Without the peer end (C{peer=None}), every unacknowledged connection is
given back when the worker dies, which is right only if the worker
acknowledges at once (C{ackDelay=0}), before reading a byte.  Since the
acknowledgement no longer guards against loss, it is coalesced: a worker
costs the master one wake-up per C{ackDelay} instead of one per
connection.

A worker whose reactor is stopped or blocked leaves what it was sent
unacknowledged: the sender notices it on a timer (C{stallAfter}), whether
or not the master sends anything more, says so (C{onStall}), and takes
back what the worker has not received (C{onReclaim}).  What the worker did
receive stays its own: it may resume and serve it, and a connection read by
two processes would be answered twice or not at all.
"""

from __future__ import annotations

import array
import os
import socket
import struct
from typing import Sequence

from twisted.internet.interfaces import (
    IReactorFDSet,
    IReactorTime,
)

#: Most descriptors in one message (the kernel's SCM_MAX_FD is 253).
MAX_BATCH = 250
#: The bit of a listener index that marks a listening socket.
LISTENING = 0x80
ACK = struct.Struct("!III")
FD_SIZE = array.array("i").itemsize
ANCILLARY_SPACE = socket.CMSG_SPACE(MAX_BATCH * FD_SIZE)

def socketIdentity(fd: int) -> tuple[int, int]:
    """
    What names the socket behind C{fd} whatever the descriptor's number: two
    descriptors of one socket (the master's copy and the one it takes back)
    have the same identity.
    """
    status = os.fstat(fd)
    return status.st_dev, status.st_ino


class HandoffReactor(IReactorFDSet, IReactorTime):
    """
    A reactor that watches descriptors and schedules calls.
    """


#: An accepted connection in the master: (file descriptor, listener index).
Connection = tuple[int, int]


def encodeBatch(connections: Sequence[Connection]) -> tuple[bytes, list]:
    """
    Encode a batch of connections as the payload and ancillary data of one
    C{sendmsg}.
    """
    payload = bytes(index for _, index in connections)
    fds = array.array("i", [fd for fd, _ in connections])
    return payload, [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds.tobytes())]


def decodeBatch(payload: bytes, ancillary: list) -> tuple[list[Connection], int]:
    """
    Decode one message received by C{recvmsg}.

    @return: the (fd, listener index) pairs received, and how many
        descriptors the payload announces that did not arrive (the kernel
        discarded them: see the module docstring); the missing ones are
        always the last ones of the message.  Descriptors without an index
        (a malformed message) are closed.
    """
    fds = array.array("i")
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - (len(data) % FD_SIZE)])
    for extra in fds[len(payload) :]:
        os.close(extra)
    return list(zip(fds, payload)), max(len(payload) - len(fds), 0)


def encodeAck(taken: int, closed: int, returned: int = 0) -> bytes:
    """
    Encode a worker's acknowledgement (see the module docstring).
    """
    return ACK.pack(taken, closed, returned)


def decodeAck(message: bytes) -> tuple[int, int, int]:
    """
    Decode a worker's acknowledgement into (taken, closed, returned).
    """
    return ACK.unpack(message[: ACK.size])


def socketpair() -> tuple[socket.socket, socket.socket]:
    """
    A non-blocking C{SOCK_SEQPACKET} pair: (master's end, worker's end).
    """
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    ours.setblocking(False)
    return ours, theirs
