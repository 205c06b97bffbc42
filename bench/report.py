"""report.py -- the markdown tables of a bench run (bench/run.sh) from its
rows.jsonl and machine.txt.

  /usr/bin/python3 bench/report.py ROWS.jsonl MACHINE.txt > table.md
"""
import json
import sys


def gb(kb):
    return "%.2f" % (kb / 1048576.0) if kb else "-"


def fmt(x, spec="%.2f"):
    return spec % x if x is not None else "-"


def ratio(a, b):
    return "%.2fx" % (a / b) if a and b else "-"


def main(argv):
    rows = [json.loads(line) for line in open(argv[0]) if line.strip()]
    machine = open(argv[1]).read().strip() if len(argv) > 1 else ""
    sg = [r for r in rows if r["kind"] == "sgemm"]
    peak = max(r["peak"] for r in sg) if sg else None
    out = []
    out.append("Machine:\n\n```\n%s\n```\n" % machine)
    if sg:
        out.append("cblas_sgemm ceiling (%d threads, best of large squares): %s GFLOP/s "
                   "(the peak below is the higher of the runs at the start and end)\n"
                   % (sg[0]["threads"], ", ".join("%s %.1f (load %.1f)" % (r["tag"], r["peak"], r["load"])
                                                 for r in sg)))
    rounds = max((len(r.get("rounds", {}).get("step", [])) for r in rows if r["kind"] == "row"), default=1)
    out.append("Training step (forward, loss, backward, clip, AdamW), 192 px, images/s "
               "(median of the steps after warm-up; each side's best of %d rounds, the two "
               "sides taking turns):\n" % max(rounds, 1))
    out.append("| model | batch | precision | GFLOP/img | mim-step img/s | PyTorch img/s | mim/PyTorch "
               "| mim GFLOP/s | of sgemm peak | PyTorch of peak | mim RSS GB | PyTorch RSS GB | load |")
    out.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if r["kind"] == "skip":
            out.append("| %s | %d | | | skipped: needs ~%d GB, %d GB available | | | | | | | | |"
                       % (r["model"], r["batch"], r["need_gb"], r["avail_gb"]))
        if r["kind"] != "row":
            continue
        f = r["flops"]["step"]
        rate = r["step_ips"] * f / 1e9
        trate = r["torch_step_ips"] * f / 1e9 if r["torch_step_ips"] else None
        out.append("| %s | %d | %s | %.1f | %.2f | %s | %s | %.1f | %s | %s | %s | %s | %.1f |" % (
            r["model"], r["batch"], r.get("precision", "fp32"), f / 1e9, r["step_ips"], fmt(r["torch_step_ips"]),
            ratio(r["step_ips"], r["torch_step_ips"]), rate,
            "%.0f%%" % (100 * rate / peak) if peak else "-",
            "%.0f%%" % (100 * trate / peak) if peak and trate else "-",
            gb(r["step_rss_kb"]), gb(r["torch_step_rss_kb"]), r["load"]))
    enc = [r for r in rows if r["kind"] == "row" and r["encode_ips"] is not None]
    if enc:
        out.append("")
        out.append("Encoder forward (mim-encode; PyTorch: encoder under no_grad), images/s "
                   "(best of the rounds as above):\n")
        out.append("| model | batch | precision | GFLOP/img | mim-encode img/s | PyTorch img/s | mim/PyTorch "
                   "| mim GFLOP/s | of sgemm peak | mim RSS GB | PyTorch RSS GB |")
        out.append("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in enc:
        f = r["flops"]["encode"]
        rate = r["encode_ips"] * f / 1e9
        out.append("| %s | %d | %s | %.1f | %.2f | %s | %s | %.1f | %s | %s | %s |" % (
            r["model"], r["batch"], r.get("precision", "fp32"), f / 1e9, r["encode_ips"], fmt(r["torch_encode_ips"]),
            ratio(r["encode_ips"], r["torch_encode_ips"]), rate,
            "%.0f%%" % (100 * rate / peak) if peak else "-",
            gb(r["encode_rss_kb"]), gb(r["torch_encode_rss_kb"])))
    both = {}
    for r in rows:
        if r["kind"] == "row":
            both.setdefault((r["model"], r["batch"]), {})[r.get("precision", "fp32")] = r
    pairs = [(k, v) for k, v in both.items() if "fp32" in v and "bf16" in v]
    if pairs:
        out.append("")
        out.append("fp32 and bf16 side by side (mim: --precision bf16; PyTorch: "
                   "torch.autocast(\"cpu\", dtype=torch.bfloat16)), images/s, same run:\n")
        out.append("| model | batch | what | mim fp32 | mim bf16 | mim bf16/fp32 | PyTorch fp32 "
                   "| PyTorch bf16 | PyTorch bf16/fp32 | mim/PyTorch fp32 | mim/PyTorch bf16 |")
        out.append("|---|---|---|---|---|---|---|---|---|---|---|")
        for (m, b), v in pairs:
            a, z = v["fp32"], v["bf16"]
            for what, k, tk in (("step", "step_ips", "torch_step_ips"),
                                ("encode", "encode_ips", "torch_encode_ips")):
                if a[k] is None or z[k] is None:
                    continue
                out.append("| %s | %d | %s | %.2f | %.2f | %s | %s | %s | %s | %s | %s |" % (
                    m, b, what, a[k], z[k], ratio(z[k], a[k]), fmt(a[tk]), fmt(z[tk]),
                    ratio(z[tk], a[tk]), ratio(a[k], a[tk]), ratio(z[k], z[tk])))
    for r in rows:
        if r["kind"] != "pipe":
            continue
        out.append("")
        nr = len(r.get("rounds", {}).get("file", [])) or 1
        out.append("The pipe (%s, batch %d, median of %d steps after 2, best of %d rounds "
                   "taking turns): mim-step img/s reading "
                   "a stream file %.2f; `cat | mim-mask | mim-step` %.2f (%+.1f%%, framing and "
                   "two more processes); `mim-data | mim-mask | mim-step` from the photos %.2f "
                   "(%+.1f%%, decoding on the same cores)." % (
                       r["model"], r["batch"], r["steps"] - 2, nr, r["file_ips"], r["framed_ips"],
                       100 * (r["framed_ips"] / r["file_ips"] - 1), r["full_ips"],
                       100 * (r["full_ips"] / r["file_ips"] - 1)))
        if r.get("rounds"):
            out.append("Every round: file %s; framed %s; from the photos %s." % tuple(
                " / ".join("%.2f" % x for x in r["rounds"][k]) for k in ("file", "framed", "full")))
        if r.get("input_share"):
            out.append("")
            out.append("Share of a step spent waiting for and reading its frame (mim-step's "
                       "`input_s` over the step time; median of the steps, per round): file %s; "
                       "framed %s; from the photos %s." % tuple(
                           " / ".join("%.1f%%" % (100 * x) for x in r["input_share"][k])
                           for k in ("file", "framed", "full")))
    cache = [r for r in rows if r["kind"] == "cache"]
    if cache:
        out.append("")
        out.append("One product C = A B^T through mim_gemm (%d threads), GFLOP/s: operands hot "
                   "in cache (best of 30) and cold (a round of %d distinct operand sets, median "
                   "of 6 rounds; bench/gemmcold.c):\n" % (cache[0]["threads"], cache[0]["sets"]))
        out.append("| M | N | K | hot | of peak | cold | of peak |")
        out.append("|---|---|---|---|---|---|---|")
        for r in cache:
            out.append("| %d | %d | %d | %.1f | %s | %.1f | %s |" % (
                r["M"], r["N"], r["K"], r["hot"],
                "%.0f%%" % (100 * r["hot"] / peak) if peak else "-", r["cold"],
                "%.0f%%" % (100 * r["cold"] / peak) if peak else "-"))
    sw = [r for r in rows if r["kind"] == "sweep"]
    if sw:
        out.append("")
        out.append("Thread sweep, vit-tiny training step at batch 32 (images/s; in process: "
                   "bench/stepbench.c and torch_step.py; scaling over 1 thread):\n")
        out.append("| threads | mim | scaling | PyTorch | scaling | OMP policy | mim/PyTorch |")
        out.append("|---|---|---|---|---|---|---|")
        m1, t1 = sw[0]["mim_ips"], sw[0]["torch_ips"]
        for r in sw:
            out.append("| %d | %.2f | %.2fx | %.2f | %.2fx | %s | %.2fx |" % (
                r["threads"], r["mim_ips"], r["mim_ips"] / m1, r["torch_ips"],
                r["torch_ips"] / t1, r.get("torch_omp", "?"), r["mim_ips"] / r["torch_ips"]))
    rr = [r for r in rows if r["kind"] == "row" and r.get("rounds")]
    if rr:
        out.append("")
        out.append("Every round (images/s; mim-step, PyTorch step, mim-encode, PyTorch encode):\n")
        out.append("| model | batch | precision | mim-step | PyTorch step | mim-encode | PyTorch encode |")
        out.append("|---|---|---|---|---|---|---|")
        for r in rr:
            rd = r["rounds"]
            out.append("| %s | %d | %s | %s | %s | %s | %s |" % (
                r["model"], r["batch"], r.get("precision", "fp32"),
                *[" / ".join("%.2f" % x for x in rd.get(k, [])) or "-"
                  for k in ("step", "torch_step", "encode", "torch_encode")]))
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
