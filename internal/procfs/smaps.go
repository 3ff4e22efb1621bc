package procfs

import (
	"bytes"
	"slices"
)

// SmapsMapping is one VMA of /proc/PID/smaps: the maps line plus the
// per-VMA counters. Sizes are in bytes (the kernel prints kB).
type SmapsMapping struct {
	Mapping

	Size, KernelPageSize, MMUPageSize uint64
	Rss, Pss, PssDirty                uint64
	SharedClean, SharedDirty          uint64
	PrivateClean, PrivateDirty        uint64
	Referenced, Anonymous, KSM        uint64
	LazyFree, AnonHugePages           uint64
	Swap, SwapPss, Locked             uint64
	THPEligible                       bool

	// VmFlags are the two-letter codes of the VmFlags line, in the
	// kernel's order: "rd" "wr" "ex" "sh" "mr" "mw" "me" "ms" "gd"
	// (grows down) "pf" "lo" (locked) "io" "sr" "rr" "dc" (don't copy on
	// fork) "de" "ac" "nr" "ht" "sf" "nl" "ar" "wf" "dd" (don't dump) "bt"
	// "mg" "hg" "nh" "mm" "um" "uw" "ss" "sl" "lf" "gu" "sd" (soft-dirty)
	// and others newer kernels add.
	VmFlags []string

	// Other holds every counter line not parsed into a field above
	// (ProtectionKey, FilePmdMapped, …), value text as printed.
	Other map[string]string
}

// HasVmFlag reports whether the two-letter code f is among VmFlags.
func (s *SmapsMapping) HasVmFlag(f string) bool { return slices.Contains(s.VmFlags, f) }

// Smaps reads /proc/PID/smaps. The kernel walks the page tables of every
// VMA to produce it, so it is far slower than Maps; use it when VmFlags or
// the counters are needed.
func Smaps(pid int) ([]SmapsMapping, error) {
	path := pidPath(pid, "smaps")
	var out []SmapsMapping
	err := withFile(path, false, func(b []byte) error {
		var err error
		out, err = parseSmaps(b, path)
		return err
	})
	return out, err
}

// parseSmaps parses smaps text. A header line starts with a lower-case hex
// address; a counter line with a capitalised "Key:".
func parseSmaps(b []byte, path string) ([]SmapsMapping, error) {
	var out []SmapsMapping
	var cur *SmapsMapping
	var prev string
	for n := 1; len(b) > 0; n++ {
		var line []byte
		line, b = nextLine(b)
		if len(line) == 0 {
			continue
		}
		if c := line[0]; '0' <= c && c <= '9' || 'a' <= c && c <= 'f' {
			out = append(out, SmapsMapping{})
			if err := parseMapsLine(line, &out[len(out)-1].Mapping, &prev); err != nil {
				return nil, lineErr(path, n, "%v in %q", err, line)
			}
			cur = &out[len(out)-1]
			continue
		}
		key, val, ok := splitKey(line)
		if !ok || cur == nil {
			return nil, lineErr(path, n, "unexpected %q", line)
		}
		if string(key) == "VmFlags" {
			for f, rest := nextField(val); len(f) > 0; f, rest = nextField(rest) {
				cur.VmFlags = append(cur.VmFlags, internVmFlag(f))
			}
			continue
		}
		if string(key) == "THPeligible" {
			cur.THPEligible = string(val) == "1"
			continue
		}
		dst := cur.sizeField(key)
		if dst == nil {
			if cur.Other == nil {
				cur.Other = make(map[string]string)
			}
			cur.Other[string(key)] = string(val)
			continue
		}
		num, unit := nextField(val)
		v, err := parseUint(num)
		if err != nil || string(trimSpace(unit)) != "kB" {
			return nil, lineErr(path, n, "bad size %q", line)
		}
		*dst = v << 10
	}
	return out, nil
}

func (s *SmapsMapping) sizeField(key []byte) *uint64 {
	switch string(key) {
	case "Size":
		return &s.Size
	case "KernelPageSize":
		return &s.KernelPageSize
	case "MMUPageSize":
		return &s.MMUPageSize
	case "Rss":
		return &s.Rss
	case "Pss":
		return &s.Pss
	case "Pss_Dirty":
		return &s.PssDirty
	case "Shared_Clean":
		return &s.SharedClean
	case "Shared_Dirty":
		return &s.SharedDirty
	case "Private_Clean":
		return &s.PrivateClean
	case "Private_Dirty":
		return &s.PrivateDirty
	case "Referenced":
		return &s.Referenced
	case "Anonymous":
		return &s.Anonymous
	case "KSM":
		return &s.KSM
	case "LazyFree":
		return &s.LazyFree
	case "AnonHugePages":
		return &s.AnonHugePages
	case "Swap":
		return &s.Swap
	case "SwapPss":
		return &s.SwapPss
	case "Locked":
		return &s.Locked
	}
	return nil
}

var vmFlagNames = [...]string{
	"rd", "wr", "ex", "sh", "mr", "mw", "me", "ms", "gd", "pf", "lo", "io",
	"sr", "rr", "dc", "de", "ac", "nr", "ht", "sf", "nl", "ar", "wf", "dd",
	"bt", "mg", "hg", "nh", "mm", "um", "uw", "ss", "sl", "lf", "gu", "sd",
}

func internVmFlag(b []byte) string {
	for _, s := range vmFlagNames {
		if bytes.Equal(b, []byte(s)) {
			return s
		}
	}
	return string(b)
}
