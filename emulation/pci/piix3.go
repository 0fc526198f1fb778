package pci

// PIIX3 is function 0 of the PIIX3 (82371SB) at 00:01.0: the PCI-to-ISA
// bridge (datasheet section 2.2). Its identity is 8086:7000, class 06/01/00,
// and its header marks the device multi-function (IDE at function 1, ACPI
// PM in the PIIX4 variant at function 3).
//
// The PIRQ route control registers 0x60-0x63 (bit 7: routing disabled,
// bits 3:0: ISA IRQ) are stored and readable; they take effect once a PCI
// device with an INTx pin exists, and Route reports them for that. The
// edge/level control registers (ELCR, ports 0x4D0/0x4D1) are decoded by
// KVM's in-kernel PIC. Left out: the ISA clock divisor, the I/O recovery
// timer, the top-of-memory register's effect, the motherboard IRQ and DMA
// routes, and APIC chip select.
type PIIX3 struct {
	ConfigSpace
}

// Register offsets.
const (
	regPIRQA = 0x60
	regTOM   = 0x69
	regXBCS  = 0x4E
)

// NewPIIX3 makes the ISA bridge function in its reset state.
func NewPIIX3() *PIIX3 {
	b := &PIIX3{}
	b.InitHeader(0x8086, 0x7000, 0x00, 0x060100, 0x80)
	b.Set(regPIRQA, 0x80, 0x80, 0x80, 0x80) // all four PIRQs disabled
	b.SetWritable(regPIRQA, 4, 0x8F)
	b.Set(regXBCS, 0x03) // RTC and keyboard controller decode enabled
	b.SetWritable(regXBCS, 1, 0xFF)
	b.Set(regTOM, 0x02)
	b.SetWritable(regTOM, 1, 0xFE)
	return b
}

// Route returns the ISA IRQ that PIRQ pin (0-3 for PIRQA-PIRQD) is routed
// to, or false when its routing is disabled or names a reserved IRQ.
func (b *PIIX3) Route(pin int) (uint8, bool) {
	if pin < 0 || pin > 3 {
		return 0, false
	}
	v := b.Get(uint8(regPIRQA+pin), 1)[0]
	irq := v & 0x0F
	// IRQs 0, 1, 2, 8 and 13 are reserved (datasheet, PIRQRC).
	if v&0x80 != 0 || irq < 3 || irq == 8 || irq == 13 {
		return 0, false
	}
	return irq, true
}
