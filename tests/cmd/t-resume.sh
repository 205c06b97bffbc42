# t-resume.sh -- fast exact resume: mim-step keeps where its input stopped
# (mim.train.data), `mim-data --resume CKPT` starts there without decoding
# the past, mim-mask goes on numbering its masks, and the run ends with
# the same bytes as one that never stopped. Real photos (the wallpapers),
# shards with a member that fails to decode before and after the stop.
. "$MIM_TOP/tests/lib.sh"
if ! ls /usr/share/wallpapers/*/contents/images/640x480.jpg > /dev/null 2>&1; then
	echo "skip - plasma-workspace-wallpapers not installed"
	exit 0
fi
mkdir -p "$T/photos"
for f in /usr/share/wallpapers/*/contents/images/640x480.jpg; do
	ln -s "$f" "$T/photos/$(echo "$f" | cut -d/ -f5).jpg"
done
expect_ok 'photos to shards of 5' 'mim-data -q --keep-aspect --size 40 --format jpg --per-shard 5 --out "$T/s-%02d.tar" "$T/photos"'
# a sample that fails to decode in the first shard and in the last
$PY - "$T" <<'PYEOF'
import glob, io, sys, tarfile
for name in sorted(glob.glob(sys.argv[1] + "/s-*.tar"))[::2]:
    with tarfile.open(name, "a") as t:
        data = b"\xff\xd8\xff\xe0 not a JPEG"
        ti = tarfile.TarInfo("zz-broken.jpg"); ti.size = len(data); t.addfile(ti, io.BytesIO(data))
PYEOF
expect_ok 'a micro ViT' 'mim-ckpt init --preset micro-vit --seed 4 -o "$T/init.st"'
data() { mim-data -q -j 2 --size 32 --batch 4 --drop-last --shuffle 6 --seed 3 "$@" "$T"/s-*.tar; }
train() { mim-step -q --ckpt "$1" --steps 14 --lr 1e-3 --warmup-steps 2 --save-every 3 "${2:--}"; }

cp "$T/init.st" "$T/a.st"
expect_ok 'the uninterrupted run: 14 steps' 'data --epochs 0 | mim-mask --mask-patch 8 --ckpt "$T/a.st" | train "$T/a.st"'
check 'its checkpoint says where the input stopped' 'mim-ckpt info --json "$T/a.st" > /dev/null && $PY - "$T/a.st" <<PYEOF
import sys, json, st
t, meta = st.load(sys.argv[1])
pos = json.loads(meta["mim.train.data"])
assert len(pos) == 1 and pos[0]["batch"] == 14 and pos[0]["images"] == 56, pos
PYEOF'

# the same run, its input cut after 5 frames (in the second epoch: 12
# photos, 2 broken, 3 frames of 4 an epoch), then resumed
first5() { first_frames 5; }
cp "$T/init.st" "$T/b.st"
expect_fail 'the run stopped by the end of its input' 1 'data --epochs 0 | first5 | mim-mask --mask-patch 8 --ckpt "$T/b.st" | train "$T/b.st"'
check 'it saved step 5, in epoch 1' '$PY - "$T/b.st" <<PYEOF
import sys, st, json
t, meta = st.load(sys.argv[1])
pos = json.loads(meta["mim.train.data"])[0]
assert meta["mim.train.step"] == "5" and pos["epoch"] == 1 and pos["batch"] == 5, (meta["mim.train.step"], pos)
PYEOF'
expect_ok 'mim-data --resume | mim-mask | mim-step' 'data --epochs 0 --resume "$T/b.st" | mim-mask --mask-patch 8 --ckpt "$T/b.st" | train "$T/b.st"'
check 'the resumed run ends byte-identical to the uninterrupted one' 'cmp "$T/a.st" "$T/b.st"'

