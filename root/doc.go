// Package root is the root partition service (vmms): it owns the host side
// of every partition — the partition registry, the lifecycle state machine
// and its jobs, persistence of definitions, supervision of one worker
// process per running partition, and hosting of the VMBus server and the
// virtual service providers (VSPs).
//
// Nothing is implemented here yet; the service arrives with the root
// service issue, on top of the VMBus core (package vmbus) and the worker
// (package partition).
package root
