package tcg

import (
	"sync"
	"time"

	"github.com/partita-hv/partita/emulation/ioapic"
	"github.com/partita-hv/partita/emulation/lapic"
)

// slice is how long a processor keeps the engine while others wait.
const slice = 2 * time.Millisecond

// baton hands the engine from processor to processor in the order they
// asked (a sync.Mutex makes no promise of order, and a processor that
// spins waiting for another must let it run).
type baton struct {
	mu     sync.Mutex
	busy   bool
	queue  []chan struct{}
	holder *processor // nil while free, or held by Close
}

func (b *baton) acquire(p *processor) {
	b.mu.Lock()
	if !b.busy {
		b.busy, b.holder = true, p
		b.mu.Unlock()
		return
	}
	ch := make(chan struct{})
	b.queue = append(b.queue, ch)
	b.mu.Unlock()
	<-ch
	b.mu.Lock()
	b.holder = p
	b.mu.Unlock()
}

func (b *baton) release() {
	b.mu.Lock()
	b.holder = nil
	if len(b.queue) > 0 {
		ch := b.queue[0]
		b.queue = b.queue[1:]
		b.mu.Unlock()
		close(ch) // handed over: busy stays set
		return
	}
	b.busy = false
	b.mu.Unlock()
}

// waiting reports whether a processor waits for the engine.
func (b *baton) waiting() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.queue) > 0
}

// Interrupt routing. KVM's default wiring: ISA line n is 8259A input n
// and IOAPIC pin n (GSI n). The IOAPIC's messages and the local APICs'
// IPIs reach the processors here.

// matching returns the processors a destination names: an APIC ID
// (0xFF: all), or a logical destination.
func (m *pc) matching(dest uint8, logical bool) []*processor {
	var out []*processor
	for _, p := range m.cpus {
		if logical && p.lapic.MatchesLogical(dest) || !logical && (dest == 0xFF || dest == p.lapic.ID()) {
			out = append(out, p)
		}
	}
	return out
}

// routeIOAPIC delivers an IOAPIC message.
func (m *pc) routeIOAPIC(msg ioapic.Message) {
	m.send(m.matching(msg.Dest, msg.Logical), msg.Mode, msg.Vector, msg.Level, true, false)
}

// routeIPI delivers a local APIC's interrupt command.
func (m *pc) routeIPI(ipi lapic.IPI) {
	var to []*processor
	switch ipi.Shorthand {
	case lapic.ToDest:
		to = m.matching(ipi.Dest, ipi.Logical)
	case lapic.ToSelf:
		to = m.matching(ipi.From, false)
	case lapic.ToAll:
		to = m.cpus
	case lapic.ToAllButSelf:
		for _, p := range m.cpus {
			if p.lapic.ID() != ipi.From {
				to = append(to, p)
			}
		}
	}
	m.send(to, ipi.Mode, ipi.Vector, ipi.Level, ipi.Assert, true)
}

// send carries a message in its delivery mode to the processors.
func (m *pc) send(to []*processor, mode, vector uint8, level, assert, ipi bool) {
	switch mode {
	case lapic.ModeFixed:
		for _, p := range to {
			p.lapic.Accept(vector, level)
		}
	case lapic.ModeLowest:
		// Lowest priority: the first that can take it (the processors
		// have equal priority here).
		if len(to) > 0 {
			to[0].lapic.Accept(vector, level)
		}
	case lapic.ModeINIT:
		// INIT level de-assert (level-triggered, not asserted) only
		// synchronizes arbitration IDs on old parts.
		if level && !assert {
			return
		}
		for _, p := range to {
			p.init()
		}
	case lapic.ModeStartup:
		if !ipi {
			m.droppedMessages.Add(1)
			return
		}
		for _, p := range to {
			p.startup(vector)
		}
	default:
		// NMI, SMI and ExtINT messages: no processor here takes them.
		m.droppedMessages.Add(1)
	}
}
