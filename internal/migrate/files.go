package migrate

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"

	"ferry/internal/files"
	"ferry/internal/image"
)

// The file phase runs while the tree is frozen, before its state record:
// the source sends a Manifest (the job's files by path, size and SHA-256),
// the destination answers Need (a verdict per file), the source sends the
// content of every file not already there as FileData frames (index u32,
// offset u64, bytes) and one FileDone (index u32, then an optional flag
// byte) per file, then FilesEnd. The source hashes what it sends: a file
// the running job changed after it was described (the phase before the
// freeze) gets FileDone with fileChanged, and the destination drops it —
// the frozen phase sends it again; in the frozen phase a change (a writer
// outside the job) fails the migration.

const (
	fManifest  byte = 20
	fNeed      byte = 21
	fFileData  byte = 22
	fFileDone  byte = 23
	fFilesEnd  byte = 24
	fileHeader      = 12

	fileChanged byte = 1 // FileDone's flag: dropped, sent again later
)

func init() {
	frameNames[fManifest] = "manifest"
	frameNames[fNeed] = "need"
	frameNames[fFileData] = "file-data"
	frameNames[fFileDone] = "file-done"
	frameNames[fFilesEnd] = "files-end"
}

type needMsg struct {
	Verdicts []files.Verdict `json:"verdicts"`
}

// FileStats counts the file phase.
type FileStats struct {
	Checked int    `json:"checked"`
	Sent    int    `json:"sent"`
	Bytes   uint64 `json:"bytes"`
	Differ  int    `json:"differ"`
}

// sendFiles is the source's file phase in the frozen window, for the
// files the collected state refers to. An earlier phase while the job
// still ran (sendFilesAhead) has usually settled them all already: then
// this one only confirms.
func (s *sender) sendFiles(c *image.Checkpoint) error {
	s.phase("freeze and collect")
	defer s.phase("files")
	return s.filePhase(files.Paths(c), false)
}

// sendFilesAhead runs a file phase for the files the running job maps
// and has open, before the freeze: the destination hashes and receives
// them while the job still runs.
func (s *sender) sendFilesAhead() error {
	defer s.phase("files ahead")
	return s.filePhase(files.LivePaths(s.pid), true)
}

// filePhase runs one file phase (running: the job runs meanwhile and may
// change its files); the report counts what it sent.
func (s *sender) filePhase(paths []string, running bool) error {
	h := s.opts.Hasher
	if h == nil {
		h = &files.Hasher{}
	}
	m := h.Manifest(paths)
	h.Save()
	if err := s.c.sendJSON(fManifest, m); err != nil {
		return fmt.Errorf("send file manifest: %w", err)
	}
	var need needMsg
	if err := s.c.recvJSON(fNeed, &need); err != nil {
		return fmt.Errorf("destination file check: %w", err)
	}
	if len(need.Verdicts) != len(m) {
		return fmt.Errorf("destination answered %d file verdicts for %d files: %w", len(need.Verdicts), len(m), ErrProtocol)
	}
	// The report counts each file once over both phases.
	st := &s.rep.Files
	if s.filesSeen == nil {
		s.filesSeen = map[string]files.Verdict{}
	}
	buf := make([]byte, 1<<20)
	for i, v := range need.Verdicts {
		p := m[i].Path
		prev, seen := s.filesSeen[p]
		if !seen {
			st.Checked++
		}
		if v == files.Have {
			if !seen {
				s.filesSeen[p] = v
			}
			continue
		}
		changed, err := s.sendFile(i, m[i], buf)
		if err != nil {
			return err
		}
		if changed && !running {
			return fmt.Errorf("%s changed while the job was frozen (a writer outside the job?): its content would not match its manifest", p)
		}
		if changed {
			// The frozen phase checks and sends it again (and counts it).
			s.filesSeen[p] = files.Have
			continue
		}
		st.Bytes += uint64(m[i].Size)
		if !seen || prev == files.Have {
			st.Sent++
			if v == files.Differs {
				st.Differ++
			}
		}
		s.filesSeen[p] = v
	}
	if err := s.c.send(fFilesEnd, true); err != nil {
		return err
	}
	return nil
}

