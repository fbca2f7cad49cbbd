"""The local engine's data plane: the ingress gateway and the sidecars, each its own proxy process.

The daemon starts them with :func:`client.proxy_command`, waits with :func:`client.wait_live`, pushes
the mesh config with :func:`client.push_config` and reads :func:`client.stats`. The pure parts are
:mod:`.config` (the config document) and :mod:`.routing` (where a request goes); sockets live in
:mod:`.proxy`, :mod:`.downstream`, :mod:`.upstream`, :mod:`.exchange` and :mod:`.admin`.
"""

# The version of the admin API and config document, reported by ``/server_info`` as ``protocol``. A
# daemon takes over (after a restart) only proxies that speak the protocol it speaks; bump it with any
# change a proxy started by an older meshpipe would not understand.
ADMIN_PROTOCOL = 1
