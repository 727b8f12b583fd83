"""The job file of ``simswap batch``: CSV or JSON lines, one swap per row, checked line by line.

A job is what one ``simswap swap`` call would do; its keys are that command's long flags without the dashes
(``source``, ``target``, ``out``, ``faces``, ``mask``, ``size``, ``map``, ``color_match``, ...; ``-`` or ``_``
alike), plus an optional ``id`` (a name for the summary; default ``line N``). Values:

- CSV: a header row names the columns; empty cells are "not given". Switches (``color_match``, ``no_audio``, ...)
  take true/false/yes/no/1/0. ``map`` holds several ``SRC=REF`` separated by ``;``.
- JSON lines (``.jsonl`` / ``.ndjson``, or any file whose first non-blank character is ``{``): one object per
  line; blank lines and lines starting with ``#`` are skipped. Switches are true/false, ``map`` a list of strings.

Relative paths (source, target, out, protect, report, report_source, c2pa_cert / c2pa_key, the files of
``map`` and ``faces ref:IMAGE``, and model paths that exist there) are taken relative to the job file's folder,
so a job file on a shared drive means the same on every machine. Every job is parsed by the ``swap`` command's
own parser, so a value ``simswap swap`` refuses is refused here with the same words, prefixed with ``JOBS:LINE``.
A bad line becomes a failed job (``Job.error``) and the others still run; a file that cannot be read at all raises
InputError.
"""
from __future__ import annotations

import argparse
import csv
import difflib
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from ..errors import InputError

__all__ = ["BATCH_LEVEL_FLAGS", "Job", "input_fingerprint", "parse_jobs", "swap_namespace"]

# flags of `simswap swap` that the batch decides (per worker / per run), never a job
BATCH_LEVEL_FLAGS = ("device", "quiet", "overwrite", "help")
PATH_KEYS = ("source", "target", "out", "protect", "report", "report_source", "c2pa_cert", "c2pa_key")
MODEL_KEYS = ("generator", "arcface", "parser", "sam", "detector")
MAX_JOBS = 1_000_000


class _RaisingParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors raise InputError instead of printing usage and exiting."""

    def error(self, message: str) -> NoReturn:
        raise InputError(message)

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        raise InputError(message or "unexpected exit of the argument parser")


def _swap_parser() -> argparse.ArgumentParser:
    """The ``swap`` subcommand's parser (the same flags, types and checks as ``simswap swap``), raising."""
    from ..cli import swap

    root = _RaisingParser(prog="simswap", add_help=False)
    sub = root.add_subparsers(dest="command", parser_class=_RaisingParser)
    swap.add_parser(sub)
    return sub.choices["swap"]


def _options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """{key: action} of the parser's long flags (``--color-match`` -> ``color_match``), batch-level ones left out."""
    out = {}
    for action in parser._actions:
        longs = [o for o in action.option_strings if o.startswith("--")]
        if not longs:
            continue
        key = longs[0][2:].replace("-", "_")
        if key not in BATCH_LEVEL_FLAGS:
            out[key] = action
    return out


def swap_namespace(argv: list[str]) -> argparse.Namespace:
    """``simswap swap ARGV`` parsed exactly as the command line does (InputError with argparse's words)."""
    return _swap_parser().parse_args(argv)


@dataclass
class Job:
    """One row of the job file.

    ``argv``: the ``simswap swap`` arguments it stands for (paths absolute); ``out``: the resolved output path
    (the manifest's key); ``inputs``: the files and folders it reads (for the input fingerprint); ``error``: why the
    line is unusable (then the job fails alone, nothing else is set reliably)."""

    line: int
    name: str
    argv: list[str] = field(default_factory=list)
    out: str = ""
    target: str = ""
    inputs: list[str] = field(default_factory=list)
    error: str | None = None

    def settings(self) -> dict[str, Any]:
        """The job's settings as recorded in the manifest: its swap arguments."""
        return {"argv": list(self.argv)}


def _truthy(value: Any, where: str, key: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "y", "on"):
        return True
    if text in ("0", "false", "no", "n", "off", ""):
        return False
    raise InputError(f"{where}: {key}: expected true or false, got {value!r}")


def _resolve(base: Path, text: str) -> str:
    p = Path(text).expanduser()
    return str(p if p.is_absolute() else (base / p))


