"""User-facing error types: one per class of mistake, each saying what, where and what to do."""


class ImportFileError(Exception):
    """The file as a whole cannot be imported; nothing from it is inserted.

    The message names the file and the reason, so it can be shown to the user as it is.
    """


class CsvFileError(ImportFileError):
    """The bytes cannot be read as a CSV file (empty, compressed, undecodable, over a cap...)."""


class ColumnMappingError(ImportFileError):
    """The header row gives no usable phone column, or an explicit mapping names a missing column."""


class OptionsError(ValueError):
    """Import options (workspace, import tag, board phone number, region, mapping) are invalid."""
