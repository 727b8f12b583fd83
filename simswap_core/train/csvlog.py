"""The training log: one CSV row per logged step (step, time, every loss term, gradient norms, learning rates).

Rows are appended and flushed one at a time, so a crash loses at most the row being written. On resume the file is
cut back (atomically) to the rows of the steps the resumed checkpoint had finished, so the log never holds two
rows for one step. The columns are fixed by the first row of a run (a term missing at a later step leaves its
cell empty).
"""
from __future__ import annotations

import csv
import io
import math
import warnings
from collections.abc import Mapping
from pathlib import Path

from ..io.atomic import atomic_write

__all__ = ["CsvLog", "read_log"]


def _cell(value: float | int | str | None) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else str(value)
    return str(value)


class CsvLog:
    """Append-only CSV at ``path``; ``resume_from=step`` keeps only the rows with ``step <= step``."""

    def __init__(self, path: Path, *, resume_from: int | None = None) -> None:
        self.path = Path(path)
        self.columns: list[str] | None = None
        self._ignored: set[str] = set()
        if self.path.exists():
            if resume_from is None:
                raise FileExistsError(f"{self.path}: a training log already exists; resume the run or choose "
                                      f"another output folder")
            rows = read_log(self.path)
            with open(self.path, newline="") as fh:
                header = next(csv.reader(fh), None)
            if header:
                self.columns = header
                kept = [r for r in rows if int(float(r["step"])) <= resume_from]
                buf = io.StringIO()
                writer = csv.DictWriter(buf, fieldnames=header, lineterminator="\n")
                writer.writeheader()
                writer.writerows(kept)
                atomic_write(self.path, lambda tmp: tmp.write_text(buf.getvalue()), overwrite=True)

    def write(self, row: Mapping[str, float | int | str | None]) -> None:
        """Append one row (the header first, from this row's keys, when the file is new)."""
        if self.columns is None:
            self.columns = list(row)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "x", newline="") as fh:
                fh.write(",".join(self.columns) + "\n")
        extra = [k for k in row if k not in self.columns and k not in self._ignored]
        if extra:
            warnings.warn(f"{self.path}: terms {extra} appeared after the log's columns were fixed; not logged",
                          stacklevel=2)
            self._ignored.update(extra)
        line = ",".join(_cell(row.get(c)) for c in self.columns) + "\n"
        with open(self.path, "a", newline="") as fh:
            fh.write(line)
            fh.flush()


def read_log(path: Path) -> list[dict[str, str]]:
    """The rows of a training log (strings, as written)."""
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))
