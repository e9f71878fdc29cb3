// Package healthcheck checks real servers and keeps their up/down verdicts.
//
// # Checks
//
// A check is configured by config.HealthCheck (the YAML health_check block of a service, or of
// one real server, which then replaces the service's whole). A service with no health_check is
// not checked: its real servers count as up. Every check goes to the real server's address and
// the check port (port; 0 = the real server's port), every interval (default 2s), and fails if
// it has not passed within timeout (default 1s, at most interval).
//
//	type   passes when
//	tcp    a TCP connection is established (then reset, leaving no TIME_WAIT)
//	http   the response status is in expect_status (default [200]) and, with expect_body,
//	https  the first 64 KiB of the body match that regexp; redirects are not followed
//	udp    the first reply datagram to payload matches the regexp expect (required)
//	dns    the answer to query_name/query_type (default A), sent over UDP, has rcode NOERROR
//	       and at least one record of query_type (any record for ANY)
//	exec   command (argv list) exits with status 0
//	none   never checked; the real server counts as up
//
// Common fields: rise (default 2) successes in a row bring a down server up, fall (default 3)
// failures in a row take an up server down; initial_state (down, the default, or up) is the
// verdict before that; source sets the local address of tcp, http(s), udp and dns checks;
// jitter (a fraction 0..1 of the interval, default 0.1) makes each wait interval ×
// a random factor in [1-jitter/2, 1+jitter/2), so the mean rate is unchanged. The first check
// of a new target comes at a random point of its first interval, so targets started together
// spread evenly.
//
// http and https: method GET (default) or HEAD; path (default /); host sets the Host header
// (default the check address, ip:port). https: the TLS server name is sni, else host without
// its port, else none (the certificate must then name the IP); ca_file is a PEM bundle to
// verify with instead of the system roots; insecure_skip_verify skips verification. Proxies
// from the environment are never used and every check opens a fresh connection.
//
// exec: the command runs with a timeout in its own process group (killed whole on timeout)
// with the director's environment plus LVS_RS_ADDRESS, LVS_RS_PORT (the real server),
// LVS_VIP, LVS_VIP_PORT, LVS_SERVICE, LVS_CHECK_ADDRESS and LVS_CHECK_PORT (where a network
// check would go). The first line of its output is appended to a failure's reason.
//
// A field that does not belong to the check's type is a config error (path on a tcp check,
// anything but type on a none check).
//
// # Results and state
//
// A Prober runs one check and returns a Result: OK, a reason for people ("http status 503",
// "timeout after 1s", "connection refused", "exit status 2") and a kind from a small fixed set
// (ok, timeout, refused, reset, unreachable, status, mismatch, tls, dns, exit, other). Next is
// the rise/fall state machine. Every check has its own deadline and a stuck check delays
// nothing else. On Linux the Manager checks all tcp targets from a few goroutines (one per CPU,
// at most 4): each check is a non-blocking connect (from source, when set) that an epoll loop
// waits for alongside many others, timed out by a heap of deadlines in the same loop, and
// closed with a reset; the loops also keep the tcp targets' schedules (to within 5ms). Every other target (and tcp targets on other systems,
// with net.Dialer) has a goroutine of its own running its Prober. The Manager logs every verdict
// change once at Info with its reason and signals it on Changes.
//
// # Metrics
//
//	lvs_director_realserver_up{service,real_server}                                 gauge
//	lvs_director_healthcheck_duration_seconds{type}                                 histogram
//	lvs_director_healthcheck_transitions_total{service,real_server,to,reason_kind}  counter
//	lvs_director_healthcheck_late_total                                             counter
//
// A check is late when it starts more than half an interval after its schedule (the process is
// starved of CPU); a check more than a whole interval late skips the missed slots.
package healthcheck
