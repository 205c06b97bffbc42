/* stepbench.c -- libmim's training step (mim_train_batch: forward, loss,
 * backward, clipping, AdamW) or encoder forward (mim_encode) timed in
 * process on a synthetic batch, with the per-kernel profile of mim/prof.h.
 * Not a tool (bench/run.sh builds it): the numbers the bench table
 * reports come from the real tools; this is for finding where the time
 * goes. Prints one JSON object on stdout; --profile adds a table on stderr.
 *
 *   stepbench [-t threads] [-b batch] [-s img_size] [-w warmup] [-n steps]
 *             [--encode] [--profile] [--ab-blas | --ab-cut | --ab-sgemm | --ab-amx]
 *             [--precision P]
 *             [--forecast T] PRESET
 *
 * --ab-blas alternates steps between products cut over libmim's pool and
 * the libraries' own threads (mim_gemm_blas_threads: OpenBLAS's, oneDNN's
 * OpenMP team in bf16) and reports both medians:
 * an A/B comparison that a noisy machine disturbs evenly. --ab-cut does
 * the same between the products' grid (the default) and the
 * one-dimensional cut (MIM_CUT_1D), with the CPU time of each side;
 * --ab-sgemm between the float products' backends (mim_gemm_set_sgemm:
 * oneDNN's sgemm, the default, and OpenBLAS's); --ab-amx between the bf16
 * products on AMX tiles by lib/amx.c (the default) and oneDNN's matmul for
 * all of them (mim_gemm_set_amx 0; with --precision bf16).
 *
 * --precision bf16: the products in bfloat16 (mim_gemm_set_precision).
 *
 * --forecast T: what T threads would make of the step on a machine with T
 * cores, from this one (mim_pool_forecast): the work cut for T threads,
 * its tasks run and timed one by one on one thread, then dealt out to T
 * as the pool deals them. The JSON adds forecast_s (the median step
 * forecast) and jobs (pool jobs a step); the profile adds each kernel's
 * forecast ms and the speed-up that is (its serial ms over them). A
 * ceiling: no cost for waking threads and no memory bandwidth shared.
 *
 * The image is N(0,1) noise and the mask random at the model's patch size
 * (ratio 0.6): the image content does not change the work. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mim.h"
#include "bench.h"

static int
cmpe(const void *a, const void *b)
{
	const struct mim_prof_entry *x = a, *y = b;
	return x->seconds < y->seconds ? 1 : x->seconds > y->seconds ? -1 : 0;
}

static void
die(const char *what)
{
	fprintf(stderr, "stepbench: %s: %s\n", what, mim_errmsg());
	exit(1);
}

int
main(int argc, char **argv)
{
	int threads = 0, B = 8, S = 192, warm = 2, n = 5, encode = 0, profile = 0, ab = 0, fc = 0;
	const char *preset = NULL;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "-t") && i + 1 < argc)
			threads = atoi(argv[++i]);
		else if (!strcmp(a, "-b") && i + 1 < argc)
			B = atoi(argv[++i]);
		else if (!strcmp(a, "-s") && i + 1 < argc)
			S = atoi(argv[++i]);
		else if (!strcmp(a, "-w") && i + 1 < argc)
			warm = atoi(argv[++i]);
		else if (!strcmp(a, "-n") && i + 1 < argc)
			n = atoi(argv[++i]);
		else if (!strcmp(a, "--encode"))
			encode = 1;
		else if (!strcmp(a, "--profile"))
			profile = 1;
		else if (!strcmp(a, "--ab-blas"))
			ab = 1;
		else if (!strcmp(a, "--ab-cut"))
			ab = 2;
		else if (!strcmp(a, "--ab-sgemm"))
			ab = 3;
		else if (!strcmp(a, "--ab-amx"))
			ab = 4;
		else if (!strcmp(a, "--forecast") && i + 1 < argc)
			fc = atoi(argv[++i]);
		else if (!strcmp(a, "--precision") && i + 1 < argc) {
			int pr = mim_precision_parse(argv[++i]);
			if (pr < 0 || mim_gemm_set_precision((enum mim_precision)pr) < 0) {
				fprintf(stderr, "stepbench: --precision %s: %s\n", argv[i],
				    pr < 0 ? "not fp32 or bf16" : mim_errmsg());
				return 2;
			}
		}
		else if (a[0] != '-' && !preset)
			preset = a;
		else {
			fprintf(stderr, "usage: stepbench [-t threads] [-b batch] [-s img_size] "
			    "[-w warmup] [-n steps] [--encode] [--profile] [--ab-blas | --ab-cut | --ab-sgemm | --ab-amx] [--precision P] "
			    "[--forecast T] PRESET\n");
			return 2;
		}
	}
	if (!preset || B < 1 || n < 1 || warm < 0 || fc < 0 || (fc && (ab || threads))) {
		fprintf(stderr, "stepbench: need a preset, batch >= 1, steps >= 1; "
		    "--forecast T (T >= 1) without -t or --ab-*\n");
		return 2;
	}
	if (fc) {
		threads = fc;
		mim_pool_forecast(1);
	}
	if (threads > 0)
		mim_set_threads(threads);
	struct mim_config c;
	if (mim_config_preset(&c, preset) < 0)
		die(preset);
	c.img_size = S;
	if (mim_config_check(&c) < 0)
		die("config");
	struct mim_model *m = mim_model_new(&c);
	if (!m || mim_model_init(m, 1) < 0)
		die("model");
	int p = c.patch_size, g = S / p, hw = S / c.encoder_stride;
	size_t ni = (size_t)B * 3 * S * S;
	float *img = malloc(ni * sizeof *img);
	uint8_t *mask = malloc((size_t)B * g * g);
	float *lat = malloc((size_t)B * mim_config_features(&c) * hw * hw * sizeof(float));
	uint64_t x = 88172645463325252ULL;
	for (size_t i = 0; i < ni; i += 2) {	/* Box-Muller on xorshift64 */
		double u[2];
		for (int k = 0; k < 2; k++) {
			x ^= x << 13, x ^= x >> 7, x ^= x << 17;
			u[k] = ((x >> 11) + 0.5) / 9007199254740992.0;
		}
		double r = sqrt(-2 * log(u[0]));
		img[i] = (float)(r * cos(2 * M_PI * u[1]));
		if (i + 1 < ni)
			img[i + 1] = (float)(r * sin(2 * M_PI * u[1]));
	}
	for (size_t i = 0; i < (size_t)B * g * g; i++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		mask[i] = (x >> 11) % 10 < 6;
	}
	struct mim_trainopt o;
	mim_trainopt_default(&o);
	o.sched.kind = MIM_SCHED_CONSTANT;
	o.sched.lr = 1e-4;
	o.sched.steps = 1 << 30;
	o.batch = B;
	struct mim_train *t = encode ? NULL : mim_train_new(m, &o);
	if (!encode && !t)
		die("train");
	double *dt = malloc((size_t)n * sizeof *dt), *dtb = malloc((size_t)n * sizeof *dtb);
	double *dtf = malloc((size_t)n * sizeof *dtf);
	long jobs0 = 0, jobs = 0;
	int na = 0, nb = 0;
	double cputot = 0, cpub = 0;
	for (int s = 0; s < warm + n; s++) {
		if (ab == 1)
			mim_gemm_blas_threads(s % 2);
		else if (ab == 2)
			mim_gemm_set_cut(s % 2 ? MIM_CUT_1D : MIM_CUT_AUTO);
		else if (ab == 3)
			mim_gemm_set_sgemm(s % 2 ? MIM_SGEMM_OPENBLAS : MIM_SGEMM_ONEDNN);
		else if (ab == 4)
			mim_gemm_set_amx(!(s % 2));
		if (profile && s == warm) {
			mim_prof_reset();
			mim_prof_enable(1);
		}
		double t0 = now(), c0 = clk(CLOCK_PROCESS_CPUTIME_ID);
		double sv0 = mim_pool_forecast_saved(&jobs0);
		if (encode) {
			if (mim_encode(m, B, img, mask, lat) < 0)
				die("encode");
		} else {
			struct mim_stepinfo info;
			if (mim_train_batch(t, B, img, mask, &info) != 1)
				die("step");
		}
		if (s >= warm && !(ab && s % 2))
			cputot += clk(CLOCK_PROCESS_CPUTIME_ID) - c0;
		else if (s >= warm)
			cpub += clk(CLOCK_PROCESS_CPUTIME_ID) - c0;
		double d = now() - t0, sv = mim_pool_forecast_saved(&jobs);
		if (s >= warm && ab && s % 2)
			dtb[nb++] = d;
		else if (s >= warm) {
			dtf[na] = d - (sv - sv0);
			dt[na++] = d;
		}
	}
	if (ab) {
		qsort(dtb, (size_t)nb, sizeof *dtb, cmpd);
		double mb = nb % 2 ? dtb[nb / 2] : (dtb[nb / 2 - 1] + dtb[nb / 2]) / 2;
		const char *k = ab == 1 ? "blas_threads" : ab == 2 ? "cut_1d" : ab == 3 ?
		    "sgemm_openblas" : "amx_off";
		printf("{\"%s_median_s\":%.6f,\"%s_img_per_s\":%.3f,\"%s_cpu_s\":%.6f,\"steps\":%d}\n",
		    k, mb, k, B / mb, k, nb ? cpub / nb : 0, nb);
		n = na;
	}
	mim_prof_enable(0);
	double tot = 0;
	for (int s = 0; s < n; s++)
		tot += dt[s];
	qsort(dt, (size_t)n, sizeof *dt, cmpd);
	qsort(dtf, (size_t)n, sizeof *dtf, cmpd);
	double med = n % 2 ? dt[n / 2] : (dt[n / 2 - 1] + dt[n / 2]) / 2;
	double fmed = n % 2 ? dtf[n / 2] : (dtf[n / 2 - 1] + dtf[n / 2]) / 2;
	printf("{\"model\":\"%s\",\"batch\":%d,\"img_size\":%d,\"threads\":%d,\"mode\":\"%s\","
	    "\"steps\":%d,\"median_s\":%.6f,\"min_s\":%.6f,\"img_per_s\":%.3f,\"cpu_s\":%.6f",
	    preset, B, S, mim_threads(), encode ? "encode" : "step", n, med, dt[0], B / med,
	    cputot / n);
	if (fc)
		printf(",\"forecast_threads\":%d,\"forecast_s\":%.6f,\"forecast_img_per_s\":%.3f,"
		    "\"jobs\":%ld", fc, fmed, B / fmed, jobs - jobs0);
	printf("}\n");
	if (profile) {
		struct mim_prof_entry e[128];
		int ne = mim_prof_get(e, 128);
		double sum = 0, csum = 0;
		ne = ne > 128 ? 128 : ne;
		qsort(e, (size_t)ne, sizeof *e, cmpe);
		double ftot = 0, fsum = 0;
		for (int s = 0; s < n; s++)
			ftot += dtf[s];
		fprintf(stderr, "%-22s %9s %6s %9s %7s %8s", "kernel", "ms/step", "%",
		    "cpu-ms", "calls", "GFLOP/s");
		if (fc)
			fprintf(stderr, " %9s %6s %6s", "fc-ms", "fc-%", "x");
		fprintf(stderr, "\n");
		for (int i = 0; i < ne; i++) {
			sum += e[i].seconds;
			csum += e[i].cpu;
			fsum += e[i].forecast;
			fprintf(stderr, "%-22s %9.2f %6.1f %9.2f %7ld %8.1f", e[i].name,
			    1e3 * e[i].seconds / n, 100 * e[i].seconds / tot, 1e3 * e[i].cpu / n,
			    e[i].calls / n,
			    e[i].seconds > 0 ? e[i].flops / e[i].seconds / 1e9 : 0);
			if (fc)
				fprintf(stderr, " %9.2f %6.1f %6.2f", 1e3 * e[i].forecast / n,
				    100 * e[i].forecast / ftot,
				    e[i].forecast > 0 ? e[i].seconds / e[i].forecast : 0);
			fprintf(stderr, "\n");
		}
		fprintf(stderr, "%-22s %9.2f %6.1f %9.2f", "(untimed)", 1e3 * (tot - sum) / n,
		    100 * (tot - sum) / tot, 1e3 * (cputot - csum) / n);
		if (fc)
			fprintf(stderr, "                   %9.2f %6.1f", 1e3 * (ftot - fsum) / n,
			    100 * (ftot - fsum) / ftot);
		fprintf(stderr, "\n%-22s %9.2f %6.1f %9.2f", "step (mean)", 1e3 * tot / n, 100.0,
		    1e3 * cputot / n);
		if (fc)
			fprintf(stderr, "                   %9.2f %6.1f %6.2f", 1e3 * ftot / n, 100.0,
			    tot / ftot);
		fprintf(stderr, "\n");
	}
	free(dt);
	free(dtb);
	free(dtf);
	free(img);
	free(mask);
	free(lat);
	mim_train_free(t);
	mim_model_free(m);
	return 0;
}
