/* confusion.c -- the confusion matrix of mim-eval --json as an SVG heat
 * map: rows the labels, columns the predictions, each cell shaded by the
 * share of its row (the label's samples) and, where cells are large
 * enough, its count; class names or indices along both axes. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mim/stream.h"
#include "mim/view.h"
#include "svg.h"

/* the matrix (K,K) and the names (or NULL) of the eval JSON o */
static int
parse(json_t *o, const char *path, int64_t **cm, int *K, json_t **names)
{
	json_t *c = json_object_get(o, "confusion");
	size_t k = json_array_size(c);

	if (!json_is_array(c) || k == 0 || k > 4096)
		return mim_seterr("%s: no \"confusion\" matrix (mim-eval --json)", path);
	if (!(*cm = mim_malloc(k * k * sizeof **cm)))
		return -1;
	for (size_t i = 0; i < k; i++) {
		json_t *row = json_array_get(c, i);
		if (json_array_size(row) != k)
			return mim_seterr("%s: confusion row %zu: want %zu counts", path, i, k);
		for (size_t j = 0; j < k; j++) {
			json_t *v = json_array_get(row, j);
			if (!json_is_integer(v) || json_integer_value(v) < 0)
				return mim_seterr("%s: confusion[%zu][%zu]: want a count", path, i, j);
			(*cm)[i * k + j] = json_integer_value(v);
		}
	}
	*names = json_object_get(o, "names");
	if (*names && json_array_size(*names) != k)
		return mim_seterr("%s: %zu names for %zu classes", path, json_array_size(*names), k);
	for (size_t i = 0; *names && i < k; i++)
		if (!json_is_string(json_array_get(*names, i)))
			return mim_seterr("%s: name %zu is not a string", path, i);
	*K = (int)k;
	return 0;
}

/* class i's name, or its index in buf */
static const char *
name(json_t *names, int i, char *buf, size_t n)
{
	if (names)
		return json_string_value(json_array_get(names, (size_t)i));
	snprintf(buf, n, "%d", i);
	return buf;
}

char *
mim_view_confusion_svg(const char *json_path, const char *title)
{
	json_error_t je;
	json_t *o = json_load_file(json_path, 0, &je), *names = NULL;
	int64_t *cm = NULL;
	int K = 0;
	char nb[32];

	if (!o)
		return mim_seterr("%s: %s (line %d)", json_path, je.text, je.line), NULL;
	if (parse(o, json_path, &cm, &K, &names) < 0) {
		free(cm);
		json_decref(o);
		return NULL;
	}
	/* geometry: cells of cs pixels; room for the longest name on the left
	 * and, written vertically, below */
	int cs = 560 / K < 8 ? 8 : 560 / K > 56 ? 56 : 560 / K, lw = 0;
	for (int i = 0; i < K; i++) {
		int w = (int)strlen(name(names, i, nb, sizeof nb)) * 7;
		lw = w > lw ? w : lw;
	}
	lw = lw > 160 ? 160 : lw;
	int fs = cs >= 14 ? 12 : cs - 2;	/* label font size */
	int L = 40 + lw + 8, T = 64, side = K * cs;
	int W = L + side + 30, H = T + side + 8 + lw + 40;
	struct buf b = {0};

	bprintf(&b, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
	    "font-family=\"DejaVu Sans, sans-serif\" font-size=\"12\">\n"
	    "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n"
	    "<text x=\"20\" y=\"24\" font-size=\"15\">", W < 480 ? 480 : W, H);
	bxml(&b, title);
	bprintf(&b, "</text>\n<text x=\"20\" y=\"44\" fill=\"#555\">");
	json_t *acc = json_object_get(o, "acc1"), *n = json_object_get(o, "n");
	if (json_is_number(acc) && json_is_integer(n))
		bprintf(&b, "top-1 %.2f %% of %lld samples; ", json_number_value(acc),
		    (long long)json_integer_value(n));
	bprintf(&b, "shade: share of the label's samples</text>\n");
	for (int i = 0; i < K; i++) {
		int64_t row = 0;
		for (int j = 0; j < K; j++)
			row += cm[(size_t)i * K + j];
		for (int j = 0; j < K; j++) {
			int64_t c = cm[(size_t)i * K + j];
			double f = row ? (double)c / (double)row : 0;
			/* white (247,251,255) to dark blue (8,48,107) */
			int r = (int)lround(247 - f * 239), g = (int)lround(251 - f * 203),
			    bl = (int)lround(255 - f * 148);
			bprintf(&b, "<rect class=\"cell\" x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" "
			    "fill=\"#%02x%02x%02x\" stroke=\"#fff\" stroke-width=\"0.5\"><title>%lld</title>"
			    "</rect>\n", L + j * cs, T + i * cs, cs, cs, r, g, bl, (long long)c);
			if (cs >= 18 && c)
				bprintf(&b, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\" font-size=\"%d\" "
				    "fill=\"%s\">%lld</text>\n", L + j * cs + cs / 2, T + i * cs + cs / 2 + 4,
				    cs >= 40 ? 11 : cs / 4 + 2, f > 0.5 ? "white" : "black", (long long)c);
		}
	}
	if (cs >= 8)
		for (int i = 0; i < K; i++) {
			const char *nm = name(names, i, nb, sizeof nb);
			bprintf(&b, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\" font-size=\"%d\">",
			    L - 6, T + i * cs + cs / 2 + fs / 3, fs);
			bxml(&b, nm);
			bprintf(&b, "</text>\n<text transform=\"translate(%d,%d) rotate(-90)\" "
			    "text-anchor=\"end\" font-size=\"%d\">", L + i * cs + cs / 2 + fs / 3,
			    T + side + 6, fs);
			bxml(&b, nm);
			bprintf(&b, "</text>\n");
		}
	bprintf(&b, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" "
	    "stroke=\"#444\"/>\n", L, T, side, side);
	bprintf(&b, "<text transform=\"translate(16,%d) rotate(-90)\" text-anchor=\"middle\">"
	    "label</text>\n<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">prediction</text>\n"
	    "</svg>\n", T + side / 2, L + side / 2, H - 12);
	free(cm);
	json_decref(o);
	return bdone(&b);
}
