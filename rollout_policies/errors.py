"""Errors a user can act on. The command line prints them as one line and exits with status 2."""

from __future__ import annotations


class UserError(Exception):
    """Bad input or an unreachable dependency: a one-line message that names what is wrong."""

    exit_code = 2
