package wmiapi

import "time"

// Routes, all under Prefix. {system} is a partition's Name (its GUID) or
// its ElementName; {job} is a job's InstanceID.
//
//	GET  /Msvm_ComputerSystem                              list of ComputerSystem
//	GET  /Msvm_ComputerSystem/{system}                     ComputerSystem
//	GET  /Msvm_ComputerSystem/{system}/settings            SystemSettings
//	POST /Msvm_ComputerSystem/{system}/RequestStateChange  StateChangeRequest → 202 StateChangeResult
//	GET  /Msvm_ComputerSystem/{system}/console?cursor=N&follow=true
//	                                                       the COM1 output from cursor N, as bytes
//	POST /Msvm_ComputerSystem/{system}/console             bytes to the guest's COM1 → 204
//	POST /Msvm_VirtualSystemManagementService/DefineSystem            DefineSystemRequest → 201 DefineSystemResult
//	POST /Msvm_VirtualSystemManagementService/DestroySystem           DestroySystemRequest → 200 MethodResult
//	POST /Msvm_VirtualSystemManagementService/ModifySystemSettings    ModifySystemSettingsRequest → 200 MethodResult
//	POST /Msvm_VirtualSystemManagementService/AddResourceSettings     AddResourceSettingsRequest → 200 ResourceSettingsResult
//	POST /Msvm_VirtualSystemManagementService/ModifyResourceSettings  ModifyResourceSettingsRequest → 200 ResourceSettingsResult
//	POST /Msvm_VirtualSystemManagementService/RemoveResourceSettings  RemoveResourceSettingsRequest → 200 MethodResult
//	GET  /Msvm_ConcreteJob                                 list of ConcreteJob (newest first)
//	GET  /Msvm_ConcreteJob/{job}                           ConcreteJob
//	GET  /openapi.json                                     the OpenAPI 3 document
//
// Outside the prefix: GET /healthz and GET /metrics, the only routes that
// need no bearer token.
const Prefix = "/api/v2"

// ConsoleCursorHeader carries, on a console GET, the cursor to ask for
// next: the absolute offset in the partition's COM1 output just past the
// bytes returned. ConsoleStartHeader is the offset of the first byte
// returned (later than the cursor asked for when older output has already
// left the service's buffer).
const (
	ConsoleCursorHeader = "X-Console-Cursor"
	ConsoleStartHeader  = "X-Console-Start"
)

// EnabledState values of Msvm_ComputerSystem (Hyper-V WMI v2). The
// transitional values above 32767 are the ones Hyper-V reports while a
// change is in progress.
const (
	StateUnknown      uint16 = 0
	StateRunning      uint16 = 2     // Enabled
	StateOff          uint16 = 3     // Disabled
	StateShuttingDown uint16 = 4     // Shutting Down
	StateSaved        uint16 = 6     // Enabled but Offline
	StatePaused       uint16 = 9     // Quiesce
	StateStarting     uint16 = 32770 // Starting
	StateStopping     uint16 = 32774 // Stopping
	StatePausing      uint16 = 32776 // Pausing
	StateResuming     uint16 = 32777 // Resuming
)

// RequestedState values for RequestStateChange (Hyper-V WMI v2).
const (
	RequestRunning    uint16 = 2  // start, or resume when paused
	RequestOff        uint16 = 3  // turn off
	RequestShutDown   uint16 = 4  // guest shutdown (Gen1: ACPI power button)
	RequestNoChange   uint16 = 5  // the RequestedState property when idle
	RequestSaved      uint16 = 6  // save
	RequestPaused     uint16 = 9  // pause
	RequestReboot     uint16 = 10 // restart
	RequestReset      uint16 = 11 // reset
	RequestNotApplies uint16 = 12 // Not Applicable
)

// HealthState values (CIM).
const (
	HealthOK              uint16 = 5
	HealthMajorFailure    uint16 = 20
	HealthCriticalFailure uint16 = 25
)

