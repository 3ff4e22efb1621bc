package procfs

import (
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestParseMaps(t *testing.T) {
	const rw = unix.PROT_READ | unix.PROT_WRITE
	tests := []struct {
		line string
		want Mapping
	}{
		{
			"56463c7e2000-56463c7e7000 r-xp 00002000 fe:00 247026                     /usr/bin/cat",
			Mapping{Start: 0x56463c7e2000, End: 0x56463c7e7000, Read: true, Exec: true,
				Prot: unix.PROT_READ | unix.PROT_EXEC, Offset: 0x2000, Dev: unix.Mkdev(0xfe, 0), Inode: 247026,
				Path: "/usr/bin/cat"},
		},
		{
			"564655249000-56465526a000 rw-p 00000000 00:00 0                          [heap]",
			Mapping{Start: 0x564655249000, End: 0x56465526a000, Read: true, Write: true, Prot: rw, Name: "[heap]"},
		},
		{
			// No name: the line ends with the space after the inode.
			"7f6aa60f6000-7f6aa6118000 rw-p 00000000 00:00 0 ",
			Mapping{Start: 0x7f6aa60f6000, End: 0x7f6aa6118000, Read: true, Write: true, Prot: rw},
		},
		{
			"7f158c1bc000-7f158c1bd000 ---p 00000000 00:00 0 ",
			Mapping{Start: 0x7f158c1bc000, End: 0x7f158c1bd000},
		},
		{
			"7f158cba9000-7f158cbab000 rw-s 00000000 fe:00 9978464                    /tmp/pf/a file (x) (deleted)",
			Mapping{Start: 0x7f158cba9000, End: 0x7f158cbab000, Read: true, Write: true, Shared: true, Prot: rw,
				Dev: unix.Mkdev(0xfe, 0), Inode: 9978464, Path: "/tmp/pf/a file (x)", Deleted: true},
		},
		{
			"7f158cba9000-7f158cbab000 r--s 00001000 fe:00 9978464                    /tmp/with ) ( and  two  spaces ",
			Mapping{Start: 0x7f158cba9000, End: 0x7f158cbab000, Read: true, Shared: true, Prot: unix.PROT_READ,
				Offset: 0x1000, Dev: unix.Mkdev(0xfe, 0), Inode: 9978464, Path: "/tmp/with ) ( and  two  spaces"},
		},
		{
			"7f158cba7000-7f158cba8000 rw-s 00000000 00:01 24                         /dev/zero (deleted)",
			Mapping{Start: 0x7f158cba7000, End: 0x7f158cba8000, Read: true, Write: true, Shared: true, Prot: rw,
				Dev: unix.Mkdev(0, 1), Inode: 24, Path: "/dev/zero", Deleted: true},
		},
		{
			"7f158cba6000-7f158cba7000 r--s 00000000 00:01 25                         /memfd:mfd (deleted)",
			Mapping{Start: 0x7f158cba6000, End: 0x7f158cba7000, Read: true, Shared: true, Prot: unix.PROT_READ,
				Dev: unix.Mkdev(0, 1), Inode: 25, Path: "/memfd:mfd", Deleted: true},
		},
		{
			"7f6aa636c000-7f6aa636e000 r--p 00000000 00:00 0                          [vvar_vclock]",
			Mapping{Start: 0x7f6aa636c000, End: 0x7f6aa636e000, Read: true, Prot: unix.PROT_READ, Name: "[vvar_vclock]"},
		},
		{
			"7f0000000000-7f0000001000 rw-p 00000000 00:00 0                          [anon:my name]",
			Mapping{Start: 0x7f0000000000, End: 0x7f0000001000, Read: true, Write: true, Prot: rw, Name: "[anon:my name]"},
		},
		{
			// A big device number (e.g. nvme) and a 64-bit offset.
			"00400000-00452000 r-xp 1000000000 103:02 173521      /usr/bin/dbus-daemon",
			Mapping{Start: 0x400000, End: 0x452000, Read: true, Exec: true, Prot: unix.PROT_READ | unix.PROT_EXEC,
				Offset: 0x1000000000, Dev: unix.Mkdev(0x103, 2), Inode: 173521, Path: "/usr/bin/dbus-daemon"},
		},
		{
			"ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]",
			Mapping{Start: 0xffffffffff600000, End: 0xffffffffff601000, Exec: true, Prot: unix.PROT_EXEC, Name: "[vsyscall]"},
		},
	}
	for _, tt := range tests {
		got, err := parseMaps([]byte(tt.line+"\n"), "maps")
		if err != nil {
			t.Errorf("parseMaps(%q): %v", tt.line, err)
			continue
		}
		if len(got) != 1 || !reflect.DeepEqual(got[0], tt.want) {
			t.Errorf("parseMaps(%q) = %+v, want %+v", tt.line, got, tt.want)
		}
	}
}

func TestParseMapsSharesPaths(t *testing.T) {
	text := "1000-2000 r--p 00000000 fe:00 5 /lib/x.so\n2000-3000 r-xp 00001000 fe:00 5 /lib/x.so\n"
	got, err := parseMaps([]byte(text), "maps")
	if err != nil || len(got) != 2 {
		t.Fatalf("parseMaps = %v, %v", got, err)
	}
	if got[0].Path != "/lib/x.so" || got[1].Path != "/lib/x.so" {
		t.Errorf("paths = %q, %q", got[0].Path, got[1].Path)
	}
	if got[0].Anonymous() || got[0].Len() != 0x1000 {
		t.Errorf("Anonymous/Len wrong for %+v", got[0])
	}
}

func TestParseMapsErrors(t *testing.T) {
	tests := []struct{ text, wantInErr string }{
		{"1000-2000 r--p 00000000 fe:00 5 /x\nzz-2000 r--p 0 00:00 0\n", "maps line 2: malformed: bad start address"},
		{"1000 r--p 00000000 00:00 0\n", "line 1: malformed: no '-'"},
		{"1000-2000 rwzp 00000000 00:00 0\n", "bad permissions"},
		{"1000-2000 r--q 00000000 00:00 0\n", "bad permissions"},
		{"1000-2000 r--p 00000000 0000 0\n", "bad device"},
		{"1000-2000 r--p 00000000 00:00\n", "bad inode"},
		{"2000-1000 r--p 00000000 00:00 0\n", "end below start"},
		{"1000-2000 r--p\n", "bad offset"},
	}
	for _, tt := range tests {
		_, err := parseMaps([]byte(tt.text), "/proc/1/maps")
		if err == nil || !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tt.wantInErr) {
			t.Errorf("parseMaps(%q) error = %v, want one containing %q wrapping ErrMalformed", tt.text, err, tt.wantInErr)
		}
	}
}

