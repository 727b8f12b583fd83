#!/usr/bin/env python3
"""ComfyUI-SimSwap model installer (thin CLI over ``simswap_core.models.installer_cli.main``).

    python install.py                  # status of the recommended files; downloads NOTHING (ComfyUI-Manager runs this)
    python install.py --list           # every known file: size, checksum, licence, installed or not
    python install.py --check          # verify present files (published sha256, else the first-download record)
    python install.py --download       # download the recommended set (licence notice first)
    python install.py --model simswap_512 scrfd_10g [--models-dir DIR] [--mirror URL_OR_FOLDER]
    python install.py --all

Set SIMSWAP_AUTO_DOWNLOAD=1 to make the argument-less run download the recommended set.
This script never runs pip. It loads only simswap_core's installer modules (not torch).
"""
import os
import sys
import types

if __name__ == "__main__":
    _pkg_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "simswap_core")
    if "simswap_core" not in sys.modules:
        # Load simswap_core.models.installer_cli without running simswap_core/__init__.py (kept out of the way: the
        # installer needs the standard library only and works before/without torch).
        _pkg = types.ModuleType("simswap_core")
        _pkg.__path__ = [_pkg_dir]
        sys.modules["simswap_core"] = _pkg
    from simswap_core.models.installer_cli import main

    sys.exit(main())
