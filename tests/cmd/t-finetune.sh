# t-finetune.sh -- fine-tuning (issue #15 parts 1, 2, 7): classifier
# checkpoints (mim-ckpt classifier, mim-encode's logits), the official
# param groups (mim-ckpt groups against tests/ref/finetune_ref.py), one
# fine-tuning step against PyTorch (gradients, mixup and cutmix, layer
# decay, AdamW) for a micro ViT and a micro Swin, bad input, exact resume,
# and a short run on Fashion-MNIST whose accuracy equals PyTorch's.
. "$MIM_TOP/tests/lib.sh"
FR="$REF/finetune_ref.py"

# ---- classifiers -------------------------------------------------------------
expect_ok 'a micro ViT pretraining checkpoint' 'mim-ckpt init --preset micro-vit --seed 1 -o "$T/vpre.st"'
expect_ok 'its classifier of 7 classes' 'mim-ckpt classifier "$T/vpre.st" --classes 7 --drop-path 0.1 -o "$T/vcls.st" 2> "$T/note"'
check 'the note: the shared table in every block, the final norm dropped, head and fc_norm fresh' \
	'grep -q "shared relative position table copied into 2 blocks; final norm dropped), 4 fresh (head, fc_norm)" "$T/note"'
check 'mim.config says classifier: head cls, num_classes 7, the fine-tuning ViT' \
	'mim-ckpt info "$T/vcls.st" | grep -q "\"use_rel_pos_bias\":true,\"use_shared_rel_pos_bias\":false,\"use_mean_pooling\":true,\"drop_path_rate\":0.1,.*\"head\":\"cls\",\"num_classes\":7,\"init_scale\":0.001}$"'
check 'official fine-tuning names: no encoder. prefix, no mask_token, norm or decoder' '$PY - "$T/vcls.st" "$T/vpre.st" <<PYEOF
import sys, numpy as np, st
c, _ = st.load(sys.argv[1]); p, _ = st.load(sys.argv[2])
assert not [k for k in c if k.startswith(("encoder.", "decoder.", "mask_token", "norm."))], list(c)
shared = p["encoder.rel_pos_bias.relative_position_bias_table"]
assert all((c["blocks.%d.attn.relative_position_bias_table" % i] == shared).all() for i in (0, 1))
assert (c["blocks.1.mlp.fc2.weight"] == p["encoder.blocks.1.mlp.fc2.weight"]).all()
assert c["head.weight"].shape == (7, 32) and np.abs(c["head.weight"]).max() < 2e-4 and not c["head.bias"].any()
assert (c["fc_norm.weight"] == 1).all() and "blocks.0.attn.relative_position_index" in c
PYEOF'
expect_ok 'export --pth of a classifier' 'mim-ckpt export --pth "$T/vcls.st" -o "$T/vcls.pth"'
if have_torch; then
	check 'PyTorch takes it into the fine-tuning model as it is' '$PY - "$T/vcls.pth" "$T/vcls.st" <<PYEOF
import sys, json, torch, st, finetune_ref as f
sd = torch.load(sys.argv[1])["model"]
_, meta = st.load(sys.argv[2])
m = f.Classifier(json.loads(meta["mim.config"]))
missing, unexpected = m.load_state_dict(sd, strict=False)
assert not missing and not unexpected, (missing, unexpected)
PYEOF'
fi
expect_ok 'import infers a classifier from a fine-tuning state dict' 'mim-ckpt import --config "{\"drop_path_rate\":0.1}" "$T/vcls.pth" -o "$T/vimp.st" 2> "$T/note"'
check 'head cls, num_classes 7 from head.weight; the same weights' 'grep -q "\"head\":\"cls\",\"num_classes\":7,\"init_scale\":0.001} (img_size from the relative position table; .*num_classes from head.weight)" "$T/note" && mim-ckpt diff "$T/vcls.st" "$T/vimp.st" > /dev/null'
expect_ok 'a micro Swin classifier, window resampled 4 -> 8 at 64 px' 'mim-ckpt init --preset micro-swin -o "$T/spre.st" && mim-ckpt classifier "$T/spre.st" --classes 5 --img-size 64 --window 8 -o "$T/s64.st" 2> "$T/note"'
check 'its tables resampled 7x7 -> 15x15' 'grep -q "tables resampled 7x7 -> 15x15" "$T/note" && mim-ckpt info "$T/s64.st" | grep -q "\"window_size\":8,.*\"head\":\"cls\",\"num_classes\":5,\"init_scale\":1.0}$"'
expect_ok 'a classifier from scratch: --preset' 'mim-ckpt classifier --preset micro-swin --classes 3 --seed 5 -o "$T/scratch.st"'
check 'info counts the head apart: 32*3 + 3' 'mim-ckpt info "$T/scratch.st" | grep -q "^head 99 parameters"'

