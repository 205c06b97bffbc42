# config.mk -- build settings; override on the command line (make CC=clang).
PREFIX    ?= /usr/local
MANPREFIX ?= $(PREFIX)/share/man
CC        ?= cc
OPT       ?= -O2 -march=native
CFLAGS    ?= $(OPT) -g -std=c11 -Wall -Wextra -Wno-unused-parameter -Wshadow -Wvla -pthread
PKGS      ?= vips libarchive jansson openblas
