"""The one error type of the export chain: a file it reads or writes is missing or wrong."""


class ExportError(RuntimeError):
    """A problem with an input or output file; the message names the file and what is wrong."""
