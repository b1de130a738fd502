"""User mistakes: reported in one line, exit code 2, no traceback.

UserError is a mistake in the config or the command line; the data layer raises its own
tasks.errors.DataError. MISTAKES catches both, wherever a run turns a mistake into its one line."""

from tasks.errors import DataError


class UserError(Exception):
    """A mistake in the config or the command line. The message names what and where."""

    exit_code = 2


MISTAKES = (UserError, DataError)


def did_you_mean(word: str, choices) -> str:
    import difflib

    # str(): a YAML key may be a number or null
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""
