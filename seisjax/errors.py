"""Errors that mean "the input is wrong", as opposed to a bug in seisjax."""


class InputError(ValueError):
    """Bad user input (file, trace, config key, argument). The message names what, where and why;
    the command line prints it without a traceback."""


def log_problems(log, problems: dict, header: str, *, limit: int = 20) -> None:
    """Log ``{name: reason}`` of the inputs a long job kept but could not process, under ``header``
    (at most ``limit`` lines, then a count), so that none passes unnoticed."""
    if not problems:
        return
    log(header)
    for name, reason in list(problems.items())[:limit]:
        log(f"    {name}: {reason}")
    if len(problems) > limit:
        log(f"    ... and {len(problems) - limit} more")
