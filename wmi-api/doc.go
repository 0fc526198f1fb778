// Package wmiapi is the REST management API of the root service, modelled on
// Hyper-V's WMI v2 classes (Msvm_ComputerSystem,
// Msvm_VirtualSystemManagementService, Msvm_ConcreteJob and the integration
// components): routing, strict JSON types, errors with stable codes and the
// OpenAPI document.
package wmiapi