// OperationalStatus values (CIM), first element.
const (
	OperationalOK       uint16 = 2
	OperationalDegraded uint16 = 3
	OperationalStopped  uint16 = 10
)

// Return values of the management methods (Hyper-V's).
const (
	ReturnCompleted    uint32 = 0
	ReturnJobStarted   uint32 = 4096
	ReturnFailed       uint32 = 32768
	ReturnInvalidState uint32 = 32775
)

// JobState values of Msvm_ConcreteJob (CIM_ConcreteJob).
const (
	JobNew       uint16 = 2
	JobStarting  uint16 = 3
	JobRunning   uint16 = 4
	JobCompleted uint16 = 7
	JobKilled    uint16 = 9
	JobException uint16 = 10
)

// Virtual system subtypes (Msvm_VirtualSystemSettingData).
const (
	SubTypeGen1 = "Microsoft:Hyper-V:SubType:1"
	SubTypeGen2 = "Microsoft:Hyper-V:SubType:2"
)

// Resource types and subtypes (CIM_ResourceAllocationSettingData), with the
// settings-data class each belongs to.
const (
	ResourceProcessor = 3  // Msvm_ProcessorSettingData, VirtualQuantity = processors
	ResourceMemory    = 4  // Msvm_MemorySettingData, VirtualQuantity in MiB
	ResourceDisk      = 31 // Msvm_StorageAllocationSettingData (Logical Disk), HostResource = [image path]
	ResourceEthernet  = 33 // Msvm_EthernetPortAllocationSettingData (Ethernet Connection), HostResource = [switch name]

	ClassProcessor = "Msvm_ProcessorSettingData"
	ClassMemory    = "Msvm_MemorySettingData"
	ClassDisk      = "Msvm_StorageAllocationSettingData"
	ClassEthernet  = "Msvm_EthernetPortAllocationSettingData"

	SubTypeProcessor = "Microsoft:Hyper-V:Processor"
	SubTypeMemory    = "Microsoft:Hyper-V:Memory"
	SubTypeDisk      = "Microsoft:Hyper-V:Virtual Hard Disk"
	SubTypeEthernet  = "Microsoft:Hyper-V:Ethernet Connection"
)

// ComputerSystem is Msvm_ComputerSystem: one partition.
type ComputerSystem struct {
	ElementName           string    `json:"ElementName"`
	Name                  string    `json:"Name"` // GUID
	EnabledState          uint16    `json:"EnabledState"`
	RequestedState        uint16    `json:"RequestedState"`
	HealthState           uint16    `json:"HealthState"`
	OperationalStatus     []uint16  `json:"OperationalStatus"`
	StatusDescriptions    []string  `json:"StatusDescriptions"`
	OnTimeInMilliseconds  uint64    `json:"OnTimeInMilliseconds"`
	ProcessID             int       `json:"ProcessID"` // the worker's; 0 when not running
	TimeOfLastStateChange time.Time `json:"TimeOfLastStateChange"`
	InstallDate           time.Time `json:"InstallDate"`

	// Partita additions, so that a list tells a user what each partition is.
	Generation     int    `json:"Generation"`
	MemoryMB       uint64 `json:"MemoryMB"`
	Processors     int    `json:"Processors"`
	LastStopReason string `json:"LastStopReason,omitempty"` // why it last went Off
	// Platform runs its processors (kvm, ptrace): the one it runs on or
	// ran on last, else the one it would get; empty if none can run it.
	Platform string `json:"Platform,omitempty"`
}

// VirtualSystemSettingData is Msvm_VirtualSystemSettingData.
type VirtualSystemSettingData struct {
	InstanceID           string `json:"InstanceID,omitempty"` // "Microsoft:" + the system's GUID
	ElementName          string `json:"ElementName,omitempty"`
	VirtualSystemSubType string `json:"VirtualSystemSubType,omitempty"`

	// Partita additions: what the partition boots. FirmwareFile is a Gen1
	// BIOS ROM (default: Debian's SeaBIOS); GuestFile is a Gen2 static ELF.
	FirmwareFile string `json:"FirmwareFile,omitempty"`
	GuestFile    string `json:"GuestFile,omitempty"`
}

