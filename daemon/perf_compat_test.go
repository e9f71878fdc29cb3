package daemon

// The syncs as Run makes them (copied, with the old calls, to run these benchmarks at the
// base commit too).
func (d *Daemon) firstSync() error  { return d.sync(true) }
func (d *Daemon) reloadSync() error { return d.sync(false) }
