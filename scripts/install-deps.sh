#!/usr/bin/env bash
# Installs what bpfmap needs to build, test and benchmark, from Debian's packages.
set -euo pipefail
pkgs=(cmake g++ make python3 libgtest-dev libgmock-dev libbenchmark-dev libxxhash-dev libbpf-dev bpftool
  pkgconf
  libboost1.81-dev
  linux-source
  clang libclang-rt-14-dev clang-format
  python3-matplotlib) # bench/plot.py only
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO=sudo
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
