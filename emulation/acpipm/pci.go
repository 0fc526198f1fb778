package acpipm

import "github.com/partita-hv/partita/emulation/pci"

// PCIFunction is the PIIX4's power-management function (82371AB datasheet,
// section 3.4: "PCI Configuration Registers, Power Management"), which the
// Generation 1 chipset places at 00:01.3: identity 8086:7113, class
// 06/80/00. The guest chooses where the PM1 block decodes with PMBA (0x40,
// I/O, 64-byte aligned) and turns decoding on with PMIOSE (bit 0 of
// PMREGMISC at 0x80); the owner is told so it can move the block. SMBus
// base and enables (0x90, 0xD2) are stored only; no SMBus controller
// answers there.
type PCIFunction struct {
	pci.ConfigSpace
	onPMBase func(base uint16, enabled bool)
}

const (
	regPMBA      = 0x40
	regPMREGMISC = 0x80
	regSMBBA     = 0x90
	regSMBHSTCFG = 0xD2
)

// NewPCIFunction makes the function with the PM1 block decoding at base
// (unlike the chip, whose decoding is off at reset: this lets guests
// without firmware power off; the guest may move or disable it).
// onPMBase is called when PMBA or PMIOSE change.
func NewPCIFunction(base uint16, onPMBase func(base uint16, enabled bool)) *PCIFunction {
	f := &PCIFunction{onPMBase: onPMBase}
	f.InitHeader(0x8086, 0x7113, 0x03, 0x068000, 0x00)
	f.Set(pci.RegInterruptPin, 0x01)                    // INTA# for the SCI
	f.Set(regPMBA, byte(base&0xC0)|0x01, byte(base>>8)) // bit 0: I/O space
	f.SetWritable(regPMBA, 1, 0xC0)
	f.SetWritable(regPMBA+1, 1, 0xFF)
	f.Set(regPMREGMISC, 0x01)
	f.SetWritable(regPMREGMISC, 1, 0x01)
	f.Set(regSMBBA, 0x01)
	f.SetWritable(regSMBBA, 1, 0xF0)
	f.SetWritable(regSMBBA+1, 1, 0xFF)
	f.SetWritable(regSMBHSTCFG, 1, 0x0F)
	return f
}

// pmBase returns the PM1 block's base and whether it decodes.
func (f *PCIFunction) pmBase() (uint16, bool) {
	b := f.Get(regPMBA, 2)
	return uint16(b[0]&0xC0) | uint16(b[1])<<8, f.Get(regPMREGMISC, 1)[0]&1 != 0
}

// ConfigWrite implements pci.Function.
func (f *PCIFunction) ConfigWrite(off uint8, data []byte) {
	base, on := f.pmBase()
	f.ConfigSpace.ConfigWrite(off, data)
	if nb, non := f.pmBase(); (nb != base || non != on) && f.onPMBase != nil {
		f.onPMBase(nb, non)
	}
}
