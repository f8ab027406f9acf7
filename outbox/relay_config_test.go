package outbox

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A zero RelayConfig takes the documented Default* constants.
func TestRelayConfigDefaults(t *testing.T) {
	t.Parallel()
	var c RelayConfig
	require.NoError(t, c.Validate())
	c.setDefaults()
	assert.Regexp(t, `^relay-[0-9a-z]{8}$`, c.ConsumerID)
	assert.Equal(t, DefaultWorkers, c.Workers)
	assert.Equal(t, DefaultBatchSize, c.BatchSize)
	assert.Equal(t, DefaultLease, c.Lease)
	assert.Equal(t, DefaultPublishTimeout, c.PublishTimeout)
	assert.Equal(t, DefaultPollInterval, c.PollInterval)
	assert.Equal(t, DefaultBusyPollInterval, c.BusyPollInterval)
	assert.Equal(t, DefaultMaxUnsettledClaims, c.MaxUnsettledClaims)
	assert.Equal(t, ClaimAuto, c.Claim)
	assert.NotNil(t, c.FailurePolicy)
	assert.NotNil(t, c.TransportError)
	assert.Equal(t, Backoff{Base: DefaultOutageBackoffBase, Max: DefaultOutageBackoffMax}, c.OutageBackoff)
	assert.NotNil(t, c.Logger)
}

// Defaults that depend on another field follow it: the publish timeout
// stays under a short lease, the busy poll under a short poll.
func TestRelayConfigDefaultsFollowRelatedFields(t *testing.T) {
	t.Parallel()
	c := RelayConfig{Lease: 4 * time.Second, PollInterval: 2 * time.Millisecond}
	require.NoError(t, c.Validate())
	c.setDefaults()
	assert.Equal(t, 2*time.Second, c.PublishTimeout, "half the lease")
	assert.Equal(t, 2*time.Millisecond, c.BusyPollInterval, "at most PollInterval")
}

// Validate names the field, wraps ErrInvalidConfig, and applies the rule
// for special values: 0 is the default, -1 is none where a constant names
// it, any other negative value is invalid.
func TestRelayConfigValidate(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		cfg   RelayConfig
		field string // "" when valid
	}{
		{RelayConfig{MaxUnsettledClaims: NoMaxUnsettledClaims}, ""},
		{RelayConfig{MaxUnsettledClaims: 3}, ""},
		{RelayConfig{Claim: ClaimLease, KeepPartitionOrder: true}, ""},
		{RelayConfig{PollInterval: time.Second, BusyPollInterval: time.Second}, ""},
		{RelayConfig{ConsumerID: strings.Repeat("x", 241)}, "ConsumerID"},
		{RelayConfig{Workers: -1}, "Workers"},
		{RelayConfig{OutageBackoff: Backoff{Base: time.Minute}}, ""},
		{RelayConfig{OutageBackoff: Backoff{Jitter: NoJitter}}, ""},
		{RelayConfig{OutageBackoff: Backoff{Base: -time.Second}}, "OutageBackoff.Base"},
		{RelayConfig{OutageBackoff: Backoff{Max: -time.Second}}, "OutageBackoff.Max"},
		{RelayConfig{OutageBackoff: Backoff{Base: time.Second, Max: time.Millisecond}}, "OutageBackoff.Max"},
		{RelayConfig{OutageBackoff: Backoff{Jitter: 2}}, "OutageBackoff.Jitter"},
		{RelayConfig{BatchSize: -1}, "BatchSize"},
		{RelayConfig{Lease: -time.Second}, "Lease"},
		{RelayConfig{PublishTimeout: -time.Second}, "PublishTimeout"},
		{RelayConfig{Lease: time.Second, PublishTimeout: 2 * time.Second}, "PublishTimeout"},
		{RelayConfig{Lease: time.Second, PublishTimeout: time.Second}, "PublishTimeout"},
		{RelayConfig{PollInterval: -time.Millisecond}, "PollInterval"},
		{RelayConfig{BusyPollInterval: -time.Millisecond}, "BusyPollInterval"},
		{RelayConfig{PollInterval: time.Millisecond, BusyPollInterval: 2 * time.Millisecond}, "BusyPollInterval"},
		{RelayConfig{Claim: ClaimMode(9)}, "Claim"},
		{RelayConfig{Claim: ClaimLock, KeepPartitionOrder: true}, "KeepPartitionOrder"},
		{RelayConfig{MaxUnsettledClaims: -2}, "MaxUnsettledClaims"},
	} {
		err := c.cfg.Validate()
		if c.field == "" {
			assert.NoError(t, err, "%+v", c.cfg)
			continue
		}
		if assert.ErrorIs(t, err, ErrInvalidConfig, c.field) {
			assert.Contains(t, err.Error(), c.field)
		}
	}
}

// NewRelay refuses a nil publisher, an invalid config, and lock mode
// where the database has no row locks.
func TestNewRelayRefusesInvalidConfig(t *testing.T) {
	t.Parallel()
	f := newFixture(t, SQLite, false)
	_, err := f.ob.NewRelay(nil, RelayConfig{})
	assert.ErrorIs(t, err, ErrInvalidConfig)
	_, err = f.ob.NewRelay(newRecorder(), RelayConfig{Lease: time.Second, PublishTimeout: 2 * time.Second})
	assert.ErrorIs(t, err, ErrInvalidConfig)
	_, err = f.ob.NewRelay(newRecorder(), RelayConfig{Claim: ClaimLock})
	assert.ErrorIs(t, err, ErrInvalidConfig)
}
