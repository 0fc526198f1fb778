// Package root is the root partition service (vmms): it owns the host side
// of every partition — the partition registry, the lifecycle state machine
// and its jobs, persistence of definitions, supervision of one worker
// process per running partition, and (with Generation 2 partitions) hosting
// of the VMBus server and the virtual service providers (VSPs).
package root
