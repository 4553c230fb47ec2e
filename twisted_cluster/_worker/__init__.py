"""
The worker runtime: what a worker process runs (L{runtime}; its entry
point is C{python -m twisted_cluster.workermain}), adopting handed-off
connections (L{adoption}), counting and draining them (L{tracking}), and
the TLS and PROXY layers of its listeners (L{wrapping}, L{proxyheader}),
and the app's metrics as the master gathers them (L{appmetrics}).
Runs only in workers, and imports nothing from the master's side.
"""
