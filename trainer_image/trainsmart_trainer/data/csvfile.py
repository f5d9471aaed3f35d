"""Reading CSV files into columns of strings, with errors that point at the file, line and column.

The standard library's csv module is enough and keeps the trainer image free of pandas. Values stay strings
here; each loader decides which columns must be numbers and says so, with the fix, when one is not.
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt

from trainsmart_trainer.data.common import DataError

# Spellings of "no value" that spreadsheets and pandas exports produce; compared case-insensitively.
MISSING_VALUES: Final = frozenset({"", "na", "n/a", "nan", "null", "none", "?"})
_DELIMITERS: Final = (",", "\t", ";", "|")


def is_missing(value: str) -> bool:
    """Whether a cell means "no value"."""
    return value.strip().lower() in MISSING_VALUES


def is_number(value: str) -> bool:
    """Whether a cell parses as a number (how loaders tell numeric columns and headers from text)."""
    try:
        float(value)
    except ValueError:
        return False
    return True


def existing_file(path: str) -> Path:
    """The path as a file that exists, or a DataError saying where it was looked for and what to check."""
    file = Path(path)
    if file.is_dir():
        raise DataError(f"{path}: is a directory; set dataset.path to the data file inside it")
    if not file.is_file():
        raise DataError(
            f"{path}: no such file; check dataset.path and that the volume holding it is mounted (spec.volumeMounts)"
        )
    if not os.access(file, os.R_OK):
        raise DataError(f"{path}: permission denied; make the file readable by the trainer's user")
    return file


@dataclass(frozen=True)
class Table:
    """A CSV file's header and rows (strings), with the file line where each row starts."""

    path: Path
    header: list[str]
    rows: list[list[str]]
    lines: list[int]

    def column(self, name: str, option: str) -> list[str]:
        """The values of a column; a DataError naming the columns that exist and the option to fix if absent."""
        if name not in self.header:
            available = ", ".join(repr(column) for column in self.header)
            raise DataError(
                f"{self.path}: no column {name!r} (columns: {available}); set dataset.{option} to one of them "
                "or fix the header row"
            )
        position = self.header.index(name)
        return [row[position] for row in self.rows]

    def numbers(self, name: str, values: list[str], fix: str) -> npt.NDArray[np.float64]:
        """A column's values as floats (NaN where missing); a DataError naming the line of the first non-number."""
        parsed = np.empty(len(values), dtype=np.float64)
        for row, value in enumerate(values):
            if is_missing(value):
                parsed[row] = math.nan
                continue
            try:
                parsed[row] = float(value)
            except ValueError:
                raise DataError(
                    f"{self.path}, line {self.lines[row]}, column {name!r}: {value!r} is not a number; {fix}"
                ) from None
        return parsed


def read_table(path: str) -> Table:
    """Parse a delimited text file with a header row. The delimiter is whichever of , tab ; | the header uses most."""
    file = existing_file(path)
    try:
        with file.open(newline="", encoding="utf-8-sig") as stream:
            first = stream.readline()
            used = any(candidate in first for candidate in _DELIMITERS)
            delimiter = max(_DELIMITERS, key=first.count) if used else ","
            stream.seek(0)
            reader = csv.reader(stream, delimiter=delimiter)
            header: list[str] | None = None
            rows: list[list[str]] = []
            lines: list[int] = []
            start = 1
            for record in reader:
                if not record or (len(record) == 1 and not record[0].strip()):
                    start = reader.line_num + 1
                    continue
                if header is None:
                    header = [name.strip() for name in record]
                elif len(record) != len(header):
                    raise DataError(
                        f"{path}, line {start}: {len(record)} fields but the header has {len(header)}; quote "
                        "values that contain the delimiter, or fix the row"
                    )
                else:
                    rows.append(record)
                    lines.append(start)
                start = reader.line_num + 1
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: not UTF-8 text ({error.reason}); save the file as UTF-8") from None
    except csv.Error as error:
        raise DataError(f"{path}: not a readable CSV file ({error}); fix the quoting") from None
    if header is None:
        raise DataError(f"{path}: the file is empty; it needs a header row and data rows")
    duplicated = sorted({name for name in header if header.count(name) > 1})
    if duplicated:
        raise DataError(f"{path}: column names {duplicated} appear more than once; rename them in the header row")
    if not rows:
        raise DataError(f"{path}: the file has a header but no data rows; add rows")
    return Table(path=file, header=header, rows=rows, lines=lines)