func TestTrimDeleted(t *testing.T) {
	tests := []struct {
		in, want string
		deleted  bool
	}{
		{"/a b (deleted)", "/a b", true},
		{"/a b", "/a b", false},
		{"/x(deleted)", "/x(deleted)", false},
		{" (deleted)", "", true},
	}
	for _, tt := range tests {
		got, del := TrimDeleted(tt.in)
		if got != tt.want || del != tt.deleted {
			t.Errorf("TrimDeleted(%q) = %q, %v, want %q, %v", tt.in, got, del, tt.want, tt.deleted)
		}
	}
}

func TestMapFilesPath(t *testing.T) {
	if got, want := MapFilesPath(42, 0x7F0000001000, 0x7f0000003000), "/proc/42/map_files/7f0000001000-7f0000003000"; got != want {
		t.Errorf("MapFilesPath = %q, want %q", got, want)
	}
}

const smapsSample = `55e20ddfb000-55e20ddfc000 r-xp 00001000 fe:00 9978468                    /tmp/pf/probe
Size:                  4 kB
KernelPageSize:        4 kB
MMUPageSize:           4 kB
Rss:                   4 kB
Pss:                   4 kB
Pss_Dirty:             4 kB
Shared_Clean:          0 kB
Shared_Dirty:          0 kB
Private_Clean:         0 kB
Private_Dirty:         4 kB
Referenced:            4 kB
Anonymous:             0 kB
KSM:                   0 kB
LazyFree:              0 kB
AnonHugePages:         0 kB
ShmemPmdMapped:        0 kB
FilePmdMapped:         0 kB
Shared_Hugetlb:        0 kB
Private_Hugetlb:       0 kB
Swap:                  0 kB
SwapPss:               0 kB
Locked:                0 kB
THPeligible:           0
VmFlags: rd ex mr mw me 
7ffd23858000-7ffd23879000 rw-p 00000000 00:00 0                          [stack]
Size:                132 kB
Rss:                  12 kB
Anonymous:            12 kB
THPeligible:           1
ProtectionKey:         0
VmFlags: rd wr mr mw me gd ac 
`

