/* onednn.c -- oneDNN behind mim_gemm (lib/gemm.c): products of bfloat16
 * operands accumulated in float, through oneDNN's matmul primitive, which
 * runs them on AMX tiles or AVX512-BF16 dot products, whichever the CPU
 * has (it picks by the CPU's features; DNNL_MAX_CPU_ISA caps it); and
 * float products through its sgemm (JIT kernels for the CPU's ISA). On an
 * AMX core one thread multiplies bf16 at ~550 GFLOP/s where sgemm reaches
 * ~150-200 (bench/RESULTS.md).
 *
 * Every call runs on the calling thread alone, as OpenBLAS's sgemm does:
 * gemm.c cuts a large product over the pool. oneDNN (Debian's is built on
 * OpenMP) would otherwise start an OpenMP team inside every pool task, and
 * its threads spin between regions; so each thread that calls in first
 * sets its OpenMP thread count to 1. The exception is gemm.c's switch to
 * the libraries' own threads (MIM_GEMM_THREADS=blas): dnn_set_threads
 * then gives the calling thread a team for the whole product.
 *
 * The bf16 primitives are made once per shape (tens of microseconds
 * each: the model has a few dozen shapes) and kept in a table that lives
 * as long as the process; they run concurrently from any thread, each
 * call with its own stream and a scratchpad of its thread's (scratchpad
 * mode "user"). */
#include <dnnl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mim/stream.h"
#include "onednn.h"

extern void omp_set_num_threads(int);

static dnnl_engine_t engine;
static pthread_once_t engine_once = PTHREAD_ONCE_INIT;

static void
engine_init(void)
{
	if (dnnl_engine_create(&engine, dnnl_cpu, 0) != dnnl_success)
		engine = NULL;
}

static _Thread_local int omp_now = 1;	/* this thread's OpenMP count, as set */
static _Thread_local int omp_want = 1;	/* dnn_set_threads */

void
dnn_set_threads(int n)
{
	omp_want = n > 1 ? n : 1;
}

static _Thread_local dnnl_stream_t stream;
static _Thread_local void *scratch;
static _Thread_local size_t scratch_cap;

/* this thread's stream, and OpenMP at one thread on it; NULL on failure */
static dnnl_stream_t
thread_stream(void)
{
	if (stream)
		return stream;
	pthread_once(&engine_once, engine_init);
	if (!engine)
		return NULL;
	omp_set_num_threads(1);
	if (dnnl_stream_create(&stream, engine, dnnl_stream_default_flags) != dnnl_success)
		stream = NULL;
	return stream;
}

const char *
dnn_version(void)
{
	static char v[32];
	const dnnl_version_t *d = dnnl_version();

	if (!v[0])
		snprintf(v, sizeof v, "%d.%d.%d", d->major, d->minor, d->patch);
	return v;
}

const char *
dnn_isa(void)
{
	switch (dnnl_get_effective_cpu_isa()) {
	case dnnl_cpu_isa_sse41: return "sse41";
	case dnnl_cpu_isa_avx: return "avx";
	case dnnl_cpu_isa_avx2: return "avx2";
	case dnnl_cpu_isa_avx2_vnni: return "avx2_vnni";
	case dnnl_cpu_isa_avx512_core: return "avx512_core";
	case dnnl_cpu_isa_avx512_core_vnni: return "avx512_core_vnni";
	case dnnl_cpu_isa_avx512_core_bf16: return "avx512_core_bf16";
	case dnnl_cpu_isa_avx512_core_amx: return "avx512_core_amx";
	default: return "other";
	}
}

int
dnn_bf16(void)
{
	unsigned isa = (unsigned)dnnl_get_effective_cpu_isa();

	/* the AVX512-BF16 bits, which AMX's value includes */
	return (isa & dnnl_cpu_isa_avx512_core_bf16) == dnnl_cpu_isa_avx512_core_bf16;
}

/* ---- the primitives, one per shape ------------------------------------------ */

struct key {
	int ta, tb, M, N, K, lda, ldb, ldc, nthr, bias;
	float alpha, beta;
};

struct prim {
	struct key k;
	dnnl_primitive_t p;
	const_dnnl_primitive_desc_t pd;
	size_t scratch;
};

#define NPRIM 1024	/* a model has a few dozen shapes; cut blocks add some */
static struct prim table[NPRIM];
static int nprim;
static pthread_mutex_t table_mu = PTHREAD_MUTEX_INITIALIZER;

static uint64_t
key_hash(const struct key *k)
{
	const unsigned char *p = (const unsigned char *)k;
	uint64_t h = 1469598103934665603ULL;

	for (size_t i = 0; i < sizeof *k; i++)
		h = (h ^ p[i]) * 1099511628211ULL;
	return h;
}

