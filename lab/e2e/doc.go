// Package e2e holds the lab's end-to-end test helpers and tests. Everything
// here is built only with the "lab" build tag and is meant to run as root
// inside the lab VM (go test -tags lab -exec labexec, see lab/README.md),
// where the tests create network namespaces for clients, the director, real
// servers and routers.
package e2e
