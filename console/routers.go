package console

import "github.com/arcmill/arcmill/wildcard"

// Router is a wildcard router whose counters the overview shows: how many
// events were handled, failed, matched no handler (and what OnUnrouted did
// with them), and were not Arc events at all.
type Router struct {
	// Name is how the overview names it (as metrics.WatchRouter's name).
	Name string
	// Router is the router; *wildcard.Router has Stats.
	Router RouterStats
}

// RouterStats is what the console reads of a router; *wildcard.Router has
// it.
type RouterStats interface {
	Stats() wildcard.Stats
}

// RouterInfo is one router's counters since it was made
// (wildcard.Router.Stats).
type RouterInfo struct {
	// Name is Router.Name.
	Name string `json:"name"`
	// Handled counts events every matched handler succeeded on; Failed the
	// deliveries at least one handler failed (nacked).
	Handled uint64 `json:"handled"`
	Failed  uint64 `json:"failed"`
	// Unmatched counts deliveries no handler matched (given to
	// OnUnrouted); UnroutedFailed those OnUnrouted failed (nacked, to come
	// again).
	Unmatched      uint64 `json:"unmatched"`
	UnroutedFailed uint64 `json:"unroutedFailed"`
	// Malformed counts messages that were not Arc events; MalformedDropped
	// those acknowledged without being kept anywhere (no OnMalformed): the
	// number to alert on.
	Malformed        uint64 `json:"malformed"`
	MalformedDropped uint64 `json:"malformedDropped"`
}

// routers reads every configured router's counters (no I/O).
func (c *Console) routers() []RouterInfo {
	out := make([]RouterInfo, 0, len(c.cfg.Routers))
	for _, r := range c.cfg.Routers {
		st := r.Router.Stats()
		out = append(out, RouterInfo{Name: r.Name, Handled: st.Handled, Failed: st.Failed, Unmatched: st.Unmatched,
			UnroutedFailed: st.UnroutedFailed, Malformed: st.Malformed, MalformedDropped: st.MalformedDropped})
	}
	return out
}
