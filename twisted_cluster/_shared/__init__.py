"""
Code that runs in both processes without being part of their contract:
privilege handling, the scheduling policy, adopting a listening socket
another process created, and the two halves of the worker log pipe.
It imports neither side.
"""
