/* blas.c -- the machine under the products: the CPU's instruction sets,
 * and OpenBLAS's kernels made to match them.
 *
 * OpenBLAS built with DYNAMIC_ARCH (Debian's) picks its kernels once, in
 * its library constructor, from a table of CPU models. A model newer than
 * the library is not in the table, and before 0.3.25 any unknown Intel
 * model got the Prescott (SSE3, 2004) kernels: on an Emerald Rapids
 * Debian 12's 0.3.21 runs sgemm 3-5x below the AVX-512 kernels (OpenBLAS
 * issue #4267). So before the first product we compare the kernels in
 * use with the instruction sets the CPU and the OS support (AVX-512 ->
 * SkylakeX, AVX2 + FMA -> Haswell) and, when the library chose an older
 * class, have it choose again: gotoblas_dynamic_quit() and
 * gotoblas_dynamic_init() (exported by every DYNAMIC_ARCH build) redo its
 * constructor's choice, which reads OPENBLAS_CORETYPE, set for that
 * moment and then restored, so child processes see the user's
 * environment. The choice only swaps a table of function pointers and
 * block sizes; no BLAS call has run yet.
 * Re-executing the process with OPENBLAS_CORETYPE set would do the same
 * at the cost of a second start (and before any input is read); the
 * in-process choice costs microseconds and works for every program that
 * links libmim, the tests included.
 *
 * A user's OPENBLAS_CORETYPE is respected. MIM_BLAS_FIX=0 turns the check
 * off (to measure the library as installed); MIM_BLAS_FIX=force corrects
 * even over OPENBLAS_CORETYPE (for the tests: OPENBLAS_CORETYPE=Prescott
 * MIM_BLAS_FIX=force stands for a library that chose Prescott itself).
 *
 * The check runs in a constructor of this file, before main (and so
 * before any thread or input), which the products' mim_blas_setup() call
 * links into every program that multiplies; mim_blas_setup() runs it
 * otherwise at the first product. OpenBLAS's own constructor has run by
 * then: a shared library is initialised before the program that loads
 * it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

#include "mim/gemm.h"
#include "blas.h"

extern char *openblas_get_corename(void);
extern char *openblas_get_config(void);
/* DYNAMIC_ARCH builds only: weak, NULL where the library was built for
 * one CPU (then there is nothing to choose) */
extern void gotoblas_dynamic_init(void) __attribute__((weak));
extern void gotoblas_dynamic_quit(void) __attribute__((weak));
extern void *blas_memory_alloc(int) __attribute__((weak));
extern void blas_memory_free(void *) __attribute__((weak));

static struct mim_cpu cpu;
static int cpu_done;

#if defined(__x86_64__) || defined(__i386__)
static unsigned long long
xgetbv0(void)
{
	unsigned int lo, hi;

	__asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
	return (unsigned long long)hi << 32 | lo;
}
#endif

const struct mim_cpu *
mim_cpu(void)
{
	if (cpu_done)
		return &cpu;
#if defined(__x86_64__) || defined(__i386__)
	unsigned a, b, c, d, max = __get_cpuid_max(0, NULL);

	if (max >= 1 && __get_cpuid(1, &a, &b, &c, &d)) {
		int fam = (a >> 8) & 0xf, mod = (a >> 4) & 0xf;
		if (fam == 0xf)
			fam += (a >> 20) & 0xff;
		if (fam == 6 || fam >= 0xf)
			mod |= ((a >> 16) & 0xf) << 4;
		cpu.family = fam;
		cpu.model = mod;
		cpu.stepping = a & 0xf;
		/* what the OS saves on a context switch decides what may run:
		 * XCR0 bits 1-2 the SSE and AVX state, 5-7 AVX-512's, 17-18
		 * AMX's tiles */
		unsigned long long xcr0 = (c >> 27 & 1) ? xgetbv0() : 0;
		int os_avx = (xcr0 & 0x6) == 0x6, os_avx512 = os_avx && (xcr0 & 0xe0) == 0xe0;
		int os_amx = (xcr0 & 0x60000) == 0x60000;
		cpu.fma = os_avx && (c >> 12 & 1);
		if (max >= 7 && __get_cpuid_count(7, 0, &a, &b, &c, &d)) {
			cpu.avx2 = os_avx && (b >> 5 & 1);
			cpu.avx512f = os_avx512 && (b >> 16 & 1);
			/* OpenBLAS's SkylakeX kernels need F, DQ, BW and VL */
			cpu.avx512 = cpu.avx512f && (b >> 17 & 1) && (b >> 30 & 1) && (b >> 31 & 1);
			cpu.amx_bf16 = os_amx && (d >> 22 & 1) && (d >> 24 & 1);
			unsigned a1, b1, c1, d1;
			if (a >= 1 && __get_cpuid_count(7, 1, &a1, &b1, &c1, &d1))
				cpu.avx512_bf16 = cpu.avx512 && (a1 >> 5 & 1);
		}
	}
	if (__get_cpuid_max(0x80000000, NULL) >= 0x80000004) {
		unsigned r[12];
		for (unsigned i = 0; i < 3; i++)
			__get_cpuid(0x80000002 + i, &r[4 * i], &r[4 * i + 1], &r[4 * i + 2], &r[4 * i + 3]);
		char s[49];
		memcpy(s, r, 48);
		s[48] = 0;
		char *p = s + strspn(s, " ");
		size_t n = strlen(p);
		while (n && p[n - 1] == ' ')
			p[--n] = 0;
		snprintf(cpu.name, sizeof cpu.name, "%s", p);
	}
#endif
	if (!cpu.name[0])
		snprintf(cpu.name, sizeof cpu.name, "unknown");
	cpu_done = 1;
	return &cpu;
}

