// Package hv is the enlightened guest's side of Partita's Generation 2
// ABI, for a Go program running as a partition's guest: the hypercall
// page (HvPostMessage, HvSignalEvent, Partita's EOM, wait and physical
// page calls), the SynIC message and event-flags pages of SINT 2, and a
// vmbus.GuestTransport over them, so that package vmbus/client runs
// inside the partition exactly as it runs in tests over the
// cross-process transport.
//
// Shared memory (ring buffers) comes from HvCallPartitaAllocPages: pages
// the program can both use, at gen2.PhysicalWindow plus their guest
// physical address, and name to the host. Transport.Memory sees only the
// pages the transport allocated.
//
// The addresses and call codes are the ABI's (package partition/gen2);
// this package repeats them rather than import the worker.
//
// This is one of the low-level packages allowed unsafe: it turns the
// ABI's fixed addresses into memory. Outside a Generation 2 partition the
// pages are not there and any use faults.
package hv
