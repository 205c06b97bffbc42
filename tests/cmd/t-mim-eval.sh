# t-mim-eval.sh -- mim-eval's accuracies, confusion matrix and loss against
# numpy on random logits (with ties, K < 5, several frames); the table; bad
# input: no label, labels out of range, an empty stream, bad shapes.
. "$MIM_TOP/tests/lib.sh"

$PY - "$T" <<'PYEOF'
import sys, numpy as np, st
d = sys.argv[1]
rs = np.random.RandomState(3)
# K = 10 over three frames; logits rounded to halves so that ties are many
frames = []
for B in (7, 16, 5):
    lg = (np.round(rs.randn(B, 10) * 2) / 2).astype(np.float32)
    y = rs.randint(0, 10, B).astype(np.int64)
    frames.append((lg, y))
with open(d + "/k10.mim", "wb") as f:
    for lg, y in frames:
        f.write(st.frame_bytes({"logits": lg, "label": y}, {"mim.batch": "0"}))
lg3 = (np.round(rs.randn(9, 3))).astype(np.float32)
y3 = rs.randint(0, 3, 9).astype(np.int64)
st.save(d + "/k3.mim", {"logits": lg3, "label": y3})
st.save(d + "/k3-i32.mim", {"logits": lg3, "label": y3.astype(np.int32)})
st.save(d + "/nolabel.mim", {"logits": lg3})
st.save(d + "/nologits.mim", {"label": y3})
st.save(d + "/range.mim", {"logits": lg3, "label": np.array([0, 1, 2, 3, 0, 1, 2, 0, 1])})
st.save(d + "/neg.mim", {"logits": lg3, "label": -y3 - 1})
st.save(d + "/flabel.mim", {"logits": lg3, "label": y3.astype(np.float32)})
st.save(d + "/shape.mim", {"logits": lg3.reshape(9, 3, 1), "label": y3})
st.save(d + "/short.mim", {"logits": lg3, "label": y3[:8]})
bad = lg3.copy(); bad[2, 1] = np.nan
st.save(d + "/nan.mim", {"logits": bad, "label": y3})
st.save(d + "/k4.mim", {"logits": rs.randn(2, 4).astype(np.float32), "label": np.array([0, 1])})

def expect(lg, y, path):
    K = lg.shape[1]
    order = np.argsort(-lg.astype(np.float64), axis=1, kind="stable")  # ties: lower class first
    rank = np.argmax(order == y[:, None], axis=1)
    pred = lg.argmax(1)
    assert (order[:, 0] == pred).all()
    ll = lg.astype(np.float64)
    m = ll.max(1)
    ce = m + np.log(np.exp(ll - m[:, None]).sum(1)) - ll[np.arange(len(y)), y]
    cm = np.zeros((K, K), int)
    np.add.at(cm, (y, pred), 1)
    cnt = cm.sum(1)
    pc = [100.0 * cm[k, k] / cnt[k] if cnt[k] else None for k in range(K)]
    out = {"n": len(y), "classes": K, "acc1": 100.0 * (rank == 0).mean(),
           "acc5": 100.0 * (rank < min(5, K)).mean(), "topk": min(5, K), "loss": ce.mean(),
           "per_class": pc, "count": cnt.tolist(), "confusion": cm.tolist()}
    import json
    json.dump(out, open(path, "w"))

expect(np.concatenate([f[0] for f in frames]), np.concatenate([f[1] for f in frames]), d + "/k10.want")
expect(lg3, y3, d + "/k3.want")
# the ties matter: argmax and the stable rank disagree with a naive count
# of strictly larger logits on some sample
allg = np.concatenate([f[0] for f in frames]); ally = np.concatenate([f[1] for f in frames])
gt = (allg > allg[np.arange(len(ally)), ally][:, None]).sum(1)
ge = (allg >= allg[np.arange(len(ally)), ally][:, None]).sum(1) - 1
assert (gt != ge).any(), "no ties in the test data"
open(d + "/names", "w").write("zero\n\n one \ntwo\n")
open(d + "/names2", "w").write("a\nb\n")
PYEOF

cmp_json() {	# cmp_json GOT WANT: every key of WANT in GOT, floats to 1e-9 relative
	$PY - "$1" "$2" <<'PYEOF'
import json, sys, math
got, want = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
def same(a, b):
    if isinstance(b, list):
        return isinstance(a, list) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if b is None or isinstance(b, int) and not isinstance(b, bool) and isinstance(a, int):
        return a == b
    return abs(a - b) <= 1e-9 * max(1.0, abs(b))
for k, v in want.items():
    assert k in got and same(got[k], v), (k, got.get(k), v)
PYEOF
}

