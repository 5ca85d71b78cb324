#!/usr/bin/env bash
# The prepared GPU checks, for a session whose task is lent a device machine (an H200 or H100): each part is
# one `run` under its 10-minute limit. The machine's image has torch, transformers, accelerate and safetensors
# but not the rest of dreamtext's dependencies, and cannot download: carry them as wheels.
#
# Here, once (pure-Python wheels only: the machine's python is 3.12; export's PyMCubes / xatlas are not needed):
#   pip download --no-deps -d .wheels diffusers==0.42.1 tyro docstring-parser typeguard shtab pygltflib ftfy \
#       dataclasses-json marshmallow deprecated wcwidth
#   echo /.wheels/ >> .git/info/exclude
# Then:  run(command="bash scripts/device_check.sh camera", carry=[".wheels"], timeout_s=600)    # issue 26
#        run(command="bash scripts/device_check.sh speed", carry=[".wheels"], timeout_s=600)     # issue 29
#
# camera: traces a 20480-render pool with its cameras on the machine's 16 cores (about 3 minutes; 250 MB, over the
#   64 MiB a run may carry), continues the shipped UNet with the camera input for 4 minutes (batch 512,
#   bf16), then measures pose accuracy and noun / colour accuracy of the result beside the shipped prior's.
#   $OUT/camera_unet holds the new UNet in fp16 (12 MB) with its config, ready for `package_prior`.
# speed: bench sds (both presets, prior-only time in the same run, peak memory, 512 px too), bench descriptor
#   and bench engine on the GPU, each as JSON in $OUT.
set -euo pipefail
export PYTHONUNBUFFERED=1 TRANSFORMERS_VERBOSITY=error DIFFUSERS_VERBOSITY=error
python3 -m pip install -q --no-deps --no-index .wheels/*.whl
python3 -m pip install -q --no-deps --no-build-isolation -e .
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
case "${1:-camera}" in
camera)
  dreamtext train-prior unet --init-unet builtin --camera --device cuda --pool-size 20480 --workers 16 \
      --max-minutes 4 --steps 100000 --seed 7 --out /tmp/prior-cam --quiet 2>&1 | tail -5
  python3 - <<'PY'
import os, shutil, torch
from diffusers import UNet2DConditionModel
unet = UNet2DConditionModel.from_pretrained("/tmp/prior-cam/unet").to(torch.float16)
unet.save_pretrained(os.path.join(os.environ["OUT"], "camera_unet"))  # fp16, for package_prior
PY
  for pipeline in builtin /tmp/prior-cam/pipeline; do
    dreamtext eval-prior --pipeline "$pipeline" --device cuda --pose-count 64 --json > "$OUT/eval-$(basename "$pipeline").json"
    cat "$OUT/eval-$(basename "$pipeline").json"
  done
  ;;
speed)
  timeout 300 dreamtext bench sds --json --device cuda > "$OUT/bench-sds.json" || true
  timeout 150 dreamtext bench descriptor --json --device cuda > "$OUT/bench-descriptor.json" || true
  timeout 100 dreamtext bench engine --json --device cuda > "$OUT/bench-engine.json" || true
  cat "$OUT"/bench-*.json
  ;;
*) echo "usage: bash scripts/device_check.sh camera|speed" >&2; exit 2 ;;
esac
