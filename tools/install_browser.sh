#!/usr/bin/env bash
# Debian's Chromium and its chromedriver, for the book's browser test (alllib/book/browser.py), installed
# from Debian's packages when missing. No browser is downloaded at run time. Needs root (or sudo) to install.
set -euo pipefail
if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "install_browser.sh: chromium and chromium-driver are missing, and installing them needs root" >&2; exit 1; }
  SUDO=sudo
fi
echo "install_browser.sh: installing Debian's chromium and chromium-driver"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver >/dev/null
chromium --version
