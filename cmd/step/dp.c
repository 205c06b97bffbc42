/* dp.c -- the MPI calls of data-parallel mim-step (see dp.h). */
#include <limits.h>
#include <mpi.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mim/pool.h"
#include "step/dp.h"

int dp_rank = 0, dp_world = 1;
static int started, finished;

/* MPI counts are int: move big buffers in pieces of at most this many
 * elements (MPI_Allreduce_c and friends are MPI-4; Open MPI 4.1 has none).
 * MIM_MPI_PIECE sets a smaller piece, so that tests exercise the loop. */
static size_t piece = (size_t)1 << 30;
#define PIECE piece

int
dp_launched(void)
{
	const char *s = getenv("OMPI_COMM_WORLD_SIZE");

	return (s && *s) || getenv("PMIX_RANK") != NULL;
}

int
dp_init(enum dp_mode mode)
{
	int provided;
	const char *ps = getenv("MIM_MPI_PIECE");
	char *end;

	if (mode == DP_OFF || (mode == DP_AUTO && !dp_launched()))
		return 0;
	if (ps && *ps) {
		long long k = strtoll(ps, &end, 10);
		if (!*end && k >= 1 && (size_t)k < piece)
			piece = (size_t)k;
	}
	/* a rank waiting in a collective spins; let the input pipeline
	 * (mim-data, mim-mask) sharing its cores run meanwhile */
	setenv("OMPI_MCA_mpi_yield_when_idle", "1", 0);
	/* only the main thread calls MPI; the library's own threads do not */
	MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided);
	started = 1;
	MPI_Comm_rank(MPI_COMM_WORLD, &dp_rank);
	MPI_Comm_size(MPI_COMM_WORLD, &dp_world);
	return 1;
}

int
dp_on(void)
{
	return started && !finished;
}

int
dp_local_size(void)
{
	const char *s = getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
	char *end;
	long n = s ? strtol(s, &end, 10) : 0;

	return s && *s && !*end && n >= 1 && n <= dp_world ? (int)n : dp_world;
}

void
dp_finalize(void)
{
	if (dp_on()) {
		MPI_Finalize();
		finished = 1;
	}
}

int
dp_max(int v)
{
	if (dp_on())
		MPI_Allreduce(MPI_IN_PLACE, &v, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
	return v;
}

double
dp_sum(double x)
{
	if (dp_on())
		MPI_Allreduce(MPI_IN_PLACE, &x, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
	return x;
}

int
dp_same(uint64_t v)
{
	uint64_t lo = v, hi = v;

	if (!dp_on())
		return 1;
	MPI_Allreduce(MPI_IN_PLACE, &lo, 1, MPI_UINT64_T, MPI_MIN, MPI_COMM_WORLD);
	MPI_Allreduce(MPI_IN_PLACE, &hi, 1, MPI_UINT64_T, MPI_MAX, MPI_COMM_WORLD);
	return lo == hi;
}

void
dp_bcast(void *buf, size_t n)
{
	if (!dp_on())
		return;
	for (size_t off = 0; off < n; off += PIECE) {
		size_t k = n - off < PIECE ? n - off : PIECE;
		MPI_Bcast((char *)buf + off, (int)k, MPI_BYTE, 0, MPI_COMM_WORLD);
	}
}

void
dp_sum_floats(float *x, size_t n)
{
	if (!dp_on())
		return;
	for (size_t off = 0; off < n; off += PIECE) {
		size_t k = n - off < PIECE ? n - off : PIECE;
		MPI_Allreduce(MPI_IN_PLACE, x + off, (int)k, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
	}
}

void
dp_gather(const void *mine, void *all, size_t n)
{
	if (!dp_on()) {
		memcpy(all, mine, n);
		return;
	}
	MPI_Gather(mine, (int)n, MPI_BYTE, all, (int)n, MPI_BYTE, 0, MPI_COMM_WORLD);
}

void
dp_barrier(void)
{
	if (dp_on())
		MPI_Barrier(MPI_COMM_WORLD);
}

void
dp_hooks(struct mim_dp *h)
{
	*h = (struct mim_dp){
		.rank = dp_rank, .world = dp_world, .max = dp_max, .sum = dp_sum,
		.sum_floats = dp_sum_floats, .bcast = dp_bcast, .same = dp_same,
		.gather = dp_gather,
	};
}

int
dp_threads(void)
{
	long online = sysconf(_SC_NPROCESSORS_ONLN);
	cpu_set_t set;
	int n = 0;

	if (!dp_on() || getenv("MIM_THREADS"))
		return 0;
	if (online < 1)
		online = 1;
	if (sched_getaffinity(0, sizeof set, &set) == 0)
		n = CPU_COUNT(&set);
	if (n >= 1 && n < online)
		return mim_cores();	/* bound: its cores */
	n = mim_cores() / dp_local_size();
	return n < 1 ? 1 : n;
}
