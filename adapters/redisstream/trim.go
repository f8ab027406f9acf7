package redisstream

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// SafeTrim trims stream of the entries every consumer group is done with,
// and of nothing else: XTRIM MINID ~ at the oldest entry some group still
// needs (its oldest pending entry, or the entry after the last one it was
// given). Arc's MAXLEN ~ 10000 ignores groups, so a slow or stopped group
// loses entries; SafeTrim never does, at the price of a
// stream that grows while a group lags. A stream with no group is left
// alone. It returns how many entries were trimmed.
func SafeTrim(ctx context.Context, client redis.UniversalClient, stream string) (int64, error) {
	groups, err := client.XInfoGroups(ctx, stream).Result()
	if err != nil {
		return 0, fmt.Errorf("redisstream: XINFO GROUPS %s: %w", stream, err)
	}
	if len(groups) == 0 {
		return 0, nil
	}
	var keep string // the oldest id still needed
	for _, g := range groups {
		need, err := nextID(g.LastDeliveredID)
		if err != nil {
			return 0, err
		}
		if g.Pending > 0 {
			p, err := client.XPending(ctx, stream, g.Name).Result()
			if err != nil {
				return 0, fmt.Errorf("redisstream: XPENDING %s %s: %w", stream, g.Name, err)
			}
			if p.Lower != "" { // its pending entries may have been acked since XINFO
				need = p.Lower
			}
		}
		if keep == "" || lessID(need, keep) {
			keep = need
		}
	}
	n, err := client.XTrimMinIDApprox(ctx, stream, keep, 0).Result()
	if err != nil {
		return 0, fmt.Errorf("redisstream: XTRIM %s MINID ~ %s: %w", stream, keep, err)
	}
	return n, nil
}

// nextID is the id right after id ("5-3" → "5-4").
func nextID(id string) (string, error) {
	ms, seq, err := parseID(id)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%d-%d", ms, seq+1), nil
}

func lessID(a, b string) bool {
	am, as, _ := parseID(a)
	bm, bs, _ := parseID(b)
	return am < bm || am == bm && as < bs
}

func parseID(id string) (ms, seq uint64, err error) {
	m, s, ok := strings.Cut(id, "-")
	if ms, err = strconv.ParseUint(m, 10, 64); err != nil {
		return 0, 0, fmt.Errorf("redisstream: bad entry id %q", id)
	}
	if ok {
		if seq, err = strconv.ParseUint(s, 10, 64); err != nil {
			return 0, 0, fmt.Errorf("redisstream: bad entry id %q", id)
		}
	}
	return ms, seq, nil
}
