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