func TestParseSmaps(t *testing.T) {
	got, err := parseSmaps([]byte(smapsSample), "smaps")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("got %d mappings, want 2", len(got))
	}
	a, s := got[0], got[1]
	if a.Path != "/tmp/pf/probe" || a.Size != 4096 || a.Rss != 4096 || a.PrivateDirty != 4096 || a.Anonymous != 0 || a.THPEligible {
		t.Errorf("first = %+v", a)
	}
	if !reflect.DeepEqual(a.VmFlags, []string{"rd", "ex", "mr", "mw", "me"}) {
		t.Errorf("first VmFlags = %q", a.VmFlags)
	}
	if a.Other["ShmemPmdMapped"] != "0 kB" {
		t.Errorf("first Other = %v", a.Other)
	}
	if s.Name != "[stack]" || s.Size != 132<<10 || s.Anonymous != 12<<10 || !s.THPEligible || !s.HasVmFlag("gd") || s.HasVmFlag("dd") {
		t.Errorf("second = %+v", s)
	}
	if s.Other["ProtectionKey"] != "0" {
		t.Errorf("second Other = %v", s.Other)
	}

	for _, bad := range []string{"Size: 4 kB\n", "1000-2000 r--p 0 00:00 0\nSize: x kB\n", "1000-2000 r--p 0 00:00 0\nSize: 4 MB\n"} {
		if _, err := parseSmaps([]byte(bad), "smaps"); !errors.Is(err, ErrMalformed) {
			t.Errorf("parseSmaps(%q) error = %v, want ErrMalformed", bad, err)
		}
	}
}

func TestParseStat(t *testing.T) {
	const tail = " S 1 4853 2979 0 -1 4194368 1 0 0 0 0 0 0 0 20 0 2 0 29525 10948608 309 18446744073709551615 " +
		"94429383733248 94429383734925 140725199534080 0 0 0 0 6 0 1 0 0 -1 0 0 0 0 0 0 " +
		"94429383744976 94429383745744 94430006075392 140725199538898 140725199538906 140725199538906 140725199540208 0\n"
	for _, comm := range []string{"wo) (rk", "plain", "a b", ")", "((", "x\ny) Z 9 9 (", ""} {
		var s ProcStat
		if err := parseStat([]byte("4865 ("+comm+")"+tail), &s); err != nil {
			t.Errorf("parseStat(comm %q): %v", comm, err)
			continue
		}
		want := ProcStat{
			PID: 4865, Comm: comm, State: 'S', PPID: 1, PGRP: 4853, Session: 2979, TTYNr: 0, TPGID: -1,
			Flags: 4194368, MinFlt: 1, Priority: 20, NumThreads: 2, StartTime: 29525, VSize: 10948608, RSS: 309,
			RSSLim: 18446744073709551615, StartCode: 94429383733248, EndCode: 94429383734925,
			StartStack: 140725199534080, ExitSignal: -1, StartData: 94429383744976, EndData: 94429383745744,
			StartBrk: 94430006075392, ArgStart: 140725199538898, ArgEnd: 140725199538906,
			EnvStart: 140725199538906, EnvEnd: 140725199540208,
		}
		if s != want {
			t.Errorf("parseStat(comm %q) = %+v, want %+v", comm, s, want)
		}
	}
	for _, bad := range []string{"", "12 (x S 1", "12 (x) S 1 2 3", "x (a) S" + tail[2:], "12 (a) SS" + tail[2:], "12 (a) S 1 zz" + tail[4:]} {
		var s ProcStat
		if err := parseStat([]byte(bad), &s); err == nil {
			t.Errorf("parseStat(%q) succeeded", bad)
		}
	}
}

const statusSample = "Name:\ta\\\\b\\nc\tx \n" + `Umask:	0027
State:	T (stopped)
Tgid:	9925
Ngid:	0
Pid:	9928
PPid:	1
TracerPid:	77
Uid:	0	1	2	3
Gid:	4	5	6	7
FDSize:	64
Groups:	10 20 
NStgid:	9925	5
NSpid:	9928	8
NSpgid:	9912	1
NSsid:	2979	1
Kthread:	0
VmPeak:	   18908 kB
VmRSS:	    3912 kB
Threads:	3
SigQ:	3/96364
SigPnd:	0000000000000100
ShdPnd:	8000000000000000
SigBlk:	0000000800000200
SigIgn:	0000000000001006
SigCgt:	0000000100000800
CapInh:	0000000000000000
CapPrm:	000001fffeffffff
CapEff:	000001fffeffffff
CapBnd:	000001fffeffffff
CapAmb:	0000000000000001
NoNewPrivs:	1
Seccomp:	2
Seccomp_filters:	3
Speculation_Store_Bypass:	vulnerable
Cpus_allowed_list:	0-1
`

