#include "shim.h"
#include "_cgo_export.h"

void pt_set(int *flag, int v) { __atomic_store_n(flag, v, __ATOMIC_SEQ_CST); }

// block_hook runs before every translated block: it undoes dropped ROM
// writes, and stops the engine when asked to or when an interrupt waits
// and the guest has interrupts enabled.
static void block_hook(uc_engine *uc, uint64_t addr, uint32_t size, void *u) {
	struct pt_engine *e = u;
	if (__atomic_load_n(&e->stop, __ATOMIC_RELAXED)) {
		uc_emu_stop(uc);
		return;
	}
	if (__atomic_load_n(&e->irq, __ATOMIC_RELAXED)) {
		uint64_t fl = 0;
		uc_reg_read(uc, UC_X86_REG_EFLAGS, &fl);
		if (fl & 0x200)
			uc_emu_stop(uc);
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
	uc_err err = uc_open(UC_ARCH_X86, UC_MODE_32, &e->uc);
	if (err)
		return err;
	uc_hook h;
	if ((err = uc_hook_add(e->uc, &h, UC_HOOK_BLOCK, block_hook, e, 1, 0)) ||
	    (err = uc_hook_add(e->uc, &h, UC_HOOK_INSN, in_hook, e, 1, 0, UC_X86_INS_IN)) ||
	    (err = uc_hook_add(e->uc, &h, UC_HOOK_INSN, out_hook, e, 1, 0, UC_X86_INS_OUT)) ||
	    (err = uc_hook_add(e->uc, &h, UC_HOOK_INSN, cpuid_hook, e, 1, 0, UC_X86_INS_CPUID)) ||
	    (err = uc_hook_add(e->uc, &h, UC_HOOK_INTR, intr_hook, e, 1, 0)) ||
	    (err = uc_hook_add(e->uc, &h, UC_HOOK_MEM_WRITE_PROT, write_prot_hook, e, 1, 0)) ||
	    (err = uc_hook_add(e->uc, &h, UC_HOOK_MEM_UNMAPPED, unmapped_hook, e, 1, 0))) {
		uc_close(e->uc);
		e->uc = NULL;
		return err;
	}
	// No stop address: the engine runs until a hook stops it, HLT, or a
	// fault it cannot take.
	if ((err = uc_ctl_exits_enable(e->uc))) {
		uc_close(e->uc);
		e->uc = NULL;
	}
	return err;
}

uc_err pt_mmio_map(struct pt_engine *e, struct pt_mmio *m, uint64_t size) {
	return uc_mmio_map(e->uc, m->base, size, mmio_read, m, mmio_write, m);
}
