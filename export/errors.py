class ExportError(RuntimeError):
    """A problem with an input or output file; the message names the file and what is wrong."""
