package root

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/partita-hv/partita/partition/control"
	wmiapi "github.com/partita-hv/partita/wmi-api"
)

// Limits on definitions.
const (
	maxNameLen      = control.MaxNameLen
	maxProcessors   = 64    // what the worker runs
	maxGen1MemoryMB = 65536 // as Generation 2; RAM past 3.5 GiB is above 4 GiB
	maxGen2MemoryMB = 65536 // Hyper-V's 64 GiB per VM of the design's era
	maxDisksGen1    = 1     // the IDE primary master
	maxDisksGen2    = 64
	maxNICs         = 8
	maxPartitions   = 1024
	defaultMemoryMB = 64
	// DefaultFirmware is the Gen1 ROM when a definition names none.
	DefaultFirmware = "/usr/share/seabios/bios.bin"
)

// validName accepts 1–64 of letters, digits, '.', '_' and '-', starting
// with a letter or digit: a name that is safe in paths, logs and labels.
func validName(n string) error {
	if n == "" || len(n) > maxNameLen {
		return invalid("ElementName must be 1 to %d characters", maxNameLen)
	}
	if isGUID(n) {
		return invalid("ElementName %q has the form of a GUID, which names partitions by their Name", n)
	}
	for i, c := range n {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || i > 0 && (c == '.' || c == '_' || c == '-')
		if !ok {
			return invalid("ElementName %q: only letters, digits, '.', '_' and '-', starting with a letter or digit", n)
		}
	}
	return nil
}

// fault makes an API error.
func fault(code, format string, args ...any) error {
	return &wmiapi.Fault{Code: code, Message: fmt.Sprintf(format, args...)}
}

func invalid(format string, args ...any) error {
	return fault(wmiapi.CodeInvalid, format, args...)
}

// checkDefinition validates a whole definition.
func checkDefinition(d *Definition) error {
	if err := validName(d.Name); err != nil {
		return err
	}
	switch d.Generation {
	case 1, 2:
	default:
		return invalid("generation %d: want 1 or 2", d.Generation)
	}
	if d.MemoryMB == 0 {
		return invalid("memory must be at least 1 MiB")
	}
	// Guest memory is sparse: only what the guest touches takes host
	// memory, so a partition may be larger than the host (and a worker
	// is the first the OOM killer takes, before the root; see vmwp).
	if d.Generation == 2 && (d.MemoryMB < 4 || d.MemoryMB%2 != 0 || d.MemoryMB > maxGen2MemoryMB) {
		return invalid("memory %d MiB: a Generation 2 partition takes 4 to %d MiB in whole 2 MiB pages", d.MemoryMB, maxGen2MemoryMB)
	}
	if d.Generation == 1 && d.MemoryMB > maxGen1MemoryMB {
		return invalid("memory %d MiB: a Generation 1 partition has at most %d MiB", d.MemoryMB, maxGen1MemoryMB)
	}
	if d.Processors < 1 || d.Processors > maxProcessors {
		return invalid("%d processors: want 1 to %d", d.Processors, maxProcessors)
	}
	if d.Generation == 1 {
		if d.Guest != "" {
			return invalid("GuestFile is for Generation 2 partitions")
		}
		if err := checkFile("FirmwareFile", d.Firmware); err != nil {
			return err
		}
	} else {
		if d.Firmware != "" {
			return invalid("FirmwareFile is for Generation 1 partitions")
		}
		if d.Guest != "" {
			if err := checkFile("GuestFile", d.Guest); err != nil {
				return err
			}
		}
	}
	maxDisks := maxDisksGen1
	if d.Generation == 2 {
		maxDisks = maxDisksGen2
	}
	if len(d.Disks) > maxDisks {
		return invalid("%d disks: a Generation %d partition takes at most %d", len(d.Disks), d.Generation, maxDisks)
	}
	for _, disk := range d.Disks {
		if err := checkFile("disk", disk.Path); err != nil {
			return err
		}
	}
	if len(d.NICs) > maxNICs {
		return invalid("%d network adapters: at most %d", len(d.NICs), maxNICs)
	}
	for _, n := range d.NICs {
		if err := validName(n.Switch); err != nil {
			return invalid("switch name %q: only letters, digits, '.', '_' and '-'", n.Switch)
		}
		if n.MAC != "" {
			if _, err := net.ParseMAC(n.MAC); err != nil {
				return invalid("Address %q is not a MAC address", n.MAC)
			}
		}
	}
	return nil
}