func TestParseStatus(t *testing.T) {
	var s ProcStatus
	if err := parseStatus([]byte(statusSample), "status", &s); err != nil {
		t.Fatal(err)
	}
	want := ProcStatus{
		Name: "a\\b\nc\tx ", Umask: 0o27, State: 'T', Tgid: 9925, PID: 9928, PPID: 1, TracerPID: 77,
		UID: [4]int{0, 1, 2, 3}, GID: [4]int{4, 5, 6, 7}, FDSize: 64, Groups: []int{10, 20},
		NStgid: []int{9925, 5}, NSpid: []int{9928, 8}, NSpgid: []int{9912, 1}, NSsid: []int{2979, 1},
		VmRSS: 3912, Threads: 3, SigQueued: 3, SigQueueLimit: 96364,
		SigPnd: 0x100, ShdPnd: 1 << 63, SigBlk: 0x800000200, SigIgn: 0x1006, SigCgt: 0x100000800,
		CapPrm: 0x1fffeffffff, CapEff: 0x1fffeffffff, CapBnd: 0x1fffeffffff, CapAmb: 1,
		NoNewPrivs: true, Seccomp: 2, SeccompFilters: 3,
	}
	if !reflect.DeepEqual(s, want) {
		t.Errorf("parseStatus =\n%+v\nwant\n%+v", s, want)
	}

	for _, bad := range []string{
		strings.Replace(statusSample, "SigQ:\t3/96364", "SigQ:\t3", 1),
		strings.Replace(statusSample, "Uid:\t0\t1\t2\t3", "Uid:\t0\t1", 1),
		strings.Replace(statusSample, "CapEff:\t000001fffeffffff", "CapEff:\tzz", 1),
		strings.Replace(statusSample, "Umask:\t0027", "Umask:\t0029", 1),
		"VmPeak: 1 kB\n",
		strings.Replace(statusSample, "VmRSS:\t    3912 kB", "VmRSS:\t    3912", 1),
	} {
		var s ProcStatus
		if err := parseStatus([]byte(bad), "status", &s); !errors.Is(err, ErrMalformed) {
			t.Errorf("parseStatus(...) error = %v, want ErrMalformed", err)
		}
	}
}

