# t-head-ref.sh -- the prediction heads: parity with tests/ref/head_ref.py
# (PyTorch) for linear and mlp on ViT and Swin, the mlp head through the
# pipe and in training (resume included), its config through info, export
# and import, and the configs that must be refused.
. "$MIM_TOP/tests/lib.sh"
TH="$MIM_TOP/$MIM_BUILD/tests/test_head"

# ---- parity, generated here (the committed micro dump runs in test_head)
if have_torch; then
	for c in "micro-vit linear" "micro-vit mlp --head-hidden 40" "micro-swin mlp" "micro-swin linear"; do
		set -- $c
		name="$1-$2"
		args="--preset $1 --head $2 ${3:-} ${4:-}"
		expect_ok "$name: checkpoint" 'mim-ckpt init $args --seed 2 -o "$T/$name.st"'
		expect_ok "$name: PyTorch dump" '$PY "$REF/head_ref.py" make-input "$T/$name.st" 3 5 "$T/$name.in" && $PY "$REF/head_ref.py" dump "$T/$name.st" "$T/$name.in" "$T/$name.ref" > /dev/null'
		"$TH" --compare "$T/$name.st" "$T/$name.in" "$T/$name.ref"
	done
else
	echo "skip - no torch in $PY: live head parity"
fi

# ---- the mlp head's config round trip
expect_ok 'init --head mlp --head-hidden 24' 'mim-ckpt init --preset micro-vit --head mlp --head-hidden 24 --seed 1 -o "$T/m.st"'
check 'info shows the head and its width' 'mim-ckpt info "$T/m.st" | grep -q "\"encoder_stride\":4,\"head\":\"mlp\",\"head_hidden\":24}$"'
check 'info counts the decoder: 32*24+24 + 24*48+48 = 1,992' 'mim-ckpt info "$T/m.st" | grep -q "^decoder 1,992 "'
expect_ok 'export --pth' 'mim-ckpt export --pth "$T/m.st" -o "$T/m.pth"'
expect_ok 'import infers the head from the weights' 'mim-ckpt import -q "$T/m.pth" -o "$T/m2.st"'
check 'the same config and weights after the round trip' 'mim-ckpt info "$T/m2.st" | grep -q "\"head\":\"mlp\",\"head_hidden\":24}" && mim-ckpt diff "$T/m.st" "$T/m2.st" > /dev/null'
expect_ok 'the default width (the encoder'"'"'s) round-trips as 0' 'mim-ckpt init --preset micro-swin --head mlp -o "$T/s.st" && mim-ckpt export --pth "$T/s.st" -o "$T/s.pth" && mim-ckpt import -q "$T/s.pth" -o "$T/s2.st"'
check 'head_hidden 0 both times' 'mim-ckpt info "$T/s.st" | grep -q "\"head\":\"mlp\",\"head_hidden\":0}" && mim-ckpt info "$T/s2.st" | grep -q "\"head\":\"mlp\",\"head_hidden\":0}"'
check 'a linear checkpoint imports as linear' 'mim-ckpt init --preset micro-vit -o "$T/l.st" && mim-ckpt export --pth "$T/l.st" -o "$T/l.pth" && mim-ckpt import -q "$T/l.pth" -o "$T/l2.st" && mim-ckpt info "$T/l2.st" | grep -q "\"head\":\"linear\"}$"'

# ---- through the pipe and in training (tests/lib.sh)
head_pipe_train "$T/m.st" mlp 8 decoder.2.weight

# ---- refused
expect_fail 'head_hidden on the linear head' 2 'mim-ckpt init --preset micro-vit --head-hidden 8 -o "$T/x"'
expect_fail 'a negative head_hidden' 2 'mim-ckpt init --preset micro-vit --head mlp --head-hidden -1 -o "$T/x"'
expect_fail 'an unknown head' 2 'mim-ckpt init --preset micro-vit --head swin-unet -o "$T/x"'
check 'the messages say why' 'mim-ckpt init --preset micro-vit --head-hidden 8 -o "$T/x" 2>&1 | grep -q "key \"head_hidden\" is not for head \"linear\"" && mim-ckpt init --head nope -o "$T/x" 2>&1 | grep -q "unknown \"head\" \"nope\""'
