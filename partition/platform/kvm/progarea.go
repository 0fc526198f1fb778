package kvm

import (
	"encoding/binary"
	"fmt"

	"github.com/partita-hv/partita/partition/platform"
)

// A Generation 2 program runs at CPL3 in long mode, on page tables the
// shim keeps (platform.PageTableRoot). This file builds the few CPL0
// structures the CPU needs in the platform's part of the first 2 MiB
// (GDT, IDT, one TSS and exception stack per thread, and two kinds of
// stubs), which the program cannot reach: the syscall instruction lands
// on a stub that exits to the worker with one port write, every exception
// lands on a stub that names its vector by the port it writes, and the
// worker returns to the program by setting its registers, so no guest CPL0
// code beyond that one instruction ever runs (on PVM, KVM's flavour for
// nested guests, CPL0 code is emulated).

// Guest physical layout of the platform area (below
// platform.KernelAreaEnd), mapped 1:1 in the first 2 MiB of virtual space.
const (
	gdtAddr      = 0x7000
	idtAddr      = 0x8000
	tssAddr      = 0x9000
	stubAddr     = 0xA000  // the syscall landing: the only user page below KernelAreaEnd
	ptAddr       = 0xB000  // 4 KiB pages for the first 2 MiB
	trapStubAddr = 0xD000  // 16 bytes per vector, 4 KiB
	kstackBase   = 0x20000 // exception stacks, kstackSize each
	kstackSize   = 0x2000
	tssSize      = 0x80 // one TSS per thread slot from tssAddr
	tssLimit     = 0x7F // the TSS and its I/O permission bitmap
	ioMapBase    = 0x68 // the bitmap follows the TSS proper
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
)

// buildProgramArea writes the platform area of mem (a Generation 2
// partition's guest memory, whose first page directory the shim has
// built) and maps it in the first 2 MiB of virtual space: supervisor-only
// 4 KiB pages, but for the syscall landing (user, read-only).
func buildProgramArea(mem []byte) error {
	if len(mem) < platform.KernelAreaEnd {
		return fmt.Errorf("kvm: guest memory of %#x bytes has no room for the kernel area", len(mem))
	}
	le := binary.LittleEndian
	clear(mem[platform.PlatformArea:platform.KernelAreaEnd])
	le.PutUint64(mem[platform.FirstPD:], ptAddr|ptePresent|pteWrite|pteUser)
	for pa := uint64(0); pa < platform.KernelAreaEnd; pa += 4096 {
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
	for i := 0; i < platform.MaxThreads; i++ {
		tss := tssAddr + i*tssSize
		le.PutUint64(mem[tss+4:], kstackTop(i))
		le.PutUint16(mem[tss+0x66:], ioMapBase)
		bitmap := mem[tss+ioMapBase : tss+tssLimit+1]
		for j := range bitmap {
			bitmap[j] = 0xFF
		}
		for _, port := range []int{syscallPort, hypercallPort, platform.DoorbellPort, platform.DoorbellPort + 1, platform.DoorbellPort + 2, platform.DoorbellPort + 3} {
			bitmap[port/8] &^= 1 << (port % 8)
		}
	}

	// The syscall landing. On PVM a SYSCALL from user mode jumps to
	// MSR_LSTAR without leaving user mode, so the landing is a user page
	// whose first instruction, a port write the I/O bitmap allows, exits
	// to the worker; the worker returns to the program at RCX, as SYSRET
	// would.
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

// hypercallCode is the hypercall page on KVM:
//
//	00  cmp  rcx, 0x1005D     ; HvSignalEvent, fast?
//	07  jne  1e
//	09  mov  rax, rdx
//	0c  shr  rax, 32          ; flag number and reserved bits zero?
//	10  jnz  1e
//	12  push rdx
//	13  mov  eax, edx         ; the connection id
//	15  mov  dx, DoorbellPort
//	19  out  dx, eax          ; the doorbell: a KVM ioeventfd
//	1a  xor  eax, eax         ; HV_STATUS_SUCCESS
//	1c  pop  rdx              ; an unmatched doorbell resumes here
//	1d  ret
//	1e  out  0x85, al         ; the slow path: an exit to the worker
//	20  ret
var hypercallCode = []byte{
	0x48, 0x81, 0xF9, 0x5D, 0x00, 0x01, 0x00,
	0x75, 0x15,
	0x48, 0x89, 0xD0,
	0x48, 0xC1, 0xE8, 0x20,
	0x75, 0x0C,
	0x52,
	0x89, 0xD0,
	0x66, 0xBA, platform.DoorbellPort, 0x00,
	0xEF,
	0x31, 0xC0,
	0x5A,
	0xC3,
	0xE6, hypercallPort,
	0xC3,
}

// Offsets in hypercallCode.
const (
	hypercallDoorbell     = 0x19
	hypercallDoorbellDone = 0x1C
	hypercallSlow         = 0x1E
)
