package chanmsg

// This file holds the fixed-layout messages. Field comments give the wire
// offset from the start of the message (header included).

const (
	offerChannelSize     = 196
	openChannelSize      = 148
	tlConnectRequestSize = 40
	tlConnectSiloSize    = 56
)

// Offer channel flags (OfferChannel.Flags, Hyper-V chn_flags), with the
// names Linux uses.
const (
	OfferFlagEnumerateDeviceInterface     uint16 = 0x0001
	OfferFlagServerSupportsTransferPages  uint16 = 0x0002
	OfferFlagServerSupportsGPADLs         uint16 = 0x0004
	OfferFlagNamedPipeMode                uint16 = 0x0010
	OfferFlagLoopbackOffer                uint16 = 0x0100
	OfferFlagParentOffer                  uint16 = 0x0200
	OfferFlagRequestMonitoredNotification uint16 = 0x0400
	OfferFlagTLNPIProvider                uint16 = 0x2000 // hv_sock
)

// OfferChannel announces a channel to the guest (host to guest, 196 bytes).
// It mirrors Hyper-V vmbus_channel_offer_channel, with the embedded
// vmbus_channel_offer flattened.
type OfferChannel struct {
	InterfaceType     GUID // +8  device class (if_type); hv_sock: service id
	InterfaceInstance GUID // +24 device instance; sub-channels repeat the primary's
	// +40: 16 reserved bytes, written as zero and ignored.
	Flags                 uint16    // +56 OfferFlag...
	MMIOMegabytes         uint16    // +58 MMIO space the device wants
	UserDefined           [120]byte // +60 device-specific (pipe mode, hv_sock parameters)
	SubChannelIndex       uint16    // +180 0 = primary
	MMIOMegabytesOptional uint16    // +182 (Linux: reserved3)
	ChildRelID            uint32    // +184 relative channel id, 1..2047 in practice
	MonitorID             uint8     // +188 MNF id, valid if MonitorAllocated
	MonitorAllocated      bool      // +189 bit 0; the other bits are reserved
	IsDedicatedInterrupt  bool      // +190 bit 0 of a u16; the other bits are reserved
	ConnectionID          uint32    // +192 connection id the guest signals the channel on
}

func (*OfferChannel) Type() Type { return TypeOfferChannel }

func (m *OfferChannel) AppendTo(b []byte) []byte {
	b = appendHeader(b, TypeOfferChannel)
	b = append(b, m.InterfaceType[:]...)
	b = append(b, m.InterfaceInstance[:]...)
	b = append(b, make([]byte, 16)...) // reserved
	b = appendU16(b, m.Flags)
	b = appendU16(b, m.MMIOMegabytes)
	b = append(b, m.UserDefined[:]...)
	b = appendU16(b, m.SubChannelIndex)
	b = appendU16(b, m.MMIOMegabytesOptional)
	b = appendU32(b, m.ChildRelID)
	b = append(b, m.MonitorID, bit0(m.MonitorAllocated))
	b = appendU16(b, uint16(bit0(m.IsDedicatedInterrupt)))
	return appendU32(b, m.ConnectionID)
}

func (m *OfferChannel) decode(b []byte) error {
	m.InterfaceType = guid(b, 8)
	m.InterfaceInstance = guid(b, 24)
	m.Flags = u16(b, 56)
	m.MMIOMegabytes = u16(b, 58)
	m.UserDefined = [120]byte(b[60:180])
	m.SubChannelIndex = u16(b, 180)
	m.MMIOMegabytesOptional = u16(b, 182)
	m.ChildRelID = u32(b, 184)
	m.MonitorID = b[188]
	m.MonitorAllocated = b[189]&1 != 0
	m.IsDedicatedInterrupt = b[190]&1 != 0
	m.ConnectionID = u32(b, 192)
	return nil
}

// RescindChannelOffer withdraws an offer (host to guest, 12 bytes). It
// mirrors Hyper-V vmbus_channel_rescind_offer.
type RescindChannelOffer struct {
	ChildRelID uint32 // +8
}

func (*RescindChannelOffer) Type() Type { return TypeRescindChannelOffer }

func (m *RescindChannelOffer) AppendTo(b []byte) []byte {
	return appendU32(appendHeader(b, TypeRescindChannelOffer), m.ChildRelID)
}

