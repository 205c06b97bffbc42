/* svg.h -- writing SVG documents into a growing string (internal to
 * lib/view/): loss curves (view.c) and confusion matrices (confusion.c). */
#ifndef MIM_VIEW_SVG_H
#define MIM_VIEW_SVG_H

#include <stddef.h>

struct buf {
	char *s;
	size_t n, cap;
	int err;	/* an allocation failed: the text is incomplete */
};

/* Append printf-style text. */
void bprintf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Append text with <, >, & and " escaped for XML. */
void bxml(struct buf *b, const char *text);
/* The finished string, or NULL with the error set (and b's text freed)
 * if an allocation failed on the way. */
char *bdone(struct buf *b);

#endif
