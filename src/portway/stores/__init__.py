"""Stores: one small async interface per capability, an embedded default, the production engines.

- ``config_store``: documents of the control plane (SQLite embedded, MongoDB in production)
- ``cache``: counters and cached values shared by workers (in-process, Hazelcast, Redis)
- ``traffic``: traffic log sink and analytics queries (SQLite, Elasticsearch)

Backends are chosen by name through each interface's registry (``open_config_store(url)`` ...).
"""
