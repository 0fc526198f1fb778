package tcg

// The CPUID a tcg processor answers: a 32-bit P6-family processor with
// an FPU, TSC, MSRs, PAE, CMPXCHG8B, a local APIC (its ID in leaf 1's
// EBX), CMOV, MMX and SSE/SSE2. It does not depend on Unicorn's own
// model.
func cpuidLeaf(leaf, subleaf, apicID uint32) [4]uint32 {
	const (
		vendorEBX = 0x756E6547 // "Genu"
		vendorEDX = 0x49656E69 // "ineI"
		vendorECX = 0x6C65746E // "ntel"
		// family 6, model 6, stepping 3
		signature = 0x00000663
		features  = 1<<0 | 1<<3 | 1<<4 | 1<<5 | 1<<6 | 1<<8 | 1<<9 | 1<<13 | 1<<15 | 1<<19 | 1<<23 | 1<<24 | 1<<25 | 1<<26
	)
	switch leaf {
	case 0:
		return [4]uint32{1, vendorEBX, vendorECX, vendorEDX}
	case 1:
		return [4]uint32{signature, apicID<<24 | 1<<16 | 8<<8, 0, features}
	case 0x80000000:
		return [4]uint32{0x80000001, 0, 0, 0}
	}
	return [4]uint32{}
}
