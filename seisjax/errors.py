"""Errors that mean "the input is wrong", as opposed to a bug in seisjax."""


class InputError(ValueError):
    """Bad user input (file, trace, config key, argument). The message names what, where and why;
    the command line prints it without a traceback."""
