"""The data layer's one error type. tasks/ knows nothing about trainers or the command line: a
mistake in a data file or in a task's settings is a DataError whose message names the file, line
and column (or the config key); the run layer prints it as one line and exits with 2."""


class DataError(Exception):
    """A mistake in the data or in the task's settings. The message names what and where."""

    exit_code = 2
