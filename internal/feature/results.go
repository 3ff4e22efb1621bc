package feature

import "errors"

// results collects the probes of one group in a fixed order; probes never
// set come out as Error, so a group that stops early still reports all of
// its names and capabilities see them as unknown rather than absent.
type results struct {
	order []string
	set   map[string]Probe
}

func newResults(names ...string) *results {
	return &results{order: names, set: make(map[string]Probe, len(names))}
}

func (r *results) add(name string, st Status, detail string, err error) {
	r.set[name] = Probe{Name: name, Status: st, Detail: detail, Err: err}
}

func (r *results) available(name, detail string) { r.add(name, Available, detail, nil) }
func (r *results) missing(name, detail string, err error) {
	r.add(name, Missing, detail, err)
}
func (r *results) failed(name string, err error) { r.add(name, Error, "", err) }

// done returns the probes in order; those not set fail with cause.
func (r *results) done(cause error) []Probe {
	if cause == nil {
		cause = errors.New("probe did not run")
	}
	out := make([]Probe, 0, len(r.order))
	for _, n := range r.order {
		p, ok := r.set[n]
		if !ok {
			p = Probe{Name: n, Status: Error, Err: cause}
		}
		out = append(out, p)
	}
	return out
}
