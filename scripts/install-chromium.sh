#!/usr/bin/env bash
# Installs Debian's chromium (headless browser for the web page test in indexer/api) unless it is already there.
set -euo pipefail

if [[ -x /usr/bin/chromium ]]; then
  exit 0
fi
sudo=""
if [[ $(id -u) -ne 0 ]]; then
  sudo=sudo
fi
$sudo apt-get update
$sudo apt-get install -y chromium
/usr/bin/chromium --version
