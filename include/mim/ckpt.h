/* mim/ckpt.h -- checkpoints from and for PyTorch: a safe unpickler, the
 * torch.save readers (zip and legacy), pretrain-to-finetune export, and
 * state dict comparison. See mim-ckpt(1).
 *
 * Nothing here executes anything a file says: pickled classes the reader
 * does not know (a yacs CfgNode, an argparse Namespace, numpy scalars)
 * stay opaque values. Every size, offset and count a file declares is
 * checked against the bytes that are really there before it is used, and
 * memory stays bounded by a small multiple of the input size. */
#ifndef MIM_CKPT_H
#define MIM_CKPT_H

#include <stddef.h>
#include <stdint.h>

#include "mim/stream.h"
#include "mim/model.h"

/* ---- the unpickler (lib/ckpt/pickle.c) -----------------------------------
 * Protocols 0 to 5 without out-of-band buffers or the extension registry.
 * Values live in one arena freed with the pickle. */

enum mim_pk_kind {
	MIM_PK_NONE, MIM_PK_BOOL, MIM_PK_INT, MIM_PK_BIGINT, MIM_PK_FLOAT,
	MIM_PK_STR, MIM_PK_BYTES, MIM_PK_TUPLE, MIM_PK_LIST, MIM_PK_DICT,
	MIM_PK_SET, MIM_PK_GLOBAL, MIM_PK_OBJECT, MIM_PK_STORAGE, MIM_PK_TENSOR
};

struct mim_pk;

/* An object of a class the reader does not interpret: what REDUCE, NEWOBJ,
 * INST or OBJ built, plus what BUILD, SETITEM(S) and APPEND(S) gave it. */
struct mim_pk_object {
	struct mim_pk *cls;	/* usually a GLOBAL; NULL for a persistent id */
	struct mim_pk *args;	/* the argument tuple (or the persistent id) */
	struct mim_pk *state;	/* BUILD's state, or NULL */
	struct mim_pk *items;	/* a DICT of SETITEMs (dict subclasses), or NULL */
	struct mim_pk *list;	/* a LIST of APPENDs (list subclasses), or NULL */
};

/* A torch storage named by a persistent id ('storage', type, key, location,
 * numel[, view]): numel elements of dtype in record key. A legacy view is
 * the part [view_off, view_off + view_numel) of the root storage. */
struct mim_pk_storage {
	const char *key, *location;
	enum mim_dtype dtype;
	int64_t numel;
	int64_t view_off, view_numel;	/* 0, numel when not a view */
};

/* A tensor from torch._utils._rebuild_tensor{,_v2,_v3} (possibly wrapped
 * by _rebuild_parameter): storage offset, sizes and strides in elements of
 * dtype. Not yet checked against the storage: see mim_pth_*. */
struct mim_pk_tensor {
	struct mim_pk *storage;	/* a MIM_PK_STORAGE value */
	enum mim_dtype dtype;
	int ndim;
	int64_t offset, size[MIM_MAXDIM], stride[MIM_MAXDIM];
};

struct mim_pk {
	enum mim_pk_kind kind;
	size_t n;		/* STR/BYTES/BIGINT: bytes; TUPLE/LIST/SET: items; DICT: pairs */
	union {
		int64_t i;			/* BOOL, INT */
		double f;			/* FLOAT */
		const char *s;			/* STR (UTF-8), BYTES, BIGINT (two's complement,
						 * little-endian), GLOBAL ("module.name"); NUL-terminated */
		struct mim_pk **v;		/* TUPLE, LIST, SET items; DICT k0,v0,k1,v1,... */
		struct mim_pk_object *obj;	/* OBJECT */
		struct mim_pk_storage *st;	/* STORAGE */
		struct mim_pk_tensor *t;	/* TENSOR */
	} u;
	size_t cap;		/* allocated slots of u.v */
};

struct mim_pickle;

/* The longest pickle mim_unpickle reads (the bytes up to STOP; the buffer
 * may go on), and the most memory it uses. */
#define MIM_PICKLE_MAXLEN ((size_t)64 << 20)
#define MIM_PICKLE_MEMCAP ((size_t)256 << 20)

/* Unpickle one pickle from buf[0..n). *used (if not NULL) gets the bytes
 * consumed through STOP, so consecutive pickles can be read. NULL on error
 * ("pickle: offset 123: ..."). Free with mim_pickle_free. */
struct mim_pickle *mim_unpickle(const void *buf, size_t n, size_t *used);
void mim_pickle_free(struct mim_pickle *p);
const struct mim_pk *mim_pickle_root(const struct mim_pickle *p);
/* Every STORAGE value the pickle made, in the order of their ids. */
struct mim_pk *const *mim_pickle_storages(const struct mim_pickle *p, size_t *n);
/* The value of a DICT (or a dict-like OBJECT) for a str key, the last one
 * set, or NULL. */
const struct mim_pk *mim_pk_get(const struct mim_pk *d, const char *key);
/* The pairs of a DICT or of a dict-like OBJECT (NULL, *n = 0 if neither):
 * keys at [2i], values at [2i+1]. */
struct mim_pk *const *mim_pk_pairs(const struct mim_pk *d, size_t *n);
/* A short description for messages: "dict of 6", "int 42",
 * "yacs.config.CfgNode object", "tensor F32 [2,3]". Always terminated. */
char *mim_pk_describe(const struct mim_pk *v, char *buf, size_t n);

/* ---- torch.save files (lib/ckpt/pth.c) ----------------------------------- */

enum mim_ckpt_format { MIM_FMT_SAFETENSORS, MIM_FMT_ZIP, MIM_FMT_LEGACY };

