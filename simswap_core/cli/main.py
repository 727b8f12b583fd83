"""`simswap` command line: swap faces in images, folders of frames and videos; preview faces; convert; demo.

    simswap swap --source SRC --target TGT --out OUT [options]
    simswap faces IMAGE --out PREVIEW.png [--json FACES.json]
    simswap convert SRC DST
    simswap demo --out DIR

One module per command (``swap.py``, ``faces.py``, ``convert.py``, ``demo.py``: its flags in ``add_parser`` and
its ``cmd_*``); what they share is in ``common.py``. Errors print one clear line (model-file errors also list the
folders searched and the fetch command) and exit with status 2 (bad input / missing file) or 1 (anything
unexpected).
"""
from __future__ import annotations

import argparse
import os
import sys

from ..errors import MissingModelError, SimSwapError
from . import convert, demo, faces, swap

EXIT_BAD_INPUT = 2
EXIT_FAILURE = 1


def build_parser() -> argparse.ArgumentParser:
    """The ``simswap`` parser with its four subcommands (each sets ``func``, the command to run)."""
    p = argparse.ArgumentParser(prog="simswap", description="SimSwap face swapping (images, folders, videos).")
    sub = p.add_subparsers(dest="command", required=True, metavar="{swap,faces,convert,demo}")
    for command in (swap, faces, convert, demo):
        command.add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run ``simswap`` with ``argv`` (default: sys.argv); returns the exit status (0, 1, 2 or 130)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except MissingModelError as e:
        print(f"simswap: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (SimSwapError, FileNotFoundError, ValueError) as e:
        msg = " ".join(str(e).split())
        print(f"simswap: error: {msg}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("simswap: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        if os.environ.get("SIMSWAP_DEBUG"):
            raise
        print(f"simswap: error: {type(e).__name__}: {' '.join(str(e).split())} (set SIMSWAP_DEBUG=1 for a "
              "traceback)", file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
