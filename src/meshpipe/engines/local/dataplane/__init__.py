"""The local engine's data plane: the ingress gateway and the sidecars, each its own proxy process.

The daemon starts them with :func:`client.proxy_command`, waits with :func:`client.wait_live`, pushes
the mesh config with :func:`client.push_config` and reads :func:`client.stats`. The pure parts are
:mod:`.config` (the config document) and :mod:`.routing` (where a request goes); sockets live in
:mod:`.proxy`, :mod:`.downstream`, :mod:`.upstream`, :mod:`.exchange` and :mod:`.admin`.
"""
