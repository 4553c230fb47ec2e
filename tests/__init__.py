"""
Tests for twisted-cluster.
"""