// checkFile wants an absolute path to an existing regular file.
func checkFile(what, path string) error {
	if !filepath.IsAbs(path) || filepath.Clean(path) != path {
		return invalid("%s %q: want a clean absolute path", what, path)
	}
	st, err := os.Stat(path)
	if err != nil {
		return invalid("%s %s: %v", what, path, err)
	}
	if !st.Mode().IsRegular() {
		return invalid("%s %s is not a regular file", what, path)
	}
	return nil
}

// applyVSSD sets what a Msvm_VirtualSystemSettingData says.
func applyVSSD(d *Definition, s wmiapi.VirtualSystemSettingData, defining bool) error {
	if s.ElementName != "" || defining {
		d.Name = s.ElementName
	}
	switch s.VirtualSystemSubType {
	case "":
		if defining {
			d.Generation = 1
		}
	case wmiapi.SubTypeGen1:
		d.Generation = 1
	case wmiapi.SubTypeGen2:
		d.Generation = 2
	default:
		return invalid("VirtualSystemSubType %q: want %q or %q", s.VirtualSystemSubType, wmiapi.SubTypeGen1, wmiapi.SubTypeGen2)
	}
	if !defining && s.VirtualSystemSubType != "" && d.Generation != genOf(s.VirtualSystemSubType) {
		return invalid("the generation of a partition cannot change")
	}
	if s.FirmwareFile != "" {
		d.Firmware = s.FirmwareFile
	}
	if s.GuestFile != "" {
		d.Guest = s.GuestFile
	}
	if defining && d.Generation == 1 && d.Firmware == "" {
		d.Firmware = DefaultFirmware
	}
	return nil
}

func genOf(subtype string) int {
	if subtype == wmiapi.SubTypeGen2 {
		return 2
	}
	return 1
}

// applyRASD adds (id == "") or modifies one resource.
func applyRASD(d *Definition, r wmiapi.ResourceSettingData, adding bool) (string, error) {
	id := ""
	if !adding {
		var err error
		if id, err = resourceID(d, r.InstanceID); err != nil {
			return "", err
		}
	} else if r.InstanceID != "" {
		return "", invalid("InstanceID is assigned by the service; leave it empty when adding")
	}
	wantClass := map[uint16]string{wmiapi.ResourceProcessor: wmiapi.ClassProcessor, wmiapi.ResourceMemory: wmiapi.ClassMemory,
		wmiapi.ResourceDisk: wmiapi.ClassDisk, wmiapi.ResourceEthernet: wmiapi.ClassEthernet}[r.ResourceType]
	if wantClass == "" {
		return "", invalid("ResourceType %d: want 3 (processor), 4 (memory), 31 (disk) or 33 (Ethernet connection)", r.ResourceType)
	}
	if r.ClassName != "" && r.ClassName != wantClass {
		return "", invalid("ClassName %q does not go with ResourceType %d (%s)", r.ClassName, r.ResourceType, wantClass)
	}
	switch r.ResourceType {
	case wmiapi.ResourceProcessor, wmiapi.ResourceMemory:
		if adding && !isNew(d) {
			return "", invalid("a partition has exactly one %s; modify it instead", wantClass)
		}
		if r.VirtualQuantity > 1<<32 {
			return "", invalid("VirtualQuantity %d is out of range", r.VirtualQuantity)
		}
		if r.ResourceType == wmiapi.ResourceProcessor {
			d.Processors = int(r.VirtualQuantity)
			return d.ProcID, nil
		}
		if r.AllocationUnits != "" && r.AllocationUnits != "byte * 2^20" {
			return "", invalid("memory AllocationUnits %q: want \"byte * 2^20\"", r.AllocationUnits)
		}
		d.MemoryMB = r.VirtualQuantity
		return d.MemID, nil
	case wmiapi.ResourceDisk:
		if len(r.HostResource) != 1 {
			return "", invalid("a disk takes one HostResource, the image path")
		}
		if adding {
			id = newGUID()
			d.Disks = append(d.Disks, DiskDef{ID: id, Path: r.HostResource[0]})
			return id, nil
		}
		for i := range d.Disks {
			if d.Disks[i].ID == id {
				d.Disks[i].Path = r.HostResource[0]
				return id, nil
			}
		}
	case wmiapi.ResourceEthernet:
		if len(r.HostResource) != 1 {
			return "", invalid("an Ethernet connection takes one HostResource, the switch name")
		}
		if adding {
			id = newGUID()
			d.NICs = append(d.NICs, NICDef{ID: id, Switch: r.HostResource[0], MAC: r.Address})
			return id, nil
		}
		for i := range d.NICs {
			if d.NICs[i].ID == id {
				d.NICs[i].Switch, d.NICs[i].MAC = r.HostResource[0], r.Address
				return id, nil
			}
		}
	}
	return "", fault(wmiapi.CodeNotFound, "resource %s is not a %s of this partition", r.InstanceID, wantClass)
}

