// Package vsp holds the virtual service providers that the root hosts for
// enlightened guests: storage (SCSI over VMBus), network (netvsp and the
// virtual switch), the synthetic console and the integration services
// (heartbeat, shutdown, time sync, KVP). Each provider is a VMBus device
// served through package vmbus/host.
//
// No provider is implemented yet.
package vsp
