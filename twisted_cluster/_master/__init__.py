"""
The master's side: the command line (L{tap}), the cluster service
(L{service}), and the data path of every connection: listening sockets
(L{listening}), the accept loop (L{acceptor}), the PROXY header peek
(L{proxypeek}), the dispatch policies (L{dispatch}), and the relay of
worker-to-worker calls (L{routing}).  Runs only in the master.
"""
