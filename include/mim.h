/* mim.h -- the public API of libmim: SimMIM masked image modeling in C.
 * One header per part of the library; this one includes them all. */
#ifndef MIM_H
#define MIM_H

#include "mim/stream.h"
#include "mim/pool.h"
#include "mim/gemm.h"
#include "mim/model.h"
#include "mim/kern.h"
#include "mim/prof.h"
#include "mim/swin.h"
#include "mim/ckpt.h"
#include "mim/optim.h"
#include "mim/view.h"
#include "mim/mask.h"
#include "mim/data.h"
#include "mim/train.h"
#include "mim/eval.h"

#endif
