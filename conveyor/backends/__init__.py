"""Storage backends, one sub-package each, picked by URL scheme.

See ``conveyor.core.backend_registry`` for the table of schemes.
"""
