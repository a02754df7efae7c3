# Entry points for people: `make demo` builds and runs the seed example; `make test` runs every test.
CARGO ?= cargo
CC ?= cc
CFLAGS ?= -std=c11 -D_DEFAULT_SOURCE -O2 -Wall -Wextra -Wpedantic -Werror
LIBDIR := $(CURDIR)/target/release

.PHONY: all lib mpi demo examples docs package test stress memcheck bench clean

all: lib

lib:
	$(CARGO) build --release
	ln -sf libpool.so $(LIBDIR)/libpool.so.0

# libpool_mpi (src/mpi/pool_mpi.c) with the default MPI's compiler wrapper; MPICC=mpicc.mpich
# picks another implementation.
MPICC ?= mpicc
mpi: lib
	$(MPICC) $(CFLAGS) -shared -fPIC -Iinclude src/mpi/pool_mpi.c -L$(LIBDIR) -lpool -Wl,-soname,libpool_mpi.so.0 -o $(LIBDIR)/libpool_mpi.so
	ln -sf libpool_mpi.so $(LIBDIR)/libpool_mpi.so.0

demo: lib
	$(CC) $(CFLAGS) -Iinclude c_examples/seed.c -L$(LIBDIR) -lpool -Wl,-rpath,$(LIBDIR) -o $(LIBDIR)/seed
	$(LIBDIR)/seed

# The real jobs: c_examples/pgz.c (parallel gzip) and c_examples/ocr.c (Tesseract OCR) into
# target/examples/. OCR needs libtesseract-dev and tesseract-ocr-eng: without them ocr is
# skipped, saying how to get it, and the target still succeeds; REQUIRE=all makes that a
# failure (POOL_INSTALL_DEPS=1 installs them with apt-get when run as root).
REQUIRE ?=
examples: lib
	@bash tests/examples/build.sh; rc=$$?; \
	if [ $$rc = 77 ] && [ "$(REQUIRE)" != all ]; then \
	    echo "make examples: not everything was built (see above); REQUIRE=all makes that an error."; \
	elif [ $$rc != 0 ]; then \
	    [ $$rc = 77 ] && echo "make examples: REQUIRE=all, and a dependency is missing (see above)" >&2; exit 1; \
	fi

# The reference as HTML, one page per function, type and C++ class plus the overviews and an
# index, into target/docs/html/ (docs/gen.py: Python 3 alone, offline). The same text as manual
# pages is committed in docs/man (`man -l docs/man/man3/pool_map.3`; CMake installs it).
docs:
	rm -rf target/docs/html
	python3 docs/gen.py --html target/docs/html
	@echo "docs: target/docs/html/index.html"

# Debian packages (libpool0, libpool-dev, -dbgsym, and libpool-mpi0/-dev where mpicc is found)
# into target/packages/, from the CMake install: see packaging/debian/build.sh.
package:
	bash packaging/debian/build.sh

# Steps print as they go; the long ones (sanitizers, valgrind, kill points) print per program.
test:
	@echo "== 1/8 Rust unit and integration tests, C programs (cargo test)"
	$(CARGO) test -- --skip sanitizers --skip valgrind_memcheck
	@echo "== 2/8 C programs under ASan+UBSan, then valgrind (every process)"
	$(CARGO) test --test c_api -- --exact sanitizers valgrind_memcheck --nocapture
	@echo "== 3/8 kill-point injection: every protocol step killed"
	$(CARGO) test --features killpoints --test killpoints --test killpoints_ipc --test killpoints_calls -- --nocapture
	@echo "== 4/8 install + CMake/pkg-config consumer projects"
	bash tests/consumers/run.sh
	@echo "== 5/8 libpool_mpi under mpirun -np 4, Open MPI and MPICH"
	bash tests/mpi/run.sh
	@echo "== 6/8 the real jobs: pgz against gzip -t and cmp, OCR of rendered pages (make examples)"
	POOL_INSTALL_DEPS=1 bash tests/examples/run.sh
	@echo "== 7/8 the Conan 2 recipe: conan create packaging/conan, shared and static, test_package run"
	bash tests/conan/run.sh
	@echo "== 8/8 Debian packages: make package, lintian, apt-get install, consumers against /usr, purge"
	bash tests/packages/run.sh

# Long soaks: the random kill storm (1 kill/ms) for a minute, five times, and the kill-point
# scenarios ten times in a row. Prints a line per run.
STRESS_STORM_SECS ?= 60
stress:
	for i in 1 2 3 4 5; do POOL_STORM_SECS=$(STRESS_STORM_SECS) $(CARGO) test --release --test stress random_kill_storm -- --nocapture || exit 1; done
	for i in 1 2 3 4 5 6 7 8 9 10; do $(CARGO) test --release --features killpoints --test killpoints --test killpoints_ipc --test killpoints_calls -- --nocapture || exit 1; done

memcheck:
	POOL_TEST_SANITIZE=1 POOL_TEST_VALGRIND=all $(CARGO) test --test c_api -- --nocapture sanitizers valgrind

# Against Python multiprocessing, OpenMP and serial C, contenders interleaved round by round;
# regenerates BENCHMARKS.md. ONLY=w1,w2,wc runs only those steps (report in target/bench);
# BASE=<commit> runs the libpool workloads of that commit's library and of the working tree's,
# round by round, into target/bench/before-after.md (see benches/run.sh).
bench:
	BENCH_BASE='$(BASE)' BENCH_ONLY='$(ONLY)' bash benches/run.sh

clean:
	$(CARGO) clean
