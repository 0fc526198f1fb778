// Package partition holds what runs a child partition, one package per
// piece:
//
//   - partition/vmwp: the worker process's program (one process per running
//     partition, started by the root service or standalone);
//   - partition/gen1: the Generation 1 machine, a PC with firmware and
//     emulated legacy devices;
//   - partition/gen2: the Generation 2 machine, a static x86-64 program and
//     the guest kernel shim that serves it, with the hypercall page and
//     SynIC;
//   - partition/platform: the seam between the machines and what runs their
//     processors, with its back ends partition/platform/kvm (a KVM virtual
//     machine) and partition/platform/ptrace (a program's threads as
//     native threads of a traced stub process);
//   - partition/accel: the --accel choice of platform;
//   - partition/control: the protocol between the root and a worker;
//   - partition/elf: the loader of Generation 2 programs.
//
// A partition's guest physical memory (one memfd, shared by the worker and
// the root) is package guestmem, below everything that uses it.
package partition