// isNew: a definition being built by DefineSystem (processor and memory
// not yet set).
func isNew(d *Definition) bool { return d.Created.IsZero() }

// resourceID splits "Microsoft:<system>\<resource>" and checks the system.
func resourceID(d *Definition, instanceID string) (string, error) {
	sys, res, ok := strings.Cut(strings.TrimPrefix(instanceID, "Microsoft:"), `\`)
	if !ok || !strings.HasPrefix(instanceID, "Microsoft:") || !strings.EqualFold(sys, d.ID) || !isGUID(res) {
		return "", fault(wmiapi.CodeNotFound, "no resource %q in partition %s", instanceID, d.Name)
	}
	return strings.ToUpper(res), nil
}

// splitResourceID returns the system part of a resource InstanceID.
func splitResourceID(instanceID string) (string, bool) {
	rest, ok := strings.CutPrefix(instanceID, "Microsoft:")
	if !ok {
		return "", false
	}
	sys, _, ok := strings.Cut(rest, `\`)
	return sys, ok && isGUID(sys)
}

// settingsOf renders a definition in WMI terms.
func settingsOf(d *Definition) wmiapi.SystemSettings {
	sub := wmiapi.SubTypeGen1
	if d.Generation == 2 {
		sub = wmiapi.SubTypeGen2
	}
	inst := func(id string) string { return "Microsoft:" + d.ID + `\` + id }
	s := wmiapi.SystemSettings{
		SystemSettings: wmiapi.VirtualSystemSettingData{InstanceID: "Microsoft:" + d.ID, ElementName: d.Name,
			VirtualSystemSubType: sub, FirmwareFile: d.Firmware, GuestFile: d.Guest},
		ResourceSettings: []wmiapi.ResourceSettingData{
			{ClassName: wmiapi.ClassProcessor, InstanceID: inst(d.ProcID), ResourceType: wmiapi.ResourceProcessor,
				ResourceSubType: wmiapi.SubTypeProcessor, VirtualQuantity: uint64(d.Processors), AllocationUnits: "count"},
			{ClassName: wmiapi.ClassMemory, InstanceID: inst(d.MemID), ResourceType: wmiapi.ResourceMemory,
				ResourceSubType: wmiapi.SubTypeMemory, VirtualQuantity: d.MemoryMB, AllocationUnits: "byte * 2^20"},
		},
	}
	for _, disk := range d.Disks {
		s.ResourceSettings = append(s.ResourceSettings, wmiapi.ResourceSettingData{ClassName: wmiapi.ClassDisk,
			InstanceID: inst(disk.ID), ResourceType: wmiapi.ResourceDisk, ResourceSubType: wmiapi.SubTypeDisk,
			HostResource: []string{disk.Path}})
	}
	for _, n := range d.NICs {
		s.ResourceSettings = append(s.ResourceSettings, wmiapi.ResourceSettingData{ClassName: wmiapi.ClassEthernet,
			InstanceID: inst(n.ID), ResourceType: wmiapi.ResourceEthernet, ResourceSubType: wmiapi.SubTypeEthernet,
			HostResource: []string{n.Switch}, Address: n.MAC})
	}
	return s
}

// removeResource drops a disk or NIC.
func removeResource(d *Definition, instanceID string) error {
	id, err := resourceID(d, instanceID)
	if err != nil {
		return err
	}
	if id == d.ProcID || id == d.MemID {
		return invalid("the processor and memory settings cannot be removed")
	}
	for i := range d.Disks {
		if d.Disks[i].ID == id {
			d.Disks = append(d.Disks[:i], d.Disks[i+1:]...)
			return nil
		}
	}
	for i := range d.NICs {
		if d.NICs[i].ID == id {
			d.NICs = append(d.NICs[:i], d.NICs[i+1:]...)
			return nil
		}
	}
	return fault(wmiapi.CodeNotFound, "no resource %q in partition %s", instanceID, d.Name)
}

// clone deep-copies a definition, so that a change is validated and saved
// before it replaces the live one.
func (d *Definition) clone() *Definition {
	c := *d
	c.Disks = append([]DiskDef(nil), d.Disks...)
	c.NICs = append([]NICDef(nil), d.NICs...)
	if d.KVP != nil {
		c.KVP = make(map[string]string, len(d.KVP))
		for k, v := range d.KVP {
			c.KVP[k] = v
		}
	}
	return &c
}