func (m *RescindChannelOffer) decode(b []byte) error {
	m.ChildRelID = u32(b, 8)
	return nil
}

// RequestOffers asks the host to send its offers (guest to host, 8 bytes,
// header only). It mirrors Hyper-V vmbus_channel_message_header with
// CHANNELMSG_REQUESTOFFERS.
type RequestOffers struct{}

func (*RequestOffers) Type() Type { return TypeRequestOffers }

func (*RequestOffers) AppendTo(b []byte) []byte { return appendHeader(b, TypeRequestOffers) }

func (*RequestOffers) decode([]byte) error { return nil }

// AllOffersDelivered follows the last offer (host to guest, 8 bytes, header
// only). It mirrors Hyper-V vmbus_channel_message_header with
// CHANNELMSG_ALLOFFERS_DELIVERED.
type AllOffersDelivered struct{}

func (*AllOffersDelivered) Type() Type { return TypeAllOffersDelivered }

func (*AllOffersDelivered) AppendTo(b []byte) []byte {
	return appendHeader(b, TypeAllOffersDelivered)
}

func (*AllOffersDelivered) decode([]byte) error { return nil }

// OpenChannel opens an offered channel on a ring GPADL (guest to host, 148
// bytes). It mirrors Hyper-V vmbus_channel_open_channel. The 6.0
// OpenChannel2 fields after +148 are not decoded.
type OpenChannel struct {
	ChildRelID uint32 // +8
	// OpenID is echoed in the result (Linux sets it to ChildRelID).
	OpenID          uint32 // +12
	RingBufferGPADL uint32 // +16 GPADL holding both rings
	// TargetVP is the VP index for host-to-guest interrupts of this
	// channel; openvmm reads 0xFFFFFFFF as "interrupts disabled".
	TargetVP uint32 // +20
	// DownstreamRingBufferPageOffset is the page index, inside the GPADL,
	// of the host-to-guest ring.
	DownstreamRingBufferPageOffset uint32    // +24
	UserData                       [120]byte // +28 driver-defined
}

func (*OpenChannel) Type() Type { return TypeOpenChannel }

func (m *OpenChannel) AppendTo(b []byte) []byte {
	b = appendHeader(b, TypeOpenChannel)
	b = appendU32(b, m.ChildRelID)
	b = appendU32(b, m.OpenID)
	b = appendU32(b, m.RingBufferGPADL)
	b = appendU32(b, m.TargetVP)
	b = appendU32(b, m.DownstreamRingBufferPageOffset)
	return append(b, m.UserData[:]...)
}

func (m *OpenChannel) decode(b []byte) error {
	m.ChildRelID = u32(b, 8)
	m.OpenID = u32(b, 12)
	m.RingBufferGPADL = u32(b, 16)
	m.TargetVP = u32(b, 20)
	m.DownstreamRingBufferPageOffset = u32(b, 24)
	m.UserData = [120]byte(b[28:148])
	return nil
}

// OpenChannelResult answers OpenChannel (host to guest, 20 bytes). It
// mirrors Hyper-V vmbus_channel_open_result. Guests match it to their
// request by (ChildRelID, OpenID).
type OpenChannelResult struct {
	ChildRelID uint32 // +8
	OpenID     uint32 // +12
	Status     uint32 // +16 StatusSuccess or a failure NTSTATUS
}

func (*OpenChannelResult) Type() Type { return TypeOpenChannelResult }

func (m *OpenChannelResult) AppendTo(b []byte) []byte {
	b = appendHeader(b, TypeOpenChannelResult)
	b = appendU32(b, m.ChildRelID)
	b = appendU32(b, m.OpenID)
	return appendU32(b, m.Status)
}

func (m *OpenChannelResult) decode(b []byte) error {
	m.ChildRelID = u32(b, 8)
	m.OpenID = u32(b, 12)
	m.Status = u32(b, 16)
	return nil
}

// CloseChannel closes an open channel (guest to host, 12 bytes, no reply).
// It mirrors Hyper-V vmbus_channel_close_channel.
type CloseChannel struct {
	ChildRelID uint32 // +8
}

func (*CloseChannel) Type() Type { return TypeCloseChannel }

