# t-randaug.sh -- mim-data's RandAugment (reference §3.2: timm 0.4.12's
# 'rand-m9-mstd0.5-inc1' after the crop and the flip): the ops each sample
# draws equal tests/ref/randaug_ref.py's simulation of timm's draws on the
# same generator (timm_ref.Drng), and the pixels equal PIL applying those
# ops to the crop without RandAugment; random erasing draws after it; the
# stream is reproducible and differs from --randaug none; bad specs.
. "$MIM_TOP/tests/lib.sh"

$PY - "$T" <<'PYEOF'
import sys, numpy as np, shards
# the picture of s05 grey: RGB before RandAugment, as convert('RGB')
shards.gradient_shard(sys.argv[1] + "/ra.tar", [(64, 48), (50, 50), (97, 33), (40, 120),
                      (80, 64), (56, 56), (70, 90)], np.random.RandomState(8), grey=(5,))
PYEOF

FT='--finetune -s 40 --seed 7 -e 6 -b 7 --mean 0 --std 1'
expect_ok '--finetune (RandAugment on, erasing off)' "mim-data $FT --reprob 0 --print-boxes \"\$T/ra.tar\" 2> \"\$T/boxes\" > \"\$T/ra.mim\""
expect_ok '--finetune --randaug none' "mim-data $FT --reprob 0 --randaug none \"\$T/ra.tar\" > \"\$T/nora.mim\""
check 'the two streams differ' '! cmp -s "$T/ra.mim" "$T/nora.mim"'
expect_ok 'the same seed again' "mim-data -q $FT --reprob 0 \"\$T/ra.tar\" > \"\$T/ra2.mim\""
check 'the same bytes' 'cmp -s "$T/ra.mim" "$T/ra2.mim"'
expect_ok 'another seed' "mim-data -q $FT --reprob 0 --seed 8 \"\$T/ra.tar\" > \"\$T/ra3.mim\""
check 'other bytes' '! cmp -s "$T/ra.mim" "$T/ra3.mim"'
expect_ok '--randaug rand-m9-mstd0.5-inc1 is the default of --finetune' "mim-data -q $FT --reprob 0 --randaug rand-m9-mstd0.5-inc1 \"\$T/ra.tar\" > \"\$T/ra4.mim\" && cmp -s \"\$T/ra.mim\" \"\$T/ra4.mim\""

check 'the ops drawn are timm RandAugment draws on the same generator' '$PY - "$T/boxes" <<PYEOF
import sys, randaug_ref as ra
rows = [l.split()[2:] for l in open(sys.argv[1]) if " box " in l]
assert len(rows) == 42, len(rows)
applied = 0
for n, r in enumerate(rows):
    want = ra.finetune_draws(7, n, 7, int(r[1]), int(r[2]))[0]
    got = ra.printed(r)
    assert got == want, (n, got, want)
    applied += sum(m is not None for _, m, _ in got)
print("# %d of 84 ops applied" % applied, file=sys.stderr)
assert 25 <= applied <= 60
PYEOF'

check 'the pixels: PIL applying those ops to the crop without RandAugment' '$PY - "$T" <<PYEOF
import sys, numpy as np, st, randaug_ref as ra
from PIL import Image
d = sys.argv[1]
rows = [l.split()[2:] for l in open(d + "/boxes") if " box " in l]
rd = lambda p: np.concatenate([t["image"] for t, m in st.read_frames(open(p, "rb"))])
got, base = rd(d + "/ra.mim"), rd(d + "/nora.mim")
u8 = lambda x: np.rint(x.transpose(1, 2, 0) * 255).astype(np.uint8)
exact = near = total = 0
geo = set(ra.GEOMETRIC)
for n, r in enumerate(rows):
    steps = [s for s in ra.printed(r) if s[1] is not None]
    # the fill is round(255 * mean): black at --mean 0
    want = np.asarray(ra.apply(Image.fromarray(u8(base[n])), steps, fill=(0, 0, 0))).astype(int)
    diff = np.abs(u8(got[n]).astype(int) - want)
    if not any(s[0] in geo for s in steps):
        assert diff.max() == 0, (n, steps, diff.max())
    exact += (diff == 0).sum(); near += (diff <= 1).sum(); total += diff.size
