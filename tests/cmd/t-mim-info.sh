# t-mim-info.sh -- mim-info on Python-written files, pipes, malformed input.
. "$MIM_TOP/tests/lib.sh"

# a file written by Python (independent writer) is read by mim
$PY - "$T/py.safetensors" <<'PYEOF'
import sys, numpy as np, st
st.save(sys.argv[1], {"image": np.arange(24, dtype=np.float32).reshape(2,3,2,2),
                      "mask": np.array([[1,0],[0,1]], np.uint8),
                      "label": np.array([3,7], np.int64)}, {"mim.keys": '["a","b"]'})
PYEOF
expect_ok 'reads a file written by Python' 'mim-info "$T/py.safetensors" > "$T/info"'
check 'names, dtypes and shapes' 'grep -q "image F32  \[2,3,2,2\]" "$T/info" && grep -q "mask  U8   \[2,2\]" "$T/info" && grep -q "label I64  \[2\]" "$T/info"'
check 'statistics' 'grep "image" "$T/info" | grep -q "min 0 .*max 23 .*mean 11.5"'
check 'metadata' 'grep -q "meta mim.keys = \[\"a\",\"b\"\]" "$T/info"'

# a stream written by mim is read by the NumPy reader, frame by frame
"$MIM_TOP/$MIM_BUILD/tests/test_stream" --emit "$T/two.mim"
check 'NumPy reads frames written by mim' '$PY - "$T/two.mim" <<PYEOF
import sys, numpy as np, st
fr = list(st.read_frames(open(sys.argv[1], "rb")))
assert len(fr) == 2
t, m = fr[1]
assert t["t_F32"].shape == (2, 3, 2) and t["t_I64"].dtype == np.int64
assert m["mim.batch"] == "1" and t["scalar"].shape == ()
assert float(t["t_F32"][0, 0, 0]) == -1.0, t["t_F32"]
PYEOF'

