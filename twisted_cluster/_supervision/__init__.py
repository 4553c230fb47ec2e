"""
Supervision, in the master: each worker process as the master sees it
(L{process}), the supervisor that starts, replaces and stops them
(L{supervisor}), and the decisions it takes (L{health}, L{recycle},
L{rollout}, L{backoff}, L{startfailure}).  Runs only in the master.
"""
