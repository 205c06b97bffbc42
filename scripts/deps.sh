#!/bin/sh
# deps.sh -- install the Debian packages mim needs, if any are missing.
# usage: scripts/deps.sh GROUP...   groups: build test demo bench mpi
# Runs apt-get only when something is missing (as root, or through sudo).
set -eu

pkgs=""
for g in "$@"; do
	case $g in
	build) pkgs="$pkgs gcc make pkg-config libvips-dev libjpeg-dev libopenblas-dev libarchive-dev libjansson-dev libdnnl-dev libopenmpi-dev openmpi-bin" ;;
	test)  pkgs="$pkgs python3-numpy python3-torch python3-torchvision python3-scipy mandoc clang libclang-rt-14-dev plasma-workspace-wallpapers zstd libvips-tools dataset-fashion-mnist jq" ;;
	demo)  pkgs="$pkgs plasma-workspace-wallpapers dataset-fashion-mnist" ;;
	bench) pkgs="$pkgs python3-torch python3-torchvision plasma-workspace-wallpapers python3-pil time" ;;
	mpi)   pkgs="$pkgs libopenmpi-dev openmpi-bin" ;;
	*) echo "deps.sh: unknown group '$g'" >&2; exit 2 ;;
	esac
done

missing=""
for p in $pkgs; do
	st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
	case $st in *"install ok installed"*) ;; *) missing="$missing $p" ;; esac
done
[ -z "$missing" ] && exit 0

echo "deps.sh: installing:$missing" >&2
if [ "$(id -u)" = 0 ]; then sudo=""; elif command -v sudo >/dev/null; then sudo=sudo; else
	echo "deps.sh: need root to install:$missing" >&2; exit 1
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends $missing >/dev/null
