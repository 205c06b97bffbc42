# config.mk -- build settings; override on the command line (make CC=clang).
PREFIX    ?= /usr/local
MANPREFIX ?= $(PREFIX)/share/man
CC        ?= cc
OPT       ?= -O2 -march=native
CFLAGS    ?= $(OPT) -g -std=c11 -Wall -Wextra -Wno-unused-parameter -Wshadow -Wvla -pthread
# link only the libraries a tool calls: mim-data then loads no OpenBLAS
# (whose idle threads spin) and every tool starts faster
LDFLAGS   ?= -Wl,--as-needed
PKGS      ?= vips libjpeg libarchive jansson openblas
# oneDNN, for bf16 products (lib/onednn.c): Debian 12's libdnnl-dev has no
# pkg-config file. Debian builds it on OpenMP, whose thread count
# lib/onednn.c sets, hence libgomp by name.
DNNL_LIBS ?= $(shell pkg-config --libs dnnl 2>/dev/null || echo -ldnnl) -lgomp
