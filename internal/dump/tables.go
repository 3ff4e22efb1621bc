package dump

import (
	"fmt"
	"slices"

	"ferry/internal/kernel"
)

// sharedTables finds processes of a tree that share one fd table
// (clone(CLONE_FILES) without CLONE_THREAD): it sorts the processes by
// their tables (kcmp KCMP_FILES orders them) and returns, for each
// process that shares its parent's table, that parent. A restore clones
// such a child with CLONE_FILES. A table shared otherwise (with a sibling
// or a grandparent only, after the parent in between unshared its own)
// cannot be rebuilt by cloning and is refused. ppid gives each live
// process's parent.
func sharedTables(pids []int, ppid map[int]int) (map[int]int, error) {
	return sharedWithParent(pids, ppid, kernel.KcmpFilesTable, "fd table")
}

// sharedFS is sharedTables for the cwd/root/umask struct (clone(CLONE_FS)).
func sharedFS(pids []int, ppid map[int]int) (map[int]int, error) {
	return sharedWithParent(pids, ppid, kernel.KcmpFSStruct, "cwd, root and umask (CLONE_FS)")
}

// sharedWithParent groups pids by the kernel object of kind they share
// and returns, for each process that shares its parent's, that parent.
func sharedWithParent(pids []int, ppid map[int]int, kind int, what string) (map[int]int, error) {
	if len(pids) < 2 {
		return nil, nil
	}
	sorted := slices.Clone(pids)
	var kerr error
	slices.SortStableFunc(sorted, func(a, b int) int {
		c, err := kernel.KcmpOrder(a, b, kind)
		if err != nil && kerr == nil {
			kerr = err
		}
		return c
	})
	if kerr != nil {
		return nil, fmt.Errorf("compare %s: %w", what, kerr)
	}
	out := map[int]int{}
	for i := 0; i < len(sorted); {
		j := i + 1
		for j < len(sorted) {
			c, err := kernel.KcmpOrder(sorted[i], sorted[j], kind)
			if err != nil {
				return nil, fmt.Errorf("compare %s of %d and %d: %w", what, sorted[i], sorted[j], err)
			}
			if c != 0 {
				break
			}
			j++
		}
		group := sorted[i:j]
		for _, q := range group {
			parent := ppid[q]
			if slices.Contains(group, parent) {
				out[q] = parent
				continue
			}
			// The one member whose parent is outside the group owns it.
			for _, o := range group {
				if o != q && !slices.Contains(group, ppid[o]) {
					return nil, fmt.Errorf("pids %d and %d share one %s but neither is the other's ancestor through processes that share it: %w",
						q, o, what, ErrUnsupported)
				}
			}
		}
		i = j
	}
	return out, nil
}
