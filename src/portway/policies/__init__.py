"""Policies: one module per policy (its config model and its behaviour), and the pipeline runner.

The contract between the worker and the policies is ``portway.policies.api``.
"""
