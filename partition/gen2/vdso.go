package gen2

import (
	"encoding/binary"
	"errors"
	"time"

	"github.com/partita-hv/partita/partition/platform"
)

// The vDSO: one page the worker builds and maps into every program, named
// by AT_SYSINFO_EHDR in its auxiliary vector, as Linux's is. It exports
// __vdso_clock_gettime, which reads the time-stamp counter at CPL3 and
// turns it into CLOCK_MONOTONIC (and _RAW, _BOOTTIME) or CLOCK_REALTIME
// with parameters the worker writes into the page before the program
// starts, so the Go runtime's clock reads (it reads the clock on every
// scheduling decision) cost nanoseconds rather than an exit to the worker.
// Other clocks fall back to the system call.
//
// The parameters are fixed when the first thread starts: the program's
// TSC and the shim's monotonic clock sampled together, and the TSC
// frequency the platform gives (KVM reports it in kHz, so the clock may
// drift from the host's by up to a millionth; ptrace measures the host
// TSC against the host's clock). The system call path reads the host's
// clock directly.
//
// Layout of the page (offsets): the ELF header and two program headers
// (PT_LOAD of the whole page, PT_DYNAMIC); the dynamic section at 0x100;
// a one-bucket DT_HASH table at 0x200; the symbol table at 0x300; the
// string table at 0x400; the version definitions at 0x500 (the symbol is
// LINUX_2.6's, which the Go runtime looks for) and the symbol versions at
// 0x580; the code at 0x800; the parameters at 0xF00.
const (
	VDSOPage = 0x7FFFFE003000

	vdsoDynamic = 0x100
	vdsoHash    = 0x200
	vdsoSymtab  = 0x300
	vdsoStrtab  = 0x400
	vdsoVerdef  = 0x500
	vdsoVersym  = 0x580
	vdsoCode    = 0x800
	vdsoData    = 0xF00 // tsc base, mult (ns = delta*mult >> 32), monotonic base ns, realtime offset ns
)

// vdsoClockGettime is __vdso_clock_gettime(clockid, *timespec):
//
//	00  cmp  edi, 1 / je mono; cmp edi, 4 / je mono; cmp edi, 7 / je mono
//	0f  test edi, edi / je real
//	13  mov  eax, 228 / syscall / ret      ; other clocks: the system call
//	1b  real: mov r8, [data+0x18] / jmp common
//	2a  mono: xor r8d, r8d
//	2d  common: mov r9, data
//	37  rdtsc; rax = tsc - [r9]; negative: 0
//	47  mul qword [r9+8]; shrd rax, rdx, 32  ; ns since the base
//	50  add rax, [r9+16]; add rax, r8
//	57  rax, rdx = rax / 1e9, rax % 1e9
//	61  store seconds and nanoseconds; xor eax, eax; ret
var vdsoClockGettime = []byte{
	0x83, 0xff, 0x01, 0x74, 0x25, 0x83, 0xff, 0x04, 0x74, 0x20, 0x83, 0xff, 0x07, 0x74, 0x1b,
	0x85, 0xff, 0x74, 0x08,
	0xb8, 0xe4, 0x00, 0x00, 0x00, 0x0f, 0x05, 0xc3,
	0x49, 0xb8, 0x18, 0x3f, 0x00, 0xfe, 0xff, 0x7f, 0x00, 0x00, 0x4d, 0x8b, 0x00, 0xeb, 0x03,
	0x45, 0x31, 0xc0,
	0x49, 0xb9, 0x00, 0x3f, 0x00, 0xfe, 0xff, 0x7f, 0x00, 0x00,
	0x0f, 0x31, 0x48, 0xc1, 0xe2, 0x20, 0x48, 0x09, 0xd0, 0x49, 0x2b, 0x01, 0x79, 0x02, 0x31, 0xc0,
	0x49, 0xf7, 0x61, 0x08, 0x48, 0x0f, 0xac, 0xd0, 0x20,
	0x49, 0x03, 0x41, 0x10, 0x4c, 0x01, 0xc0,
	0x31, 0xd2, 0xb9, 0x00, 0xca, 0x9a, 0x3b, 0x48, 0xf7, 0xf1,
	0x48, 0x89, 0x06, 0x48, 0x89, 0x56, 0x08, 0x31, 0xc0, 0xc3,
}

