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
//	type           passes when
//	tcp            a TCP connection is established (then reset, leaving no TIME_WAIT)
//	tcp_half_open  a SYN sent from a raw socket is answered with a SYN-ACK (a RST is
//	               "connection refused"); the handshake is never completed (see below)
//	http           the response status is in expect_status (default [200]) and, with
//	https          expect_body, the first 64 KiB of the body match that regexp; redirects
//	               are not followed
//	udp            the first reply datagram to payload matches the regexp expect (required)
//	dns            the answer to query_name/query_type (default A), sent over UDP, has rcode
//	               NOERROR and at least one record of query_type (any record for ANY)
//	exec           command (argv list) exits with status 0
//	none           never checked; the real server counts as up
//
// Common fields: rise (default 2) successes in a row bring a down server up, fall (default 3)
// failures in a row take an up server down; initial_state (down, the default, or up) is the
// verdict before that; source sets the local address of tcp, tcp_half_open, http(s), udp and
// dns checks; jitter (a fraction 0..1 of the interval, default 0.1) makes each wait interval ×
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
// tcp_half_open (like F5's tcp_half_open monitor) has no fields of its own. Each check sends
// one SYN (with a random initial sequence number, from one of a few local ports the director
// reserves by binding ordinary TCP sockets to them, so that no other local socket uses them)
// through a raw socket and waits for a SYN-ACK or a RST that acknowledges it. The local kernel
// has no socket for the connection, so it answers the SYN-ACK with a RST and the real server
// drops its half-open request: the server's application never sees (nor accepts) the check,
// and no socket or file descriptor is opened per check. It needs CAP_NET_RAW (the raw
// sockets); without it, or on systems other than Linux, the director logs one warning and
// checks these targets like tcp ones (a full connect). IPv4 and IPv6 targets are supported.
// Unlike tcp, an ICMP error (host unreachable) is not seen: the check times out. Its replies are
// read on the loop's own schedule (every 20ms while checks are in flight) rather than as each
// arrives, so its duration is measured to within 20ms. The raw sockets see every TCP segment
// delivered to the host itself (not the traffic IPVS forwards) and a BPF filter in the kernel
// drops all but SYN-ACKs and RSTs to the reserved ports.
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
// closed with a reset; the loops also keep the tcp targets' schedules (to within 5ms). The
// tcp_half_open targets are all checked by one more goroutine, from two raw sockets (IPv4 and
// IPv6): the SYNs that fall due together go out in one sendmmsg, the replies come in with
// recvmmsg, and the schedules are kept to within 20ms. Every other target (and tcp targets on
// other systems, with net.Dialer) has a goroutine of its own running its Prober. The Manager logs every verdict
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
