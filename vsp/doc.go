// Package vsp holds the virtual service providers that the root hosts for
// enlightened guests: storage (SCSI over VMBus), network (netvsp and the
// virtual switch), the synthetic console and the integration services
// (heartbeat, shutdown, time sync, KVP). Each provider is a VMBus device
// served through package vmbus/host.
//
// Providers so far: vsp/console (the synthetic console, over the VMBus
// UART protocol of vmbus/uart), vsp/ic (the integration services, in the
// IC framing of vmbus/ic), and vsp/disk (disk images, which the
// Generation 1 IDE disk uses; storage over VMBus is to come).
package vsp