# mim-encode: logits [B,K], the label passed through
$PY - "$T/lab.mim" "$T/nolab.mim" "$T/bad.mim" "$T/mask.mim" <<'PYEOF'
import sys, numpy as np, st
g = np.random.default_rng(0)
img = g.standard_normal((4, 3, 32, 32)).astype(np.float32)
lab = np.array([1, 6, 0, 3], np.int64)
open(sys.argv[1], "wb").write(st.frame_bytes({"image": img, "label": lab}))
open(sys.argv[2], "wb").write(st.frame_bytes({"image": img}))
open(sys.argv[3], "wb").write(st.frame_bytes({"image": img, "label": np.array([1, 7, 0, 3], np.int64)}))
mask = (g.random((4, 8, 8)) < 0.6).astype(np.uint8)
open(sys.argv[4], "wb").write(st.frame_bytes({"image": img, "mask": mask, "label": lab}))
PYEOF
expect_ok 'mim-encode on a classifier' 'mim-encode --ckpt "$T/vcls.st" "$T/lab.mim" > "$T/enc.mim"'
check "it adds 'logits' F32 [4,7] and passes 'label' on" 'mim-info "$T/enc.mim" | grep -q "logits *F32 *\[4,7\]" && mim-info "$T/enc.mim" | grep -q "label *I64 *\[4\]"'
check '--layer 1 --pool mean still gives features [4,32]' 'mim-encode --ckpt "$T/vcls.st" --layer 1 --pool mean "$T/lab.mim" | mim-info | grep -q "latent *F32 *\[4,32\]"'

# ---- the official param groups -------------------------------------------------
if have_torch; then
	expect_ok 'the reference param groups of vit-base and swin-base' '$PY "$FR" groups vit-base,swin-base --out "$T/g"'
	for p in vit-base swin-base; do
		check "groups of the $p classifier: every parameter as optimizer.py's (tests/ref)" \
			'mim-ckpt groups --preset $p --classes 1000 > "$T/g.c" && cmp "$T/g.c" "$T/g.$p"'
	done
else
	echo "skip - no torch in $PY: param groups against the reference"
fi
check 'vit-base: the official scales of §10 (0.65: blocks.0 0.005688, head 1), decay flags' \
	'mim-ckpt groups --preset vit-base --classes 1000 > "$T/g" && grep -q "^{\"name\":\"cls_token\",\"layer_id\":0,\"weight_decay\":0.0,\"lr_scale\":0.0036972058910187" "$T/g" && grep -q "^{\"name\":\"blocks.0.attn.qkv.weight\",\"layer_id\":1,\"weight_decay\":0.05,\"lr_scale\":0.00568800906310" "$T/g" && grep -q "^{\"name\":\"blocks.11.attn.relative_position_bias_table\",\"layer_id\":12,\"weight_decay\":0.05,\"lr_scale\":0.65}" "$T/g" && grep -q "^{\"name\":\"head.weight\",\"layer_id\":13,\"weight_decay\":0.05,\"lr_scale\":1.0}" "$T/g"'
check 'swin-base: 0.8 (patch_embed 0.003778, the downsample with its stage'"'"'s last block), the tables not decayed' \
	'mim-ckpt groups --preset swin-base --classes 1000 > "$T/g" && grep -q "^{\"name\":\"patch_embed.proj.weight\",\"layer_id\":0,\"weight_decay\":0.05,\"lr_scale\":0.003777893186" "$T/g" && grep -q "^{\"name\":\"layers.2.downsample.reduction.weight\",\"layer_id\":22,\"weight_decay\":0.05," "$T/g" && grep -q "^{\"name\":\"layers.0.blocks.0.attn.relative_position_bias_table\",\"layer_id\":1,\"weight_decay\":0.0," "$T/g" && grep -q "^{\"name\":\"norm.weight\",\"layer_id\":25,\"weight_decay\":0.0,\"lr_scale\":1.0}" "$T/g"'
