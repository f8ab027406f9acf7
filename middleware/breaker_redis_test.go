package middleware

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/internal/testenv"
)

// sharedPair returns two breakers of one name sharing their state through
// the shared Redis, as two instances of a service would, with a cool-down
// the test ends by hand (endCoolDown) rather than waits out.
func sharedPair(t *testing.T, client redis.UniversalClient, cfg BreakerConfig) (b1, b2 *Breaker, endCoolDown func()) {
	t.Helper()
	cfg.Name = "billing/charge-" + uuid.NewString()
	cfg.Redis = client
	if cfg.CoolDown == 0 {
		cfg.CoolDown = time.Hour
	}
	if cfg.SyncInterval == 0 {
		cfg.SyncInterval = 5 * time.Millisecond
	}
	var err error
	b1, err = NewBreaker(cfg)
	require.NoError(t, err)
	b2, err = NewBreaker(cfg)
	require.NoError(t, err)
	keys := b1.shared.keys()
	t.Cleanup(func() { _ = client.Del(context.Background(), keys...).Err() })
	return b1, b2, func() {
		t.Helper()
		require.NoError(t, client.Del(context.Background(), b1.shared.open).Err()) // the cool-down key's TTL ran out
	}
}

func sharedClient(t *testing.T) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: testenv.RedisAddr(t)})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// Failures seen by one instance trip every instance: the window's counts
// and the open state are shared.
func TestBreakerSharedTripsTheFleetTogether(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b1, b2, _ := sharedPair(t, sharedClient(t), BreakerConfig{MinRequests: 4, Threshold: 0.5})
	b1.record(ctx, false, nil) // a success is sent at once when none was for SyncInterval
	b1.record(ctx, false, errDown)
	b2.record(ctx, false, errDown)
	assert.Equal(t, BreakerClosed, b1.State(), "3 outcomes: under MinRequests")
	b2.record(ctx, false, errDown) // 3 of 4 across the fleet
	assert.Equal(t, BreakerOpen, b2.State())
	require.Eventually(t, func() bool { return b1.sync(ctx) == BreakerOpen }, waitTimeout, pollInterval,
		"the other instance opens too")
	assert.Nil(t, b1.Stats().SharedError)
	assert.True(t, b1.Stats().Shared)
}

// The shared state works on a Redis Cluster: a breaker's keys share one
// hash tag, so each script runs in one slot.
func TestBreakerSharedOnCluster(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: testenv.RedisClusterAddrs(t)})
	t.Cleanup(func() { _ = cc.Close() })
	b1, b2, endCoolDown := sharedPair(t, cc, BreakerConfig{MinRequests: 2, Threshold: 0.5})
	b1.record(ctx, false, errDown)
	b2.record(ctx, false, errDown)
	assert.Equal(t, BreakerOpen, b2.State())
	require.Eventually(t, func() bool { return b1.sync(ctx) == BreakerOpen }, waitTimeout, pollInterval,
		"the other instance opens too")
	assert.Nil(t, b1.Stats().SharedError, "no cross-slot error")
	endCoolDown()
	require.Eventually(t, func() bool { return b1.sync(ctx) != BreakerOpen }, waitTimeout, pollInterval,
		"the cool-down's end is seen through the cluster")
	assert.Nil(t, b1.Stats().SharedError)
}

// Once the cool-down ends the fleet lets one probe through: one instance
// takes it, the other waits; the probe's success closes every instance.
func TestBreakerSharedOneProbeAcrossTheFleet(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b1, b2, endCoolDown := sharedPair(t, sharedClient(t), BreakerConfig{MinRequests: 1})
	b1.record(ctx, false, errDown)
	require.Eventually(t, func() bool { return b2.sync(ctx) == BreakerOpen }, waitTimeout, pollInterval)
	endCoolDown()
	require.Eventually(t, func() bool { return b1.sync(ctx) == BreakerHalfOpen && b2.sync(ctx) == BreakerHalfOpen },
		waitTimeout, pollInterval)
	var wg sync.WaitGroup
	got := make([]bool, 2)
	for i, b := range []*Breaker{b1, b2} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i] = b.takeProbe(ctx)
		}()
	}
	wg.Wait()
	require.NotEqual(t, got[0], got[1], "exactly one probe across the fleet: %v", got)
	prober, other := b1, b2
	if got[1] {
		prober, other = b2, b1
	}
	assert.False(t, other.takeProbe(ctx), "the slot stays taken while the probe runs")

	// A failed probe re-opens the fleet for a whole cool-down.
	prober.record(ctx, true, errDown)
	assert.Equal(t, BreakerOpen, prober.State())
	require.Eventually(t, func() bool { return other.sync(ctx) == BreakerOpen }, waitTimeout, pollInterval)
	ttl, err := b1.cfg.Redis.PTTL(ctx, b1.shared.open).Result()
	require.NoError(t, err)
	assert.Greater(t, ttl, 59*time.Minute)

	endCoolDown()
	require.Eventually(t, func() bool { return other.sync(ctx) == BreakerHalfOpen }, waitTimeout, pollInterval)
	require.True(t, other.takeProbe(ctx))
	other.record(ctx, true, nil)
	assert.Equal(t, BreakerClosed, other.State())
	require.Eventually(t, func() bool { return prober.sync(ctx) == BreakerClosed }, waitTimeout, pollInterval,
		"the probe's success closes every instance")
}

// Redis being down never stops consumption: the breaker goes on with its
// local state (it still trips on its own window), and takes up the shared
// state again once Redis answers.
func TestBreakerSharedStateDownFallsBackToLocal(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	addr, kill := testenv.PrivateRedis(t)
	client := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	t.Cleanup(func() { _ = client.Close() })
	b, _, _ := sharedPair(t, client, BreakerConfig{MinRequests: 2, Threshold: 0.5, CommandTimeout: 500 * time.Millisecond})
	kill()
	b.record(ctx, false, nil)
	assert.Equal(t, BreakerClosed, b.State())
	st := b.Stats()
	require.Error(t, st.SharedError, "the shared state's outage is reported")
	assert.True(t, IsTransportError(st.SharedError), "%v", st.SharedError)
	probe, err := b.admit(ctx, false)
	require.NoError(t, err, "a closed breaker admits with its Redis down")
	assert.False(t, probe)
	b.record(ctx, false, errDown)
	b.record(ctx, false, errDown)
	assert.Equal(t, BreakerOpen, b.State(), "the local window trips it")
}
