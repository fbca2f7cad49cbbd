"""The control plane: the environment's daemon, its HTTP control API (server and client), the config
publisher that pushes the mesh config to every proxy, and the watchdog that brings the daemon back."""
