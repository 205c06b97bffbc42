/* jpeg.c -- JPEG straight through libjpeg, decoding only what the box needs.
 *
 * libvips' jpegload decodes every row from the top down to the last one
 * asked for, full width. Here libjpeg(-turbo) is driven directly:
 *   - jpeg_crop_scanline: the IDCT, upsampling and colour conversion run
 *     only on the columns of the box (plus a margin, below);
 *   - jpeg_skip_scanlines: the rows above the box are entropy-decoded but
 *     not reconstructed;
 *   - decoding stops after the box's last row.
 * With fancy (smoothed) chroma upsampling, the pixels next to the edge of
 * a cropped or skipped region depend on chroma samples outside it, and
 * libjpeg treats that edge as the image's edge. So the region decoded is
 * the one asked for widened by one iMCU (8 or 16 output pixels, less at
 * 1/s scale) on every side: the pixels asked for are then the ones a
 * whole-image decode gives, bit for bit (checked by t-mim-data against
 * the libvips path, which decodes whole rows).
 *
 * The settings are libvips' (and PIL's): libjpeg's defaults (islow IDCT,
 * fancy upsampling), out_color_space as libjpeg picks it, scale 1/s. As
 * with libvips' fail_on=error: running out of data is an error, a corrupt
 * stream that libjpeg can go on decoding is accepted (its warnings are
 * counted, 100 of them are an error).
 *
 * CMYK (and YCCK, which libjpeg turns into CMYK) becomes RGB the way PIL
 * does it, not by libvips' ICC transform: the samples are taken as
 * inverted ("CMYK;I": PIL assumes Adobe's convention for every CMYK JPEG),
 * then convert('RGB') computes per channel, with nk = 255 - k,
 * nk - round(x * nk / 255) in PIL's integer rounding (MULDIV255). */
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <jerror.h>

#include "mim/stream.h"
#include "jpeg.h"

struct jpg {
	struct jpeg_decompress_struct d;
	struct jpeg_error_mgr em;
	struct jpeg_source_mgr src;
	jmp_buf jmp;
	uint8_t *row;
	int cmyk;		/* 4 samples a pixel, to RGB as PIL */
};

/* PIL's MULDIV255: a * b / 255 rounded, in its integer arithmetic */
static inline int
muldiv255(int a, int b)
{
	int t = a * b + 128;

	return ((t >> 8) + t) >> 8;
}

/* n pixels of libjpeg's CMYK samples to RGB in place, as PIL's CMYK;I
 * unpacking (255 - sample) and cmyk2rgb */
static void
cmyk_to_rgb(uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		int c = 255 - p[4 * i], m = 255 - p[4 * i + 1], y = 255 - p[4 * i + 2];
		int nk = p[4 * i + 3];	/* 255 - (255 - k) */
		p[3 * i] = (uint8_t)(nk - muldiv255(c, nk));
		p[3 * i + 1] = (uint8_t)(nk - muldiv255(m, nk));
		p[3 * i + 2] = (uint8_t)(nk - muldiv255(y, nk));
	}
}

static void
on_error(j_common_ptr c)
{
	struct jpg *j = (struct jpg *)c->client_data;
	char msg[JMSG_LENGTH_MAX];

	c->err->format_message(c, msg);
	mim_seterr("bad image: %s", msg);
	longjmp(j->jmp, 1);
}

static void
on_message(j_common_ptr c, int level)
{
	if (level < 0 && ++c->err->num_warnings >= 100)
		c->err->error_exit(c);
}

/* The whole member is in memory: the source is handed over at once, and
 * asking for more is the truncation libvips' fail_on=error rejects. */
static void src_init(j_decompress_ptr d) { (void)d; }
static void src_term(j_decompress_ptr d) { (void)d; }

static boolean
src_fill(j_decompress_ptr d)
{
	ERREXIT(d, JERR_INPUT_EOF);
	return FALSE;
}

static void
src_skip(j_decompress_ptr d, long n)
{
	if (n <= 0)
		return;
	if ((size_t)n > d->src->bytes_in_buffer)
		ERREXIT(d, JERR_INPUT_EOF);
	d->src->next_input_byte += n;
	d->src->bytes_in_buffer -= (size_t)n;
}

