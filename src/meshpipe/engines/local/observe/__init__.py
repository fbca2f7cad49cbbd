"""Observation: the environment's traffic figures merged from every proxy, the services' logs, the
environment as a topology, and the web dashboard."""