expect_ok 'K=10, three frames, ties: --json' 'mim-eval --json "$T/k10.mim" > "$T/k10.json"'
check 'K=10: acc1, acc5, per-class, confusion, loss as numpy' 'cmp_json "$T/k10.json" "$T/k10.want"'
expect_ok 'K=3 from stdin' 'mim-eval -j < "$T/k3.mim" > "$T/k3.json"'
check 'K=3: top-5 is top-3 (100 %), the rest as numpy' 'cmp_json "$T/k3.json" "$T/k3.want" && grep -q "\"acc5\":100" "$T/k3.json"'
expect_ok 'I32 labels' 'mim-eval -j "$T/k3-i32.mim" > "$T/k3b.json"'
check 'I32 labels: the same result' 'cmp_json "$T/k3b.json" "$T/k3.want"'
expect_ok 'names' 'mim-eval -j --classes-file "$T/names" "$T/k3.mim" > "$T/nm.json"'
check 'names in the JSON, blank lines and spaces dropped' \
	'grep -q "\"names\":\[\"zero\",\"one\",\"two\"\]" "$T/nm.json"'
expect_ok 'the table' 'mim-eval --classes-file "$T/names" "$T/k3.mim" > "$T/table"'
check 'the table has the accuracy, the class rows and the matrix' '$PY - "$T" <<PYEOF
import sys, json
d = sys.argv[1]
t = open(d + "/table").read().splitlines(); w = json.load(open(d + "/k3.want"))
assert t[2] == "top-1       %.2f %%" % w["acc1"], t[2]
rows = [l for l in t if l.split()[:2] == ["1", "one"]]
assert rows and rows[0].split()[2] == str(w["count"][1]), rows
i = t.index("confusion matrix (row: label, column: prediction)")
assert [int(v) for v in t[i + 3].split()[1:]] == w["confusion"][1], t[i + 3]
PYEOF'
expect_ok 'two streams are one set' 'mim-eval -j "$T/k3.mim" "$T/k3.mim" > "$T/two.json"'
check 'two streams: twice the samples' 'grep -q "\"n\":18" "$T/two.json"'

expect_fail 'no label' 1 'mim-eval "$T/nolabel.mim"'
cp "$T/.err" "$T/e1"
check 'the message names label' 'grep -q "frame 0: no tensor .label." "$T/e1"'
expect_fail 'no logits' 1 'mim-eval "$T/nologits.mim"'
expect_fail 'a label out of range' 1 'mim-eval "$T/range.mim"'
cp "$T/.err" "$T/e2"
check 'the message names the sample and the range' 'grep -q "frame 0: sample 3: label 3 is not in \[0,3)" "$T/e2"'
expect_fail 'a negative label' 1 'mim-eval "$T/neg.mim"'
expect_fail 'float labels' 1 'mim-eval "$T/flabel.mim"'
expect_fail 'logits not [B,K]' 1 'mim-eval "$T/shape.mim"'
expect_fail 'labels of another batch size' 1 'mim-eval "$T/short.mim"'
expect_fail 'a NaN logit' 1 'mim-eval "$T/nan.mim"'
expect_fail 'frames of different K' 1 'cat "$T/k3.mim" "$T/k4.mim" | mim-eval'
expect_fail 'empty stream' 1 ': | mim-eval'
cp "$T/.err" "$T/e3"
check 'the message says empty' 'grep -q "no samples" "$T/e3"'
expect_fail 'a truncated stream' 1 'head -c 100 "$T/k3.mim" | mim-eval'
expect_fail '--classes disagrees with the logits' 1 'mim-eval --classes 4 "$T/k3.mim"'
expect_fail 'names file of the wrong length' 1 'mim-eval --classes-file "$T/names2" "$T/k3.mim"'
expect_fail 'a missing names file' 1 'mim-eval --classes-file "$T/none" "$T/k3.mim"'
expect_fail 'bad --classes' 2 'mim-eval --classes 0 "$T/k3.mim"'
expect_fail 'unknown option' 2 'mim-eval --frob "$T/k3.mim"'
expect_ok '--help' 'mim-eval --help | grep -q "usage: mim-eval"'
