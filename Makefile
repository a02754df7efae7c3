# Entry points for people: `make demo` builds and runs the seed example; `make test` runs every test.
CARGO ?= cargo
CC ?= cc
CFLAGS ?= -std=c11 -D_DEFAULT_SOURCE -O2 -Wall -Wextra -Wpedantic -Werror
LIBDIR := $(CURDIR)/target/release

.PHONY: all lib demo test memcheck bench clean

all: lib

lib:
	$(CARGO) build --release
	ln -sf libpool.so $(LIBDIR)/libpool.so.0

demo: lib
	$(CC) $(CFLAGS) -Iinclude c_examples/seed.c -L$(LIBDIR) -lpool -Wl,-rpath,$(LIBDIR) -o $(LIBDIR)/seed
	$(LIBDIR)/seed

test:
	$(CARGO) test
	bash tests/consumers/run.sh

memcheck:
	POOL_TEST_SANITIZE=1 POOL_TEST_VALGRIND=all $(CARGO) test --test c_api -- --nocapture sanitizers valgrind

# Against Python multiprocessing, OpenMP and serial C; regenerates BENCHMARKS.md.
bench:
	bash benches/run.sh

clean:
	$(CARGO) clean