func (m *CloseChannel) AppendTo(b []byte) []byte {
	return appendU32(appendHeader(b, TypeCloseChannel), m.ChildRelID)
}

func (m *CloseChannel) decode(b []byte) error {
	m.ChildRelID = u32(b, 8)
	return nil
}

// GPADLCreated answers a complete GPADL (host to guest, 20 bytes). It
// mirrors Hyper-V vmbus_channel_gpadl_created. Guests match it by
// (ChildRelID, GPADL).
type GPADLCreated struct {
	ChildRelID uint32 // +8
	GPADL      uint32 // +12
	Status     uint32 // +16 creation_status: StatusSuccess or a failure NTSTATUS
}

func (*GPADLCreated) Type() Type { return TypeGPADLCreated }

func (m *GPADLCreated) AppendTo(b []byte) []byte {
	b = appendHeader(b, TypeGPADLCreated)
	b = appendU32(b, m.ChildRelID)
	b = appendU32(b, m.GPADL)
	return appendU32(b, m.Status)
}

func (m *GPADLCreated) decode(b []byte) error {
	m.ChildRelID = u32(b, 8)
	m.GPADL = u32(b, 12)
	m.Status = u32(b, 16)
	return nil
}

// GPADLTeardown releases a GPADL (guest to host, 16 bytes). It mirrors
// Hyper-V vmbus_channel_gpadl_teardown.
type GPADLTeardown struct {
	ChildRelID uint32 // +8
	GPADL      uint32 // +12
}

func (*GPADLTeardown) Type() Type { return TypeGPADLTeardown }

func (m *GPADLTeardown) AppendTo(b []byte) []byte {
	b = appendHeader(b, TypeGPADLTeardown)
	b = appendU32(b, m.ChildRelID)
	return appendU32(b, m.GPADL)
}

func (m *GPADLTeardown) decode(b []byte) error {
	m.ChildRelID = u32(b, 8)
	m.GPADL = u32(b, 12)
	return nil
}

// GPADLTorndown answers GPADLTeardown (host to guest, 12 bytes). It mirrors
// Hyper-V vmbus_channel_gpadl_torndown; guests match it by GPADL alone.
type GPADLTorndown struct {
	GPADL uint32 // +8
}

func (*GPADLTorndown) Type() Type { return TypeGPADLTorndown }

func (m *GPADLTorndown) AppendTo(b []byte) []byte {
	return appendU32(appendHeader(b, TypeGPADLTorndown), m.GPADL)
}

func (m *GPADLTorndown) decode(b []byte) error {
	m.GPADL = u32(b, 8)
	return nil
}

// RelIDReleased tells the host the guest is done with a rescinded channel
// (guest to host, 12 bytes). It mirrors Hyper-V
// vmbus_channel_relid_released.
type RelIDReleased struct {
	ChildRelID uint32 // +8
}

func (*RelIDReleased) Type() Type { return TypeRelIDReleased }

func (m *RelIDReleased) AppendTo(b []byte) []byte {
	return appendU32(appendHeader(b, TypeRelIDReleased), m.ChildRelID)
}

func (m *RelIDReleased) decode(b []byte) error {
	m.ChildRelID = u32(b, 8)
	return nil
}

// InitiateContact proposes a protocol version (guest to host, 40 bytes). It
// mirrors Hyper-V vmbus_channel_initiate_contact.
//
// The 8 bytes at +16 have two readings. Before protocol 5.0 they are the GPA
// of the guest's interrupt page (InterruptPage). From 5.0 on they hold
// msg_sint (u8 at +16) and msg_vtl (u8 at +17), then 2 reserved bytes and,
// in openvmm's 6.0, feature flags at +20; MsgSINT, MsgVTL and SetMsgSINT
// read and write that form. The struct keeps the raw 8 bytes so that either
// reading survives a decode/encode cycle.
type InitiateContact struct {
	VersionRequested Version // +8
	// TargetVCPU is the VP the host sends control messages to (honoured
	// from protocol 3.0; VP 0 before).
	TargetVCPU    uint32 // +12
	InterruptPage uint64 // +16 see the type comment
	MonitorPage1  uint64 // +24 GPA of the parent-to-child monitor page, 0 = none
	MonitorPage2  uint64 // +32 GPA of the child-to-parent monitor page, 0 = none
}