/* the memory descriptors of a product: op(A) (M,K) and op(B) (K,N) bf16
 * as stored (transposed through the strides), C (M,N) float */
static void
descs(const struct key *k, dnnl_memory_desc_t *a, dnnl_memory_desc_t *b, dnnl_memory_desc_t *c)
{
	dnnl_dims_t da = {k->M, k->K}, db = {k->K, k->N}, dc = {k->M, k->N};
	dnnl_dims_t sa = {k->lda, 1}, sb = {k->ldb, 1}, sc = {k->ldc, 1};

	if (k->ta) {
		sa[0] = 1;
		sa[1] = k->lda;
	}
	if (k->tb) {
		sb[0] = 1;
		sb[1] = k->ldb;
	}
	dnnl_memory_desc_init_by_strides(a, 2, da, dnnl_bf16, sa);
	dnnl_memory_desc_init_by_strides(b, 2, db, dnnl_bf16, sb);
	dnnl_memory_desc_init_by_strides(c, 2, dc, dnnl_f32, sc);
}

static int
make(struct prim *e)
{
	const struct key *k = &e->k;
	dnnl_memory_desc_t a, b, c;
	dnnl_matmul_desc_t d;
	dnnl_primitive_attr_t at = NULL;
	dnnl_post_ops_t po = NULL;
	dnnl_primitive_desc_t pd = NULL;
	int ok = 0;

	descs(k, &a, &b, &c);
	dnnl_memory_desc_t bm;
	dnnl_dims_t db = {1, k->N}, sb = {k->N, 1};
	dnnl_memory_desc_init_by_strides(&bm, 2, db, dnnl_f32, sb);
	if (dnnl_matmul_desc_init(&d, &a, &b, k->bias ? &bm : NULL, &c) != dnnl_success ||
	    dnnl_primitive_attr_create(&at) != dnnl_success ||
	    dnnl_primitive_attr_set_scratchpad_mode(at, dnnl_scratchpad_mode_user) != dnnl_success)
		goto out;
	if (k->alpha != 1.0f &&
	    dnnl_primitive_attr_set_output_scales(at, 1, 0, &k->alpha) != dnnl_success)
		goto out;
	if (k->beta != 0.0f) {	/* C = alpha AB + beta C: the sum post-op */
		if (dnnl_post_ops_create(&po) != dnnl_success ||
		    dnnl_post_ops_append_sum(po, k->beta) != dnnl_success ||
		    dnnl_primitive_attr_set_post_ops(at, po) != dnnl_success)
			goto out;
	}
	if (dnnl_primitive_desc_create(&pd, &d, at, engine, NULL) != dnnl_success)
		goto out;
	if (dnnl_primitive_create(&e->p, pd) != dnnl_success)
		goto out;
	dnnl_primitive_get_primitive_desc(e->p, &e->pd);
	e->scratch = dnnl_memory_desc_get_size(dnnl_primitive_desc_query_md(e->pd,
	    dnnl_query_scratchpad_md, 0));
	ok = 1;
out:
	if (pd)
		dnnl_primitive_desc_destroy(pd);	/* the primitive keeps its own */
	if (po)
		dnnl_post_ops_destroy(po);
	if (at)
		dnnl_primitive_attr_destroy(at);
	return ok ? 0 : -1;
}

/* the primitive of k, made on first use; NULL when oneDNN cannot make it */
static const struct prim *
lookup(const struct key *k)
{
	uint64_t h = key_hash(k);
	struct prim *e = NULL;

	pthread_mutex_lock(&table_mu);
	for (unsigned i = 0; i < NPRIM; i++) {
		struct prim *s = &table[(h + i) % NPRIM];
		if (!s->p || !memcmp(&s->k, k, sizeof *k)) {
			e = s;
			break;
		}
	}
	if (e && !e->p) {
		/* made under the lock: rare, and two threads must not make
		 * the same one */
		if (nprim < NPRIM * 3 / 4) {
			e->k = *k;
			if (make(e) < 0) {
				memset(e, 0, sizeof *e);
				e = NULL;
			} else {
				nprim++;
			}
		} else {
			e = NULL;
		}
	}
	pthread_mutex_unlock(&table_mu);
	return e;
}

/* the calling thread's stream made, and its OpenMP count the one wanted
 * (dnn_set_threads); 0, or -1 with the error set */
static int
enter(void)
{
	if (!thread_stream())
		return mim_seterr("oneDNN: no CPU engine");
	if (omp_now != omp_want)
		omp_set_num_threads(omp_now = omp_want);
	return 0;
}