// sendFile sends the content of entry i; changed tells that what it read
// is not what the entry describes (the file changed since): the
// destination was told to drop it.
func (s *sender) sendFile(i int, e files.Entry, buf []byte) (changed bool, err error) {
	f, err := os.Open(e.Path)
	if err != nil {
		return false, fmt.Errorf("send %s: %w", e.Path, err)
	}
	defer f.Close()
	var hdr [fileHeader]byte
	binary.LittleEndian.PutUint32(hdr[0:4], uint32(i))
	d := sha256.New()
	for off := int64(0); off < e.Size; {
		n, err := f.ReadAt(buf[:min(int64(len(buf)), e.Size-off)], off)
		if n > 0 {
			d.Write(buf[:n])
			binary.LittleEndian.PutUint64(hdr[4:12], uint64(off))
			if err := s.c.send(fFileData, false, hdr[:], buf[:n]); err != nil {
				return false, err
			}
			off += int64(n)
		}
		if err != nil && err != io.EOF {
			return false, fmt.Errorf("read %s: %w", e.Path, err)
		}
		if err == io.EOF && off < e.Size {
			changed = true // it shrank
			break
		}
	}
	done := hdr[0:4]
	if changed || hex.EncodeToString(d.Sum(nil)) != e.SHA256 {
		changed = true
		done = append(hdr[0:4:4], fileChanged)
	}
	return changed, s.c.send(fFileDone, false, done)
}

// receiveFiles is the destination's file phase; payload is the
// Manifest frame's.
func receiveFiles(c *conn, payload []byte, h *files.Hasher, store *files.Store) error {
	var m []files.Entry
	if err := json.Unmarshal(payload, &m); err != nil {
		return fmt.Errorf("file manifest: %v: %w", err, ErrCorrupt)
	}
	if err := store.Admit(m); err != nil {
		return err
	}
	verdicts := h.Check(m)
	h.Save()
	for i := range verdicts {
		verdicts[i] = store.Settle(m[i], verdicts[i])
	}
	for i, v := range verdicts {
		if v != files.Have {
			if err := store.Begin(i, m[i], v); err != nil {
				return err
			}
		}
	}
	if err := c.sendJSON(fNeed, needMsg{Verdicts: verdicts}); err != nil {
		return err
	}
	var buf []byte
	for {
		t, p, err := c.recv(buf)
		if err != nil {
			return fmt.Errorf("receive files: %w", err)
		}
		buf = p
		switch t {
		case fFileData:
			if len(p) < fileHeader {
				return fmt.Errorf("short file-data frame: %w", ErrCorrupt)
			}
			i := int(binary.LittleEndian.Uint32(p[0:4]))
			if i >= len(m) {
				return fmt.Errorf("file-data for file %d of %d: %w", i, len(m), ErrCorrupt)
			}
			if err := store.Write(i, int64(binary.LittleEndian.Uint64(p[4:12])), p[fileHeader:]); err != nil {
				return err
			}
		case fFileDone:
			if len(p) < 4 {
				return fmt.Errorf("short file-done frame: %w", ErrCorrupt)
			}
			i := int(binary.LittleEndian.Uint32(p[0:4]))
			if i >= len(m) {
				return fmt.Errorf("file-done for file %d of %d: %w", i, len(m), ErrCorrupt)
			}
			if len(p) > 4 && p[4] == fileChanged {
				if err := store.Drop(i); err != nil {
					return err
				}
				continue
			}
			if err := store.Finish(i, m[i]); err != nil {
				return err
			}
		case fFilesEnd:
			return nil
		case fAbort:
			var a abortMsg
			json.Unmarshal(p, &a)
			return &AbortError{Reason: a.Reason}
		default:
			return fmt.Errorf("%s frame in the file phase: %w", frameName(t), ErrProtocol)
		}
	}
}