/* What a reader found, for the user. */
struct mim_ckpt_info {
	enum mim_ckpt_format format;
	char where[64];		/* "model", "state_dict" or "top level" */
	int ntensors;
	int nskipped;		/* non-tensor entries skipped at the top level */
	char summary[1024];	/* top-level entries and what they are */
};

/* The most tensors a state dict may hold, and how many times the bytes of
 * the storages the tensors may add up to (views of one storage). */
#define MIM_CKPT_MAXTENSORS 65536
#define MIM_CKPT_ALIAS 8

/* Which format buf (n bytes, n >= 0) starts like; -1 if none. */
int mim_ckpt_sniff(const void *buf, size_t n);
/* The state dict of a torch.save file in memory (zip or legacy): the dict
 * under "model", else under "state_dict", else the top-level dict. Tensors
 * keep their dtype; strided tensors are made contiguous. A top-level str
 * under "mim.config" (mim_pth_write's) becomes the frame's metadata. name
 * is used in messages; info may be NULL. */
struct mim_frame *mim_pth_parse(const void *buf, size_t n, const char *name,
    struct mim_ckpt_info *info);
/* Any checkpoint file: .pth (zip or legacy) or .safetensors (metadata kept),
 * told apart by content. "-" reads stdin. */
struct mim_frame *mim_ckpt_load(const char *path, struct mim_ckpt_info *info);

/* Write f as a torch.save file (zip format) holding {'model': OrderedDict
 * of f's tensors} and, if f has one, 'mim.config' (a str, which
 * mim_pth_parse gives back as metadata): PyTorch reads it with
 * torch.load(path)['model']. To fd, or to path atomically. 0 or -1. */
int mim_pth_write(int fd, const struct mim_frame *f);
int mim_pth_save(const char *path, const struct mim_frame *f);

/* ---- the model's config from a state dict (lib/ckpt/infer.c) ------------- */

/* Infer the SimMIM config of a state dict from its names and shapes. hint
 * (JSON object text, or NULL) gives keys the weights cannot tell or that
 * should win over them. Returns 0 and fills c when every size is
 * determined; note receives the config and what was left at its default.
 * -1 with the error set (what is ambiguous or contradictory) otherwise. */
int mim_ckpt_infer(const struct mim_frame *sd, const char *hint, struct mim_config *c,
    char *note, size_t n);

/* ---- export (lib/ckpt/export.c) ------------------------------------------ */

/* Resample a relative position bias table the way the official fine-tune
 * code does (geometric source coordinates, scipy interp2d cubic = FITPACK
 * interpolating bicubic spline with not-a-knot ends): src is (S*S, nH)
 * row-major, dst (D*D, nH); S, D odd, 3 <= S. 0 or -1. */
int mim_relpos_resize(const float *src, int S, int nH, float *dst, int D);

struct mim_export_opt {
	int finetune;		/* encoder only, official pretrain -> finetune */
	int img_size;		/* fine-tune image size (0: as pretrained) */
	int window_size;	/* fine-tune Swin window (0: as pretrained) */
	int keep_norm;		/* ViT: keep the final norm (dropped by default) */
	int dtype;		/* MIM_F32, MIM_F16, MIM_BF16, or -1 to keep */
};

/* A new frame: ckpt without training state ("opt.*" tensors,
 * "mim.train.*" metadata); with o->finetune, the fine-tuning encoder's
 * state dict (see mim-ckpt(1)). note (may be NULL) gets what was done.
 * NULL on error. */
struct mim_frame *mim_ckpt_export(const struct mim_frame *ckpt,
    const struct mim_export_opt *o, char *note, size_t n);

/* ---- classifiers (lib/ckpt/classifier.c) --------------------------------- */

/* A classifier: the official fine-tuning model with its head. */
struct mim_cls_opt {
	struct mim_export_opt ex;	/* img_size, window_size (ex.finetune set by us) */
	int num_classes;		/* K >= 1 */
	double drop_path_rate;		/* < 0: as the pretraining config */
	double init_scale;		/* NaN: the official (ViT 0.001, Swin 1) */
	uint64_t seed;			/* of the fresh parameters (head, fc_norm) */
};
/* The classifier's config from a pretraining one (the fine-tuning model
 * of mim_ckpt_export, "head": "cls"). 0 or -1. */
int mim_config_classifier(struct mim_config *c, const struct mim_cls_opt *o);
/* A classifier checkpoint as the official fine-tuning code makes one:
 * from the pretraining checkpoint pre (mim's, or an imported official
 * one) through mim_ckpt_export(finetune), loaded over a fresh model of
 * seed o->seed (main_finetune.py: load_state_dict(strict=False) after the
 * model's init: head, fc_norm stay fresh). pre NULL: from scratch, all
 * fresh (mim_config_classifier of *scratch). note gets what was done.
 * NULL on error (a classifier given as pre is one). */
struct mim_frame *mim_ckpt_classifier(const struct mim_frame *pre, const struct mim_config *scratch,
    const struct mim_cls_opt *o, char *note, size_t n);

/* ---- comparison (lib/ckpt/diff.c) ---------------------------------------- */

struct mim_diff_entry {
	const char *name;
	int status;		/* 0 same names and shapes, 1 only in A, 2 only in B,
				 * 3 shape differs */
	enum mim_dtype da, db;
	double maxabs;		/* max |a - b| (inf if one side is non-finite) */
	double maxrel;		/* maxabs / max |b| (maxabs when b is all 0) */
};

/* Compare two state dicts tensor by tensor, in A's order then B's extras.
 * Returns the number of entries (*out malloc'd; names point into a and b)
 * or -1. */
int mim_ckpt_diff(const struct mim_frame *a, const struct mim_frame *b,
    struct mim_diff_entry **out);

#endif