// NewInitiateContact returns an INITIATE_CONTACT for version v. For v >= 5.0
// it sets msg_sint to VMBusMessageSINT and msg_vtl to 0, as Linux does;
// for older versions it leaves InterruptPage zero for the caller to fill.
func NewInitiateContact(v Version, targetVCPU uint32, monitorPage1, monitorPage2 uint64) *InitiateContact {
	m := &InitiateContact{
		VersionRequested: v,
		TargetVCPU:       targetVCPU,
		MonitorPage1:     monitorPage1,
		MonitorPage2:     monitorPage2,
	}
	if v >= Version5_0 {
		m.SetMsgSINT(VMBusMessageSINT, 0)
	}
	return m
}

// MsgSINT is the SINT the guest asks the host to deliver control messages
// on (protocol >= 5.0 reading of +16).
func (m *InitiateContact) MsgSINT() uint8 { return uint8(m.InterruptPage) }

// MsgVTL is the VTL the guest asks the host to deliver control messages to
// (protocol >= 5.0 reading of +17; honoured from 5.1 by openvmm).
func (m *InitiateContact) MsgVTL() uint8 { return uint8(m.InterruptPage >> 8) }

// SetMsgSINT stores sint at +16 and vtl at +17, zeroing the other six
// bytes of InterruptPage.
func (m *InitiateContact) SetMsgSINT(sint, vtl uint8) {
	m.InterruptPage = uint64(sint) | uint64(vtl)<<8
}

func (*InitiateContact) Type() Type { return TypeInitiateContact }

func (m *InitiateContact) AppendTo(b []byte) []byte {
	b = appendHeader(b, TypeInitiateContact)
	b = appendU32(b, uint32(m.VersionRequested))
	b = appendU32(b, m.TargetVCPU)
	b = appendU64(b, m.InterruptPage)
	b = appendU64(b, m.MonitorPage1)
	return appendU64(b, m.MonitorPage2)
}

func (m *InitiateContact) decode(b []byte) error {
	m.VersionRequested = Version(u32(b, 8))
	m.TargetVCPU = u32(b, 12)
	m.InterruptPage = u64(b, 16)
	m.MonitorPage1 = u64(b, 24)
	m.MonitorPage2 = u64(b, 32)
	return nil
}

// VersionResponse answers InitiateContact (host to guest, 16 bytes). It
// mirrors Hyper-V vmbus_channel_version_response; the longer 6.0 variants
// are not decoded.
type VersionResponse struct {
	// VersionSupported accepts (true) or rejects the requested version; a
	// rejected guest tries its next lower version.
	VersionSupported bool  // +8 u8
	ConnectionState  uint8 // +9 Connection... constants; Linux ignores it
	// +10: 2 bytes padding.
	// MsgConnID is, from protocol 5.0, the connection id the guest must post
	// further messages to (normally MessageConnectionID). Before 5.0 Linux
	// ignores it and openvmm writes the selected version there.
	MsgConnID uint32 // +12
}

func (*VersionResponse) Type() Type { return TypeVersionResponse }

func (m *VersionResponse) AppendTo(b []byte) []byte {
	b = appendHeader(b, TypeVersionResponse)
	b = append(b, bit0(m.VersionSupported), m.ConnectionState, 0, 0)
	return appendU32(b, m.MsgConnID)
}

func (m *VersionResponse) decode(b []byte) error {
	m.VersionSupported = b[8] != 0
	m.ConnectionState = b[9]
	m.MsgConnID = u32(b, 12)
	return nil
}

// Unload asks the host to close everything before the guest reboots or
// kexecs (guest to host, 8 bytes, header only). It mirrors Hyper-V
// vmbus_channel_message_header with CHANNELMSG_UNLOAD.
type Unload struct{}

func (*Unload) Type() Type { return TypeUnload }

func (*Unload) AppendTo(b []byte) []byte { return appendHeader(b, TypeUnload) }

func (*Unload) decode([]byte) error { return nil }

// UnloadResponse answers Unload (host to guest, 8 bytes, header only). It
// mirrors Hyper-V vmbus_channel_message_header with
// CHANNELMSG_UNLOAD_RESPONSE.
type UnloadResponse struct{}

