"""The gateway worker: upstream pools and balancing, health, the proxy handler, the config sync
(the routing table it serves is compiled by ``portway.compile``).

Public pieces (import them from their modules):

* ``portway.worker.settings.WorkerSettings`` — listeners (``port``, ``https_port``,
  ``redirect_port``, ``tls``), ``processes``, ``limits``, ``trusted_proxies``, ``drain_timeout``.
* ``portway.worker.runtime.compile_runtime(revision, settings, pipeline_factory) -> Runtime`` —
  compiles one ``EnvironmentRevision`` (router, upstream pools, health checkers); raises
  ``DeploymentError``. ``await runtime.start()`` starts health checks, ``await runtime.close()``
  closes pools. The routing table comes from ``portway.compile.routes.compile_routes``, the
  compilation the manager's check runs too.
* ``portway.worker.proxy.GatewayHandler(control=...)`` — the ``portway.http`` handler;
  ``swap(runtime)`` switches revisions atomically; paths under ``/_portway/`` go to ``control``.
* ``portway.worker.server.run_worker_server(setup, settings)`` — blocking: N processes on the same
  ports (SO_REUSEPORT), graceful drain on SIGTERM/SIGINT. ``serve_worker`` is the one-process
  coroutine and ``start_listeners(handler, settings)`` starts listeners in a running loop (tests).

How ``worker/app.py`` uses it::

    async def setup(environment, worker, secret, process: WorkerProcess) -> Handler:  # per process
        handler = GatewayHandler(control=ControlHandler(...))
        async def apply(revision: EnvironmentRevision) -> None:   # called by config sync
            runtime = compile_runtime(revision, process.settings, pipeline_factory)
            await runtime.start()
            handler.swap(runtime)             # old runtime closes once its requests finished
        ...start config sync (load last good revision from disk, then poll/push)...
        process.on_shutdown.append(sync.stop)
        process.on_shutdown.append(handler.close)
        return handler

    def run(environment: str, worker: WorkerConfig) -> int:  # a WorkerConfig is a WorkerSettings
        return run_worker_server(functools.partial(setup, environment, worker, secret), worker)

With ``processes > 1`` each process is a fresh interpreter started with ``spawn``: ``setup`` must be
a module-level function, and every process runs its own config sync and runtime.
"""
