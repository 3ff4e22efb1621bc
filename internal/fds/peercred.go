package fds

import (
	"encoding/binary"
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"ferry/internal/image"
	"ferry/internal/kernel"
)

// SO_PEERCRED of both ends of a socketpair names the process that called
// socketpair(2) (its thread group and credentials at that moment), and no
// system call changes it afterwards. Prepare has to create every pair
// inside ferry, before the tree exists; when the recorded creator is part
// of the tree, Finish (running once the creator's files are installed)
// makes the pair a second time by injecting socketpair into the creator,
// pulls both ends into ferry with pidfd_getfd, fills them as Prepare did,
// and puts them in place of the first pair: with dup3 at the creator's
// own fd numbers, in Files for processes not installed yet.
//
// The credentials are those the creator has when its files are installed
// (the restore engine sets the recorded ones later), so only the PID is
// sure to match.

// credPair is a socketpair to make again inside process pid.
type credPair struct {
	pid       int       // the creator (image PID)
	rec, peer *image.FD // peer nil: the peer was closed
	done      bool
}

// recreatePairsLocked makes again, inside pid, every socketpair pid
// created. p is pid's record; its files are installed.
func (r *Restorer) recreatePairsLocked(p *image.Process, inj Injector) error {
	tpid := 0
	for _, cp := range r.credPairs {
		if cp.pid != p.PID || cp.done {
			continue
		}
		cp.done = true
		if h := r.installedHolderLocked(cp, p.PID); h != 0 {
			r.log.Warn("SO_PEERCRED of a socketpair names ferry: another holder was installed before its creator",
				"creator", p.PID, "holder", h, "desc", cp.rec.Desc)
			continue
		}
		if tpid == 0 {
			// The target's PID as ferry sees it (the image PID may have
			// been given up for a new one).
			v, err := inj.Syscall(unix.SYS_GETPID)
			if err != nil {
				return fmt.Errorf("getpid: %w", err)
			}
			tpid = int(v)
		}
		if err := r.recreatePairLocked(p, tpid, cp, inj); err != nil {
			return fmt.Errorf("pid %d: socketpair for SO_PEERCRED (%s): %w", p.PID, cp.rec.Desc, err)
		}
	}
	return nil
}

// installedHolderLocked returns a process other than creator that holds
// either end of cp and whose files were already handed out, or 0.
func (r *Restorer) installedHolderLocked(cp *credPair, creator int) int {
	for _, q := range r.procs {
		if q.PID == creator || !r.handedOut[q.PID] {
			continue
		}
		for _, fd := range q.FDs {
			if fd.Desc == cp.rec.Desc || cp.peer != nil && fd.Desc == cp.peer.Desc {
				return q.PID
			}
		}
	}
	return 0
}

