"""
Entry point of a worker process: C{python -m twisted_cluster.workermain}.

A module of its own so that running it does not import the package's
modules twice (the package imports L{twisted_cluster._worker.runtime}).
"""

from twisted_cluster._worker.runtime import main

main()