// vdsoImage builds the vDSO page, its parameters zero.
func vdsoImage() []byte {
	b := make([]byte, 4096)
	le := binary.LittleEndian
	// ELF header: 64-bit, little-endian, ET_DYN, x86-64, 2 program headers.
	copy(b, []byte{0x7f, 'E', 'L', 'F', 2, 1, 1})
	le.PutUint16(b[16:], 3)  // ET_DYN
	le.PutUint16(b[18:], 62) // EM_X86_64
	le.PutUint32(b[20:], 1)
	le.PutUint64(b[32:], 64) // e_phoff
	le.PutUint16(b[52:], 64) // e_ehsize
	le.PutUint16(b[54:], 56) // e_phentsize
	le.PutUint16(b[56:], 2)  // e_phnum
	le.PutUint16(b[58:], 64) // e_shentsize
	phdr := func(i int, typ, flags uint32, off, size uint64) {
		p := b[64+56*i:]
		le.PutUint32(p, typ)
		le.PutUint32(p[4:], flags)
		le.PutUint64(p[8:], off)   // p_offset
		le.PutUint64(p[16:], off)  // p_vaddr
		le.PutUint64(p[24:], off)  // p_paddr
		le.PutUint64(p[32:], size) // p_filesz
		le.PutUint64(p[40:], size) // p_memsz
		le.PutUint64(p[48:], 8)
	}
	phdr(0, 1, 5, 0, 4096) // PT_LOAD, R+X
	// Strings: the symbol, the soname, the version.
	strs := "\x00__vdso_clock_gettime\x00linux-vdso.so.1\x00LINUX_2.6\x00"
	const nameOff, sonameOff, versionOff = 1, 22, 38
	dyn := [][2]uint64{{4, vdsoHash}, {5, vdsoStrtab}, {6, vdsoSymtab}, {10, uint64(len(strs))}, {11, 24},
		{0x6ffffff0, vdsoVersym}, {0x6ffffffc, vdsoVerdef}, {0x6ffffffd, 2}, {0, 0}}
	phdr(1, 2, 4, vdsoDynamic, uint64(16*len(dyn)))
	for i, d := range dyn {
		le.PutUint64(b[vdsoDynamic+16*i:], d[0])
		le.PutUint64(b[vdsoDynamic+16*i+8:], d[1])
	}
	// Version definitions: the base (the soname), then LINUX_2.6 as index 2.
	verdef := func(off int, flags, ndx uint16, hash, name, next uint32) {
		d := b[vdsoVerdef+off:]
		le.PutUint16(d, 1) // vd_version
		le.PutUint16(d[2:], flags)
		le.PutUint16(d[4:], ndx)
		le.PutUint16(d[6:], 1) // vd_cnt
		le.PutUint32(d[8:], hash)
		le.PutUint32(d[12:], 20) // vd_aux: right after
		le.PutUint32(d[16:], next)
		le.PutUint32(d[20:], name) // vda_name; vda_next 0
	}
	verdef(0, 1, 1, elfHash("linux-vdso.so.1"), sonameOff, 28)
	verdef(28, 0, 2, elfHash("LINUX_2.6"), versionOff, 0)
	le.PutUint16(b[vdsoVersym+2:], 2) // symbol 1 is LINUX_2.6's
	// DT_HASH: one bucket holding symbol 1; chains end at 0.
	for i, w := range []uint32{1, 2, 1, 0, 0} {
		le.PutUint32(b[vdsoHash+4*i:], w)
	}
	sym := b[vdsoSymtab+24:]
	le.PutUint32(sym, nameOff)
	sym[4] = 0x12 // STB_GLOBAL, STT_FUNC
	le.PutUint16(sym[6:], 1)
	le.PutUint64(sym[8:], vdsoCode)
	le.PutUint64(sym[16:], uint64(len(vdsoClockGettime)))
	copy(b[vdsoStrtab:], strs)
	copy(b[vdsoCode:], vdsoClockGettime)
	return b
}

// vdsoParams samples the thread's TSC and the shim's clocks together and
// returns the page's parameters.
func vdsoParams(th platform.Thread) ([]byte, error) {
	tsc, khz, err := th.TSC()
	if err != nil {
		return nil, err
	}
	if khz == 0 {
		return nil, errors.New("gen2: the platform reports a TSC of 0 kHz")
	}
	mono := time.Since(bootTime)
	real := time.Now().UnixNano() - int64(mono)
	// ns = delta * 1e6 / khz = delta * mult >> 32.
	mult := (uint64(1e6) << 32) / khz
	b := binary.LittleEndian.AppendUint64(nil, tsc)
	b = binary.LittleEndian.AppendUint64(b, mult)
	b = binary.LittleEndian.AppendUint64(b, uint64(mono))
	return binary.LittleEndian.AppendUint64(b, uint64(real)), nil
}

// elfHash is the System V ABI's symbol hash.
func elfHash(name string) uint32 {
	var h uint32
	for i := 0; i < len(name); i++ {
		h = h<<4 + uint32(name[i])
		g := h & 0xf0000000
		if g != 0 {
			h ^= g >> 24
		}
		h &^= g
	}
	return h
}
