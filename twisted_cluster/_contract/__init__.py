"""
The contract between the master and its workers: what crosses between the
two processes.  Both import it; it imports neither side.

  - the descriptors a worker is started with (below);
  - L{workerconfig}: what the master tells a worker on its command line;
  - L{commands}: the AMP commands of the control channel, and L{amp}, the
    protocol both ends of it run;
  - L{handoff}: the hand-off channel's wire format, and the master's and
    the worker's ends of it;
  - L{metricsnapshot}: the wire format of the app's metrics that a worker
    sends the master.
"""

#: The worker's end of its AMP control channel (L{commands}).
CONTROL_FD = 3
#: The worker's end of its hand-off channel (L{handoff}).
HANDOFF_FD = 4
#: The pipe a worker writes its log events to, one JSON object a line.
LOG_FD = 5
#: The pipe a worker's C{faulthandler} writes its Python stacks to, when the
#: master sends it L{STACKS_SIGNAL} (a hung worker, just before its kill).
STACKS_FD = 6


def _stacksSignal() -> int:
    import signal

    # A real-time signal: no tool sends it by habit (USR1 reopens logs for
    # gunicorn and nginx users), and no library claims it.
    return signal.SIGRTMIN + 1 if hasattr(signal, "SIGRTMIN") else signal.SIGUSR2


#: The signal on which a worker writes the stacks of all its threads to
#: L{STACKS_FD}: its handler is C code, which runs while the reactor is
#: blocked.
STACKS_SIGNAL = _stacksSignal()
