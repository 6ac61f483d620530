"""The ``portway`` commands that talk to the management API (``api``, ``deploy``, ``rollback``,
``workers``, ``export``, ``apply``, ``schema``): a typed HTTP client and thin argument parsing.

Public surface: ``ManagerClient``, ``ManagementAPIError`` (``portway.client.management_client``)
and ``register`` (``portway.client.cli``), which adds the commands to the ``portway`` parser. The
answers are the models of ``portway.config.management``, the ones the manager declares.
"""