static int
execute(const struct prim *e, const uint16_t *A, const uint16_t *B, const float *bias, float *C)
{
	dnnl_stream_t s = thread_stream();
	dnnl_memory_t m[5] = {0};
	int rc = -1;

	if (!s)
		return -1;
	if (e->scratch > scratch_cap) {
		free(scratch);
		scratch_cap = 0;
		if (!(scratch = aligned_alloc(64, (e->scratch + 63) / 64 * 64)))
			return -1;
		scratch_cap = e->scratch;
	}
	const_dnnl_primitive_desc_t pd = e->pd;
	if (dnnl_memory_create(&m[0], dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0),
	        engine, (void *)A) != dnnl_success ||
	    dnnl_memory_create(&m[1], dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0),
	        engine, (void *)B) != dnnl_success ||
	    dnnl_memory_create(&m[2], dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0),
	        engine, C) != dnnl_success ||
	    dnnl_memory_create(&m[3], dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0),
	        engine, scratch) != dnnl_success ||
	    (bias && dnnl_memory_create(&m[4], dnnl_primitive_desc_query_md(pd,
	        dnnl_query_weights_md, 1), engine, (void *)bias) != dnnl_success))
		goto out;
	dnnl_exec_arg_t args[5] = {{DNNL_ARG_SRC, m[0]}, {DNNL_ARG_WEIGHTS, m[1]},
	    {DNNL_ARG_DST, m[2]}, {DNNL_ARG_SCRATCHPAD, m[3]}, {DNNL_ARG_BIAS, m[4]}};
	if (dnnl_primitive_execute(e->p, s, bias ? 5 : 4, args) == dnnl_success &&
	    dnnl_stream_wait(s) == dnnl_success)
		rc = 0;
out:
	for (int i = 0; i < 5; i++)
		if (m[i])
			dnnl_memory_destroy(m[i]);
	return rc;
}

int
dnn_gemm_bf16(int ta, int tb, int M, int N, int K, float alpha, const uint16_t *A, int lda,
    const uint16_t *B, int ldb, const float *bias, float beta, float *C, int ldc)
{
	struct key k;

	memset(&k, 0, sizeof k);	/* (the padding too: it is hashed) */
	k.ta = !!ta;
	k.tb = !!tb;
	k.M = M;
	k.N = N;
	k.K = K;
	k.lda = lda;
	k.ldb = ldb;
	k.ldc = ldc;
	k.alpha = alpha;
	k.beta = beta;
	k.bias = bias != NULL;
	k.nthr = omp_want;	/* (primitives are made for a count) */
	if (enter() < 0)
		return -1;
	const struct prim *e = lookup(&k);
	if (!e || execute(e, A, B, bias, C) < 0)
		return mim_seterr("oneDNN: cannot run a bf16 product %dx%dx%d", M, N, K);
	return 0;
}

/* ---- float products ----------------------------------------------------------- */

int
dnn_sgemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
    const float *B, int ldb, float beta, float *C, int ldc)
{
	if (enter() < 0)
		return -1;
	if (dnnl_sgemm(ta ? 'T' : 'N', tb ? 'T' : 'N', M, N, K, alpha, A, lda, B, ldb, beta, C,
	        ldc) != dnnl_success)
		return mim_seterr("oneDNN: cannot run a float product %dx%dx%d", M, N, K);
	return 0;
}

/* ---- float to bfloat16 ------------------------------------------------------ */

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) || \
    defined(__x86_64__) && defined(__clang__) && __clang_major__ >= 11
#include <immintrin.h>
#define HAVE_CVTNE 1

/* 32 floats at a time with the CPU's own rounding (to nearest even) */
__attribute__((target("avx512f,avx512bf16"))) static size_t
row_avx512(const float *x, uint16_t *y, size_t n)
{
	size_t i = 0;

	for (; i + 32 <= n; i += 32) {
		__m512bh v = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(x + i + 16), _mm512_loadu_ps(x + i));
		_mm512_storeu_si512((void *)(y + i), (__m512i)v);
	}
	return i;
}
#endif

void
dnn_to_bf16(const float *x, size_t ldx, uint16_t *y, size_t ldy, int rows, int cols, int fast)
{
	for (int r = 0; r < rows; r++) {
		const float *xr = x + (size_t)r * ldx;
		uint16_t *yr = y + (size_t)r * ldy;
		size_t i = 0;
#ifdef HAVE_CVTNE
		if (fast)
			i = row_avx512(xr, yr, (size_t)cols);
#endif
		for (; i < (size_t)cols; i++)
			yr[i] = mim_f32_to_bf16(xr[i]);
	}
}
