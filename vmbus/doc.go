// Package vmbus is the root of Partita's VMBus implementation, wire-compatible
// with Hyper-V's. Its sub-packages own one layer each:
//
//   - vmbus/packet: the data-plane packet descriptor and packet types;
//   - vmbus/ring: the shared-memory ring buffers and their signalling rules;
//   - vmbus/chanmsg: the channel-management messages (offers, GPADLs, opens);
//   - vmbus/host and vmbus/client: the channel server a root runs and the
//     client a guest runs, as state machines over a Transport;
//   - vmbus/xproc: a Transport between two processes (shared memfd,
//     eventfd doorbells, a Unix socket message path), and the Relay a
//     Generation 2 worker uses to carry it to the vCPUs;
//   - vmbus/synic: the SynIC event-flags layout and the guest's waiters;
//   - vmbus/uart and vmbus/ic: the wire formats of the synthetic console
//     and of the integration services;
//   - vmbus/echo: a test device that checks a packet stream.
//
// Package vmbus itself holds what those layers share: the Transport
// interfaces that separate the protocol from KVM.
package vmbus
