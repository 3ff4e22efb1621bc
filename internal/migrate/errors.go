package migrate

import "errors"

// The outcomes of a failed migration that callers branch on (besides
// ErrNotCommitted, and ErrCorrupt and ErrProtocol of the wire protocol). Errors of
// Send, Receive and the node's steps wrap them; package agent carries
// them across the node ↔ agent pipes and the node's API as codes, so
// errors.Is matches them at the node and at the CLI as well.
var (
	// ErrRefused: the destination refused the migration before anything
	// moved (it could not prepare, or it declined the Hello).
	ErrRefused = errors.New("destination refused the migration")
	// ErrAborted: the destination gave up during the transaction and said
	// why (an Abort frame).
	ErrAborted = errors.New("destination aborted the migration")
	// ErrCancelled: the caller cancelled before the commit was sent.
	ErrCancelled = errors.New("migration cancelled")
	// ErrFault: a fault injected for a test (SendFaults, ReceiveFaults).
	ErrFault = errors.New("injected fault")
	// ErrCommitUnknown: the commit's answer was lost and the destination
	// could not be asked whether the new copy runs. The old copy stays
	// frozen (the agent does not resume it): its node settles it once the
	// destination answers.
	ErrCommitUnknown = errors.New("commit outcome unknown")
	// ErrResumed: the migration failed before the commit and the process
	// runs on at the source, unharmed.
	ErrResumed = errors.New("the job runs on at its source")
	// ErrLost: the migration committed but the new copy could not get all
	// its memory (postcopy): the job is gone.
	ErrLost = errors.New("the job was lost")
)

// Is makes the peer's Abort match ErrAborted.
func (e *AbortError) Is(target error) bool { return target == ErrAborted }

// Mark returns err, unchanged in its text, that also matches sentinel
// under errors.Is (one of the outcomes above).
func Mark(err, sentinel error) error {
	if err == nil || errors.Is(err, sentinel) {
		return err
	}
	return marked{err, sentinel}
}

type marked struct{ err, sentinel error }

func (m marked) Error() string   { return m.err.Error() }
func (m marked) Unwrap() []error { return []error{m.err, m.sentinel} }
