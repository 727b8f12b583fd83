"""`simswap` command line: swap faces in images, folders of frames and videos; preview faces; convert; demo.

    simswap swap --source SRC --target TGT --out OUT [options]
    simswap faces IMAGE --out PREVIEW.png [--json FACES.json]
    simswap convert SRC DST
    simswap demo --out DIR
    simswap prepare-faces INPUT OUT --crop-size 224|512
    simswap train DATA OUT --arcface ARC [--path projected|multiscale] [--efficientnet LITE0] [--resume]
    simswap finetune DATA OUT --from latest_net_G.pth --arcface ARC
    simswap inspect FILE [--json]      (the synthetic-media label of an output)
    simswap batch JOBS [--ray auto|local|ADDRESS] [--dry-run] [--workers N] [--manifest F]
    simswap export --what generator|arcface --out F.onnx [--precision fp32|fp16] [--opset N] [--check]

One module per command (``swap.py``, ``faces.py``, ``convert.py``, ``demo.py``: its flags in ``add_parser`` and
its ``cmd_*``); what they share is in ``common.py``. Errors print one clear line (model-file errors also list the
folders searched and the fetch command) and exit with status 2 (bad input / missing file) or 1 (anything
unexpected). Ctrl-C exits with 130 and SIGTERM with 143: SIGTERM is turned into an exception in the main thread,
so the same clean-up runs as for Ctrl-C (temporary files and staging folders removed, nothing half-written left);
the message then says that nothing was written.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from ..errors import MissingModelError, SimSwapError
from . import batch, convert, demo, export, faces, inspect, prepare, swap, train

EXIT_BAD_INPUT = 2
EXIT_FAILURE = 1
EXIT_INTERRUPTED = 130          # 128 + SIGINT
EXIT_TERMINATED = 143           # 128 + SIGTERM


class Terminated(BaseException):
    """SIGTERM received: raised in the main thread (like KeyboardInterrupt for Ctrl-C) so clean-up code runs."""


@contextmanager
def sigterm_raises() -> Iterator[None]:
    """While inside, SIGTERM raises ``Terminated`` in the main thread (the previous handler is restored after)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)   # a second SIGTERM must not cut the clean-up short
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _nothing_written(args: argparse.Namespace) -> str:
    """"; nothing was written to OUT" when the command had an output pending (set by the command), else ""."""
    pending = getattr(args, "pending_output", None)
    return f"; nothing was written to {pending}" if pending else ""


def build_parser() -> argparse.ArgumentParser:
    """The ``simswap`` parser with its four subcommands (each sets ``func``, the command to run)."""
    p = argparse.ArgumentParser(prog="simswap", description="SimSwap face swapping (images, folders, videos).")
    sub = p.add_subparsers(dest="command", required=True,
                           metavar="{swap,faces,convert,demo,prepare-faces,train,finetune,inspect,batch,export}")
    for command in (swap, faces, convert, demo, prepare, train, inspect, batch, export):
        command.add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run ``simswap`` with ``argv`` (default: sys.argv); returns the exit status (0, 1, 2, 130 or 143)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with sigterm_raises():
            return int(args.func(args) or 0)
    except MissingModelError as e:
        print(f"simswap: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (SimSwapError, FileNotFoundError, ValueError) as e:
        msg = " ".join(str(e).split())
        if "nothing was written" not in msg:
            msg += _nothing_written(args)
        print(f"simswap: error: {msg}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"simswap: interrupted (Ctrl-C){_nothing_written(args) or '; nothing was written'}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Terminated:
        print(f"simswap: terminated (SIGTERM){_nothing_written(args) or '; nothing was written'}", file=sys.stderr)
        return EXIT_TERMINATED
    except Exception as e:
        if os.environ.get("SIMSWAP_DEBUG"):
            raise
        print(f"simswap: error: {type(e).__name__}: {' '.join(str(e).split())}{_nothing_written(args)} (set "
              "SIMSWAP_DEBUG=1 for a traceback)", file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
