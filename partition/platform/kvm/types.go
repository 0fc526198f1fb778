package kvm

// Regs mirrors struct kvm_regs (144 bytes).
type Regs struct {
	RAX, RBX, RCX, RDX, RSI, RDI, RSP, RBP uint64
	R8, R9, R10, R11, R12, R13, R14, R15   uint64
	RIP, RFLAGS                            uint64
}

// Segment mirrors struct kvm_segment (24 bytes).
type Segment struct {
	Base     uint64
	Limit    uint32
	Selector uint16
	Type     uint8
	Present  uint8
	DPL      uint8
	DB       uint8
	S        uint8
	L        uint8
	G        uint8
	AVL      uint8
	Unusable uint8
	_        uint8
}

// DTable mirrors struct kvm_dtable (16 bytes).
type DTable struct {
	Base  uint64
	Limit uint16
	_     [3]uint16
}

// Sregs mirrors struct kvm_sregs (312 bytes).
type Sregs struct {
	CS, DS, ES, FS, GS, SS, TR, LDT Segment
	GDT, IDT                        DTable
	CR0, CR2, CR3, CR4, CR8         uint64
	EFER                            uint64
	APICBase                        uint64
	InterruptBitmap                 [4]uint64
}

// FPU mirrors struct kvm_fpu (416 bytes).
type FPU struct {
	FPR        [8][16]byte
	FCW        uint16
	FSW        uint16
	FTWX       uint8
	_          uint8
	LastOpcode uint16
	LastIP     uint64
	LastDP     uint64
	XMM        [16][16]byte
	MXCSR      uint32
	_          uint32
}

// MSR mirrors struct kvm_msr_entry (16 bytes).
type MSR struct {
	Index uint32
	_     uint32
	Data  uint64
}

// CPUIDEntry mirrors struct kvm_cpuid_entry2 (40 bytes).
type CPUIDEntry struct {
	Function uint32
	Index    uint32
	Flags    uint32
	EAX      uint32
	EBX      uint32
	ECX      uint32
	EDX      uint32
	_        [3]uint32
}

// userspaceMemoryRegion mirrors struct kvm_userspace_memory_region.
type userspaceMemoryRegion struct {
	Slot          uint32
	Flags         uint32
	GuestPhysAddr uint64
	MemorySize    uint64
	UserspaceAddr uint64
}

// ioeventfd mirrors struct kvm_ioeventfd (64 bytes).
type ioeventfd struct {
	Datamatch uint64
	Addr      uint64
	Len       uint32
	FD        int32
	Flags     uint32
	_         [36]byte
}

// irqfd mirrors struct kvm_irqfd (32 bytes).
type irqfd struct {
	FD         uint32
	GSI        uint32
	Flags      uint32
	ResampleFD uint32
	_          [16]byte
}

// pitConfig mirrors struct kvm_pit_config (64 bytes).
type pitConfig struct {
	Flags uint32
	_     [15]uint32
}

// irqLevel mirrors struct kvm_irq_level.
type irqLevel struct {
	IRQ   uint32
	Level uint32
}

// ioctl numbers, from <linux/kvm.h> on x86-64.
const (
	kvmGetAPIVersion        = 0xAE00
	kvmCreateVM             = 0xAE01
	kvmCheckExtension       = 0xAE03
	kvmGetVCPUMmapSize      = 0xAE04
	kvmGetSupportedCPUID    = 0xC008AE05
	kvmCreateVCPU           = 0xAE41
	kvmSetUserMemoryRegion  = 0x4020AE46
	kvmSetTSSAddr           = 0xAE47
	kvmSetIdentityMapAddr   = 0x4008AE48
	kvmCreateIRQChip        = 0xAE60
	kvmIRQLine              = 0x4008AE61
	kvmIRQFD                = 0x4020AE76
	kvmCreatePIT2           = 0x4040AE77
	kvmIOEventFD            = 0x4040AE79
	kvmRun                  = 0xAE80
	kvmGetRegs              = 0x8090AE81
	kvmSetRegs              = 0x4090AE82
	kvmGetSregs             = 0x8138AE83
	kvmSetSregs             = 0x4138AE84
	kvmGetMSRs              = 0xC008AE88
	kvmSetMSRs              = 0x4008AE89
	kvmGetTSCKHz            = 0xAEA3 // _IO(KVMIO, 0xa3)
	kvmGetFPU               = 0x81A0AE8C
	kvmSetFPU               = 0x41A0AE8D
	kvmSetCPUID2            = 0x4008AE90
	ioeventfdFlagDatamatch  = 1 << 0
	ioeventfdFlagPIO        = 1 << 1
	ioeventfdFlagDeassign   = 1 << 2
	irqfdFlagDeassign       = 1 << 0
	pitSpeakerDummy         = 1
	maxCPUIDEntries         = 256
	runOffImmediateExit     = 1
	runOffExitReason        = 8
	runOffExit              = 32 // the exit union
	runSize                 = 2352
	ioDirectionOut          = 1
	systemEventShutdownType = 1
)

// IOExit describes a port-I/O exit. Data aliases the kvm_run page: for an
// IN, fill it before the next Run.
type IOExit struct {
	Port  uint16
	Size  uint8 // 1, 2 or 4
	Count uint32
	In    bool
	Data  []byte // Size*Count bytes
}

// MMIOExit describes an MMIO exit. For a read, fill Data before the next
// Run.
type MMIOExit struct {
	Addr  uint64
	Write bool
	Data  []byte // Len bytes (1..8)
}