check 'a pretraining checkpoint: lr_scale 1, the pretraining decay (mask_token decayed for ViT)' \
	'mim-ckpt groups "$T/vpre.st" > "$T/g" && ! grep -v "\"lr_scale\":1.0}" "$T/g" && grep -q "^{\"name\":\"encoder.mask_token\",\"layer_id\":0,\"weight_decay\":0.05," "$T/g"'
check '--layer-decay D' 'mim-ckpt groups --layer-decay 0.5 "$T/vcls.st" | grep -q "^{\"name\":\"cls_token\",\"layer_id\":0,\"weight_decay\":0.0,\"lr_scale\":0.125}"'

# ---- one step against PyTorch -------------------------------------------------
if have_torch; then
	expect_ok 'the micro models with every 1-D parameter and the head perturbed' 'mim-ckpt classifier "$T/spre.st" --classes 7 --drop-path 0.1 -o "$T/scls.st" -q && $PY "$FR" perturb "$T/vcls.st" "$T/vp.st" "$T/scls.st" "$T/sp.st"'
	# seed 1 draws cutmix for batch 0, seed 2 mixup (our generator's draws)
	for c in "vit vp 1 cutmix 0.65" "vit vp 2 mixup 0.65" "swin sp 1 cutmix 0.8" "swin sp 2 mixup 0.8"; do
		set -- $c
		arch=$1 ck=$2 seed=$3 how=$4 ld=$5
		expect_ok "$arch $how: mim-step --grad-out" 'mim-step --ckpt "$T/$ck.st" --grad-out "$T/g.st" --seed $seed "$T/lab.mim"'
		if [ "$how" = cutmix ]; then box='"box"'; else box='"lam":0\.[0-9]*}$'; fi
		check "$arch $how: the batch was mixed by $how" 'mim-info "$T/g.st" | grep "mim.mix" | grep -q "$box"'
		rm -f "$T/step.log"
		expect_ok "$arch $how: one step, layer decay, constant lr" 'cp "$T/$ck.st" "$T/after.st" && mim-step -q --ckpt "$T/after.st" --steps 1 --sched constant --lr 1e-3 --seed $seed --log "$T/step.log" "$T/lab.mim"'
		check "$arch $how: loss, logits, every gradient (1e-4), parameters and moments after AdamW (1e-5) as PyTorch's" '$PY "$FR" step "$T/$ck.st" "$T/lab.mim" "$T/after.st" "$T/step.log" --seed $seed --lr 1e-3 --layer-decay $ld --grad "$T/g.st" > "$T/parity" && cat "$T/parity" >&2'
		sed 's/^/# /' "$T/parity"
	done
	# 4 steps of the official schedule: timm's cosine over the groups, the
	# warmup from an unscaled warmup_lr to each group's scaled peak
	cat "$T/lab.mim" "$T/lab.mim" "$T/lab.mim" "$T/lab.mim" > "$T/lab4.mim"
	rm -f "$T/step.log"
	expect_ok 'vit: 4 steps, --official-sched, warmup 2' 'cp "$T/vp.st" "$T/after.st" && mim-step -q --ckpt "$T/after.st" --steps 4 --official-sched --warmup-steps 2 --lr 1e-3 --warmup-lr 1e-5 --min-lr 1e-6 --seed 2 --log "$T/step.log" "$T/lab4.mim"'
	check 'vit: after 4 steps as PyTorch with timm'"'"'s scheduler over the layer-decay groups' '$PY "$FR" step "$T/vp.st" "$T/lab.mim" "$T/after.st" "$T/step.log" --seed 2 --lr 1e-3 --steps 4 --warmup 2 --warmup-lr 1e-5 --min-lr 1e-6 > "$T/parity" && cat "$T/parity" >&2'
	sed 's/^/# /' "$T/parity"
else
	echo "skip - no torch in $PY: step parity"
fi

