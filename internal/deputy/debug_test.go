package deputy

import "fmt"

func (r *Relay) debugState() string {
	s := fmt.Sprintf("%s final=%v up=%v synced=%v unacked=%d pending=%d recvSeq=%d\n", r.cfg.Side, r.final, r.up, r.synced, len(r.unacked), len(r.pending), r.recvSeq)
	for _, id := range r.ids {
		if o := r.out[id]; o != nil {
			s += fmt.Sprintf("  out %d: %+v\n", id, *o)
		}
		if i := r.in[id]; i != nil {
			s += fmt.Sprintf("  in %d: queue=%d writing=%v eof=%v closed=%v gone=%v recv=%d written=%d\n", id, len(i.queue), i.writing, i.eof, i.closed, i.gone, i.received, i.written)
		}
	}
	for _, f := range r.unacked {
		s += fmt.Sprintf("  unacked %s seq %d\n", f.Kind, f.Seq)
	}
	return s
}
