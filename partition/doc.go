// Package partition owns what a child partition is: its definition and
// states, and the worker process (vmwp) that runs it — the KVM virtual
// machine, its virtual processors, its guest memory, the boot loaders (BIOS
// ROM for Generation 1, static ELF for Generation 2), the guest kernel shim
// and the hypercall/SynIC handling.
//
// Sub-packages hold the low-level pieces; package partition/memory owns a
// partition's guest physical memory (one memfd, shared by the worker and the
// root).
package partition