# ---- bad input: a message, status 1, the checkpoint untouched ------------------
cp "$T/vcls.st" "$T/keep.st"
expect_fail 'a stream without labels' 1 'mim-step --ckpt "$T/keep.st" --steps 1 --lr 1e-3 "$T/nolab.mim"'
cp "$T/.err" "$T/msg"
check "it says: no tensor 'label'" 'grep -q "frame 0: no tensor .label.: a classifier trains on labelled frames" "$T/msg"'
expect_fail 'a label out of range' 1 'mim-step --ckpt "$T/keep.st" --steps 1 --lr 1e-3 "$T/bad.mim"'
cp "$T/.err" "$T/msg"
check 'it names the label and the class count' 'grep -q "label 7 of image 1 is out of range \[0, 7) (the classifier has 7 classes)" "$T/msg"'
expect_fail 'an odd batch with mixup' 1 '$PY -c "
import sys, st, numpy as np
sys.stdout.buffer.write(st.frame_bytes({\"image\": np.zeros((3,3,32,32), np.float32), \"label\": np.zeros(3, np.int64)}))" | mim-step --ckpt "$T/keep.st" --steps 1 --lr 1e-3'
check 'the checkpoint is untouched by all of them' 'cmp "$T/vcls.st" "$T/keep.st"'
cp "$T/vpre.st" "$T/keeppre.st"
expect_fail 'fine-tuning flags with a pretraining checkpoint' 1 'mim-step --ckpt "$T/keeppre.st" --steps 1 --lr 1e-3 --mixup 0.8 "$T/mask.mim"'
cp "$T/.err" "$T/msg"
check 'it says: not a classifier' 'grep -q "keeppre.st: not a classifier: --smoothing, --mixup" "$T/msg"'
expect_fail 'a pretraining checkpoint on labelled frames without masks' 1 'mim-step --ckpt "$T/keeppre.st" --steps 1 --lr 1e-3 "$T/lab.mim"'
cp "$T/.err" "$T/msg"
check 'it says: no mask, and that labels want a classifier' 'grep -q "no tensor .mask. (pipe the images through mim-mask; or, to fine-tune on these labels, train a classifier checkpoint: mim-ckpt classifier)" "$T/msg"'
check 'the pretraining checkpoint is untouched' 'cmp "$T/vpre.st" "$T/keeppre.st"'
expect_fail 'a classifier where a pretraining checkpoint is needed' 1 'mim-ckpt classifier "$T/vcls.st" --classes 7 -o "$T/x.st"'
cp "$T/.err" "$T/msg"
check 'it says so, and writes nothing' 'grep -q "already a classifier (num_classes 7): a pretraining checkpoint is needed" "$T/msg" && [ ! -e "$T/x.st" ]'
expect_fail 'export --finetune of a classifier' 1 'mim-ckpt export --finetune "$T/vcls.st" -o "$T/x.st"'
cp "$T/.err" "$T/msg"
check 'it says: a fine-tuning model already, and writes nothing' 'grep -q "a classifier (num_classes 7) is a fine-tuning model already" "$T/msg" && [ ! -e "$T/x.st" ]'
expect_fail 'a classifier is given no mask' 1 'mim-encode --ckpt "$T/vcls.st" --layer 1 "$T/mask.mim"'
expect_fail 'mim-head on a classifier' 1 'mim-encode --ckpt "$T/vcls.st" --layer 1 "$T/lab.mim" | mim-head --ckpt "$T/vcls.st"'
cp "$T/.err" "$T/msg"
check 'it says: no prediction head' 'grep -q "vcls.st: a classifier has no prediction head" "$T/msg"'
expect_fail 'classifier without --classes' 2 'mim-ckpt classifier "$T/vpre.st" -o "$T/x.st"'
expect_fail 'groups --classes without --preset' 2 'mim-ckpt groups --classes 3 "$T/vcls.st"'
expect_fail 'a resumed run with other fine-tuning settings' 1 'cp "$T/vcls.st" "$T/r.st" && { mim-step -q --ckpt "$T/r.st" --steps 2 --lr 1e-3 "$T/lab.mim" 2>/dev/null || true; } && mim-step --ckpt "$T/r.st" --steps 2 --lr 1e-3 --smoothing 0.2 "$T/lab.mim"'
cp "$T/.err" "$T/msg"
check 'it names mim.train.finetune' 'grep -q "mim.train.finetune differs" "$T/msg"'

# ---- Fashion-MNIST: exact resume, and accuracy as PyTorch's -------------------
FM=/usr/share/datasets/fashion-mnist
if [ ! -r "$FM/t10k-images-idx3-ubyte.gz" ]; then
	echo "skip - no Fashion-MNIST in $FM"
	exit 0
fi
expect_ok 'Fashion-MNIST test set to shards' 'mim-data -q --idx "$FM/t10k-images-idx3-ubyte.gz" "$FM/t10k-labels-idx1-ubyte.gz" --per-shard 320 -s 28 --keep-aspect -o "$T/fm-%02d.tar"'
data() { mim-data -q -j 2 --size 32 --batch 8 --drop-last --shuffle 16 --seed 3 "$@" "$T/fm-00.tar"; }
tune() { mim-step -q --ckpt "$1" --steps 12 --lr 1e-3 --warmup-steps 2 --save-every 5 "${2:--}"; }
first5() { first_frames 5; }
expect_ok 'a classifier of 10 classes' 'mim-ckpt classifier "$T/vpre.st" --classes 10 -q -o "$T/a.st" && cp "$T/a.st" "$T/b.st"'
expect_ok 'an uninterrupted fine-tuning run: 12 steps, mixup and cutmix' 'data --epochs 0 | tune "$T/a.st"'
expect_fail 'the same run cut after 5 frames' 1 'data --epochs 0 | first5 | tune "$T/b.st"'
check 'it saved step 5' 'mim-ckpt info --json "$T/b.st" > /dev/null && $PY -c "import sys, st; assert st.load(sys.argv[1])[1][\"mim.train.step\"] == \"5\"" "$T/b.st"'
expect_ok 'mim-data --resume | mim-step' 'data --epochs 0 --resume "$T/b.st" | tune "$T/b.st"'
check 'the resumed run ends byte-identical to the uninterrupted one' 'cmp "$T/a.st" "$T/b.st"'

if ! have_torch; then
	echo "skip - no torch in $PY: short-run accuracy"
	exit 0
fi
# 320 images in 10 batches of 32, 6 epochs in order: 60 steps, no mixing
expect_ok 'training frames: 320 images, 6 epochs, in order' 'mim-data -q --eval --crop-ratio 1 -s 32 -b 32 --epochs 6 "$T/fm-00.tar" > "$T/train.mim"'
expect_ok 'held-out frames: 500 other images' 'mim-data -q --eval --crop-ratio 1 -s 32 -b 100 "$T/fm-01.tar" "$T/fm-02.tar" | $PY -c "
import sys, st
for i, (t, m) in enumerate(st.read_frames(sys.stdin.buffer)):
    if i < 5: sys.stdout.buffer.write(st.frame_bytes(t, m))" > "$T/val.mim"'
expect_ok 'a micro ViT classifier from scratch' 'mim-ckpt classifier --preset micro-vit --classes 10 --drop-path 0.1 --init-scale 1 --seed 3 -o "$T/fs.st" -q && cp "$T/fs.st" "$T/run.st"'
expect_ok 'mim-step: 60 steps, smoothing 0.1, layer decay 0.9, no mixing' 'mim-step -q --ckpt "$T/run.st" --steps 60 --sched constant --lr 1e-2 --mixup 0 --cutmix 0 --layer-decay 0.9 --log "$T/run.log" --val "$T/val.mim" --val-every 60 "$T/train.mim"'
check 'the log has acc1 per step and val_acc1, val_acc5' 'grep -q "\"step\":60,\"loss\":[0-9.]*,.*\"acc1\":[0-9.]*,\"lam\":1" "$T/run.log" && grep -q "^{\"step\":60,\"val_loss\":[0-9.]*,\"val_acc1\":[0-9.]*,\"val_acc5\":[0-9.]*,\"val_frames\":5," "$T/run.log"'
acc() { $PY -c "
import sys, st
h = n = 0
for t, m in st.read_frames(sys.stdin.buffer):
    h += int((t['logits'].argmax(1) == t['label']).sum()); n += len(t['label'])
print('%.4f' % (100.0 * h / n))"; }
ours=$(mim-encode --ckpt "$T/run.st" "$T/val.mim" | acc)
theirs=$($PY "$FR" run "$T/fs.st" "$T/train.mim" "$T/val.mim" --lr 1e-2 --steps 60 --smoothing 0.1 --layer-decay 0.9)
check "held-out accuracy $ours% (mim) = $theirs% (PyTorch) within 0.3, above chance" '$PY -c "import sys; a, b = map(float, sys.argv[1:]); assert abs(a - b) <= 0.3 and a > 15, (a, b)" "$ours" "$theirs"'
check 'val_acc1 of the log is that accuracy' 'grep -q "\"val_acc1\":$(echo $ours | sed "s/0*$//;s/\.$//")[,.0-9]" "$T/run.log"'
