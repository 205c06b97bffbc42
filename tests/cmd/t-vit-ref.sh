# t-vit-ref.sh -- parity of libmim's ViT with tests/ref/vit_ref.py, an
# independent PyTorch SimMIM ViT: the reference first reproduces the
# official golden step, then libmim is compared with it on the committed
# micro dumps (three configs, drop path included) and on vit-tiny at 192 px
# (batch 2, generated here); PyTorch loads our vit-base file strictly.
. "$MIM_TOP/tests/lib.sh"
G=$GOLDEN
TV="$MIM_TOP/$MIM_BUILD/tests/test_vit"
if ! have_torch; then
	echo "skip - no torch in $PY"
	exit 0
fi

expect_ok 'the reference reproduces the official micro-vit step (1e-5)' '$PY "$REF/vit_ref.py" golden "$G" > "$T/golden.txt"'
sed 's/^/# /' "$T/golden.txt"

for v in default variants meanpool; do
	"$TV" --compare "$REF/vit_micro.$v.ckpt.safetensors" "$REF/vit_micro.$v.ref.safetensors"
done

expect_ok 'vit-tiny checkpoint' 'mim-ckpt init --preset vit-tiny --seed 3 > "$T/tiny.st"'
$PY - "$T" <<'PYEOF'
import sys, st, vit_ref
img, mask = vit_ref.make_input(2, 192, 16, 7)
st.save(sys.argv[1] + "/tiny-in.mim", {"image": img, "mask": mask})
PYEOF
expect_ok 'reference dump of vit-tiny at 192 px, batch 2 (drop path 0.1)' '$PY "$REF/vit_ref.py" dump "$T/tiny.st" "$T/tiny-in.mim" "$T/tiny-ref.st" --seed 9 --quick'
"$TV" --compare "$T/tiny.st" "$T/tiny-ref.st"

if [ -n "${MIM_SANITIZE:-}" ]; then
	echo "skip - vit-base strict load (slow under the sanitizers)"
else
	expect_ok 'vit-base checkpoint' 'mim-ckpt init --preset vit-base > "$T/vb.st"'
	expect_ok 'PyTorch load_state_dict(strict=True) takes our vit-base file' '$PY "$REF/vit_ref.py" strict "$T/vb.st" > "$T/strict.txt"'
	check 'all 190 keys (189 parameters + the index buffer), 86,256,720 parameters' 'grep -q "strict load ok: 190 tensors, 86256720 parameters" "$T/strict.txt"'
fi
