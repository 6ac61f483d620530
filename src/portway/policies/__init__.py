"""Policies: one module per policy (its config model and its behaviour), and the pipeline runner.

Public surface (import from the modules):

- ``contract``: the worker ↔ policy contract (``PolicyContext``, ``RequestView``, ``ResponseView``,
  ``Reply``, ``GatewayError``, ``Pipeline``, ``NO_PIPELINE``);
- ``registry``: ``validate_policy_spec(spec, where, *, phase=None, global_policies=None)``,
  ``policy_json_schemas()``, ``POLICY_TYPES``;
- ``pipeline``: ``compile_pipeline(scopes, revision, services, *, label, scope_names,
  scope_keys) -> CompiledPipeline``;
- ``factory``: ``route_pipelines(services)``, the ``PipelineFactory`` ``portway.compile`` calls;
- ``resources``: ``PolicyServices`` (caches, clock, HTTP client, consumers, error rules, stats),
  ``PolicyStats``, ``ErrorRule``;
- ``conditions``: ``compile_condition(tree, where)``; ``variables``: ``compile_variable(name)``.

Everything else (policy modules, ``_headers``, ``_keys``, ``_counting``) is internal.
"""
