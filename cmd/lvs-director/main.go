// Command lvs-director is a standalone Linux LVS director: it keeps kernel IPVS NAT virtual
// servers equal to a YAML file, health-checks real servers and announces VIPs over BGP.
//
// The command line is built with cobra (cli.go); each command lives in its own file.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
