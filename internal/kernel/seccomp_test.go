package kernel

import (
	"encoding/binary"
	"testing"
)

func TestSeccompUserNotif(t *testing.T) {
	insn := func(code uint16, k uint32) []byte {
		b := make([]byte, SizeofSockFilter)
		binary.LittleEndian.PutUint16(b[0:], code)
		binary.LittleEndian.PutUint32(b[4:], k)
		return b
	}
	cat := func(parts ...[]byte) (out []byte) {
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	const ld, jeq, retK, retA = 0x20, 0x15, 0x06, 0x16
	tests := []struct {
		name string
		code []byte
		want bool
	}{
		{"allow", cat(insn(retK, 0x7fff0000)), false},
		{"errno", cat(insn(ld, 0), insn(jeq, 39), insn(retK, 0x00050001), insn(retK, 0x7fff0000)), false},
		{"user notif", cat(insn(ld, 0), insn(jeq, 140), insn(retK, SECCOMP_RET_USER_NOTIF), insn(retK, 0x7fff0000)), true},
		{"load of the constant is not a return", cat(insn(ld, SECCOMP_RET_USER_NOTIF), insn(retA, 0)), false},
		{"truncated instruction ignored", cat(insn(retK, 0x7fff0000), []byte{6, 0, 0}), false},
	}
	for _, tt := range tests {
		if got := SeccompUserNotif(tt.code); got != tt.want {
			t.Errorf("%s: SeccompUserNotif = %v, want %v", tt.name, got, tt.want)
		}
	}
}
