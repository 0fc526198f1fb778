#include <dlfcn.h>
#include "shim.h"
#include "_cgo_export.h"

struct pt_lib pt_uc;

// pt_load runs once (package uc calls it under a sync.Once).
const char *pt_load(void) {
	void *lib = dlopen("libunicorn.so.2", RTLD_NOW | RTLD_LOCAL);
	if (!lib)
		return dlerror();
	struct {
		const char *name;
		void **fn;
	} syms[] = {
		{"uc_version", (void **)&pt_uc.version},
		{"uc_strerror", (void **)&pt_uc.strerror},
		{"uc_open", (void **)&pt_uc.open},
		{"uc_close", (void **)&pt_uc.close},
		{"uc_hook_add", (void **)&pt_uc.hook_add},
		{"uc_ctl", (void **)&pt_uc.ctl},
		{"uc_mem_map_ptr", (void **)&pt_uc.mem_map_ptr},
		{"uc_mem_protect", (void **)&pt_uc.mem_protect},
		{"uc_mem_unmap", (void **)&pt_uc.mem_unmap},
		{"uc_mmio_map", (void **)&pt_uc.mmio_map},
		{"uc_mem_read", (void **)&pt_uc.mem_read},
		{"uc_mem_write", (void **)&pt_uc.mem_write},
		{"uc_reg_read", (void **)&pt_uc.reg_read},
		{"uc_reg_write", (void **)&pt_uc.reg_write},
		{"uc_emu_start", (void **)&pt_uc.emu_start},
		{"uc_emu_stop", (void **)&pt_uc.emu_stop},
		{"uc_context_alloc", (void **)&pt_uc.context_alloc},
		{"uc_context_save", (void **)&pt_uc.context_save},
		{"uc_context_restore", (void **)&pt_uc.context_restore},
		{"uc_context_free", (void **)&pt_uc.context_free},
	};
	for (size_t i = 0; i < sizeof syms / sizeof syms[0]; i++) {
		*syms[i].fn = dlsym(lib, syms[i].name);
		if (!*syms[i].fn) {
			const char *err = dlerror();
			dlclose(lib);
			return err ? err : syms[i].name;
		}
	}
	return NULL;
}

void pt_set(int *flag, int v) { __atomic_store_n(flag, v, __ATOMIC_SEQ_CST); }

// block_hook runs before every translated block: it stops the engine
// when asked to, or when an interrupt waits and the guest has interrupts
// enabled.
static void block_hook(uc_engine *uc, uint64_t addr, uint32_t size, void *u) {
	struct pt_engine *e = u;
	if (__atomic_load_n(&e->stop, __ATOMIC_RELAXED)) {
		e->why = PT_STOP_KICK;
		pt_uc.emu_stop(uc);
		return;
	}
	if (__atomic_load_n(&e->irq, __ATOMIC_RELAXED)) {
		uint64_t fl = 0;
		pt_uc.reg_read(uc, UC_X86_REG_EFLAGS, &fl);
		if (fl & 0x200) {
			e->why = PT_STOP_WINDOW;
			pt_uc.emu_stop(uc);
		}
	}
}

static uint32_t in_hook(uc_engine *uc, uint32_t port, int size, void *u) {
	return goIn(((struct pt_engine *)u)->handle, port, size);
}

static void out_hook(uc_engine *uc, uint32_t port, int size, uint32_t v, void *u) {
	goOut(((struct pt_engine *)u)->handle, port, size, v);
}

static void intr_hook(uc_engine *uc, uint32_t intno, void *u) {
	goInterrupt(((struct pt_engine *)u)->handle, intno);
}

static bool write_prot_hook(uc_engine *uc, uc_mem_type type, uint64_t addr, int size, int64_t value, void *u) {
	goWriteProt(((struct pt_engine *)u)->handle, addr, size);
	return true; // the engine drops the store (the region is read-only)
}

static bool unmapped_hook(uc_engine *uc, uc_mem_type type, uint64_t addr, int size, int64_t value, void *u) {
	goUnmapped(((struct pt_engine *)u)->handle, (int)type, addr, size);
	return false;
}

static int cpuid_hook(struct uc_struct *uc, void *u) {
	return goCPUID(((struct pt_engine *)u)->handle);
}

static uint64_t mmio_read(uc_engine *uc, uint64_t off, unsigned size, void *u) {
	struct pt_mmio *m = u;
	return goMMIORead(m->handle, m->base + off, size);
}

static void mmio_write(uc_engine *uc, uint64_t off, unsigned size, uint64_t v, void *u) {
	struct pt_mmio *m = u;
	goMMIOWrite(m->handle, m->base + off, size, v);
}

uc_err pt_open(struct pt_engine *e) {
	uc_err err = pt_uc.open(UC_ARCH_X86, UC_MODE_32, &e->uc);
	if (err)
		return err;
	uc_hook h;
	if ((err = pt_uc.hook_add(e->uc, &h, UC_HOOK_BLOCK, block_hook, e, 1, 0)) ||
	    (err = pt_uc.hook_add(e->uc, &h, UC_HOOK_INSN, in_hook, e, 1, 0, UC_X86_INS_IN)) ||
	    (err = pt_uc.hook_add(e->uc, &h, UC_HOOK_INSN, out_hook, e, 1, 0, UC_X86_INS_OUT)) ||
	    (err = pt_uc.hook_add(e->uc, &h, UC_HOOK_INSN, cpuid_hook, e, 1, 0, UC_X86_INS_CPUID)) ||
	    (err = pt_uc.hook_add(e->uc, &h, UC_HOOK_INTR, intr_hook, e, 1, 0)) ||
	    (err = pt_uc.hook_add(e->uc, &h, UC_HOOK_MEM_WRITE_PROT, write_prot_hook, e, 1, 0)) ||
	    (err = pt_uc.hook_add(e->uc, &h, UC_HOOK_MEM_UNMAPPED, unmapped_hook, e, 1, 0))) {
		pt_uc.close(e->uc);
		e->uc = NULL;
		return err;
	}
	// No stop address: the engine runs until a hook stops it, HLT, or a
	// fault it cannot take.
	if ((err = pt_uc.ctl(e->uc, UC_CTL_WRITE(UC_CTL_UC_USE_EXITS, 1), 1))) {
		pt_uc.close(e->uc);
		e->uc = NULL;
	}
	return err;
}

uc_err pt_mmio_map(struct pt_engine *e, struct pt_mmio *m, uint64_t size) {
	return pt_uc.mmio_map(e->uc, m->base, size, mmio_read, m, mmio_write, m);
}
