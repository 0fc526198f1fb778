// The C side of package uc: hooks that stay in C where they run often
// (every translated block) and call into Go only for what Go must do.
#ifndef PARTITA_UC_SHIM_H
#define PARTITA_UC_SHIM_H

#include <stdint.h>
#include <unicorn/unicorn.h>

// The library is loaded on first use (pt_load, with dlopen), not linked:
// a 19 MB library costs every process that links it about 18 ms at
// start, and the same binary is the root service and every worker,
// most of which never run a tcg partition. These are its functions the
// package calls, resolved by pt_load.
struct pt_lib {
	unsigned int (*version)(unsigned int *major, unsigned int *minor);
	const char *(*strerror)(uc_err code);
	uc_err (*open)(uc_arch arch, uc_mode mode, uc_engine **uc);
	uc_err (*close)(uc_engine *uc);
	uc_err (*hook_add)(uc_engine *uc, uc_hook *hh, int type, void *callback, void *user_data, uint64_t begin, uint64_t end, ...);
	uc_err (*ctl)(uc_engine *uc, uc_control_type control, ...);
	uc_err (*mem_map_ptr)(uc_engine *uc, uint64_t address, size_t size, uint32_t perms, void *ptr);
	uc_err (*mem_protect)(uc_engine *uc, uint64_t address, size_t size, uint32_t perms);
	uc_err (*mem_unmap)(uc_engine *uc, uint64_t address, size_t size);
	uc_err (*mmio_map)(uc_engine *uc, uint64_t address, size_t size, uc_cb_mmio_read_t read_cb, void *user_data_read, uc_cb_mmio_write_t write_cb, void *user_data_write);
	uc_err (*mem_read)(uc_engine *uc, uint64_t address, void *bytes, size_t size);
	uc_err (*mem_write)(uc_engine *uc, uint64_t address, const void *bytes, size_t size);
	uc_err (*reg_read)(uc_engine *uc, int regid, void *value);
	uc_err (*reg_write)(uc_engine *uc, int regid, const void *value);
	uc_err (*emu_start)(uc_engine *uc, uint64_t begin, uint64_t until, uint64_t timeout, size_t count);
	uc_err (*emu_stop)(uc_engine *uc);
	uc_err (*context_alloc)(uc_engine *uc, uc_context **context);
	uc_err (*context_save)(uc_engine *uc, uc_context *context);
	uc_err (*context_restore)(uc_engine *uc, uc_context *context);
	uc_err (*context_free)(uc_context *context);
};
extern struct pt_lib pt_uc;

// pt_load loads the library and resolves pt_uc; NULL, or why not.
const char *pt_load(void);

// For Go, which cannot call through a C function pointer.
static inline unsigned int pt_uc_version(unsigned int *major, unsigned int *minor) { return pt_uc.version(major, minor); }
static inline const char *pt_uc_strerror(uc_err e) { return pt_uc.strerror(e); }
static inline uc_err pt_uc_close(uc_engine *uc) { return pt_uc.close(uc); }
static inline uc_err pt_uc_mem_map_ptr(uc_engine *uc, uint64_t a, size_t n, uint32_t p, void *ptr) { return pt_uc.mem_map_ptr(uc, a, n, p, ptr); }
static inline uc_err pt_uc_mem_protect(uc_engine *uc, uint64_t a, size_t n, uint32_t p) { return pt_uc.mem_protect(uc, a, n, p); }
static inline uc_err pt_uc_mem_unmap(uc_engine *uc, uint64_t a, size_t n) { return pt_uc.mem_unmap(uc, a, n); }
static inline uc_err pt_uc_mem_read(uc_engine *uc, uint64_t a, void *b, size_t n) { return pt_uc.mem_read(uc, a, b, n); }
static inline uc_err pt_uc_mem_write(uc_engine *uc, uint64_t a, const void *b, size_t n) { return pt_uc.mem_write(uc, a, b, n); }
static inline uc_err pt_uc_reg_read(uc_engine *uc, int r, void *v) { return pt_uc.reg_read(uc, r, v); }
static inline uc_err pt_uc_reg_write(uc_engine *uc, int r, const void *v) { return pt_uc.reg_write(uc, r, v); }
static inline uc_err pt_uc_emu_start(uc_engine *uc, uint64_t begin, uint64_t until, uint64_t timeout, size_t count) { return pt_uc.emu_start(uc, begin, until, timeout, count); }
static inline uc_err pt_uc_emu_stop(uc_engine *uc) { return pt_uc.emu_stop(uc); }
static inline uc_err pt_uc_context_alloc(uc_engine *uc, uc_context **c) { return pt_uc.context_alloc(uc, c); }
static inline uc_err pt_uc_context_save(uc_engine *uc, uc_context *c) { return pt_uc.context_save(uc, c); }
static inline uc_err pt_uc_context_restore(uc_engine *uc, uc_context *c) { return pt_uc.context_restore(uc, c); }
static inline uc_err pt_uc_context_free(uc_context *c) { return pt_uc.context_free(c); }
static inline uc_err pt_uc_remove_cache(uc_engine *uc, uint64_t begin, uint64_t end) {
	return pt_uc.ctl(uc, UC_CTL_WRITE(UC_CTL_TB_REMOVE_CACHE, 2), begin, end);
}

struct pt_engine {
	uc_engine *uc;
	uintptr_t handle;   // the Go engine's slot (engines in uc_cgo.go)
	int stop;           // atomic: stop at the next block
	int irq;            // atomic: stop at the next block where IF is set
	int why;            // why the block hook stopped the engine (PT_STOP_*), 0 if it did not
};

enum { PT_STOP_KICK = 1, PT_STOP_WINDOW = 2 };

struct pt_mmio {
	uintptr_t handle;
	uint64_t base;
};

uc_err pt_open(struct pt_engine *e);
uc_err pt_mmio_map(struct pt_engine *e, struct pt_mmio *m, uint64_t size);
void pt_set(int *flag, int v);

#endif