# multi-frame stream from a pipe, and --json
expect_ok 'multi-frame stream on a pipe' 'cat "$T/two.mim" "$T/two.mim" | mim-info > "$T/info2"'
check 'four frames reported' 'test "$(grep -c "^<stdin>: frame" "$T/info2")" = 4'
expect_ok 'json output' 'mim-info --json "$T/two.mim" > "$T/j"'
check 'json parses, one object per frame' '$PY -c "
import json,sys; L=[json.loads(l) for l in open(sys.argv[1])]
assert len(L)==2 and L[1][\"frame\"]==1 and L[0][\"metadata\"][\"mim.batch\"]==\"0\"
t={x[\"name\"]:x for x in L[0][\"tensors\"]}; assert t[\"t_U8\"][\"shape\"]==[2,3,1]
" "$T/j"'

# the tools ask for 1 MiB pipe buffers, on their input and on their output
# (where Linux allows that much: /proc/sys/fs/pipe-max-size)
if [ "$(cat /proc/sys/fs/pipe-max-size 2>/dev/null || echo 0)" -ge 1048576 ]; then
	check 'a pipe into a tool gets 1 MiB' '$PY - "$T/two.mim" <<PYEOF
import fcntl, os, subprocess, sys, time
r, w = os.pipe()
p = subprocess.Popen(["mim-info", "-"], stdin=r, stdout=subprocess.DEVNULL)
os.close(r)
for _ in range(100):	# until mim-info has opened its input
    if fcntl.fcntl(w, 1032) == 1048576:	# F_GETPIPE_SZ
        break
    time.sleep(0.05)
size = fcntl.fcntl(w, 1032)
os.write(w, open(sys.argv[1], "rb").read()); os.close(w)
assert p.wait() == 0 and size == 1048576, size
PYEOF'
	check 'a pipe out of a tool gets 1 MiB' 'mim-info "$T/two.mim" | $PY -c "
import fcntl, sys, time
for _ in range(100):
    if fcntl.fcntl(0, 1032) == 1048576:
        break
    time.sleep(0.05)
assert fcntl.fcntl(0, 1032) == 1048576, fcntl.fcntl(0, 1032)
sys.stdin.buffer.read()
"'
else
	echo "skip - pipe-max-size below 1 MiB"
fi

# malformed input: exit 1, a message, nothing on stdout
mk() { $PY -c "
import struct,sys
h=sys.argv[1].encode(); d=int(sys.argv[2])
sys.stdout.buffer.write(struct.pack('<Q', int(sys.argv[3]) if len(sys.argv)>3 else len(h)) + h + b'x'*d)" "$@"; }
mk '{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}' 8 > "$T/good"
check 'hand-made frame is valid' 'mim-info "$T/good" >/dev/null'
head -c 5 "$T/good" > "$T/b1"
expect_fail 'truncated length' 1 'mim-info "$T/b1"'
head -c 20 "$T/good" > "$T/b2"
expect_fail 'truncated header' 1 'mim-info "$T/b2"'
head -c $(( $(wc -c < "$T/good") - 1 )) "$T/good" > "$T/b3"
expect_fail 'truncated data' 1 'mim-info "$T/b3"'
expect_fail 'truncated data on a pipe' 1 'cat "$T/b3" | mim-info'
mk '{}' 0 200000000 > "$T/b4"
expect_fail 'header length over the cap' 1 'mim-info "$T/b4"'
expect_fail 'header length over the pipe cap' 1 'cat "$T/b4" | mim-info'
mk '{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]' 8 > "$T/b5"
expect_fail 'bad JSON' 1 'mim-info "$T/b5"'
mk '{"a":{"dtype":"Q32","shape":[2],"data_offsets":[0,8]}}' 8 > "$T/b6"
expect_fail 'unknown dtype' 1 'mim-info "$T/b6"'
mk '{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}' 8 > "$T/b7"
expect_fail 'overlapping offsets' 1 'mim-info "$T/b7"'
mk '{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}' 8 > "$T/b8"
expect_fail 'gapped offsets' 1 'mim-info "$T/b8"'
mk '{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}' 8 > "$T/b9"
expect_fail 'duplicate names' 1 'mim-info "$T/b9"'
mk '{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}' 8 > "$T/b10"
expect_fail 'shape/offset mismatch' 1 'mim-info "$T/b10"'
cat "$T/good" > "$T/b11"; echo junk >> "$T/b11"
check 'garbage after a good frame: frame 0 shown, then exit 1' '! mim-info "$T/b11" > "$T/o11" 2> "$T/e11" && grep -q "frame 0" "$T/o11" && grep -q "^mim-info: .*frame 1: truncated" "$T/e11"'
check 'message names input and frame' 'mim-info "$T/b7" 2>&1 | grep -q "^mim-info: .*/b7: frame 0: tensor .b.: offsets overlap$"'
expect_fail 'missing file' 1 'mim-info "$T/nonexistent"'
expect_fail 'directory' 1 'mim-info "$T"'
expect_fail 'unknown flag' 2 'mim-info --frobnicate'
check 'help' 'mim-info --help | grep -q "usage: mim-info"'

# ---- --system: the machine; OpenBLAS's kernels checked against the CPU ------
expect_ok '--system describes the machine' 'mim-info --system > "$T/sys"'
check '--system: cpu, flags, openblas core, threads, onednn' \
	'grep -q "^cpu: " "$T/sys" && grep -q "^flags:" "$T/sys" && grep -q "^openblas: core " "$T/sys" &&
	 grep -q "^threads: [0-9]" "$T/sys" && grep -q "^onednn: " "$T/sys"'
expect_fail '--system takes no FILE' 2 'mim-info --system "$T/two.mim"'
# lib/blas.c has OpenBLAS choose its kernels again while OpenBLAS's own
# threads start (each allocating its buffer): every start must end on the
# same kernels, alive (before the fix: 2 of 300 on Prescott's, 4 crashed)
check '--system 300 times: the same OpenBLAS kernels every start, none crashed' \
	'for i in $(seq 300); do mim-info --system | grep "^openblas: " || echo crashed; done |
	 sort -u > "$T/cores" && [ $(wc -l < "$T/cores") = 1 ] && ! grep -q crashed "$T/cores"'
# the default thread count: the CPUs the process may run on (taskset), one
# a core; MIM_THREADS over it
check '--system: one thread under taskset -c 0' \
	'(unset MIM_THREADS; taskset -c 0 mim-info --system) | grep -q "^threads: 1$"'
check '--system: MIM_THREADS=3 under taskset -c 0 is 3' \
	'MIM_THREADS=3 taskset -c 0 mim-info --system | grep -q "^threads: 3$"'
# the float products' library: oneDNN's sgemm, OpenBLAS's with MIM_SGEMM=openblas
check '--system: float products through oneDNN by default' \
	'grep -q "^float products: onednn sgemm$" "$T/sys" &&
	 mim-info --system --json | $PY -c "import json, sys; assert json.load(sys.stdin)[\"sgemm\"] == \"onednn\""'
check '--system: MIM_SGEMM=openblas is seen' \
	'MIM_SGEMM=openblas mim-info --system | grep -q "^float products: openblas sgemm$" &&
	 MIM_SGEMM=openblas mim-info --system --json | $PY -c "import json, sys; assert json.load(sys.stdin)[\"sgemm\"] == \"openblas\""'
# the bf16 Linear products: AMX tiles where the CPU has them, oneDNN with
# MIM_GEMM_AMX=0 (or without AMX)
check '--system: bf16 linear products on AMX tiles where the CPU has AMX' \
	'amx=$(mim-info --system --json | $PY -c "import json, sys; print(int(json.load(sys.stdin)[\"flags\"][\"amx_bf16\"]))")
	 if [ "$amx" = 1 ]; then grep -q "^bf16 linear products: amx tiles (lib/amx.c)$" "$T/sys"
	 else grep -q "^bf16 linear products: onednn matmul$" "$T/sys"; fi'
check '--system: MIM_GEMM_AMX=0 is seen' \
	'MIM_GEMM_AMX=0 mim-info --system | grep -q "^bf16 linear products: onednn matmul$" &&
	 MIM_GEMM_AMX=0 mim-info --system --json | $PY -c "import json, sys; assert json.load(sys.stdin)[\"bf16_linear\"] == \"onednn\""'
# what the kernels should be on this CPU: SkylakeX with AVX-512, Haswell with AVX2
want=$(mim-info --system --json | $PY -c '
import json, sys; f = json.load(sys.stdin)["flags"]
print("SkylakeX" if f["avx512f"] else "Haswell" if f["avx2"] and f["fma"] else "")')
if [ -z "$want" ]; then
	echo "skip - the CPU has neither AVX2 nor AVX-512: no kernels to insist on"
else
	# OPENBLAS_CORETYPE=Prescott with MIM_BLAS_FIX=force stands for a library
	# that chose Prescott itself (0.3.21 on a CPU newer than it)
	expect_ok 'a library that chose Prescott' \
		'OPENBLAS_CORETYPE=Prescott MIM_BLAS_FIX=force mim-info --system --json > "$T/fix.json"'
	check "is corrected to $want before the first product" '$PY - "$T/fix.json" "$want" <<PYEOF
import json, sys
b = json.load(open(sys.argv[1]))["openblas"]
assert b["chosen"] == "Prescott" and b["core"] == sys.argv[2] and b["corrected"], b
assert sys.argv[2] in b["config"], b
PYEOF'
	check 'the text says so' \
		'OPENBLAS_CORETYPE=Prescott MIM_BLAS_FIX=force mim-info --system | grep -q "^openblas: core $want (corrected by mim: the library chose Prescott)"'
	check "the products are right on the corrected kernels (test_gemm)" \
		'OPENBLAS_CORETYPE=Prescott MIM_BLAS_FIX=force "$MIM_TOP/$MIM_BUILD/tests/test_gemm" > "$T/g" && grep -q "^ok - OpenBLAS runs kernels of the CPU.s class: $want (the library chose Prescott)" "$T/g"'
	check "the user's OPENBLAS_CORETYPE is respected" \
		'OPENBLAS_CORETYPE=Prescott mim-info --system --json | $PY -c "
import json, sys; b = json.load(sys.stdin)[\"openblas\"]
assert b[\"core\"] == \"Prescott\" and not b[\"corrected\"] and b[\"coretype_env\"], b"'
	check 'MIM_BLAS_FIX=0 leaves the library as installed' \
		'OPENBLAS_CORETYPE=Prescott MIM_BLAS_FIX=0 mim-info --system | grep -q "^openblas: core Prescott"'
fi
