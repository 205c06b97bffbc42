/* mim/view.h -- pictures of what the model does: reconstruction grids,
 * mask tiles, loss curves (used by mim-view). */
#ifndef MIM_VIEW_H
#define MIM_VIEW_H

#include <stdint.h>

#include "mim/model.h"

/* An RGB picture, 8 bits per channel, row-major (H,W,3). */
struct mim_rgb {
	int w, h;
	uint8_t *px;
};

struct mim_rgb *mim_rgb_new(int w, int h, uint8_t grey);
void mim_rgb_free(struct mim_rgb *p);
/* Copy src into dst at (x,y), clipped. */
void mim_rgb_paste(struct mim_rgb *dst, const struct mim_rgb *src, int x, int y);
/* Draw text (black on the existing background) with its top-left at
 * (x,y); the height is about px pixels. 0, or -1 if no text renderer. */
int mim_rgb_text(struct mim_rgb *dst, const char *text, int x, int y, int px);
/* Write as PNG (libvips). 0 / -1. */
int mim_rgb_save_png(const struct mim_rgb *p, const char *path);

/* Columns of a reconstruction grid. */
enum mim_view_col { MIM_COL_ORIGINAL, MIM_COL_MASKED, MIM_COL_RECON, MIM_COL_PRED, MIM_NCOL };
extern const char *const mim_view_col_name[MIM_NCOL];

/* Render one sample as a tile for column col. img/pred (3,H,W) normalised
 * (either may be NULL if col does not need it), mask (H/p,W/p) 1 = masked
 * or NULL; mean/std undo the normalisation; scale is a nearest-neighbour
 * magnification. Returns NULL with the error set. */
struct mim_rgb *mim_view_tile(enum mim_view_col col, int H, int W, int p,
    const float *img, const uint8_t *mask, const float *pred,
    const double mean[3], const double std[3], int scale);
/* A prediction pred (B,C,H/d,W/d) of target t (d = t->div) as normalised
 * colours out (B,3,H,W) for mim_view_tile: lower resolutions upsampled
 * (nearest); bins and clusters as their expected colour (the softmax-
 * weighted mean of the bin or colour centres); the normalised pixel target
 * de-normalised with the statistics of img's windows (img (B,3,H,W)).
 * 0, 1 when a normalised pixel prediction is shown as it is (no img), or
 * -1 with the error set. */
int mim_view_pred(const struct mim_target *t, int B, int H, int W, const float *img,
    const float *pred, float *out);
/* A mask alone as a tile: masked cells white, visible black. */
struct mim_rgb *mim_view_mask(int h, int w, const uint8_t *mask, int scale);

/* A loss curve from mim-step's --log (JSON lines with "step" and "loss",
 * optionally "lr") as an SVG document (malloc'd string); the validation
 * lines ("step" and "val_loss", from --val) as a second series, with a
 * legend. A last line without its newline, still being written by a
 * running job, is left out; any other line that is not such an object is
 * an error. */
char *mim_view_curve_svg(const char *log_path, const char *title);
/* Any numeric fields of a JSON-lines log (mim-step --log, mim-probe --log,
 * fine-tuning logs) against the field x ("step"): one panel per name, each
 * on its own scale, stacked. Lines without a number x are skipped, and so
 * is a name a line lacks; a complete line that is not a JSON object is an
 * error, and so is a name no line has. */
char *mim_view_fields_svg(const char *log_path, const char *title, const char *x,
    const char *const *names, int n);
/* The confusion matrix of mim-eval --json (its "confusion", and "names",
 * "acc1", "n" if present) as an SVG heat map: cell (label, prediction)
 * shaded by the share of the label's samples, with its count where the
 * cells are large enough; class names on both axes if given. */
char *mim_view_confusion_svg(const char *json_path, const char *title);
/* Rasterise an SVG document to PNG (libvips + librsvg). */
int mim_svg_to_png(const char *svg, const char *path);

#endif
