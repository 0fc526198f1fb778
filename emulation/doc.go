// Package emulation owns the legacy PC devices that unenlightened
// (Generation 1) guests see, behind a port-I/O and MMIO bus: the i440FX host
// bridge, PIIX3 ISA bridge, PIIX IDE, PIIX4 ACPI PM, 16550A UARTs, i8042,
// CMOS/RTC, fw_cfg and the debug and POST ports.
//
// No device is implemented yet.
package emulation