def _row_to_job(row: dict[str, Any], line: int, where: str, base: Path, options: dict[str, argparse.Action],
                parser: argparse.ArgumentParser) -> Job:
    name = str(row.pop("id", "") or "").strip() or f"line {line}"
    job = Job(line=line, name=name)
    try:
        argv: list[str] = []
        inputs: list[str] = []
        for raw_key, value in row.items():
            key = str(raw_key).strip().lstrip("-").replace("-", "_")
            if value is None or (isinstance(value, str) and not value.strip()):
                continue
            if key in BATCH_LEVEL_FLAGS:
                flag = "--" + key.replace("_", "-")
                raise InputError(f"{where}: {key!r} is decided for the whole batch (simswap batch {flag}), not per "
                                 "job")
            action = options.get(key)
            if action is None:
                close = difflib.get_close_matches(key, options, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise InputError(f"{where}: unknown key {raw_key!r}{hint}; expected id or a `simswap swap` flag "
                                 f"without dashes: {', '.join(sorted(options))}")
            flag = next(o for o in action.option_strings if o.startswith("--"))
            if isinstance(action, argparse._StoreTrueAction):
                if _truthy(value, where, key):
                    argv.append(flag)
                continue
            if isinstance(action, argparse._AppendAction):
                values = value if isinstance(value, list) else [v for v in str(value).split(";") if v.strip()]
                for v in values:
                    src, eq, ref = str(v).strip().partition("=")
                    if key == "map" and eq:
                        src = _resolve(base, src)
                        inputs.append(src)
                        if not ref.strip().lower().startswith(("index:", "track:")):
                            ref = _resolve(base, ref)
                            inputs.append(ref)
                        v = f"{src}={ref}"
                    argv += [flag, str(v)]
                continue
            if isinstance(value, (list, dict)):
                raise InputError(f"{where}: {key}: expected one value, got {type(value).__name__}")
            text = str(value).strip() if not isinstance(value, bool) else str(value).lower()
            if key in PATH_KEYS:
                text = _resolve(base, text)
                if key in ("source", "target", "protect", "report_source"):
                    inputs.append(text)
            elif key in MODEL_KEYS and not Path(text).is_absolute() and (base / text).exists():
                text = str(base / text)
            elif key == "faces" and text.lower().startswith(("ref:", "reference:")):
                kind, _, ref = text.partition(":")
                text = f"{kind}:{_resolve(base, ref)}"
                inputs.append(text.split(":", 1)[1])
            argv += [flag, text]
        try:
            ns = parser.parse_args(argv)
        except InputError as e:
            raise InputError(f"{where}: {e}") from None
        job.argv, job.inputs = argv, inputs
        job.out = os.path.abspath(ns.out)
        job.target = ns.target
    except InputError as e:
        job.error = str(e)
    return job


def _json_rows(text: str) -> Iterator[tuple[int, dict[str, Any] | str]]:
    for n, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        try:
            obj = json.loads(s)
        except json.JSONDecodeError as e:
            yield n, f"not valid JSON ({e.msg} at column {e.colno})"
            continue
        if not isinstance(obj, dict):
            yield n, f"expected a JSON object {{\"source\": ..., \"target\": ..., \"out\": ...}}, got " \
                     f"{type(obj).__name__}"
            continue
        yield n, obj


def _csv_rows(text: str, path: Path) -> Iterator[tuple[int, dict[str, Any] | str]]:
    reader = csv.reader(text.splitlines())
    header: list[str] | None = None
    for row in reader:
        n = reader.line_num
        if not row or all(not c.strip() for c in row) or row[0].lstrip().startswith("#"):
            continue
        if header is None:
            header = [c.strip() for c in row]
            if not any(h.replace("-", "_") in ("target", "out") for h in header):
                raise InputError(f"{path}:{n}: expected a header row naming the columns (source, target, out, ...), "
                                 f"got {row!r}")
            continue
        if len(row) > len(header):
            yield n, f"{len(row)} cells but the header names {len(header)} columns"
            continue
        yield n, dict(zip(header, row))


def parse_jobs(path: str | os.PathLike) -> list[Job]:
    """The jobs of a CSV or JSON-lines file, in file order; a bad line gives a Job with ``error`` set.

    Two jobs writing the same output: the later one fails (naming the earlier line). Raises InputError when the
    file cannot be read, is empty or a CSV has no header row."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"JOBS {p}: no such file; expected a CSV or JSON-lines job file")
    try:
        text = p.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"JOBS {p}: cannot be read as UTF-8 text ({e})") from None
    base = p.resolve().parent
    first = text.lstrip()[:1]
    rows = _json_rows(text) if p.suffix.lower() in (".jsonl", ".ndjson", ".json") or first == "{" \
        else _csv_rows(text, p)
    parser = _swap_parser()
    options = _options(parser)
    jobs: list[Job] = []
    outputs: dict[str, int] = {}
    for n, row in rows:
        where = f"{p.name}:{n}"
        if isinstance(row, str):
            jobs.append(Job(line=n, name=f"line {n}", error=f"{where}: {row}"))
            continue
        job = _row_to_job(dict(row), n, where, base, options, parser)
        if job.error is None:
            if job.out in outputs:
                job.error = f"{where}: out {job.out} is also the output of line {outputs[job.out]}; each job " \
                            "needs its own output"
            else:
                outputs[job.out] = n
        jobs.append(job)
        if len(jobs) > MAX_JOBS:
            raise InputError(f"JOBS {p}: more than {MAX_JOBS} jobs; split the file")
    if not jobs:
        raise InputError(f"JOBS {p}: no jobs (expected a CSV header row and one row per job, or one JSON object "
                         "per line)")
    names: dict[str, int] = {}
    for job in jobs:
        if job.name in names and not job.name.startswith("line "):
            job.name = f"{job.name} (line {job.line})"
        names[job.name] = job.line
    return jobs


def input_fingerprint(paths: list[str]) -> str:
    """A short hash of the inputs' names, sizes and modification times (a folder: of the files directly in it);
    a changed input changes it, so a finished job whose inputs changed is redone. Missing paths count as
    missing (the job then fails by itself)."""
    h = hashlib.sha256()
    for text in sorted(set(paths)):
        p = Path(text)
        h.update(text.encode() + b"\0")
        try:
            if p.is_dir():
                for child in sorted(p.iterdir()):
                    if child.is_file():
                        st = child.stat()
                        h.update(f"{child.name}|{st.st_size}|{st.st_mtime_ns}\n".encode())
            else:
                st = p.stat()
                h.update(f"{st.st_size}|{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(b"missing\n")
    return h.hexdigest()[:32]