// ResourceSettingData is one CIM_ResourceAllocationSettingData of the
// classes above; which fields apply depends on ResourceType.
type ResourceSettingData struct {
	ClassName       string   `json:"ClassName,omitempty"`
	InstanceID      string   `json:"InstanceID,omitempty"` // "Microsoft:<system>\<resource>", assigned by the service
	ResourceType    uint16   `json:"ResourceType"`
	ResourceSubType string   `json:"ResourceSubType,omitempty"`
	VirtualQuantity uint64   `json:"VirtualQuantity,omitempty"`
	AllocationUnits string   `json:"AllocationUnits,omitempty"`
	HostResource    []string `json:"HostResource,omitempty"`
	Address         string   `json:"Address,omitempty"` // Ethernet: MAC address
}

// SystemSettings is a partition's whole definition.
type SystemSettings struct {
	SystemSettings   VirtualSystemSettingData `json:"SystemSettings"`
	ResourceSettings []ResourceSettingData    `json:"ResourceSettings"`
}

// ConcreteJob is Msvm_ConcreteJob.
type ConcreteJob struct {
	InstanceID       string     `json:"InstanceID"`
	Name             string     `json:"Name"` // the method, e.g. "RequestStateChange"
	Description      string     `json:"Description"`
	JobState         uint16     `json:"JobState"`
	PercentComplete  uint16     `json:"PercentComplete"`
	ErrorCode        uint32     `json:"ErrorCode"`
	ErrorDescription string     `json:"ErrorDescription,omitempty"`
	TimeSubmitted    time.Time  `json:"TimeSubmitted"`
	StartTime        time.Time  `json:"StartTime"`
	TimeCompleted    *time.Time `json:"TimeCompleted,omitempty"`
	ElapsedTimeMS    uint64     `json:"ElapsedTimeMilliseconds"`
	AffectedElement  string     `json:"AffectedElement"` // the system's Name
	RequestedState   uint16     `json:"RequestedState"`
}

// StateChangeRequest is the input of RequestStateChange.
type StateChangeRequest struct {
	RequestedState uint16 `json:"RequestedState"`
}

// StateChangeResult is its output.
type StateChangeResult struct {
	ReturnValue uint32      `json:"ReturnValue"`
	Job         ConcreteJob `json:"Job"`
}

// DefineSystemRequest is the input of DefineSystem.
type DefineSystemRequest struct {
	SystemSettings   VirtualSystemSettingData `json:"SystemSettings"`
	ResourceSettings []ResourceSettingData    `json:"ResourceSettings"`
}

// DefineSystemResult is its output.
type DefineSystemResult struct {
	ReturnValue               uint32                `json:"ReturnValue"`
	ResultingSystem           ComputerSystem        `json:"ResultingSystem"`
	ResultingResourceSettings []ResourceSettingData `json:"ResultingResourceSettings"`
}

// DestroySystemRequest is the input of DestroySystem.
type DestroySystemRequest struct {
	AffectedSystem string `json:"AffectedSystem"` // Name or ElementName
}

// ModifySystemSettingsRequest is the input of ModifySystemSettings; the
// system is the one whose InstanceID SystemSettings carries.
type ModifySystemSettingsRequest struct {
	SystemSettings VirtualSystemSettingData `json:"SystemSettings"`
}

// AddResourceSettingsRequest is the input of AddResourceSettings.
type AddResourceSettingsRequest struct {
	AffectedConfiguration string                `json:"AffectedConfiguration"` // the system's VSSD InstanceID, Name or ElementName
	ResourceSettings      []ResourceSettingData `json:"ResourceSettings"`
}

// ModifyResourceSettingsRequest is the input of ModifyResourceSettings:
// each entry names its resource by InstanceID.
type ModifyResourceSettingsRequest struct {
	ResourceSettings []ResourceSettingData `json:"ResourceSettings"`
}

