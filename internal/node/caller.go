package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os/user"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"ferry/internal/kernel"
)

// Caller is who asks the node for something: a process on the control
// socket (by its socket's credentials), or the same process forwarded by
// the node it asked (callerHeader). A request from a peer without that
// header comes from the peer node itself (nodeCaller): peers are trusted.
type Caller struct {
	UID, GID uint32
	Groups   []uint32
	// Node is set for a peer node acting on its own behalf.
	Node bool
}

// nodeCaller is a peer node's own request (migration steps, routing).
var nodeCaller = &Caller{Node: true}

// Root reports whether the caller may do everything: root or a node.
func (c *Caller) Root() bool { return c == nil || c.Node || c.UID == 0 }

// inGroup reports whether gid is the caller's primary or a supplementary
// group.
func (c *Caller) inGroup(gid uint32) bool {
	return c.GID == gid || slices.Contains(c.Groups, gid)
}

// callerHeader carries the original caller of a request one node forwards
// to another: "uid gid group,group,...". Only nodes set it; on the
// control socket it is refused.
const callerHeader = "X-Ferry-Caller"

func (c *Caller) header() string {
	gs := make([]string, len(c.Groups))
	for i, g := range c.Groups {
		gs[i] = strconv.FormatUint(uint64(g), 10)
	}
	return fmt.Sprintf("%d %d %s", c.UID, c.GID, strings.Join(gs, ","))
}

func parseCallerHeader(s string) (*Caller, error) {
	f := strings.Fields(s)
	if len(f) < 2 || len(f) > 3 {
		return nil, fmt.Errorf("malformed %s header %q", callerHeader, s)
	}
	id := func(s string) (uint32, error) {
		v, err := strconv.ParseUint(s, 10, 32)
		if err != nil {
			return 0, fmt.Errorf("malformed %s header: %w", callerHeader, err)
		}
		return uint32(v), nil
	}
	var c Caller
	var err error
	if c.UID, err = id(f[0]); err != nil {
		return nil, err
	}
	if c.GID, err = id(f[1]); err != nil {
		return nil, err
	}
	if len(f) == 3 {
		for _, g := range strings.Split(f[2], ",") {
			v, err := id(g)
			if err != nil {
				return nil, err
			}
			c.Groups = append(c.Groups, v)
		}
	}
	return &c, nil
}

type callerKey struct{}

// callerOf is the request's caller; nil (root) outside the API.
func callerOf(ctx context.Context) *Caller {
	c, _ := ctx.Value(callerKey{}).(*Caller)
	return c
}

func withCaller(ctx context.Context, c *Caller) context.Context {
	return context.WithValue(ctx, callerKey{}, c)
}

// forwardKey marks a context whose peer requests act for the caller (a
// forwarded request), not for this node.
type forwardKey struct{}

func forwarding(ctx context.Context) context.Context {
	return context.WithValue(ctx, forwardKey{}, callerOf(ctx))
}

// socketCaller reads the credentials of the process at the other end of a
// unix socket: SO_PEERCRED for uid and gid, SO_PEERGROUPS for its
// supplementary groups, both as they were when it connected.
func socketCaller(uc *net.UnixConn) (*Caller, error) {
	sc, err := uc.SyscallConn()
	if err != nil {
		return nil, err
	}
	var cred *unix.Ucred
	var groups []uint32
	var gerr error
	if cerr := sc.Control(func(fd uintptr) {
		cred, err = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
		groups, gerr = kernel.GetsockoptPeerGroups(int(fd))
	}); cerr != nil {
		return nil, cerr
	}
	if err != nil {
		return nil, fmt.Errorf("SO_PEERCRED: %w", err)
	}
	if gerr != nil {
		return nil, gerr
	}
	return &Caller{UID: cred.Uid, GID: cred.Gid, Groups: groups}, nil
}

// checkCaller admits to the control socket root and members of the
// node's group (by primary or supplementary group), puts the caller in
// the request's context, and refuses the headers only nodes may set.
func (n *Node) checkCaller(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		uc, ok := r.Context().Value(connKey{}).(*net.UnixConn)
		if !ok {
			http.Error(w, "no caller credentials", http.StatusForbidden)
			return
		}
		c, err := socketCaller(uc)
		if err != nil {
			httpError(w, http.StatusForbidden, fmt.Errorf("caller credentials: %w", err))
			return
		}
		if c.UID != 0 && (n.gid < 0 || !c.inGroup(uint32(n.gid))) {
			msg := "only root may use this node's control socket"
			if n.gid >= 0 {
				msg = fmt.Sprintf("only root and members of group %s may use this node's control socket", n.cfg.Group)
			}
			http.Error(w, msg, http.StatusForbidden)
			return
		}
		for _, k := range []string{hopHeader, callerHeader} {
			if r.Header.Get(k) != "" {
				httpError(w, http.StatusBadRequest, fmt.Errorf("header %s is for requests between nodes, not on the control socket", k))
				return
			}
		}
		h.ServeHTTP(w, r.WithContext(withCaller(r.Context(), c)))
	})
}

// peerCaller puts a peer's request's caller in its context: the
// forwarded caller, or the peer node itself.
func peerCaller(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := nodeCaller
		if s := r.Header.Get(callerHeader); s != "" {
			var err error
			if c, err = parseCallerHeader(s); err != nil {
				httpError(w, http.StatusBadRequest, err)
				return
			}
		}
		h.ServeHTTP(w, r.WithContext(withCaller(r.Context(), c)))
	})
}

// Actions a caller may be refused on a job.
const (
	actSee     = "see"
	actInput   = "write to"
	actSignal  = "signal"
	actMigrate = "migrate"
)

// ErrNotYours is wrapped when a caller asks for another user's job.
var ErrNotYours = errors.New("permission denied")

// mayAccess decides whether c may do act on a job owned by owner: root
// (and nodes) may do everything, anyone else only with its own jobs.
func mayAccess(c *Caller, act string, id string, owner uint32) error {
	if c.Root() || c.UID == owner {
		return nil
	}
	return fmt.Errorf("%w: cannot %s job %s: it belongs to uid %d; you are uid %d", ErrNotYours, act, id, owner, c.UID)
}

// userName is uid's name for display, or "" if it has none here.
func userName(uid uint32) string {
	u, err := user.LookupId(strconv.FormatUint(uint64(uid), 10))
	if err != nil {
		return ""
	}
	return u.Username
}
