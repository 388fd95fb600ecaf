#!/usr/bin/env bash
# Installs the Debian packages attn needs (only those missing): bash scripts/deps.sh [extra packages]
set -euo pipefail
pkgs=(cmake make ninja-build g++ libeigen3-dev nlohmann-json3-dev libfmt-dev catch2 libcli11-dev libpng-dev "$@")
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
