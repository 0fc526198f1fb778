// Package vsc holds the guest-side clients (VSCs) for the providers in
// package vsp. They run inside Generation 2 guests over package
// vmbus/client, and from host-side tests and benchmarks over the
// cross-process transport.
//
// No client is implemented yet.
package vsc
