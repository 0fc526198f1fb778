// Package xproc is the transport that carries VMBus between a host process
// and a guest process on one machine. It implements vmbus.HostTransport
// (Host) and vmbus.GuestTransport (Guest):
//
//   - guest memory is one memfd that both processes map (package
//     guestmem);
//   - the message path — HvPostMessage from the guest, SynIC SINT 2
//     messages from the host — is a Unix SOCK_SEQPACKET socket pair, one
//     frame per record;
//   - a guest-to-host doorbell (HvSignalEvent on a connection id) is an
//     eventfd the host owns and passes to the guest (which its platform
//     rings: a KVM ioeventfd, or the ptrace platform itself);
//   - a host-to-guest channel interrupt sets the channel's flag bit in the
//     SINT 2 slot of the guest's SynIC event-flags page (SIEFP, in guest
//     memory) and, only when the bit went from 0 to 1, writes the guest's
//     single "SINT 2 interrupt" eventfd (on KVM: an irqfd).
//
// # Frames
//
// Every frame is one SOCK_SEQPACKET record, little-endian: a 1-byte kind,
// 3 reserved bytes (zero), then the kind's fields. Reserved bytes must be
// zero; a frame is exactly as long as its fields.
//
//	kind 1 hello     guest->host  +4 reserved u32 (0)   +8 siefp_gpa u64    16 bytes; SCM_RIGHTS: the guest's interrupt eventfd
//	kind 2 post      guest->host  +4 connection_id u32  +8 payload          8..248 bytes (payload <= 240)
//	kind 3 message   host->guest  +4 vp u32             +8 payload          8..248 bytes (payload <= 240)
//	kind 4 doorbell  host->guest  +4 connection_id u32                      8 bytes; SCM_RIGHTS: the doorbell eventfd
//	kind 5 gone      host->guest  +4 connection_id u32                      8 bytes; the doorbell was closed
//
// The hello's GPA sits at +8 so that it is naturally aligned. The guest
// sends one hello, first, from Dial. The host sends a doorbell frame from
// RegisterDoorbell before it returns, so the socket's ordering guarantees
// the guest holds the eventfd before any later message (such as
// OPENCHANNEL_RESULT) tells it to use it.
//
// # Trust
//
// The host treats everything from the guest as hostile. A frame that is
// too short or too long, has an unknown kind or reserved bits set, carries
// fds it should not (or lacks the one it should), a hello whose event-flags
// page is unaligned, outside guest memory or whose fd is not an eventfd, and
// any second hello, is counted in HostStats.BadFrames and dropped, every fd
// it carried closed; the host goes on. A zero-length record is a bad frame
// unless the guest has hung up (SOCK_SEQPACKET reports both as a read of 0
// bytes; the host tells them apart with POLLRDHUP). The guest trusts its
// host but still checks lengths and closes fds it did not expect.
//
// # Concurrency
//
// Host: wmu orders doorbell and gone frames on the socket with the changes
// to the doorbell table they announce; mu guards the rest of the shared
// state. Lock order: wmu, then mu. Close closes the socket before it takes
// wmu, so a write blocked on a guest that stopped reading never keeps the
// host from closing: closing the socket fails that write.
//
// Guest: mu guards the doorbell and waiter tables. One goroutine reads the
// socket (messages to RecvMessage, doorbell frames applied in socket order)
// and one reads the interrupt eventfd (drains the event flags, wakes
// waiters).
package xproc
