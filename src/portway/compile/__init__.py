"""Revision compilation, shared by the manager (which checks a revision before it is stored) and
the worker (which serves it), so the manager refuses exactly what a worker could not run.

- ``routing``: the routing table (``Router``, ``Mount``, ``EndpointMount``, ``Match``,
  ``NotAllowed``);
- ``routes``: ``compile_routes(revision, pipelines, upstream_for)``, the one way a revision
  becomes a routing table of ``Route``s (host/base-path conflicts, per-route policy pipelines,
  per-API upstreams), and ``compile_router(revision)`` without pipelines or upstreams;
- ``check``: ``RevisionCheck``, the manager's compile check (routing table, TLS context of every
  HTTPS backend, every route's policy pipeline) on throwaway in-process caches.

It sits above ``config``, ``stores`` and ``policies`` and below ``worker`` and ``manager``.
"""
