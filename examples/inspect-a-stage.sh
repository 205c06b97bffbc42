#!/bin/sh
# inspect-a-stage.sh -- look inside a running pipeline: tee each stage's
# stream into mim-info (on stderr) while the data flows on.
#   examples/inspect-a-stage.sh SHARD.tar [CKPT]
# Without CKPT a small ViT is initialised in a temp dir.
set -eu
shard=${1:?usage: inspect-a-stage.sh SHARD.tar [CKPT]}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
ckpt=${2:-$tmp/vit.safetensors}
[ -e "$ckpt" ] || mim-ckpt init --preset vit-tiny -o "$ckpt"

# bash's process substitution would do too: tee >(mim-info >&2)
mkfifo "$tmp/a" "$tmp/b"
mim-info "$tmp/a" | sed 's/^/[after mim-mask]   /' >&2 &
mim-info "$tmp/b" | sed 's/^/[after mim-encode] /' >&2 &
mim-data --batch 4 --epochs 1 "$shard" |
	mim-mask --ckpt "$ckpt" | tee "$tmp/a" |
	mim-encode --ckpt "$ckpt" | tee "$tmp/b" |
	mim-head --ckpt "$ckpt" | mim-loss | mim-info | sed 's/^/[at the end]       /'
wait
