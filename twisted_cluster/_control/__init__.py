"""
The control plane, in the master: the control site (L{site}) with its
status page (C{static/}), C{/status.json} and C{/metrics} (L{metrics}),
the app's own metrics gathered from the workers at each scrape
(L{gathering}) and merged for the cluster (L{appseries}), probes (L{probes}), who may use it (L{auth}) and its budget (L{budget}).
Its command-line client is L{twisted_cluster.ctl}.
"""
