// Package vsc holds the guest-side clients (VSCs) for the providers in
// package vsp. They run inside Generation 2 guests over package
// vmbus/client (through vsc/hv, the enlightened transport), and from
// host-side tests over the cross-process transport.
//
// Clients: vsc/console (the synthetic console) and vsc/ic (the
// integration services); vsc/hv is the transport under them inside a
// partition. This package names the device classes a guest may be
// offered.
package vsc
