package daemon

// The syncs as Run makes them: firstSync is the first sync and the release of the start-up's
// memory; reloadSync is the sync that follows a reload, up to the kernel's change (Run then
// calls afterSync: the benchmarks do so outside the measured time).
func (d *Daemon) firstSync() error {
	err := d.sync(true)
	d.afterSync()
	return err
}
func (d *Daemon) reloadSync() error { return d.sync(false) }