// RemoveResourceSettingsRequest is the input of RemoveResourceSettings.
type RemoveResourceSettingsRequest struct {
	ResourceSettings []string `json:"ResourceSettings"` // InstanceIDs
}

// ResourceSettingsResult is the output of Add/ModifyResourceSettings.
type ResourceSettingsResult struct {
	ReturnValue               uint32                `json:"ReturnValue"`
	ResultingResourceSettings []ResourceSettingData `json:"ResultingResourceSettings"`
}

// MethodResult is the output of a method with nothing else to say.
type MethodResult struct {
	ReturnValue uint32 `json:"ReturnValue"`
}

// Error is every error response's body.
type Error struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail has a stable Code (one of the Code constants) and a message
// for people.
type ErrorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Error codes, with their HTTP statuses.
const (
	CodeBadJSON          = "bad_json"           // 400
	CodeUnknownField     = "unknown_field"      // 400
	CodeUnauthorized     = "unauthorized"       // 401
	CodeNotFound         = "not_found"          // 404
	CodeMethodNotAllowed = "method_not_allowed" // 405
	CodeConflict         = "conflict"           // 409: a name in use, or another change in flight
	CodeInvalidState     = "invalid_state"      // 409: not possible in the partition's state
	CodeTooLarge         = "too_large"          // 413
	CodeInvalid          = "invalid"            // 422: a value out of its limits
	CodeNotSupported     = "not_supported"      // 422: valid, but Partita does not do it (yet)
	CodeInternal         = "internal"           // 500
)

// Fault is an error with a stable code, as the service returns it; the
// server turns it into an Error body with the code's HTTP status.
type Fault struct {
	Code    string
	Message string
}

func (f *Fault) Error() string { return f.Message }

// Operational status values of the integration components.
const (
	StatusOK                = 2
	StatusDegraded          = 3
	StatusNoContact         = 12
	StatusLostCommunication = 13
)

// HeartbeatComponent is Msvm_HeartbeatComponent: whether the guest's
// heartbeat integration service answers. OperationalStatus[0] is the
// channel (2 OK, 12 no contact, 13 lost communication); while it is OK,
// OperationalStatus[1] is the application state the guest reports (2 OK,
// 3 degraded for critical, 12 unknown).
type HeartbeatComponent struct {
	SystemName         string   `json:"SystemName"` // the partition's GUID
	ElementName        string   `json:"ElementName"`
	OperationalStatus  []uint16 `json:"OperationalStatus"`
	StatusDescriptions []string `json:"StatusDescriptions"`
}

// ShutdownRequest is the input of Msvm_ShutdownComponent.InitiateShutdown.
type ShutdownRequest struct {
	Force  bool   `json:"Force"`
	Reason string `json:"Reason"` // at most 2047 ASCII characters
}

// KVP item sources.
const (
	KvpSourceHost           = 0
	KvpSourceGuest          = 1
	KvpSourceGuestIntrinsic = 2
)

// KvpExchangeDataItem is Msvm_KvpExchangeDataItem.
type KvpExchangeDataItem struct {
	Name   string `json:"Name"`
	Data   string `json:"Data"`
	Source uint16 `json:"Source"`
}

// KvpExchangeComponent is Msvm_KvpExchangeComponent: the items the guest
// reports (read from it when asked), and the host's items for it.
type KvpExchangeComponent struct {
	SystemName                  string                `json:"SystemName"`
	GuestExchangeItems          []KvpExchangeDataItem `json:"GuestExchangeItems"`
	GuestIntrinsicExchangeItems []KvpExchangeDataItem `json:"GuestIntrinsicExchangeItems"`
	HostExchangeItems           []KvpExchangeDataItem `json:"HostExchangeItems"`
}

// KvpItemsRequest is the input of AddKvpItems and RemoveKvpItems (which
// reads only the names).
type KvpItemsRequest struct {
	TargetSystem string                `json:"TargetSystem"`
	DataItems    []KvpExchangeDataItem `json:"DataItems"`
}
