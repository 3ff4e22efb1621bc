package agent

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"ferry/internal/migrate"
)

// Code names an outcome an error matched, on the wire.
type Code string

// The codes, one per outcome callers branch on.
const (
	CodeRefused       Code = "refused"        // migrate.ErrRefused
	CodeAborted       Code = "aborted"        // migrate.ErrAborted
	CodeCancelled     Code = "cancelled"      // migrate.ErrCancelled, context.Canceled
	CodeFault         Code = "fault"          // migrate.ErrFault
	CodeCommitUnknown Code = "commit-unknown" // migrate.ErrCommitUnknown
	CodeNotCommitted  Code = "not-committed"  // migrate.ErrNotCommitted
	CodeResumed       Code = "resumed"        // migrate.ErrResumed
	CodeLost          Code = "lost"           // migrate.ErrLost
	CodeCorrupt       Code = "corrupt"        // migrate.ErrCorrupt
	CodeWire          Code = "wire-protocol"  // migrate.ErrProtocol
	CodeProtocol      Code = "protocol"       // ErrProtocol
)

// codes maps each code to the errors it stands for: the first is what
// an error decoded with that code matches; an error matching any of them
// is encoded with it.
var codes = []struct {
	code Code
	errs []error
}{
	{CodeRefused, []error{migrate.ErrRefused}},
	{CodeAborted, []error{migrate.ErrAborted}},
	{CodeCancelled, []error{migrate.ErrCancelled, context.Canceled}},
	{CodeFault, []error{migrate.ErrFault}},
	{CodeCommitUnknown, []error{migrate.ErrCommitUnknown}},
	{CodeNotCommitted, []error{migrate.ErrNotCommitted}},
	{CodeResumed, []error{migrate.ErrResumed}},
	{CodeLost, []error{migrate.ErrLost}},
	{CodeCorrupt, []error{migrate.ErrCorrupt}},
	{CodeWire, []error{migrate.ErrProtocol}},
	{CodeProtocol, []error{ErrProtocol}},
}

// Error is an error on the wire: its text and the outcomes it matched.
type Error struct {
	Codes []Code `json:"codes,omitempty"`
	Msg   string `json:"msg"`
}

// EncodeError turns err into its wire form; nil for nil.
func EncodeError(err error) *Error {
	if err == nil {
		return nil
	}
	e := &Error{Msg: err.Error()}
	if r, ok := errors.AsType[*remoteError](err); ok {
		// Decoded from a peer: keep its codes, even for outcomes this side
		// does not know.
		e.Codes = append(e.Codes, r.codes...)
	}
	for _, c := range codes {
		for _, target := range c.errs {
			if errors.Is(err, target) && !slices.Contains(e.Codes, c.code) {
				e.Codes = append(e.Codes, c.code)
				break
			}
		}
	}
	return e
}

// Err turns e back into an error with the same text that matches, under
// errors.Is, every outcome e carries (nil for nil). Codes this side does
// not know are kept for a next hop but match nothing.
func (e *Error) Err() error {
	if e == nil {
		return nil
	}
	msg := e.Msg
	if msg == "" {
		msg = "unknown error"
	}
	return &remoteError{codes: e.Codes, msg: msg}
}

// DecodeError is e.Err(), for symmetry with EncodeError.
func DecodeError(e *Error) error { return e.Err() }

// remoteError is an error that crossed a process boundary.
type remoteError struct {
	codes []Code
	msg   string
}

func (e *remoteError) Error() string { return e.msg }

// Is matches the outcomes the error carried.
func (e *remoteError) Is(target error) bool {
	for _, c := range codes {
		if slices.Contains(e.codes, c.code) && slices.Contains(c.errs, target) {
			return true
		}
	}
	return false
}

// String is for logs.
func (e *Error) String() string {
	if e == nil {
		return "<nil>"
	}
	return fmt.Sprintf("%s %v", e.Msg, e.Codes)
}
