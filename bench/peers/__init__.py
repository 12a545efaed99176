"""Conveyor's peers, measured by the same workloads in their own virtualenvs.

``driver`` runs one workload on one peer; ``<name>_peer`` modules are the adapters;
``venvs`` makes each peer's virtualenv from its dependency group in pyproject.toml.
"""