print("# %d of %d values exact, %d within 1" % (exact, total, near), file=sys.stderr)
assert near >= 0.99 * total
PYEOF'

# random erasing (--finetune's 0.25) draws after RandAugment's
expect_ok '--finetune with erasing' "mim-data $FT --print-boxes \"\$T/ra.tar\" 2> \"\$T/eboxes\" > \"\$T/er.mim\""
check 'erased boxes where timm RandomErasing draws them after RandAugment' '$PY - "$T" <<PYEOF
import sys, numpy as np, st, timm_ref, randaug_ref as ra
d = sys.argv[1]
rows = [l.split()[2:] for l in open(d + "/eboxes") if " box " in l]
rd = lambda p: np.concatenate([t["image"] for t, m in st.read_frames(open(p, "rb"))])
er, no = rd(d + "/er.mim"), rd(d + "/ra.mim")
erased = 0
for n, r in enumerate(rows):
    rng = ra.finetune_draws(7, n, 7, int(r[1]), int(r[2]))[1]
    want = no[n].astype(np.float64)
    box = timm_ref.timm_erase(want, rng, 0.25)
    got_box = tuple(map(int, r[10:14])) if r[9] == "erase" else None
    assert box == got_box, (n, box, r)
    assert np.array_equal(er[n], want.astype(np.float32)), n
    erased += box is not None
print("# %d of 42 erased" % erased, file=sys.stderr)
assert erased >= 3
PYEOF'

# at S <= 32 (RandomCrop with padding) RandAugment follows too
expect_ok '--finetune at 28 px' 'mim-data -q --finetune -s 28 --seed 2 "$T/ra.tar" > "$T/p1.mim" && mim-data -q --finetune --randaug none -s 28 --seed 2 "$T/ra.tar" > "$T/p2.mim"'
check 'RandAugment on the padded crops too' '! cmp -s "$T/p1.mim" "$T/p2.mim"'
expect_ok '--randaug without --finetune (pre-training crop)' 'mim-data -q --randaug rand-m5-n1 -s 32 "$T/ra.tar" > /dev/null'

# bad specs and combinations
expect_fail '--randaug rand-m99' 2 'mim-data --finetune --randaug rand-m99 "$T/ra.tar"'
cp "$T/.err" "$T/e1"
check 'says why' 'grep -q "^mim-data: --randaug: .rand-m99.: magnitude 99 out of range \[0, 10\]" "$T/e1"'
expect_fail '--randaug foo' 2 'mim-data --randaug foo "$T/ra.tar"'
cp "$T/.err" "$T/e2"
check 'says why' 'grep -q "^mim-data: --randaug: .foo.: not a RandAugment spec" "$T/e2"'
expect_fail '--randaug rand-m9-w0 (weighted choice)' 2 'mim-data --randaug rand-m9-w0 "$T/ra.tar"'
expect_fail '--randaug rand-m9-x3' 2 'mim-data --randaug rand-m9-x3 "$T/ra.tar"'
expect_fail '--randaug with --eval' 2 'mim-data --randaug rand-m9 --eval "$T/ra.tar"'
cp "$T/.err" "$T/e3"
check 'says why' 'grep -q "^mim-data: --randaug is part of the training transform" "$T/e3"'
expect_fail '--randaug with --keep-aspect' 2 'mim-data --randaug rand-m9 --keep-aspect --out "$T/o-%d.tar" "$T/ra.tar"'
expect_ok '--randaug none with --eval' 'mim-data -q --randaug none --eval -s 32 "$T/ra.tar" > /dev/null'
check '--help names --randaug' 'mim-data --help | grep -q "randaug SPEC"'
