#!/usr/bin/env bash
# One-time set-up, idempotent: virtual environment, pinned torch, the package (editable) with its dev tools,
# and the Fashion-MNIST data. Called by `make run` and `make test`; safe to run again (it skips what is done).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
stamp="$VENV/.ssl_learn_setup"

"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "ssl_learn needs Python >= 3.10, found " + sys.version.split()[0])'
if [ ! -x "$VENV/bin/python" ]; then
  echo "== creating virtual environment $VENV"
  "$PYTHON" -m venv "$VENV"
fi
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ scripts/setup.sh -nt "$stamp" ]; then
  echo "== installing torch==2.14.1 torchvision==0.29.1, then ssl_learn[dev] (editable)"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q torch==2.14.1 torchvision==0.29.1
  "$VENV/bin/python" -m pip install -q -e ".[dev]"
  touch "$stamp"
fi

# Fashion-MNIST, the embedded default data set (Debian package dataset-fashion-mnist).
FM=/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
if [ ! -f "$FM" ]; then
  SUDO=""
  [ "$(id -u)" != 0 ] && command -v sudo >/dev/null && sudo -n true 2>/dev/null && SUDO="sudo -n"
  if command -v apt-get >/dev/null && { [ "$(id -u)" = 0 ] || [ -n "$SUDO" ]; }; then
    echo "== installing Fashion-MNIST (apt-get install dataset-fashion-mnist)"
    $SUDO apt-get update -qq >/dev/null || true
    $SUDO apt-get install -y -qq dataset-fashion-mnist >/dev/null || echo "!! apt-get could not install dataset-fashion-mnist; ssl_learn will try to download Fashion-MNIST"
  else
    echo "!! cannot apt-get install dataset-fashion-mnist here (not root, no sudo, or not Debian); ssl_learn will download Fashion-MNIST on first use"
  fi
fi
# DOCS=1 (make docs / docs-check): the offline docs renderer and the browser check's driver, and Debian's chromium
if [ "${DOCS:-0}" = 1 ]; then
  if [ ! -f "$VENV/.ssl_learn_docs" ] || [ pyproject.toml -nt "$VENV/.ssl_learn_docs" ]; then
    echo "== installing ssl_learn[docs] (sphinx, myst-nb, furo, playwright)"
    "$VENV/bin/python" -m pip install -q -e ".[dev,docs]" && touch "$VENV/.ssl_learn_docs"
  fi
  if ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null; then
    SUDO=""
    [ "$(id -u)" != 0 ] && command -v sudo >/dev/null && sudo -n true 2>/dev/null && SUDO="sudo -n"
    if command -v apt-get >/dev/null && { [ "$(id -u)" = 0 ] || [ -n "$SUDO" ]; }; then
      echo "== installing chromium (apt-get install chromium) for the browser check"
      $SUDO apt-get update -qq >/dev/null || true
      $SUDO apt-get install -y -qq chromium >/dev/null || echo "!! apt-get could not install chromium; make docs-check needs it"
    else
      echo "!! cannot apt-get install chromium here (not root, no sudo, or not Debian): install Chromium to run make docs-check"
    fi
  fi
fi
echo "== set-up done ($VENV)"