int
jpg_is(const void *buf, size_t n)
{
	const uint8_t *b = buf;

	return n >= 3 && b[0] == 0xff && b[1] == 0xd8 && b[2] == 0xff;
}

void
jpg_close(struct jpg *j)
{
	if (!j)
		return;
	jpeg_destroy_decompress(&j->d);
	free(j->row);
	free(j);
}

struct jpg *
jpg_open(const void *buf, size_t n, int *w, int *h, int *c)
{
	struct jpg *j = mim_calloc(1, sizeof *j);

	if (!j)
		return NULL;
	j->d.err = jpeg_std_error(&j->em);
	j->em.error_exit = on_error;
	j->em.emit_message = on_message;
	j->d.client_data = j;
	if (setjmp(j->jmp)) {
		jpg_close(j);
		return NULL;
	}
	jpeg_create_decompress(&j->d);
	j->d.client_data = j;
	j->src = (struct jpeg_source_mgr){
		.next_input_byte = buf, .bytes_in_buffer = n,
		.init_source = src_init, .fill_input_buffer = src_fill,
		.skip_input_data = src_skip, .resync_to_restart = jpeg_resync_to_restart,
		.term_source = src_term,
	};
	j->d.src = &j->src;
	jpeg_read_header(&j->d, TRUE);
	*w = (int)j->d.image_width;
	*h = (int)j->d.image_height;
	*c = 0;
	if (j->d.out_color_space == JCS_GRAYSCALE && j->d.num_components == 1)
		*c = 1;
	else if (j->d.out_color_space == JCS_RGB && j->d.num_components == 3)
		*c = 3;
	else if (j->d.out_color_space == JCS_CMYK && j->d.num_components == 4) {
		*c = 3;
		j->cmyk = 1;
	}
	return j;
}

int
jpg_scale(struct jpg *j, int s, int *w, int *h)
{
	if (setjmp(j->jmp))
		return -1;
	j->d.scale_num = 1;
	j->d.scale_denom = (unsigned)s;
	jpeg_calc_output_dimensions(&j->d);
	*w = (int)j->d.output_width;
	*h = (int)j->d.output_height;
	return 0;
}

int
jpg_rows(struct jpg *j, int x0, int x1, int y0, int y1,
    void (*fn)(void *arg, int y, const uint8_t *row), void *arg)
{
	struct jpeg_decompress_struct *d = &j->d;

	if (setjmp(j->jmp))
		return -1;
	jpeg_start_decompress(d);
	int W = (int)d->output_width, H = (int)d->output_height, c = d->output_components;
	int mw = d->max_h_samp_factor * d->min_DCT_scaled_size;
	int mh = d->max_v_samp_factor * d->min_DCT_scaled_size;
	int cx0 = x0 - mw < 0 ? 0 : x0 - mw, cx1 = x1 + mw > W ? W : x1 + mw;
	JDIMENSION xo = (JDIMENSION)cx0, cw = (JDIMENSION)(cx1 - cx0);

	if (x0 < 0 || x1 > W || x0 >= x1 || y0 < 0 || y1 > H || y0 >= y1)
		return mim_seterr("bad image: rows %d-%d, columns %d-%d of %dx%d", y0, y1, x0, x1, W, H);
	if (cx0 > 0 || cx1 < W)
		jpeg_crop_scanline(d, &xo, &cw);
	if (!(j->row = mim_malloc((size_t)cw * c)))
		return -1;
	if (y0 - mh > 0)
		jpeg_skip_scanlines(d, (JDIMENSION)(y0 - mh));
	while ((int)d->output_scanline < y1) {
		int y = (int)d->output_scanline;
		JSAMPROW r = j->row;
		if (jpeg_read_scanlines(d, &r, 1) != 1)
			return mim_seterr("bad image: libjpeg gave no row %d", y);
		if (y < y0)
			continue;
		if (j->cmyk)
			cmyk_to_rgb(j->row, cw);
		fn(arg, y, j->row + (size_t)(x0 - (int)xo) * (j->cmyk ? 3 : c));
	}
	jpeg_abort_decompress(d);
	return 0;
}
