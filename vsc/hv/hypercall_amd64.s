#include "textflag.h"

// func hypercall(control, input, output uintptr) uint64
//
// The hypercall page clobbers RAX, RCX, RDX, R8 and the flags, and
// pushes at most one word below the return address.
TEXT ·hypercall(SB), NOSPLIT, $0-32
	MOVQ control+0(FP), CX
	MOVQ input+8(FP), DX
	MOVQ output+16(FP), R8
	MOVQ $0x7FFFFE000000, AX
	CALL AX
	MOVQ AX, ret+24(FP)
	RET
