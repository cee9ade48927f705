"""The one error that means "bad input".

Anything a user can get wrong (an option, a parameter, a file, a platform
name) raises ``UserError``, whose message names what is wrong and the value
given. The command line prints it in one line and exits with status 2; any
other exception is a bug in simlab and is reported as one (exit status 1).

``UserError`` is a ``ValueError``, so the Python API keeps raising
``ValueError`` for bad arguments, as Python code expects.
"""

from __future__ import annotations

__all__ = ["RunFailed", "UserError"]


class UserError(ValueError):
    """Bad input, reported in one line that names the option or field."""


class RunFailed(RuntimeError):  # noqa: N818 - named for what happened, as the CLI says it
    """A real run that could not be carried out (a server that would not start,
    a port still taken): not bad input and not a bug. Exit status 1."""
