package ide

import "github.com/partita-hv/partita/emulation/pci"

// Legacy (compatibility mode) resources of the primary channel.
const (
	PrimaryCommandBase = 0x1F0
	PrimaryControlBase = 0x3F6
	PrimaryIRQ         = 14
)

// PCIFunction is the PIIX3 IDE function at 00:01.1 (82371SB datasheet,
// section 2.3): identity 8086:7010, class 01/01 with programming interface
// 0x80 (bus-master capable, both channels in compatibility mode at the
// legacy ports and IRQs 14/15), the bus-master base address in BAR4 and
// the IDE timing registers (decode enable in bit 15) at 0x40 and 0x42.
// The channels decode their legacy ports whatever these registers say;
// the owner places the bus-master registers where BAR4 points.
type PCIFunction struct {
	pci.ConfigSpace
	onBusMaster func(base uint16, enabled bool)
}

// NewPCIFunction makes the IDE function in its reset state; onBusMaster
// is called when BAR4 or the I/O enable bit changes, with the bus-master
// block's I/O base and whether the guest enabled I/O decoding.
func NewPCIFunction(onBusMaster func(base uint16, enabled bool)) *PCIFunction {
	f := &PCIFunction{onBusMaster: onBusMaster}
	f.InitHeader(0x8086, 0x7010, 0x00, 0x010180, 0x00)
	f.Set(0x20, 0x01)            // BAR4: I/O space
	f.SetWritable(0x20, 1, 0xF0) // 16-byte aligned
	f.SetWritable(0x21, 3, 0xFF) // (upper bytes)
	f.SetWritable(0x40, 4, 0xFF) // IDETIM, primary and secondary
	return f
}

// busMaster returns BAR4's I/O base and the command register's I/O enable.
func (f *PCIFunction) busMaster() (uint16, bool) {
	bar := f.Get(0x20, 2)
	cmd := f.Get(pci.RegCommand, 1)[0]
	return uint16(bar[0]&0xF0) | uint16(bar[1])<<8, cmd&1 != 0
}

// ConfigWrite implements pci.Function.
func (f *PCIFunction) ConfigWrite(off uint8, data []byte) {
	base, on := f.busMaster()
	f.ConfigSpace.ConfigWrite(off, data)
	if nb, non := f.busMaster(); (nb != base || non != on) && f.onBusMaster != nil {
		f.onBusMaster(nb, non)
	}
}
