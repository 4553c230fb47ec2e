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
