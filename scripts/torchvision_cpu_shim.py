"""Make the PyPI torchvision wheel importable next to a CPU-only torch (test tooling, never used at run time).

Why: PyPI only ships CUDA builds of torchvision. With a ``+cpu`` torch its ``_C.so`` cannot be loaded
(it links libtorch_cuda), torchvision hides that, and then ``torchvision/_meta_registrations.py`` calls
``torch.library.register_fake("torchvision::nms")`` on an operator that does not exist and the import dies.
ComfyUI imports torchvision at start-up, so a CPU-only test machine needs this shim.

What it does: ``--install`` copies this file into site-packages as ``_torchvision_cpu_shim.py`` and adds a
``.pth`` line that puts a tiny finder on ``sys.meta_path``. Just before torchvision is first imported the
finder tries to load the real ``_C.so``; only if that fails does it define the schemas of the two operators
that are registered unconditionally (``nms`` and ``qnms``). Pure-Python torchvision (transforms, ...) then
works; compiled ops such as ``torchvision.ops.nms`` still raise "Couldn't load custom C++ ops".
Interpreter start-up cost: none (torch is imported only when torchvision is).

Usage: python torchvision_cpu_shim.py --install | --uninstall | --check
"""
from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys

_MODULE_NAME = "_torchvision_cpu_shim"
_PTH_NAME = "torchvision_cpu_shim.pth"
_LIBS: list = []  # keeps the torch.library.Library alive (its definitions vanish when it is collected)


def _prepare_torchvision() -> None:
    """Load torchvision's _C.so if it works with this torch; otherwise define the nms/qnms schemas."""
    import glob
    import os

    spec = importlib.machinery.PathFinder.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return
    import torch

    for so in sorted(glob.glob(os.path.join(spec.submodule_search_locations[0], "_C*.so"))):
        try:
            torch.ops.load_library(so)
            return  # the real ops are there: nothing to shim
        except (OSError, ImportError, RuntimeError):
            pass
    try:
        lib = torch.library.Library("torchvision", "DEF")
        lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        _LIBS.append(lib)
    except RuntimeError:  # already defined by something else
        pass


class _TorchvisionFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname == "torchvision":
            try:
                sys.meta_path.remove(self)
            except ValueError:
                pass
            _prepare_torchvision()
        return None  # the normal finders import the real package


def activate() -> None:
    """Called from the .pth file at interpreter start: registers the finder (cheap, imports nothing)."""
    if "torchvision" not in sys.modules and not any(isinstance(f, _TorchvisionFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _TorchvisionFinder())


def _site_packages() -> str:
    import sysconfig

    return sysconfig.get_paths()["purelib"]


def install() -> None:
    import os
    import shutil

    sp = _site_packages()
    shutil.copyfile(os.path.abspath(__file__), os.path.join(sp, _MODULE_NAME + ".py"))
    with open(os.path.join(sp, _PTH_NAME), "w") as f:
        f.write(f"import {_MODULE_NAME}; {_MODULE_NAME}.activate()\n")


def uninstall() -> None:
    import os

    sp = _site_packages()
    for name in (_MODULE_NAME + ".py", _PTH_NAME):
        p = os.path.join(sp, name)
        if os.path.exists(p):
            os.remove(p)


def check() -> int:
    import subprocess

    code = "import torchvision, torchvision.transforms; print(torchvision.__version__)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    sys.stdout.write(r.stdout)
    sys.stderr.write(r.stderr[-2000:])
    return r.returncode


if __name__ == "__main__":
    arg = sys.argv[1] if len(sys.argv) > 1 else "--check"
    if arg == "--install":
        install()
        sys.exit(check())
    elif arg == "--uninstall":
        uninstall()
    elif arg == "--check":
        sys.exit(check())
    else:
        sys.exit(f"usage: {sys.argv[0]} --install | --uninstall | --check")
