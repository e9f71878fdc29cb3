//go:build lab

// Package bench holds the lab's performance measurements (run inside the lab VM with
// `go test -tags lab -exec labexec`, see scripts/bench-lab.sh) and the tests of the director's
// IPVS netlink client against the real kernel.
package bench
