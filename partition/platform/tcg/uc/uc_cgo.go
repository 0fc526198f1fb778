// Package uc is Partita's binding to Unicorn (QEMU's TCG as a C library,
// Debian's libunicorn-dev 2.0.1): one x86 engine, its memory map, its
// registers, and its hooks, as much as the tcg platform needs and no
// more. All of cgo and unsafe of the platform is here.
//
// Hooks that run often stay in C (shim.c): before every translated block
// the engine checks two flags, so that another goroutine can make it
// stop (Kick) or stop where interrupts are enabled (WantInterruptWindow)
// without calling uc_emu_stop from another thread, which corrupts the
// guest in 2.0.1. Port I/O, MMIO, CPUID, INT n and exceptions call into
// Go (Hooks), on the thread that runs the engine.
//
// The library is loaded with dlopen the first time an engine or its
// version is asked for, not linked: building needs its header
// (libunicorn-dev), running a tcg partition needs libunicorn.so.2
// (libunicorn2), and a process that never runs one neither loads it nor
// pays the ~18 ms its loading costs.
package uc

/*
#cgo LDFLAGS: -ldl
#include <stdlib.h>
#include "shim.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"unsafe"
)

// Hooks is what the engine calls while it runs; every method runs on the
// thread inside Start.
type Hooks interface {
	// In serves an IN of size bytes.
	In(port uint16, size int) uint32
	// Out serves an OUT.
	Out(port uint16, size int, value uint32)
	// MMIORead and MMIOWrite serve accesses to MMIO ranges (MapMMIO).
	MMIORead(addr uint64, size int) uint64
	MMIOWrite(addr uint64, size int, value uint64)
	// Interrupt is INT n or an exception the engine raised: the CPU does
	// not deliver either itself.
	Interrupt(vector uint32)
	// CPUID answers CPUID from EAX and ECX; true if it did (it wrote
	// the registers), false for the engine's own answer.
	CPUID() bool
	// WriteProtected is a store to read-only memory, which the engine
	// then drops, as a PC's bus drops a store to ROM.
	WriteProtected(addr uint64, size int)
	// Unmapped is an access to an address nothing maps; the engine stops.
	Unmapped(write, fetch bool, addr uint64, size int)
}

// Prot is a mapping's protection.
type Prot int

const (
	ProtRead  Prot = C.UC_PROT_READ
	ProtWrite Prot = C.UC_PROT_WRITE
	ProtExec  Prot = C.UC_PROT_EXEC
)

// Engine is one x86 CPU, opened in 32-bit mode.
type Engine struct {
	c     *C.struct_pt_engine // C memory: the hooks keep a pointer to it
	slot  int                 // the engine's index in engines, which the C side keeps
	hooks Hooks

	mu   sync.Mutex
	mmio map[uint64]*C.struct_pt_mmio // MMIO ranges by base; guarded by mu
}

// Errors: every error of the library wraps ErrUnicorn; an invalid
// instruction also wraps ErrInvalidInstruction.
var (
	ErrUnicorn            = errors.New("unicorn")
	ErrInvalidInstruction = errors.New("invalid instruction")
)

func ucErr(what string, e C.uc_err) error {
	if e == C.UC_ERR_OK {
		return nil
	}
	switch e {
	case C.UC_ERR_INSN_INVALID:
		return fmt.Errorf("%w: %w: %s", ErrUnicorn, ErrInvalidInstruction, what)
	}
	return fmt.Errorf("%w: %s: %s", ErrUnicorn, what, C.GoString(C.pt_uc_strerror(e)))
}

// ErrNoLibrary: libunicorn.so.2 (Debian's libunicorn2) does not load.
var ErrNoLibrary = errors.New("uc: cannot load libunicorn.so.2 (apt-get install libunicorn2)")

var (
	loadOnce sync.Once
	loadErr  error
)

// load loads the library the first time a caller needs it.
func load() error {
	loadOnce.Do(func() {
		if why := C.pt_load(); why != nil {
			loadErr = fmt.Errorf("%w: %s", ErrNoLibrary, C.GoString(why))
		}
	})
	return loadErr
}

// Version loads the library and returns its version, major and minor.
func Version() (major, minor int, err error) {
	if err := load(); err != nil {
		return 0, 0, err
	}
	var maj, min C.uint
	C.pt_uc_version(&maj, &min)
	return int(maj), int(min), nil
}

// Open makes an engine whose hooks are h.
func Open(h Hooks) (*Engine, error) {
	if err := load(); err != nil {
		return nil, err
	}
	// SAFETY: the C struct is allocated in C memory, so the pointers the
	// hooks keep to it stay valid and are not Go pointers; Close frees it.
	c := (*C.struct_pt_engine)(C.calloc(1, C.size_t(unsafe.Sizeof(C.struct_pt_engine{}))))
	if c == nil {
		return nil, errors.New("uc: out of memory")
	}
	e := &Engine{c: c, hooks: h, mmio: map[uint64]*C.struct_pt_mmio{}}
	e.slot = register(e)
	c.handle = C.uintptr_t(e.slot)
	if err := ucErr("open", C.pt_open(c)); err != nil {
		unregister(e.slot)
		C.free(unsafe.Pointer(c))
		return nil, err
	}
	return e, nil
}

// Close releases the engine; nothing may use it after.
func (e *Engine) Close() error {
	err := ucErr("close", C.pt_uc_close(e.c.uc))
	for _, m := range e.mmio {
		C.free(unsafe.Pointer(m))
	}
	unregister(e.slot)
	C.free(unsafe.Pointer(e.c))
	return err
}

// The open engines, by slot: the C side names its engine by slot, and
// every hook finds it here without a lock (a cgo.Handle costs a sync.Map
// lookup per port access). Changes copy the table under enginesMu.
var (
	enginesMu sync.Mutex
	engines   atomic.Pointer[[]*Engine]
)

func register(e *Engine) int {
	enginesMu.Lock()
	defer enginesMu.Unlock()
	var table []*Engine
	if t := engines.Load(); t != nil {
		table = append(table, *t...)
	}
	slot := len(table)
	for i, x := range table {
		if x == nil {
			slot = i
			break
		}
	}
	if slot == len(table) {
		table = append(table, nil)
	}
	table[slot] = e
	engines.Store(&table)
	return slot
}

func unregister(slot int) {
	enginesMu.Lock()
	defer enginesMu.Unlock()
	table := append([]*Engine(nil), *engines.Load()...)
	table[slot] = nil
	engines.Store(&table)
}

// MapPtr makes mem guest memory at addr. SAFETY: mem must be page
// aligned and stay mapped (not Go-heap memory) until Unmap: the engine
// keeps its address and reads and writes it while it runs.
//
// Without ProtWrite the memory is ROM: a store to it reaches the hooks'
// WriteProtected and is dropped. (uc_mem_map_ptr records the permission
// but leaves the region writable to the TLB; uc_mem_protect marks it
// read-only, so that a store the hook lets through is discarded.)
func (e *Engine) MapPtr(addr uint64, mem []byte, prot Prot) error {
	if len(mem) == 0 {
		return fmt.Errorf("uc: empty mapping at %#x", addr)
	}
	what := fmt.Sprintf("map %#x+%#x", addr, len(mem))
	if err := ucErr(what, C.pt_uc_mem_map_ptr(e.c.uc, C.uint64_t(addr), C.size_t(len(mem)), C.uint32_t(prot), unsafe.Pointer(unsafe.SliceData(mem)))); err != nil {
		return err
	}
	if prot&ProtWrite != 0 {
		return nil
	}
	if err := ucErr(what+" read-only", C.pt_uc_mem_protect(e.c.uc, C.uint64_t(addr), C.size_t(len(mem)), C.uint32_t(prot))); err != nil {
		C.pt_uc_mem_unmap(e.c.uc, C.uint64_t(addr), C.size_t(len(mem)))
		return err
	}
	return nil
}

// MapMMIO makes [addr, addr+size) an MMIO range: accesses go to the
// hooks' MMIORead and MMIOWrite with their address.
func (e *Engine) MapMMIO(addr, size uint64) error {
	m := (*C.struct_pt_mmio)(C.calloc(1, C.size_t(unsafe.Sizeof(C.struct_pt_mmio{}))))
	if m == nil {
		return errors.New("uc: out of memory")
	}
	m.handle, m.base = C.uintptr_t(e.slot), C.uint64_t(addr)
	if err := ucErr(fmt.Sprintf("map MMIO %#x+%#x", addr, size), C.pt_mmio_map(e.c, m, C.uint64_t(size))); err != nil {
		C.free(unsafe.Pointer(m))
		return err
	}
	e.mu.Lock()
	e.mmio[addr] = m
	e.mu.Unlock()
	return nil
}

// Unmap removes the mapping (memory or MMIO) that starts at addr and is
// size long.
func (e *Engine) Unmap(addr, size uint64) error {
	if err := ucErr(fmt.Sprintf("unmap %#x+%#x", addr, size), C.pt_uc_mem_unmap(e.c.uc, C.uint64_t(addr), C.size_t(size))); err != nil {
		return err
	}
	e.mu.Lock()
	if m, ok := e.mmio[addr]; ok {
		C.free(unsafe.Pointer(m))
		delete(e.mmio, addr)
	}
	e.mu.Unlock()
	return nil
}

// Start runs the guest from EIP begin (an offset in CS) until a hook
// stops it, HLT, or a fault the engine cannot take (the error). Stopped
// says afterwards whether Kick or the interrupt window stopped it.
func (e *Engine) Start(begin uint64) error {
	e.c.why = 0
	return ucErr("run", C.pt_uc_emu_start(e.c.uc, C.uint64_t(begin), 0, 0, 0))
}

// StopCause is why the engine's last Start ended early.
type StopCause int

const (
	NotStopped     StopCause = 0                // HLT, a hook's Stop, or an error
	StoppedByKick  StopCause = C.PT_STOP_KICK   // Kick
	StoppedAtIRQOn StopCause = C.PT_STOP_WINDOW // WantInterruptWindow, with IF set
)

// Stopped says whether Kick or the interrupt window ended the last Start
// (read it after Start returns).
func (e *Engine) Stopped() StopCause { return StopCause(e.c.why) }

// DropCode drops the engine's translations of code in the 4 KiB page at
// addr. Unicorn 2.0.1 reads addr as an address the processor would
// fetch from, through its current mode: a guest physical address only
// while paging is off. Not from inside a hook. (Unicorn's other way,
// UC_CTL_TB_FLUSH, takes seconds here.)
func (e *Engine) DropCode(addr uint64) error {
	page := addr &^ 0xFFF
	return ucErr("drop translated code", C.pt_uc_remove_cache(e.c.uc, C.uint64_t(page), C.uint64_t(page+0x1000)))
}

// Context is a processor's state kept outside the engine: several
// processors take turns on one engine, each saving its state when
// another takes it.
type Context struct{ c *C.uc_context }

// NewContext allocates a context (in C memory; Free releases it).
func (e *Engine) NewContext() (*Context, error) {
	var c *C.uc_context
	if err := ucErr("allocate a context", C.pt_uc_context_alloc(e.c.uc, &c)); err != nil {
		return nil, err
	}
	return &Context{c}, nil
}

// Save copies the engine's processor state into ctx; Restore copies it
// back. Not from inside a hook.
func (e *Engine) Save(ctx *Context) error {
	return ucErr("save a context", C.pt_uc_context_save(e.c.uc, ctx.c))
}

func (e *Engine) Restore(ctx *Context) error {
	return ucErr("restore a context", C.pt_uc_context_restore(e.c.uc, ctx.c))
}

// Free releases the context.
func (c *Context) Free() {
	if c != nil && c.c != nil {
		C.pt_uc_context_free(c.c)
		c.c = nil
	}
}

// Stop stops the engine from inside a hook.
func (e *Engine) Stop() { C.pt_uc_emu_stop(e.c.uc) }

// Kick makes the running engine stop before its next block, from any
// goroutine; ClearKick ends that.
func (e *Engine) Kick()      { C.pt_set(&e.c.stop, 1) }
func (e *Engine) ClearKick() { C.pt_set(&e.c.stop, 0) }

// WantInterruptWindow makes the engine stop before the next block it
// runs with interrupts enabled (on) or not (off).
func (e *Engine) WantInterruptWindow(on bool) {
	v := C.int(0)
	if on {
		v = 1
	}
	C.pt_set(&e.c.irq, v)
}

// Reg names a register (Unicorn's UC_X86_REG_*).
type Reg int

// Registers the platform uses.
const (
	EAX    Reg = C.UC_X86_REG_EAX
	EBX    Reg = C.UC_X86_REG_EBX
	ECX    Reg = C.UC_X86_REG_ECX
	EDX    Reg = C.UC_X86_REG_EDX
	ESI    Reg = C.UC_X86_REG_ESI
	EDI    Reg = C.UC_X86_REG_EDI
	EBP    Reg = C.UC_X86_REG_EBP
	ESP    Reg = C.UC_X86_REG_ESP
	EIP    Reg = C.UC_X86_REG_EIP
	EFLAGS Reg = C.UC_X86_REG_EFLAGS
	CS     Reg = C.UC_X86_REG_CS
	DS     Reg = C.UC_X86_REG_DS
	ES     Reg = C.UC_X86_REG_ES
	SS     Reg = C.UC_X86_REG_SS
	FS     Reg = C.UC_X86_REG_FS
	GS     Reg = C.UC_X86_REG_GS
	CR0    Reg = C.UC_X86_REG_CR0
	CR3    Reg = C.UC_X86_REG_CR3
	CR4    Reg = C.UC_X86_REG_CR4
	IDTR   Reg = C.UC_X86_REG_IDTR
	GDTR   Reg = C.UC_X86_REG_GDTR
)

// Read reads a register.
func (e *Engine) Read(r Reg) (uint64, error) {
	var v C.uint64_t
	if err := ucErr("read register", C.pt_uc_reg_read(e.c.uc, C.int(r), unsafe.Pointer(&v))); err != nil {
		return 0, err
	}
	return uint64(v), nil
}

// Write writes a register.
func (e *Engine) Write(r Reg, v uint64) error {
	cv := C.uint64_t(v)
	return ucErr("write register", C.pt_uc_reg_write(e.c.uc, C.int(r), unsafe.Pointer(&cv)))
}

// Table is a descriptor-table register (IDTR, GDTR).
type Table struct {
	Base  uint64
	Limit uint32
}

// ReadTable reads IDTR or GDTR.
func (e *Engine) ReadTable(r Reg) (Table, error) {
	var t C.uc_x86_mmr
	if err := ucErr("read table register", C.pt_uc_reg_read(e.c.uc, C.int(r), unsafe.Pointer(&t))); err != nil {
		return Table{}, err
	}
	return Table{Base: uint64(t.base), Limit: uint32(t.limit)}, nil
}

// WriteTable writes IDTR or GDTR.
func (e *Engine) WriteTable(r Reg, t Table) error {
	var m C.uc_x86_mmr
	m.base, m.limit = C.uint64_t(t.Base), C.uint32_t(t.Limit)
	return ucErr("write table register", C.pt_uc_reg_write(e.c.uc, C.int(r), unsafe.Pointer(&m)))
}

// ReadMem reads guest memory (mapped or MMIO).
func (e *Engine) ReadMem(addr uint64, b []byte) error {
	if len(b) == 0 {
		return nil
	}
	return ucErr("read memory", C.pt_uc_mem_read(e.c.uc, C.uint64_t(addr), unsafe.Pointer(unsafe.SliceData(b)), C.size_t(len(b))))
}

// WriteMem writes guest memory (writable mappings only).
func (e *Engine) WriteMem(addr uint64, b []byte) error {
	if len(b) == 0 {
		return nil
	}
	return ucErr("write memory", C.pt_uc_mem_write(e.c.uc, C.uint64_t(addr), unsafe.Pointer(unsafe.SliceData(b)), C.size_t(len(b))))
}

// engineOf is the engine in slot h; hooks run only while it is open.
func engineOf(h C.uintptr_t) *Engine { return (*engines.Load())[h] }

//export goIn
func goIn(h C.uintptr_t, port C.uint32_t, size C.int) C.uint32_t {
	return C.uint32_t(engineOf(h).hooks.In(uint16(port), int(size)))
}

//export goOut
func goOut(h C.uintptr_t, port C.uint32_t, size C.int, v C.uint32_t) {
	engineOf(h).hooks.Out(uint16(port), int(size), uint32(v))
}

//export goInterrupt
func goInterrupt(h C.uintptr_t, vector C.uint32_t) { engineOf(h).hooks.Interrupt(uint32(vector)) }

//export goCPUID
func goCPUID(h C.uintptr_t) C.int {
	if engineOf(h).hooks.CPUID() {
		return 1
	}
	return 0
}

//export goWriteProt
func goWriteProt(h C.uintptr_t, addr C.uint64_t, size C.int) {
	engineOf(h).hooks.WriteProtected(uint64(addr), int(size))
}

//export goUnmapped
func goUnmapped(h C.uintptr_t, typ C.int, addr C.uint64_t, size C.int) {
	write := typ == C.UC_MEM_WRITE_UNMAPPED
	fetch := typ == C.UC_MEM_FETCH_UNMAPPED
	engineOf(h).hooks.Unmapped(write, fetch, uint64(addr), int(size))
}

//export goMMIORead
func goMMIORead(h C.uintptr_t, addr C.uint64_t, size C.unsigned) C.uint64_t {
	return C.uint64_t(engineOf(h).hooks.MMIORead(uint64(addr), int(size)))
}

//export goMMIOWrite
func goMMIOWrite(h C.uintptr_t, addr C.uint64_t, size C.unsigned, v C.uint64_t) {
	engineOf(h).hooks.MMIOWrite(uint64(addr), int(size), uint64(v))
}
