// Command etcd is the upstream etcd server CLI, built from
// go.etcd.io/etcd/server/v3 so tests need no system package.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
