package chanmsg

import "fmt"

// Version is a VMBus protocol version as carried in INITIATE_CONTACT:
// (major << 16) | minor.
type Version uint32

// Protocol versions in Hyper-V's numbering, with the Windows release that
// introduced each.
const (
	Version0_13 Version = 0x0000_000D // Windows Server 2008
	Version1_1  Version = 0x0001_0001 // Windows 7 / Server 2008 R2
	Version2_4  Version = 0x0002_0004 // Windows 8 / Server 2012
	Version3_0  Version = 0x0003_0000 // Windows 8.1 / Server 2012 R2
	Version4_0  Version = 0x0004_0000 // Windows 10
	Version4_1  Version = 0x0004_0001 // Windows 10 RS3
	Version5_0  Version = 0x0005_0000 // later Windows 10
	Version5_1  Version = 0x0005_0001 // Windows 10 RS4
	Version5_2  Version = 0x0005_0002 // Windows Server 2019 / RS5
	Version5_3  Version = 0x0005_0003 // Windows Server 2022
	// Version6_0 is openvmm's "Copper". It is known here so that it prints
	// and compares sensibly, but it is not supported: its feature flags and
	// longer message variants (OpenChannel2, VersionResponse2/3, the client
	// id in INITIATE_CONTACT) are not implemented.
	Version6_0 Version = 0x0006_0000
)

// SupportedVersions lists, newest first, the versions a Partita host
// accepts and a Partita client offers. It matches the list Linux guests try
// (5.3 down to 2.4); older versions need the pre-Win8 interrupt page, which
// Partita does not implement.
var SupportedVersions = []Version{
	Version5_3, Version5_2, Version5_1, Version5_0,
	Version4_1, Version4_0, Version3_0, Version2_4,
}

// Major returns the major version number.
func (v Version) Major() uint16 { return uint16(v >> 16) }

// Minor returns the minor version number.
func (v Version) Minor() uint16 { return uint16(v) }

// String returns "major.minor", e.g. "5.3" or "0.13".
func (v Version) String() string { return fmt.Sprintf("%d.%d", v.Major(), v.Minor()) }

// Supported reports whether v is in SupportedVersions.
func (v Version) Supported() bool {
	for _, s := range SupportedVersions {
		if v == s {
			return true
		}
	}
	return false
}

// Connection ids for HvPostMessage / HvSignalEvent, and the SynIC SINT VMBus
// uses.
const (
	// MessageConnectionID is where a guest posts control messages for
	// protocols before 5.0, and the id a host usually hands out in
	// VERSION_RESPONSE.MsgConnID for 5.0 and later.
	MessageConnectionID = 1
	// EventConnectionID is the shared event connection of the pre-Win8
	// interrupt page; Linux also uses it as a channel's signal connection
	// when the offer does not name one.
	EventConnectionID = 2
	// MonitorConnectionID is the monitor (MNF) facility.
	MonitorConnectionID = 3
	// MessageConnectionID4 is the "multi-client" connection a guest posts
	// INITIATE_CONTACT to for protocol 5.0 and later. A host that does not
	// register it makes such guests fall back to 4.x.
	MessageConnectionID4 = 4

	// VMBusMessageSINT is the SynIC interrupt source used for VMBus
	// messages and channel events.
	VMBusMessageSINT = 2
)

// VERSION_RESPONSE connection_state values (Linux ignores them).
const (
	ConnectionSuccessful         = 0
	ConnectionFailedLowResources = 1
	ConnectionFailedUnknown      = 2
)

// NTSTATUS values used in the status fields of result messages
// (OPENCHANNEL_RESULT, GPADL_CREATED, MODIFYCHANNEL_RESPONSE,
// TL_CONNECT_RESULT). Guests treat any non-zero status as failure.
const (
	StatusSuccess           uint32 = 0
	StatusUnsuccessful      uint32 = 0x8000_FFFF
	StatusConnectionRefused uint32 = 0xC000_0236
)