func (r *Restorer) recreatePairLocked(p *image.Process, tpid int, cp *credPair, inj Injector) error {
	addr, err := inj.Scratch(make([]byte, 8))
	if err != nil {
		return fmt.Errorf("scratch for the fd pair: %w", err)
	}
	undo, err := asIDsIn(inj, peerIDs(cp.rec))
	if err != nil {
		return err
	}
	_, err = inj.Syscall(unix.SYS_SOCKETPAIR, unix.AF_UNIX,
		uint64(cp.rec.SockType|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK), 0, addr)
	if uerr := undo(); err == nil {
		err = uerr
	}
	if err != nil {
		return fmt.Errorf("socketpair in the target: %w", err)
	}
	var raw [8]byte
	if err := readMem(tpid, addr, raw[:]); err != nil {
		return fmt.Errorf("read the fd pair: %w", err)
	}
	tfd := [2]uint64{
		uint64(binary.NativeEndian.Uint32(raw[0:])),
		uint64(binary.NativeEndian.Uint32(raw[4:])),
	}
	// The target's temporary fds go once the ends are in place (or on
	// failure); those at the image's numbers stay.
	defer func() {
		for _, t := range tfd {
			if !holdsNum(p, t) {
				inj.Syscall(unix.SYS_CLOSE, t)
			}
		}
	}()

	pidfd, err := unix.PidfdOpen(tpid, 0)
	if err != nil {
		return os.NewSyscallError("pidfd_open", err)
	}
	defer unix.Close(pidfd)
	var sv [2]int
	for i, t := range tfd {
		if sv[i], err = pidfdGetfd(pidfd, int(t)); err != nil {
			if i == 1 {
				unix.Close(sv[0])
			}
			return err
		}
	}
	if err := r.adoptPairLocked(sv, cp.rec, cp.peer); err != nil {
		return err
	}
	for _, fd := range p.FDs {
		var t uint64
		switch {
		case fd.Desc == cp.rec.Desc:
			t = tfd[0]
		case cp.peer != nil && fd.Desc == cp.peer.Desc:
			t = tfd[1]
		default:
			continue
		}
		if t == uint64(fd.Num) {
			return fmt.Errorf("fd %d was not installed", fd.Num)
		}
		var flags uint64
		if fd.CloExec {
			flags = unix.O_CLOEXEC
		}
		if _, err := inj.Syscall(unix.SYS_DUP3, t, uint64(fd.Num), flags); err != nil {
			return fmt.Errorf("dup3 to fd %d: %w", fd.Num, err)
		}
	}
	return nil
}

func holdsNum(p *image.Process, num uint64) bool {
	for _, fd := range p.FDs {
		if uint64(fd.Num) == num {
			return true
		}
	}
	return false
}

// readMem copies len(b) bytes at addr in process pid into b.
func readMem(pid int, addr uint64, b []byte) error {
	local := []unix.Iovec{{Base: &b[0]}}
	local[0].SetLen(len(b))
	remote := []unix.RemoteIovec{{Base: uintptr(addr), Len: len(b)}}
	n, err := unix.ProcessVMReadv(pid, local, remote, 0)
	if err != nil {
		return os.NewSyscallError("process_vm_readv", err)
	}
	if n != len(b) {
		return fmt.Errorf("process_vm_readv: %d of %d bytes", n, len(b))
	}
	return nil
}

// asIDsIn gives the target the effective ids ids (nil: leave them) for
// the next system calls, and returns what puts its own back. The saved
// ids stay, so the way back is open; the restore engine sets the
// recorded credentials, dumpable flag and parent-death signal later,
// which a change of ids would have reset.
func asIDsIn(inj Injector, ids *kernel.IDs) (func() error, error) {
	nothing := func() error { return nil }
	if ids == nil {
		return nothing, nil
	}
	eu, err := inj.Syscall(unix.SYS_GETEUID)
	if err != nil {
		return nil, fmt.Errorf("geteuid: %w", err)
	}
	eg, err := inj.Syscall(unix.SYS_GETEGID)
	if err != nil {
		return nil, fmt.Errorf("getegid: %w", err)
	}
	if uint32(eu) == ids.UID && uint32(eg) == ids.GID {
		return nothing, nil
	}
	const keep = uint64(^uint32(0)) // -1: leave the id as it is
	if _, err := inj.Syscall(unix.SYS_SETRESGID, keep, uint64(ids.GID), keep); err != nil {
		return nil, fmt.Errorf("effective gid %d in the target: %w", ids.GID, err)
	}
	if _, err := inj.Syscall(unix.SYS_SETRESUID, keep, uint64(ids.UID), keep); err != nil {
		inj.Syscall(unix.SYS_SETRESGID, keep, eg, keep)
		return nil, fmt.Errorf("effective uid %d in the target: %w", ids.UID, err)
	}
	return func() error {
		if _, err := inj.Syscall(unix.SYS_SETRESUID, keep, eu, keep); err != nil {
			return fmt.Errorf("effective uid back to %d in the target: %w", eu, err)
		}
		if _, err := inj.Syscall(unix.SYS_SETRESGID, keep, eg, keep); err != nil {
			return fmt.Errorf("effective gid back to %d in the target: %w", eg, err)
		}
		return nil
	}, nil
}
