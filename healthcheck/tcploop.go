package healthcheck

import (
	"net/netip"
	"time"
)

// A checkLoop runs the TCP checks of many targets from a few goroutines: it schedules each job
// (first check after job.first, then every job.interval with jitter), opens a non-blocking
// connection per check, waits for all of them at once, enforces each check's timeout and calls
// job.report with every result. The Manager uses one while Run runs, for its tcp targets (see
// newTCPLoop; where there is none, every target has its own goroutine and Prober).
//
// add and remove may be called from any goroutine (remove of a job after its add). Both take
// effect asynchronously: a result may still be reported shortly after remove returns (the
// Manager drops results of stopped checkers). close stops the loop, closes every socket and
// file descriptor it holds and returns once its goroutines are done with them; add and remove
// are then no-ops.
type checkLoop interface {
	add(j *tcpJob)
	remove(j *tcpJob)
	close()
}

// tcpJob is one target checked by a checkLoop: a TCP connection (or, in the tcp_half_open
// loop, a SYN) to addr every interval. The fields are set before add and not changed
// afterwards; loopState and halfState belong to the loop.
type tcpJob struct {
	addr   netip.AddrPort
	source netip.Addr // local address of the checks; invalid: the kernel's choice
	// interval between the starts of two checks, each time scaled by a random factor in
	// [1-jitter/2, 1+jitter/2) (see jittered).
	interval time.Duration
	jitter   float64
	// timeout bounds each check; reasonTimeout is what the reason of a timeout says (the
	// configured timeout, which may exceed the interval that bounds timeout).
	timeout       time.Duration
	reasonTimeout time.Duration
	// first is the wait before the first check.
	first time.Duration
	// report gets every result, on the loop's goroutine: it must not block.
	report func(res Result, start, end time.Time)
	// late is called, on the loop's goroutine, for a check that starts more than half an
	// interval after its schedule.
	late func()

	loopState
	halfState // in a tcp_half_open checkLoop
}

// startSlot returns when the check due at next really starts if it starts at now: a check
// more than a whole interval late skips the missed slots rather than catch up in a burst. late
// reports a start more than half an interval after its schedule (the Manager's rule for every
// check type).
func startSlot(now, next time.Time, interval time.Duration) (slot time.Time, late bool) {
	lag := now.Sub(next)
	if lag <= interval/2 {
		return next, false
	}
	if lag > interval {
		return now, true
	}
	return next, true
}
