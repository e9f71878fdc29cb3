package healthcheck

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"time"
)

// Result is the outcome of one check.
type Result struct {
	// OK is true when the real server passed.
	OK bool
	// Reason says what happened, for people: "http status 503", "timeout after 1s",
	// "connection refused", "exit status 2".
	Reason string
	// Kind classifies Reason with a small fixed set of values (one of the Kind constants); it is
	// the reason_kind label of the transitions metric.
	Kind string
}

// Reason kinds: the values of Result.Kind.
const (
	KindOK          = "ok"
	KindTimeout     = "timeout"     // the check did not finish within its timeout
	KindRefused     = "refused"     // connection refused (TCP RST, ICMP port unreachable)
	KindReset       = "reset"       // connection reset or closed early
	KindUnreachable = "unreachable" // no route, host or network unreachable
	KindStatus      = "status"      // http status not expected
	KindMismatch    = "mismatch"    // body or reply does not match
	KindTLS         = "tls"         // handshake or certificate failure
	KindDNS         = "dns"         // bad rcode or no answer
	KindExit        = "exit"        // exec check exited non-zero or could not start
	KindOther       = "other"
)

func ok(reason string) Result { return Result{OK: true, Reason: reason, Kind: KindOK} }

func fail(kind, format string, args ...any) Result {
	return Result{Reason: fmt.Sprintf(format, args...), Kind: kind}
}

// errResult classifies a network error; timeout is what the reason reports on a deadline.
func errResult(ctx context.Context, err error, timeout time.Duration) Result {
	var (
		netErr   net.Error
		unknown  x509.UnknownAuthorityError
		hostname x509.HostnameError
		invalid  x509.CertificateInvalidError
		alert    tls.AlertError
		header   tls.RecordHeaderError
		verify   *tls.CertificateVerificationError
	)
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded),
		errors.As(err, &netErr) && netErr.Timeout(),
		ctx.Err() == context.DeadlineExceeded:
		return fail(KindTimeout, "timeout after %s", timeout)
	case errors.Is(err, context.Canceled):
		return fail(KindOther, "check canceled")
	case errors.Is(err, syscall.ECONNREFUSED):
		return fail(KindRefused, "connection refused")
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return fail(KindReset, "connection reset")
	case errors.Is(err, syscall.EHOSTUNREACH):
		return fail(KindUnreachable, "host unreachable")
	case errors.Is(err, syscall.ENETUNREACH):
		return fail(KindUnreachable, "network unreachable")
	case errors.As(err, &verify), errors.As(err, &unknown), errors.As(err, &hostname),
		errors.As(err, &invalid), errors.As(err, &alert), errors.As(err, &header):
		return fail(KindTLS, "tls: %s", tlsMessage(err))
	}
	return fail(KindOther, "%s", err.Error())
}

// tlsMessage drops the net.OpError and "tls:" wrapping from a TLS error.
func tlsMessage(err error) string {
	var verify *tls.CertificateVerificationError
	if errors.As(err, &verify) {
		err = verify.Err
	}
	for {
		var oe *net.OpError
		if !errors.As(err, &oe) || oe.Err == nil {
			break
		}
		err = oe.Err
	}
	s := err.Error()
	const p = "tls: "
	if len(s) > len(p) && s[:len(p)] == p {
		s = s[len(p):]
	}
	return s
}
