"""Example applications for twisted-cluster (run them from the repository root)."""