func TestUnescapeName(t *testing.T) {
	tests := []struct{ in, want string }{
		{`plain`, "plain"},
		{`a\\b\nc`, "a\\b\nc"},
		{`trailing\`, `trailing\`},
		{`\t`, `\t`},
	}
	for _, tt := range tests {
		if got := unescapeName([]byte(tt.in)); got != tt.want {
			t.Errorf("unescapeName(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestParseFDInfo(t *testing.T) {
	tests := []struct {
		name, text string
		check      func(t *testing.T, fi *ProcFDInfo)
	}{
		{"file", "pos:\t5\nflags:\t0100001\nmnt_id:\t27\nino:\t9978463\n", func(t *testing.T, fi *ProcFDInfo) {
			if fi.Pos != 5 || fi.Flags != OLargefile|unix.O_WRONLY || fi.MntID != 27 || fi.Ino != 9978463 {
				t.Errorf("got %+v", fi)
			}
			if fi.Eventfd != nil || fi.Timerfd != nil || fi.Signalfd != nil || fi.Epoll != nil || fi.Inotify != nil || fi.Lines != nil {
				t.Errorf("typed parts set: %+v", fi)
			}
		}},
		{"eventfd", "pos:\t0\nflags:\t04002\nmnt_id:\t17\nino:\t1038\neventfd-count:               2a\neventfd-id: 1\neventfd-semaphore: 1\n", func(t *testing.T, fi *ProcFDInfo) {
			if fi.Flags != unix.O_NONBLOCK|unix.O_RDWR {
				t.Errorf("Flags = %#o", fi.Flags)
			}
			if want := (EventfdInfo{Count: 42, ID: 1, Semaphore: true}); fi.Eventfd == nil || *fi.Eventfd != want {
				t.Errorf("Eventfd = %+v, want %+v", fi.Eventfd, want)
			}
			if fi.Fields["eventfd-count"] != "2a" {
				t.Errorf("Fields = %q", fi.Fields)
			}
		}},
		{"timerfd", "pos:\t0\nflags:\t02000002\nmnt_id:\t17\nino:\t1038\nclockid: 1\nticks: 4\nsettime flags: 01\nit_value: (99, 487341259)\nit_interval: (3, 500)\n", func(t *testing.T, fi *ProcFDInfo) {
			want := TimerfdInfo{ClockID: 1, Ticks: 4, SettimeFlags: 1,
				Value: unix.Timespec{Sec: 99, Nsec: 487341259}, Interval: unix.Timespec{Sec: 3, Nsec: 500}}
			if fi.Flags != unix.O_CLOEXEC|unix.O_RDWR || fi.Timerfd == nil || *fi.Timerfd != want {
				t.Errorf("Flags %#o, Timerfd = %+v, want %+v", fi.Flags, fi.Timerfd, want)
			}
		}},
		{"signalfd", "pos:\t0\nflags:\t02\nmnt_id:\t17\nino:\t1038\nsigmask:\t0000000800000200\n", func(t *testing.T, fi *ProcFDInfo) {
			if fi.Signalfd == nil || fi.Signalfd.Sigmask != 1<<(unix.SIGUSR1-1)|1<<35 {
				t.Errorf("Signalfd = %+v", fi.Signalfd)
			}
		}},
		{"epoll", "pos:\t0\nflags:\t02\nmnt_id:\t17\nino:\t1038\n" +
			"tfd:        4 events:       1c data:                7  pos:0 ino:40e sdev:10\n" +
			"tfd:        3 events: 80000019 data: 1122334455667788  pos:12 ino:3c4a3 sdev:fe00001\n", func(t *testing.T, fi *ProcFDInfo) {
			want := []EpollTarget{
				{FD: 4, Events: 0x1c, Data: 7, Ino: 0x40e, Dev: unix.Mkdev(0, 0x10)},
				{FD: 3, Events: 0x80000019, Data: 0x1122334455667788, Pos: 12, Ino: 0x3c4a3, Dev: unix.Mkdev(0xfe, 1)},
			}
			if !reflect.DeepEqual(fi.Epoll, want) || len(fi.Lines) != 2 {
				t.Errorf("Epoll = %+v, want %+v; Lines %q", fi.Epoll, want, fi.Lines)
			}
		}},
		{"inotify", "pos:\t0\nflags:\t00\nmnt_id:\t17\nino:\t1038\n" +
			"inotify wd:1 ino:3c4a3 sdev:fe00000 mask:300 ignored_mask:0 fhandle-bytes:8 fhandle-type:1 f_handle:a3c4030000000000\n", func(t *testing.T, fi *ProcFDInfo) {
			want := []InotifyWatch{{WD: 1, Ino: 0x3c4a3, Dev: unix.Mkdev(0xfe, 0), Mask: unix.IN_CREATE | unix.IN_DELETE,
				HandleType: 1, Handle: []byte{0xa3, 0xc4, 0x03, 0, 0, 0, 0, 0}}}
			if !reflect.DeepEqual(fi.Inotify, want) || len(fi.Lines) != 1 || !strings.HasPrefix(fi.Lines[0], "inotify wd:1 ") {
				t.Errorf("Inotify = %+v, want %+v; Lines %q", fi.Inotify, want, fi.Lines)
			}
		}},
		{"fanotify", "pos:\t0\nflags:\t02\nmnt_id:\t15\nino:\t1040\n" +
			"fanotify flags:10 event-flags:8002\n" +
			"fanotify ino:3c4a3 sdev:fe00001 mflags:40 mask:3b ignored_mask:1 fhandle-bytes:8 fhandle-type:1 f_handle:a3c4030000000000\n" +
			"fanotify mnt_id:1d mflags:0 mask:8 ignored_mask:0\n" +
			"fanotify sdev:10 mflags:0 mask:100 ignored_mask:0\n", func(t *testing.T, fi *ProcFDInfo) {
			want := &FanotifyInfo{Flags: 0x10, EventFlags: 0x8002, Marks: []FanotifyMark{
				{Kind: FanMarkInode, Ino: 0x3c4a3, Dev: unix.Mkdev(0xfe, 1), MFlags: 0x40, Mask: 0x3b, IgnoredMask: 1,
					HandleType: 1, Handle: []byte{0xa3, 0xc4, 0x03, 0, 0, 0, 0, 0}},
				{Kind: FanMarkMount, MntID: 0x1d, Mask: 8},
				{Kind: FanMarkFS, Dev: unix.Mkdev(0, 0x10), Mask: 0x100},
			}}
			if !reflect.DeepEqual(fi.Fanotify, want) || len(fi.Lines) != 4 {
				t.Errorf("Fanotify = %+v, want %+v; Lines %q", fi.Fanotify, want, fi.Lines)
			}
		}},
		{"pidfd", "pos:\t0\nflags:\t02000002\nmnt_id:\t15\nino:\t1051\nPid:\t77\nNSpid:\t77\n", func(t *testing.T, fi *ProcFDInfo) {
			if fi.Fields["Pid"] != "77" || fi.Fields["NSpid"] != "77" {
				t.Errorf("Fields = %q", fi.Fields)
			}
		}},
		{"lock", "pos:\t0\nflags:\t02\nmnt_id:\t27\nino:\t5\nlock:\t1: POSIX  ADVISORY  WRITE 77 fe:00:5 0 EOF\n", func(t *testing.T, fi *ProcFDInfo) {
			if len(fi.Lines) != 1 || !strings.HasPrefix(fi.Lines[0], "lock:\t1: POSIX") {
				t.Errorf("Lines = %q", fi.Lines)
			}
			want := []Lock{{Kind: "POSIX", Mode: "ADVISORY", Type: "WRITE", PID: 77, Dev: "fe:00", Ino: 5, End: -1}}
			if !reflect.DeepEqual(fi.Locks, want) {
				t.Errorf("Locks = %+v, want %+v", fi.Locks, want)
			}
		}},
		{"lock waiter", "pos:\t0\nflags:\t02\nmnt_id:\t27\nino:\t5\nlock:\t1: FLOCK  ADVISORY  WRITE 77 fe:00:5 0 EOF\nlock:\t1: -> FLOCK  ADVISORY  WRITE 78 fe:00:5 0 EOF\n", func(t *testing.T, fi *ProcFDInfo) {
			if len(fi.Locks) != 1 || fi.Locks[0].PID != 77 || len(fi.Lines) != 2 {
				t.Errorf("Locks = %+v, Lines = %q; want the holder only, both lines", fi.Locks, fi.Lines)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fi, err := parseFDInfo([]byte(tt.text), "fdinfo")
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, fi)
		})
	}

	for _, bad := range []string{
		"pos:\t0\nflags:\t08\n",                                 // flags are octal
		"pos:\t0\n",                                             // no flags
		"pos:\t0\nflags:\t02\nit_value: 99, 1\n",                // no parentheses
		"pos:\t0\nflags:\t02\ntfd: 4 events: 1c\n",              // no data
		"pos:\t0\nflags:\t02\ntfd: 4 events: zz data: 1\n",      // bad hex
		"pos:\t0\nflags:\t02\ninotify ino:3\n",                  // no wd
		"pos:\t0\nflags:\t02\nfanotify mflags:0 mask:8\n",       // no kind of mark
		"pos:\t0\nflags:\t02\nfanotify mnt_id:zz mask:8\n",      // bad hex
		"pos:\t0\nflags:\t02\nwhat\n",                           // no key
		"pos:\t0\nflags:\t02\nlock:\t1: POSIX ADVISORY WRITE\n", // short lock line
	} {
		if _, err := parseFDInfo([]byte(bad), "fdinfo"); !errors.Is(err, ErrMalformed) {
			t.Errorf("parseFDInfo(%q) error = %v, want ErrMalformed", bad, err)
		}
	}
}

const timersSample = `ID: 2
signal: 35/0000000000000007
notify: none/pid.9925
ClockID: 7
ID: 1
signal: 35/0000000000000007
notify: signal/tid.9928
ClockID: 1
ID: 0
signal: 12/00000000deadbeef
notify: signal/pid.9925
ClockID: 0
ID: 3
signal: 14/0000000000000000
notify: thread/pid.9925
ClockID: -6
`

func TestParseTimers(t *testing.T) {
	got, err := parseTimers([]byte(timersSample), "timers")
	if err != nil {
		t.Fatal(err)
	}
	want := []PosixTimer{
		{ID: 2, Signal: 35, SigevValue: 7, SigevNotify: SigevNone, NotifyPID: 9925, ClockID: unix.CLOCK_BOOTTIME},
		{ID: 1, Signal: 35, SigevValue: 7, SigevNotify: SigevThreadID, NotifyPID: 9928, ClockID: unix.CLOCK_MONOTONIC},
		{ID: 0, Signal: 12, SigevValue: 0xdeadbeef, SigevNotify: SigevSignal, NotifyPID: 9925, ClockID: unix.CLOCK_REALTIME},
		{ID: 3, Signal: 14, SigevNotify: SigevThread, NotifyPID: 9925, ClockID: -6},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("parseTimers =\n%+v\nwant\n%+v", got, want)
	}
	if got, err := parseTimers(nil, "timers"); err != nil || len(got) != 0 {
		t.Errorf("parseTimers(empty) = %v, %v", got, err)
	}
	for _, bad := range []string{
		"signal: 1/0\n",
		"ID: 1\nnotify: bogus/pid.1\n",
		"ID: 1\nnotify: signal/xid.1\n",
		"ID: 1\nnotify: signal\n",
		"ID: 1\nsignal: 12\n",
		"ID: x\n",
	} {
		if _, err := parseTimers([]byte(bad), "timers"); !errors.Is(err, ErrMalformed) {
			t.Errorf("parseTimers(%q) error = %v, want ErrMalformed", bad, err)
		}
	}
}

func TestParseNumbers(t *testing.T) {
	hex := []struct {
		in   string
		want uint64
		ok   bool
	}{
		{"0", 0, true}, {"ffffffffffffffff", 1<<64 - 1, true}, {"DeadBeef", 0xdeadbeef, true},
		{"", 0, false}, {"10000000000000000", 0, false}, {"g", 0, false},
	}
	for _, tt := range hex {
		got, err := parseHex([]byte(tt.in))
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("parseHex(%q) = %#x, %v, want %#x ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
	dec := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"0", 0, true}, {"-1", -1, true}, {"9223372036854775807", 1<<63 - 1, true},
		{"-9223372036854775808", -1 << 63, true}, {"9223372036854775808", 0, false},
		{"", 0, false}, {"-", 0, false}, {"1a", 0, false},
	}
	for _, tt := range dec {
		got, err := parseInt([]byte(tt.in))
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("parseInt(%q) = %d, %v, want %d ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
	if _, err := parseUint([]byte("18446744073709551616")); err == nil {
		t.Errorf("parseUint(2^64) succeeded")
	}
	if v, err := parseOctal([]byte("02000002")); err != nil || v != 0o2000002 {
		t.Errorf("parseOctal = %o, %v", v, err)
	}
}

func TestParseMountinfo(t *testing.T) {
	text := "22 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw\n" +
		"35 22 0:32 /sub /mnt/with\\040space rw - tmpfs tmpfs rw\n"
	got, err := parseMountinfo([]byte(text), "mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	want := []Mount{
		{ID: 22, ParentID: 1, Dev: unix.Mkdev(254, 1), Root: "/", Point: "/"},
		{ID: 35, ParentID: 22, Dev: unix.Mkdev(0, 32), Root: "/sub", Point: "/mnt/with space"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
	for _, bad := range []string{"22 1 254:1 /\n", "x 1 254:1 / / rw\n", "22 1 2541 / / rw\n"} {
		if _, err := parseMountinfo([]byte(bad), "mountinfo"); !errors.Is(err, ErrMalformed) {
			t.Errorf("parseMountinfo(%q) error = %v, want ErrMalformed", bad, err)
		}
	}
}

func TestParseSchedstat(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"604933291 114199746 492\n", 604933291, true},
		{"0 0 0\n", 0, true},
		{"", 0, false},
		{"12 34\n", 0, false},
		{"-5 1 1\n", 0, false},
		{"x 1 1\n", 0, false},
	} {
		got, err := parseSchedstat("schedstat", []byte(c.in))
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("parseSchedstat(%q) = %d, %v; want %d, ok %v", c.in, got, err, c.want, c.ok)
		}
	}
}

func TestParseLockLine(t *testing.T) {
	tests := []struct {
		line    string
		want    Lock
		ok      bool
		wantErr bool
	}{
		{line: "1: FLOCK  ADVISORY  READ 7379 fe:00:9977873 0 EOF", ok: true,
			want: Lock{Kind: "FLOCK", Mode: "ADVISORY", Type: "READ", PID: 7379, Dev: "fe:00", Ino: 9977873, Start: 0, End: -1}},
		{line: "2: POSIX  ADVISORY  WRITE 7379 fe:00:9977875 100 199", ok: true,
			want: Lock{Kind: "POSIX", Mode: "ADVISORY", Type: "WRITE", PID: 7379, Dev: "fe:00", Ino: 9977875, Start: 100, End: 199}},
		{line: "1: OFDLCK ADVISORY  WRITE -1 08:01:12 0 9", ok: true,
			want: Lock{Kind: "OFDLCK", Mode: "ADVISORY", Type: "WRITE", PID: -1, Dev: "08:01", Ino: 12, Start: 0, End: 9}},
		{line: "1: LEASE  ACTIVE    READ 7412 fe:00:9977893 0 EOF", ok: true,
			want: Lock{Kind: "LEASE", Mode: "ACTIVE", Type: "READ", PID: 7412, Dev: "fe:00", Ino: 9977893, Start: 0, End: -1}},
		{line: "\t1: POSIX  ADVISORY  WRITE 77 fe:00:5 0 EOF", ok: true, // after fdinfo's "lock:"
			want: Lock{Kind: "POSIX", Mode: "ADVISORY", Type: "WRITE", PID: 77, Dev: "fe:00", Ino: 5, Start: 0, End: -1}},
		{line: "1: -> POSIX  ADVISORY  WRITE 7380 fe:00:9977875 100 199", ok: false},
		{line: "1: POSIX  ADVISORY  WRITE", wantErr: true},
		{line: "1: POSIX  ADVISORY  WRITE x fe:00:1 0 EOF", wantErr: true},
		{line: "1: POSIX  ADVISORY  WRITE 1 fe00 0 EOF", wantErr: true},
		{line: "1: POSIX  ADVISORY  WRITE 1 fe:00:1 0 9 extra", wantErr: true},
		{line: "1 POSIX  ADVISORY  WRITE 1 fe:00:1 0 9", wantErr: true},
	}
	for _, tt := range tests {
		got, ok, err := parseLockLine([]byte(tt.line))
		if (err != nil) != tt.wantErr || ok != tt.ok || (ok && got != tt.want) {
			t.Errorf("parseLockLine(%q) = %+v, %v, %v; want %+v, %v, error %v", tt.line, got, ok, err, tt.want, tt.ok, tt.wantErr)
		}
	}
}

func TestLockString(t *testing.T) {
	tests := []struct {
		l    Lock
		want string
	}{
		{Lock{Kind: "FLOCK", Type: "WRITE", End: -1}, "FLOCK WRITE"},
		{Lock{Kind: "POSIX", Type: "READ", Start: 100, End: 199}, "POSIX READ 100-199"},
		{Lock{Kind: "OFDLCK", Type: "WRITE", End: -1}, "OFDLCK WRITE 0-EOF"},
	}
	for _, tt := range tests {
		if got := tt.l.String(); got != tt.want {
			t.Errorf("%+v.String() = %q, want %q", tt.l, got, tt.want)
		}
	}
}

// TestParseEpollLine holds the lines fds's own parser was tested with
// before it went: the same bytes give the same items, with the kernel's
// sdev turned into the unix.Mkdev form.
func TestParseEpollLine(t *testing.T) {
	tests := []struct {
		line string
		want EpollTarget
	}{
		{"tfd:        3 events: 80000019 data:             1234  pos:0 ino:40e sdev:10",
			EpollTarget{FD: 3, Events: 0x80000019, Data: 0x1234, Ino: 0x40e, Dev: unix.Mkdev(0, 0x10)}},
		{"tfd:      105 events:       19 data:              abc  pos:0 ino:2a sdev:e",
			EpollTarget{FD: 105, Events: 0x19, Data: 0xabc, Ino: 0x2a, Dev: unix.Mkdev(0, 0xe)}},
		{"tfd:        7 events:       19 data:                0  pos:0 ino:2a sdev:10300002",
			EpollTarget{FD: 7, Events: 0x19, Ino: 0x2a, Dev: unix.Mkdev(0x103, 2)}},
	}
	for _, tt := range tests {
		got, err := parseEpollLine([]byte(tt.line))
		if err != nil || got != tt.want {
			t.Errorf("parseEpollLine(%q) = %+v, %v; want %+v", tt.line, got, err, tt.want)
		}
	}
}

func TestParseUnixLine(t *testing.T) {
	tests := []struct {
		line string
		want UnixSocket
	}{
		{"0000000000000000: 00000002 00000000 00010000 0001 01 23456 /run/a b.sock",
			UnixSocket{Flags: UnixAcceptCon, Type: unix.SOCK_STREAM, State: 1, Inode: 23456, Path: "/run/a b.sock"}},
		{"0000000000000000: 00000002 00000000 00000000 0002 01 77 @abs@name",
			UnixSocket{Type: unix.SOCK_DGRAM, State: 1, Inode: 77, Path: "@abs@name"}},
		{"0000000000000000: 00000003 00000000 00000000 0001 03 12", UnixSocket{Type: unix.SOCK_STREAM, State: 3, Inode: 12}},
	}
	for _, tt := range tests {
		got, err := parseUnixLine([]byte(tt.line))
		if err != nil || got != tt.want {
			t.Errorf("parseUnixLine(%q) = %+v, %v; want %+v", tt.line, got, err, tt.want)
		}
	}
	for _, bad := range []string{
		"0000000000000000: 00000002 00000000 00010000 0001 01",
		"0000000000000000: 00000002 00000000 zz 0001 01 5",
		"0000000000000000: 00000002 00000000 00000000 10001 01 5",
	} {
		if _, err := parseUnixLine([]byte(bad)); err == nil {
			t.Errorf("parseUnixLine(%q) = nil error, want one", bad)
		}
	}
}

func TestParseInetLine(t *testing.T) {
	tests := []struct {
		line string
		want InetSocket
	}{
		{"   0: 0100007F:0FA0 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 40001 1 0000000000000000 100 0 0 10 0",
			InetSocket{Local: netip.MustParseAddrPort("127.0.0.1:4000"), Remote: netip.MustParseAddrPort("0.0.0.0:0"), State: TCPListen, Inode: 40001}},
		{"   1: 0100007F:0FA0 0100007F:D431 01 00000000:00000000 00:00000000 00000000  1000        0 40002 1",
			InetSocket{Local: netip.MustParseAddrPort("127.0.0.1:4000"), Remote: netip.MustParseAddrPort("127.0.0.1:54321"), State: 1, Inode: 40002}},
		{"   0: 00000000000000000000000001000000:0050 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 40003 1",
			InetSocket{Local: netip.MustParseAddrPort("[::1]:80"), Remote: netip.MustParseAddrPort("[::]:0"), State: TCPListen, Inode: 40003}},
	}
	for _, tt := range tests {
		got, err := parseInetLine([]byte(tt.line))
		if err != nil || got != tt.want {
			t.Errorf("parseInetLine(%q) = %+v, %v; want %+v", tt.line, got, err, tt.want)
		}
	}
	for _, bad := range []string{
		"   0: 0100007F:0FA0 00000000:0000 0A",
		"   0: 0100007F0FA0 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1",
		"   0: 0100007F:0FA0 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 x 1",
		"   0: 01007F:0FA0 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1",
	} {
		if _, err := parseInetLine([]byte(bad)); err == nil {
			t.Errorf("parseInetLine(%q) = nil error, want one", bad)
		}
	}
}
