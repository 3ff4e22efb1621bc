package bench

import "ferry/internal/workload"

// Workload is a running copy of the built-in workload (workload.Proc).
type Workload = workload.Proc

// StartWorkload starts one (workload.StartProc).
var StartWorkload = workload.StartProc

// KillRestored kills a restored copy (workload.KillRestored).
var KillRestored = workload.KillRestored
