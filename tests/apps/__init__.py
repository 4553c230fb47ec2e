"""
Small apps that the tests serve with a real cluster.
"""
