/* fuzz_frame.c -- libFuzzer target for the frame reader: the input is fed
 * both as one in-memory frame (mim_frame_parse) and as a stream through a
 * pipe-like fd (mim_read_frame until the end or an error).
 *   make fuzz && build/fuzz/fuzz_frame -max_total_time=600 corpus/ */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mim.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mim_frame *f = mim_frame_parse(data, size, "fuzz");
	if (f) {
		/* touch every tensor's bytes, as a tool would */
		volatile double s = 0;
		for (int i = 0; i < f->n; i++) {
			int64_t n = mim_tensor_numel(&f->t[i]);
			if (n)
				s += mim_tensor_get(&f->t[i], n - 1);
		}
		mim_frame_free(f);
	}

	/* the same bytes as a stream from a temp file (regular-file path) */
	FILE *tf = tmpfile();
	if (!tf)
		return 0;
	fwrite(data, 1, size, tf);
	fflush(tf);
	rewind(tf);
	struct mim_reader *r = mim_reader_fdopen(fileno(tf), "fuzz");
	int rc, k = 0;
	while (r && k < 64 && (rc = mim_read_frame(r, &f)) > 0) {
		mim_frame_free(f);
		k++;
	}
	mim_reader_close(r);
	fclose(tf);
	return 0;
}