func (*UnloadResponse) Type() Type { return TypeUnloadResponse }

func (*UnloadResponse) AppendTo(b []byte) []byte { return appendHeader(b, TypeUnloadResponse) }

func (*UnloadResponse) decode([]byte) error { return nil }

// TLConnectRequest asks the host to connect an hv_sock endpoint to a host
// service (guest to host, protocol >= 4.0; 40 bytes, or 56 with the silo id
// of protocol >= 5.2). It mirrors Hyper-V
// vmbus_channel_tl_connect_request. Decode sets HasSiloID when the message
// is long enough to hold one; AppendTo writes it only when HasSiloID is set.
type TLConnectRequest struct {
	GuestEndpointID GUID // +8
	HostServiceID   GUID // +24
	SiloID          GUID // +40, only if HasSiloID
	HasSiloID       bool
}

func (*TLConnectRequest) Type() Type { return TypeTLConnectRequest }

func (m *TLConnectRequest) AppendTo(b []byte) []byte {
	b = appendHeader(b, TypeTLConnectRequest)
	b = append(b, m.GuestEndpointID[:]...)
	b = append(b, m.HostServiceID[:]...)
	if m.HasSiloID {
		b = append(b, m.SiloID[:]...)
	}
	return b
}

func (m *TLConnectRequest) decode(b []byte) error {
	m.GuestEndpointID = guid(b, 8)
	m.HostServiceID = guid(b, 24)
	if len(b) >= tlConnectSiloSize {
		m.SiloID = guid(b, 40)
		m.HasSiloID = true
	}
	return nil
}

// TLConnectResult answers TLConnectRequest (host to guest, protocol >= 4.1,
// 44 bytes). It mirrors openvmm's TlConnectResult; Linux has no handler.
type TLConnectResult struct {
	EndpointID GUID   // +8
	ServiceID  GUID   // +24
	Status     uint32 // +40 NTSTATUS (i32 on the wire)
}

func (*TLConnectResult) Type() Type { return TypeTLConnectResult }

func (m *TLConnectResult) AppendTo(b []byte) []byte {
	b = appendHeader(b, TypeTLConnectResult)
	b = append(b, m.EndpointID[:]...)
	b = append(b, m.ServiceID[:]...)
	return appendU32(b, m.Status)
}

func (m *TLConnectResult) decode(b []byte) error {
	m.EndpointID = guid(b, 8)
	m.ServiceID = guid(b, 24)
	m.Status = u32(b, 40)
	return nil
}

// ModifyChannel moves a channel's interrupts to another VP (guest to host,
// protocol >= 4.1, 16 bytes). It mirrors Hyper-V vmbus_channel_modifychannel.
type ModifyChannel struct {
	ChildRelID uint32 // +8
	TargetVP   uint32 // +12
}

func (*ModifyChannel) Type() Type { return TypeModifyChannel }

func (m *ModifyChannel) AppendTo(b []byte) []byte {
	b = appendHeader(b, TypeModifyChannel)
	b = appendU32(b, m.ChildRelID)
	return appendU32(b, m.TargetVP)
}

func (m *ModifyChannel) decode(b []byte) error {
	m.ChildRelID = u32(b, 8)
	m.TargetVP = u32(b, 12)
	return nil
}

// ModifyChannelResponse answers ModifyChannel (host to guest, 16 bytes).
// It mirrors Hyper-V vmbus_channel_modifychannel_response. Guests wait for
// it only when the negotiated version is >= 5.3.
type ModifyChannelResponse struct {
	ChildRelID uint32 // +8
	Status     uint32 // +12 StatusSuccess or a failure NTSTATUS
}

func (*ModifyChannelResponse) Type() Type { return TypeModifyChannelResponse }

func (m *ModifyChannelResponse) AppendTo(b []byte) []byte {
	b = appendHeader(b, TypeModifyChannelResponse)
	b = appendU32(b, m.ChildRelID)
	return appendU32(b, m.Status)
}

func (m *ModifyChannelResponse) decode(b []byte) error {
	m.ChildRelID = u32(b, 8)
	m.Status = u32(b, 12)
	return nil
}
