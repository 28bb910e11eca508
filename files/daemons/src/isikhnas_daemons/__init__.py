"""iSIKHNAS messaging pipeline daemons.

Every daemon is a console entry point (see ``pyproject.toml``) configured purely from environment
variables, logging JSON lines to stdout and talking to systemd through ``NOTIFY_SOCKET``.
"""

__version__ = "0.1.0"
