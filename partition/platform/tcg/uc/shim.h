// The C side of package uc: hooks that stay in C where they run often
// (every translated block) and call into Go only for what Go must do.
#ifndef PARTITA_UC_SHIM_H
#define PARTITA_UC_SHIM_H

#include <stdint.h>
#include <unicorn/unicorn.h>

struct pt_engine {
	uc_engine *uc;
	uintptr_t handle;   // the Go engine's cgo.Handle
	int stop;           // atomic: stop at the next block
	int irq;            // atomic: stop at the next block where IF is set
};

struct pt_mmio {
	uintptr_t handle;
	uint64_t base;
};

uc_err pt_open(struct pt_engine *e);
uc_err pt_mmio_map(struct pt_engine *e, struct pt_mmio *m, uint64_t size);
void pt_set(int *flag, int v);

#endif
