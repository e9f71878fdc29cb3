package director

// syncChanged is the reconciler's SyncChanged (Sync at the base commit, which has none).
func syncChanged(r *Reconciler) func([]VirtualService) (Plan, error) { return r.SyncChanged }
