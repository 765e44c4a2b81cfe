package pipeline

// SetTestHooks installs the test hooks on o: afterPut after the n-th Put
// of the process, afterSync after the n-th batch's Sync (before its journal
// commit), afterCommit after the n-th journal commit. A nil function leaves
// that hook off. The hooks are called from the writer goroutines.
func SetTestHooks(o *Options, afterPut, afterSync, afterCommit func(n int)) {
	o.hooks = hooks{afterPut: afterPut, afterSync: afterSync, afterCommit: afterCommit}
}
