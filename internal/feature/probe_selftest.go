package feature

import (
	"context"
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// probeSelftest runs the helper that tries process-wide settings on itself:
// PR_SET_CHILD_SUBREAPER, PR_TIMER_CREATE_RESTORE_IDS (6.15+: timer_create
// takes the timer ID it is given, so POSIX timers keep their IDs across a
// restore) and soft-dirty tracking.
func probeSelftest(ctx context.Context) []Probe {
	res := newResults(ProbeChildSubreaper, ProbeTimerRestoreIDs, ProbeSoftDirty)
	f, err := runHelperOnce(ctx, "selftest", 0)
	if err != nil {
		return res.done(err)
	}

	switch v := f["subreaper"]; {
	case v == "ok":
		res.available(ProbeChildSubreaper, "set and read back in a child")
	case errIs(v, unix.EINVAL):
		res.missing(ProbeChildSubreaper, "EINVAL (kernel < 3.4)", nil)
	default:
		res.failed(ProbeChildSubreaper, helperFieldError("subreaper", v))
	}

	switch v := f["timerids"]; {
	case v == "ok":
		res.available(ProbeTimerRestoreIDs, fmt.Sprintf("timer_create gave the requested ID %d", helperTimerID))
	case errIs(v, unix.EINVAL):
		res.missing(ProbeTimerRestoreIDs, "prctl = EINVAL (kernel < 6.15): timers get fresh IDs on restore", nil)
	default:
		res.failed(ProbeTimerRestoreIDs, helperFieldError("timerids", v))
	}

	switch v := f["softdirty"]; v {
	case "ok":
		res.available(ProbeSoftDirty, "clear_refs=4 cleared PM_SOFT_DIRTY and a write set it again")
	case "never-set":
		res.missing(ProbeSoftDirty, "a written page never shows PM_SOFT_DIRTY: CONFIG_MEM_SOFT_DIRTY is off", nil)
	case "not-cleared", "not-set-again":
		res.missing(ProbeSoftDirty, "PM_SOFT_DIRTY does not track writes ("+v+")", nil)
	default:
		res.failed(ProbeSoftDirty, helperFieldError("softdirty", v))
	}
	return res.done(nil)
}

func errIs(field string, target error) bool {
	err, ok := fieldErrno(field)
	return ok && errors.Is(err, target)
}

func helperFieldError(key, v string) error {
	if err, ok := fieldErrno(v); ok {
		return fmt.Errorf("in helper: %s: %w", key, err)
	}
	if v == "" {
		return fmt.Errorf("helper did not report %s", key)
	}
	return fmt.Errorf("in helper: %s: %s", key, v)
}
