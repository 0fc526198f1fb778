// Package gen2 runs a Generation 2 (enlightened) partition's guest: a
// static x86-64 Linux executable, entered in long mode at CPL3 with no
// firmware and no guest kernel. The worker builds the few CPL0 structures
// the CPU needs (page tables, GDT, IDT, TSS and two trap stubs) in the
// first 2 MiB of guest memory, which the guest cannot reach, and serves
// the program's system calls itself (the guest kernel shim): the syscall
// instruction lands on a stub that exits to the worker with one port
// write, and the worker returns to the program by setting its registers,
// so no guest CPL0 code beyond that one instruction ever runs (on this
// machine's KVM, CPL0 code is emulated).
package gen2

import (
	"encoding/binary"
	"fmt"
)

// Guest physical layout of the kernel area, [0, userBase): supervisor
// pages only.
const (
	pml4Addr     = 0x1000
	pdptAddr     = 0x2000
	pdAddr       = 0x3000 // the page directory of the first GiB
	gdtAddr      = 0x7000
	idtAddr      = 0x8000
	tssAddr      = 0x9000
	stubAddr     = 0xA000  // the syscall landing: the only user page below userBase
	ptAddr       = 0xB000  // 4 KiB pages for the first 2 MiB
	trapStubAddr = 0xD000  // 16 bytes per vector, 4 KiB
	kstackBase   = 0x20000 // exception stacks, kstackSize each
	kstackSize   = 0x2000
	tssSize      = 0x80    // one TSS per thread from tssAddr
	tssLimit     = 0x7F    // the TSS and its I/O permission bitmap
	ioMapBase    = 0x68    // the bitmap follows the TSS proper
	userBase     = 2 << 20 // the program's memory starts here
	largePage    = 2 << 20
	maxMemory    = 4 << 30
)

// Ports the stubs write. An exception stub names its vector by the port
// it writes (trapPortBase+vector for the 32 exceptions, trapPortOther for
// any other vector) so that it changes no register of the program's. The
// syscall landing writes syscallPort and the hypercall page's slow path
// hypercallPort: both are allowed at CPL3 by the TSS's I/O bitmap, so the
// write exits to the worker directly, without an exception.
const (
	syscallPort   = 0x84
	hypercallPort = 0x85
	trapPortBase  = 0xC0
	trapPortOther = 0xBF
)

// DoorbellPort is the one port the program may write itself (its TSS's
// I/O permission bitmap allows it): the hypercall page's fast path for
// HvSignalEvent writes the connection id there as a 32-bit value, and
// each channel's doorbell is a KVM ioeventfd matching its connection id,
// so a signal reaches the root without an exit to the worker. A write
// that matches no doorbell exits to the worker, which answers it as the
// slow path would.
const DoorbellPort = 0x88

// Selectors, laid out as Linux lays out its GDT: under PVM the guest's
// user selectors are the host's (__USER32_CS 0x23, __USER_DS 0x2B,
// __USER_CS 0x33), and MSR_STAR must name them.
const (
	selKernelCode = 0x10
	selKernelData = 0x18
	selUser32Code = 0x20 | 3
	selUserData   = 0x28 | 3
	selUserCode   = 0x30 | 3
	selTSS        = 0x40
)

// Page-table entry bits.
const (
	ptePresent = 1 << 0
	pteWrite   = 1 << 1
	pteUser    = 1 << 2
	ptePS      = 1 << 7
)