# the past is not decoded: 5 epochs are 60 images; resumed after 56 of
# them, mim-data decodes the last 4 (and says where it starts)
expect_ok 'resume at step 14 of a 5-epoch stream' 'mim-data -j 2 --size 32 --batch 4 --drop-last --shuffle 6 --seed 3 --epochs 5 --resume "$T/a.st" "$T"/s-*.tar > "$T/late.mim" 2> "$T/late.err"'
check 'it says where it resumes' 'grep -q "a.st: resuming at epoch 4, sample [0-9]*, frame 14$" "$T/late.err"'
check '4 images decoded, in 1 frame' 'grep -q "^mim-data: 4 images in 1 batch " "$T/late.err"'
check 'the frame is frame 14 of the whole stream, byte for byte' 'data --epochs 5 | $PY -c "
import sys, st
frames = list(st.read_frames(sys.stdin.buffer))
late = list(st.read_frames(open(sys.argv[1], \"rb\")))
assert len(frames) == 15 and len(late) == 1, (len(frames), len(late))
assert late[0][1] == frames[14][1], (late[0][1], frames[14][1])
assert late[0][0][\"image\"].tobytes() == frames[14][0][\"image\"].tobytes()
assert late[0][1][\"mim.batch\"] == \"14\" and late[0][1][\"mim.images\"] == \"56\"
" "$T/late.mim"'

# mim-mask: masks numbered as in the uninterrupted stream
expect_ok 'the masks of frames 14.. from the whole stream' 'data --epochs 0 | mim-mask --mask-patch 8 --seed 2 --ckpt "$T/init.st" | $PY -c "
import sys, st
out = open(sys.argv[1], \"wb\")
for i, (t, m) in enumerate(st.read_frames(sys.stdin.buffer)):
    if i >= 14: out.write(st.frame_bytes({\"mask\": t[\"mask\"]}))
    if i == 17: break
" "$T/m-whole"'
expect_ok 'and from the resumed stream' 'data --epochs 0 --resume "$T/a.st" | mim-mask --mask-patch 8 --seed 2 --ckpt "$T/init.st" | $PY -c "
import sys, st
out = open(sys.argv[1], \"wb\")
for i, (t, m) in enumerate(st.read_frames(sys.stdin.buffer)):
    out.write(st.frame_bytes({\"mask\": t[\"mask\"]}))
    if i == 3: break
" "$T/m-resumed"'
check 'the same masks' 'cmp "$T/m-whole" "$T/m-resumed"'

# refused
expect_ok 'a checkpoint trained from a stream without positions' 'cp "$T/init.st" "$T/c.st" && data --epochs 1 > "$T/frames" && $PY - "$T/frames" "$T/bare" <<PYEOF
import sys, st
out = open(sys.argv[2], "wb")
for t, m in st.read_frames(open(sys.argv[1], "rb")):
    out.write(st.frame_bytes(t))
PYEOF
mim-mask --mask-patch 8 --ckpt "$T/c.st" < "$T/bare" | mim-step -q --ckpt "$T/c.st" --steps 2 --lr 1e-3'
expect_fail '--resume without a data position' 1 'data --resume "$T/c.st"'
check 'says why' 'data --resume "$T/c.st" 2>&1 | grep -q "no data position"'
expect_fail '--resume of a missing file' 1 'data --resume "$T/nope.st"'
expect_fail '--resume for another rank than the run had' 1 'data --resume "$T/a.st" --shard-index 1 --shard-count 2'
expect_fail '--resume with --out' 2 'mim-data --resume "$T/a.st" --out "$T/x-%d.tar" "$T"/s-*.tar'
expect_fail 'a resumed stream given to another run' 1 'cp "$T/init.st" "$T/d.st" && data --epochs 0 --resume "$T/a.st" | mim-mask --mask-patch 8 --ckpt "$T/d.st" | train "$T/d.st"'

# data-parallel: 2 ranks, each its half of the samples; the positions of
# both ranks are kept, and each rank's mim-data resumes at its own
if command -v mpirun >/dev/null 2>&1 && [ -z "${MIM_SANITIZE:-}" ]; then
	export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl_vader_single_copy_mechanism=none
	MPI="timeout 120 mpirun -np 2 --oversubscribe --bind-to none"
	# rank's pipeline: CKPT CUT (frames to pass, 0: all) [mim-data flags]
	export T PY MIM_THREADS=1
	rank() {
		$MPI sh -c 'r=$OMPI_COMM_WORLD_RANK; c=$1; n=$2; shift 2
			mim-data -q -j 1 --size 32 --batch 2 --drop-last --shuffle 6 --seed 3 --epochs 0 \
				--shard-index $r --shard-count 2 "$@" "$T"/s-*.tar |
			if [ "$n" = 0 ]; then cat; else $PY -c "
import sys, st
for i, (t, m) in enumerate(st.read_frames(sys.stdin.buffer)):
    sys.stdout.buffer.write(st.frame_bytes(t, m))
    if i == $n - 1: break
"; fi | mim-mask --mask-patch 8 --ckpt "$c" |
			mim-step -q --ckpt "$c" --steps 9 --lr 1e-3 --save-every 2' sh "$@"
	}
	cp "$T/init.st" "$T/pa.st"
	cp "$T/init.st" "$T/pb.st"
	expect_ok 'mpirun, 2 ranks: 9 steps' 'rank "$T/pa.st" 0'
	check 'both ranks'"'"' positions kept' '$PY - "$T/pa.st" <<PYEOF
import sys, st, json
t, meta = st.load(sys.argv[1])
pos = json.loads(meta["mim.train.data"])
assert len(pos) == 2 and all(p["batch"] == 9 and p["images"] == 18 for p in pos), pos
PYEOF'
	expect_fail 'mpirun, the inputs cut after 4 frames' 1 'rank "$T/pb.st" 4'
	expect_ok 'resumed, each rank from its position' 'rank "$T/pb.st" 0 --resume "$T/pb.st"'
	check 'ends byte-identical to the uninterrupted data-parallel run' 'cmp "$T/pa.st" "$T/pb.st"'
else
	echo "skip - mpirun: not installed, or under the sanitizers"
fi
