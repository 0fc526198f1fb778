package pci

// I440FX is the host bridge at 00:00.0 of an i440FX/PIIX PC (Intel 82441FX
// PMC datasheet, section 3.2): identity 8086:1237, class 06/00/00, and the
// Programmable Attribute Map registers PAM0-PAM6 at 0x59-0x5F, which decide
// for each segment of 0xC0000-0xFFFFF whether reads and writes go to RAM
// or to the PCI side (the BIOS ROM). Each change is reported so the owner
// can remap guest memory.
//
// Left out: SMRAM (0x72) beyond a writable byte, the DRAM row registers,
// and error reporting.
type I440FX struct {
	ConfigSpace
	onPAM func(PAM)
}

// PAM is the seven PAM registers, PAM0 at index 0.
type PAM [7]byte

// Register offsets.
const (
	regPAM0  = 0x59
	regSMRAM = 0x72
)

// Segment access bits in a PAM nibble.
const (
	PAMRead  = 1 << 0 // reads go to RAM
	PAMWrite = 1 << 1 // writes go to RAM
)

// PAMSegment is one region that a PAM nibble controls.
type PAMSegment struct {
	Base, Size uint64
	Reg        int  // 0..6
	High       bool // the high nibble
}

// PAMSegments lists the 13 regions in address order: PAM1-PAM6 split
// 0xC0000-0xEFFFF into 16 KiB halves (low nibble first), and PAM0's high
// nibble covers 0xF0000-0xFFFFF.
var PAMSegments = func() []PAMSegment {
	var s []PAMSegment
	for reg := 1; reg <= 6; reg++ {
		base := uint64(0xC0000 + (reg-1)*0x8000)
		s = append(s, PAMSegment{base, 0x4000, reg, false}, PAMSegment{base + 0x4000, 0x4000, reg, true})
	}
	return append(s, PAMSegment{0xF0000, 0x10000, 0, true})
}()

// Access returns the segment's read/write bits in p.
func (s PAMSegment) Access(p PAM) byte {
	v := p[s.Reg]
	if s.High {
		v >>= 4
	}
	return v & (PAMRead | PAMWrite)
}

// NewI440FX makes the host bridge; onPAM is called with the new PAM
// registers after every write that changes them.
func NewI440FX(onPAM func(PAM)) *I440FX {
	h := &I440FX{onPAM: onPAM}
	h.InitHeader(0x8086, 0x1237, 0x02, 0x060000, 0x00)
	h.SetWritable(regPAM0, 1, 0x30) // PAM0: only the F-segment nibble
	h.SetWritable(regPAM0+1, 6, 0x33)
	h.SetWritable(regSMRAM, 1, 0x78)
	return h
}

// PAM returns the current PAM registers.
func (h *I440FX) PAM() PAM {
	var p PAM
	copy(p[:], h.Get(regPAM0, 7))
	return p
}

// ConfigWrite implements Function.
func (h *I440FX) ConfigWrite(off uint8, data []byte) {
	before := h.PAM()
	h.ConfigSpace.ConfigWrite(off, data)
	if after := h.PAM(); after != before && h.onPAM != nil {
		h.onPAM(after)
	}
}
