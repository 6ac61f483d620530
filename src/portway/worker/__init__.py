"""The gateway worker: routing, upstream pools and balancing, health, the proxy handler.

Public pieces (import them from their modules):

* ``portway.worker.settings.WorkerSettings`` — listeners (``port``, ``https_port``,
  ``redirect_port``, ``tls``), ``processes``, ``limits``, ``trusted_proxies``, ``drain_timeout``.
* ``portway.worker.runtime.compile_runtime(revision, settings, pipeline_factory) -> Runtime`` —
  compiles one ``EnvironmentRevision`` (router, upstream pools, health checkers); raises
  ``DeploymentError``. ``await runtime.start()`` starts health checks, ``await runtime.close()``
  closes pools. ``compile_router(revision)`` is the same compile check without upstreams.
* ``portway.worker.proxy.GatewayHandler(control=...)`` — the ``portway.http`` handler;
  ``swap(runtime)`` switches revisions atomically; paths under ``/_portway/`` go to ``control``.
* ``portway.worker.server.run_worker_server(setup, settings)`` — blocking: N processes on the same
  ports (SO_REUSEPORT), graceful drain on SIGTERM/SIGINT. ``serve_worker`` is the one-process
  coroutine and ``start_listeners(handler, settings)`` starts listeners in a running loop (tests).

How ``worker/app.py`` uses it::

    async def setup(process: WorkerProcess) -> Handler:        # module level: runs per process
        handler = GatewayHandler(control=ControlHandler(...))
        async def apply(revision: EnvironmentRevision) -> None:   # called by config sync
            runtime = compile_runtime(revision, process.settings, pipeline_factory)
            await runtime.start()
            handler.swap(runtime)             # old runtime closes once its requests finished
        ...start config sync (load last good revision from disk, then poll/push)...
        process.on_shutdown.append(sync.stop)
        process.on_shutdown.append(handler.close)
        return handler

    def run(options) -> int:
        return run_worker_server(setup, WorkerSettings(port=8080, processes=options.processes))

With ``processes > 1`` each process is a fresh interpreter started with ``spawn``: ``setup`` must be
a module-level function, and every process runs its own config sync and runtime.
"""
