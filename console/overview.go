package console

import (
	"context"
	"time"
)

// Overview is the state of every configured stream and outbox.
type Overview struct {
	// Time is when it was read.
	Time time.Time `json:"time"`
	// Streams are the Redis streams.
	Streams []StreamInfo `json:"streams"`
	// Outboxes are the outboxes.
	Outboxes []OutboxInfo `json:"outboxes"`
	// DeadLetters counts every source's dead letters.
	DeadLetters int64 `json:"deadLetters"`
	// Breakers are the configured circuit breakers (Config.Breakers).
	Breakers []BreakerInfo `json:"breakers"`
	// Routers are the configured routers' counters (Config.Routers).
	Routers []RouterInfo `json:"routers"`
}

// StreamInfo is one stream's state.
type StreamInfo struct {
	// Name is the stream.
	Name string `json:"name"`
	// Length is its XLEN.
	Length int64 `json:"length"`
	// DeadLetterStream and DeadLetters are its dead-letter stream and
	// that stream's length.
	DeadLetterStream string `json:"deadLetterStream"`
	DeadLetters      int64  `json:"deadLetters"`
	// Source is the dead letters' source key.
	Source string `json:"source"`
	// Groups are its consumer groups.
	Groups []GroupInfo `json:"groups"`
	// Error says why it could not be read.
	Error string `json:"error,omitempty"`
}

// GroupInfo is one consumer group.
type GroupInfo struct {
	// Name of the group.
	Name string `json:"name"`
	// Pending counts entries delivered and not acked.
	Pending int64 `json:"pending"`
	// Lag counts entries not yet delivered; -1 when Redis cannot tell.
	Lag int64 `json:"lag"`
	// LastDeliveredID is the last entry delivered to the group.
	LastDeliveredID string `json:"lastDeliveredId"`
	// EntriesRead counts the entries delivered to the group (Redis 7+).
	EntriesRead int64 `json:"entriesRead"`
	// Consumers are the group's consumers.
	Consumers []ConsumerInfo `json:"consumers"`
}

// ConsumerInfo is one consumer of a group.
type ConsumerInfo struct {
	// Name of the consumer.
	Name string `json:"name"`
	// Pending counts its entries not acked.
	Pending int64 `json:"pending"`
	// IdleMs is the time since it last read or claimed.
	IdleMs int64 `json:"idleMs"`
}

// OutboxInfo is one outbox's backlog.
type OutboxInfo struct {
	// Name of the outbox.
	Name string `json:"name"`
	// Source is the dead letters' source key.
	Source string `json:"source"`
	// Pending rows wait to be claimed now; Delayed wait for a retry time.
	Pending int64 `json:"pending"`
	Delayed int64 `json:"delayed"`
	// InFlight rows are leased to a relay.
	InFlight int64 `json:"inFlight"`
	// Dead rows are dead letters.
	Dead int64 `json:"dead"`
	// OldestPendingAgeMs is the age of the oldest undelivered row; 0 when
	// there is none.
	OldestPendingAgeMs int64 `json:"oldestPendingAgeMs"`
	// Error says why it could not be read.
	Error string `json:"error,omitempty"`
}

// overview reads the state of every stream and outbox. A source that
// cannot be read carries its error; the others are still shown.
func (c *Console) overview(ctx context.Context) Overview {
	now := c.cfg.Now().UTC()
	o := Overview{Time: now, Streams: []StreamInfo{}, Outboxes: []OutboxInfo{}, Breakers: c.breakers(), Routers: c.routers()}
	for _, s := range c.cfg.Streams {
		info := c.streamInfo(ctx, s)
		o.DeadLetters += info.DeadLetters
		o.Streams = append(o.Streams, info)
	}
	for _, ob := range c.cfg.Outboxes {
		info := OutboxInfo{Name: ob.Name, Source: kindOutbox + ":" + ob.Name}
		st, err := ob.Outbox.Status(ctx)
		if err != nil {
			info.Error = err.Error()
		} else {
			info.Pending, info.Delayed, info.InFlight, info.Dead = st.Pending, st.Delayed, st.InFlight, st.Dead
			if !st.OldestPending.IsZero() {
				info.OldestPendingAgeMs = max(0, now.Sub(st.OldestPending).Milliseconds())
			}
		}
		o.DeadLetters += info.Dead
		o.Outboxes = append(o.Outboxes, info)
	}
	return o
}

func (c *Console) streamInfo(ctx context.Context, s Stream) StreamInfo {
	info := StreamInfo{Name: s.Name, DeadLetterStream: s.DeadLetter, Source: kindStream + ":" + s.DeadLetter,
		Groups: []GroupInfo{}}
	rdb := c.cfg.Redis
	var err error
	if info.Length, err = rdb.XLen(ctx, s.Name).Result(); err != nil {
		info.Error = err.Error()
		return info
	}
	if info.DeadLetters, err = rdb.XLen(ctx, s.DeadLetter).Result(); err != nil {
		info.Error = err.Error()
		return info
	}
	if info.Length == 0 {
		if n, _ := rdb.Exists(ctx, s.Name).Result(); n == 0 {
			return info // no stream yet: no groups
		}
	}
	groups, err := rdb.XInfoGroups(ctx, s.Name).Result()
	if err != nil {
		info.Error = err.Error()
		return info
	}
	for _, g := range groups {
		gi := GroupInfo{Name: g.Name, Pending: g.Pending, Lag: g.Lag, LastDeliveredID: g.LastDeliveredID,
			EntriesRead: g.EntriesRead,
			Consumers:   []ConsumerInfo{}}
		cs, err := rdb.XInfoConsumers(ctx, s.Name, g.Name).Result()
		if err != nil {
			info.Error = err.Error()
		}
		for _, cn := range cs {
			gi.Consumers = append(gi.Consumers, ConsumerInfo{Name: cn.Name, Pending: cn.Pending, IdleMs: cn.Idle.Milliseconds()})
		}
		info.Groups = append(info.Groups, gi)
	}
	return info
}
