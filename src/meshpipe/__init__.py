"""meshpipe: one small manifest per service, meshed immutable versions on Amazon ECS or on one machine."""

__version__ = "0.1.0"
