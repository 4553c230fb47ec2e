"""
A module whose import fails, as a user's buggy app would.
"""

raise RuntimeError("this app is broken on purpose")
