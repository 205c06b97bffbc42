/* jpeg.h -- the libjpeg path of image.c (see jpeg.c). On error each
 * function sets mim_errmsg() ("bad image: ...") and returns -1 or NULL. */
#ifndef MIM_DATA_JPEG_H
#define MIM_DATA_JPEG_H

#include <stddef.h>
#include <stdint.h>

struct jpg;

/* Whether buf starts like a JPEG (SOI and a marker). */
int jpg_is(const void *buf, size_t n);

/* Read the header: the image's size, and *c = 1 (grey) or 3 (RGB, and
 * CMYK or YCCK made RGB as PIL does) for images this path decodes, 0 for
 * the rest (any other colour space). */
struct jpg *jpg_open(const void *buf, size_t n, int *w, int *h, int *c);

/* Decode at 1/s scale (s = 1, 2, 4, 8); *w x *h: the size then. */
int jpg_scale(struct jpg *j, int s, int *w, int *h);

/* Decode rows [y0, y1) of the (scaled) image and call fn with each, in
 * order; row points at column x0 and holds columns [x0, x1). Once. */
int jpg_rows(struct jpg *j, int x0, int x1, int y0, int y1,
    void (*fn)(void *arg, int y, const uint8_t *row), void *arg);

void jpg_close(struct jpg *j);

#endif
