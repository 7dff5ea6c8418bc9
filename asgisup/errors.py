"""The errors asgisup raises to its users, split by who is at fault.

    AsgisupError
     ├── ConfigError     an option has a value asgisup does not accept (the operator's fault)
     ├── AppLoadError    the application could not be imported or built (the app's fault)
     ├── BootError       a worker could not start serving: the app failed to import or its
     │                   lifespan startup failed; raised by run() in the supervisor
     └── BindError       the listening socket could not be created (address in use, bad path)

Protocol errors caused by clients never reach this tree: they are answered on the wire
(see ``asgisup.protocols.http``).
"""

from __future__ import annotations


class AsgisupError(Exception):
    """Base of every error asgisup raises on purpose."""

    #: The command line exits with this code when the error stops it.
    exit_code = 1


class ConfigError(AsgisupError, ValueError):
    """An option has a value asgisup does not accept.

    The message is one line that names the option and the values it accepts.
    """

    exit_code = 2


class AppLoadError(AsgisupError):
    """The application named by the user could not be imported or built."""

    exit_code = 3


class BootError(AsgisupError):
    """A worker failed to boot; the server stopped instead of restarting it in a loop."""

    exit_code = 3


class BindError(AsgisupError):
    """The listening socket could not be created."""