/* The class of OpenBLAS's kernels for x86 core `name`: 3 AVX-512, 2 AVX2,
 * 1 AVX, 0 older (Prescott, Nehalem, ...) or unknown. */
static int
core_level(const char *name)
{
	static const char *const l3[] = {"skylakex", "cooperlake", "sapphirerapids"};
	static const char *const l2[] = {"haswell", "zen"};
	static const char *const l1[] = {"sandybridge", "bulldozer", "piledriver",
	    "steamroller", "excavator"};

	for (size_t i = 0; i < sizeof l3 / sizeof *l3; i++)
		if (!strcasecmp(name, l3[i]))
			return 3;
	for (size_t i = 0; i < sizeof l2 / sizeof *l2; i++)
		if (!strcasecmp(name, l2[i]))
			return 2;
	for (size_t i = 0; i < sizeof l1 / sizeof *l1; i++)
		if (!strcasecmp(name, l1[i]))
			return 1;
	return 0;
}

static struct mim_blas blas;
static int blas_done;

/* Have OpenBLAS choose its kernels again with OPENBLAS_CORETYPE=core for
 * the moment of the choice (user: the user's value, or NULL).
 *
 * OpenBLAS's threads are running by then: its constructor starts them,
 * and each allocates its buffer as it starts (blas_memory_alloc). The
 * process's first allocation, under OpenBLAS's lock, chooses the kernels
 * itself if it finds none chosen, and one that came between
 * gotoblas_dynamic_quit and gotoblas_dynamic_init here chose without our
 * OPENBLAS_CORETYPE, beside our choice: 2 of 300 starts of mim-info
 * --system were left on Prescott's kernels, 4 crashed in
 * gotoblas_dynamic_init on OpenBLAS's thread (and the suite's programs
 * with them, now and then). So the first allocation is made here, first:
 * after it no allocation chooses, and threads still starting wait on the
 * lock for it. */
static void
choose(const char *core, const char *user)
{
	if (blas_memory_alloc && blas_memory_free)
		blas_memory_free(blas_memory_alloc(0));
	gotoblas_dynamic_quit();
	setenv("OPENBLAS_CORETYPE", core, 1);
	gotoblas_dynamic_init();
	if (user)
		setenv("OPENBLAS_CORETYPE", user, 1);
	else
		unsetenv("OPENBLAS_CORETYPE");
}

void
mim_blas_setup(void)
{
	if (blas_done)
		return;
	blas_done = 1;

	const struct mim_cpu *c = mim_cpu();
	const char *fix = getenv("MIM_BLAS_FIX"), *user = getenv("OPENBLAS_CORETYPE");
	char *dup = user ? strdup(user) : NULL;	/* setenv may free it */
	int force = fix && !strcmp(fix, "force"), off = fix && !strcmp(fix, "0");

	snprintf(blas.chosen, sizeof blas.chosen, "%s", openblas_get_corename());
	blas.user = user && *user;
	int want = c->avx512 ? 3 : c->avx2 && c->fma ? 2 : 0;
	const char *target = want == 3 ? "SkylakeX" : "Haswell";
	if (!off && (!blas.user || force) && want > core_level(blas.chosen) &&
	    gotoblas_dynamic_init && gotoblas_dynamic_quit) {
		choose(target, dup);
		if (core_level(openblas_get_corename()) >= want)
			blas.corrected = 1;
		else	/* (a build without those kernels) back to its choice */
			choose(blas.chosen, dup);
	}
	free(dup);
	snprintf(blas.core, sizeof blas.core, "%s", openblas_get_corename());
	snprintf(blas.config, sizeof blas.config, "%s", openblas_get_config());
}

const struct mim_blas *
mim_blas(void)
{
	mim_blas_setup();
	return &blas;
}

/* before main: before any thread or input */
__attribute__((constructor)) static void
blas_init(void)
{
	mim_blas_setup();
}