// buildKernelArea writes page tables, GDT, IDT, TSS and stubs into mem
// (guest physical memory of size len(mem)): identity mapping with 2 MiB
// pages, the first one supervisor-only, the rest user read/write.
func buildKernelArea(mem []byte) error {
	size := uint64(len(mem))
	if size < 2*largePage || size%largePage != 0 || size > maxMemory {
		return fmt.Errorf("gen2: memory %#x bytes: want 4 MiB to 4 GiB in whole 2 MiB pages", size)
	}
	le := binary.LittleEndian
	clear(mem[:userBase])
	le.PutUint64(mem[pml4Addr:], pdptAddr|ptePresent|pteWrite|pteUser)
	le.PutUint64(mem[pdptAddr:], pdAddr|ptePresent|pteWrite|pteUser)
	// The first 2 MiB (virtual and physical) in 4 KiB pages,
	// supervisor-only but for the syscall landing (user, read-only). The
	// program's pages are mapped by its address space (vm.go).
	le.PutUint64(mem[pdAddr:], ptAddr|ptePresent|pteWrite|pteUser)
	for pa := uint64(0); pa < userBase; pa += 4096 {
		e := pa | ptePresent | pteWrite
		if pa == stubAddr {
			e = pa | ptePresent | pteUser
		}
		le.PutUint64(mem[ptAddr+8*(pa/4096):], e)
	}

	gdt := []uint64{
		0,
		0,
		0x00AF9A000000FFFF, // 0x10 kernel code, 64-bit
		0x00CF92000000FFFF, // 0x18 kernel data
		0x00CF7A000000FFFF, // 0x23 user code, 32-bit: not present (STAR names it; no program runs 32-bit code)
		0x00CFF2000000FFFF, // 0x2B user data, DPL 3
		0x00AFFA000000FFFF, // 0x33 user code, 64-bit, DPL 3
	}
	for i, d := range gdt {
		le.PutUint64(mem[gdtAddr+8*i:], d)
	}
	// The 64-bit TSS descriptor: base tssAddr, type 9.
	tssLo := uint64(tssLimit) | (tssAddr&0xFFFFFF)<<16 | uint64(0x89)<<40 | (tssAddr>>24&0xFF)<<56
	le.PutUint64(mem[gdtAddr+selTSS:], tssLo)
	le.PutUint64(mem[gdtAddr+selTSS+8:], tssAddr>>32)

	// One TSS per thread slot: RSP0 for exceptions from CPL3, and an I/O
	// permission bitmap up to the limit that allows the syscall and
	// hypercall ports and the doorbell's four (a 32-bit write) alone;
	// ports past the limit are refused too.
	for i := 0; i < maxThreads; i++ {
		tss := tssAddr + i*tssSize
		le.PutUint64(mem[tss+4:], kstackTop(i))
		le.PutUint16(mem[tss+0x66:], ioMapBase)
		bitmap := mem[tss+ioMapBase : tss+tssLimit+1]
		for j := range bitmap {
			bitmap[j] = 0xFF
		}
		for _, port := range []int{syscallPort, hypercallPort, DoorbellPort, DoorbellPort + 1, DoorbellPort + 2, DoorbellPort + 3} {
			bitmap[port/8] &^= 1 << (port % 8)
		}
	}

	// The syscall landing. On this KVM (PVM) a SYSCALL from user mode
	// jumps to MSR_LSTAR without leaving user mode, so the landing is a
	// user page whose first instruction, a port write the I/O bitmap
	// allows, exits to the worker; the worker returns to the program at
	// RCX, as SYSRET would.
	copy(mem[stubAddr:], []byte{0xE6, syscallPort, 0xF4, 0xEB, 0xFD})
	// Exception stubs: out %al, $port; hlt; jmp. They are on a
	// supervisor page of their own.
	for v := 0; v < 256; v++ {
		stub := trapStubAddr + 16*v
		port := byte(trapPortOther)
		if v < 32 {
			port = byte(trapPortBase + v)
		}
		copy(mem[stub:], []byte{0xE6, port, 0xF4, 0xEB, 0xFD})
		gate := mem[idtAddr+16*v:]
		le.PutUint16(gate, uint16(stub))
		le.PutUint16(gate[2:], selKernelCode)
		gate[5] = 0x8E // present, DPL 0, 64-bit interrupt gate
		le.PutUint16(gate[6:], uint16(stub>>16))
		le.PutUint32(gate[8:], uint32(uint64(stub)>>32))
	}
	return nil
}

// kstackTop is the top of thread slot i's exception stack.
func kstackTop(i int) uint64 { return kstackBase + uint64(i+1)*kstackSize }

// hasErrorCode reports whether the CPU pushes an error code for vector v.
func hasErrorCode(v uint8) bool {
	switch v {
	case 8, 10, 11, 12, 13, 14, 17, 21, 29, 30:
		return true
	}
	return false
}

// vectorName names the exceptions a report mentions.
func vectorName(v uint8) string {
	names := map[uint8]string{0: "#DE divide error", 1: "#DB debug", 3: "#BP breakpoint", 4: "#OF overflow", 5: "#BR bound range",
		6: "#UD invalid opcode", 7: "#NM device not available", 8: "#DF double fault", 10: "#TS invalid TSS", 11: "#NP segment not present",
		12: "#SS stack fault", 13: "#GP general protection", 14: "#PF page fault", 16: "#MF x87 error", 17: "#AC alignment check",
		18: "#MC machine check", 19: "#XM SIMD error", 21: "#CP control protection"}
	if n, ok := names[v]; ok {
		return n
	}
	return fmt.Sprintf("vector %d", v)
}
