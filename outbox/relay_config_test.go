package outbox

import (
	"errors"
	"fmt"
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
	assert.Nil(t, c.FailurePolicy, "NewRelay builds it from MaxAttempts and RetryBackoff")
	assert.Equal(t, DefaultMaxAttempts, c.MaxAttempts)
	assert.Equal(t, Backoff{Base: DefaultBackoffBase, Max: DefaultBackoffMax}, c.RetryBackoff)
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
		{RelayConfig{MaxAttempts: NoMaxAttempts}, ""},
		{RelayConfig{MaxAttempts: -2}, "MaxAttempts"},
		{RelayConfig{RetryBackoff: Backoff{Base: 2 * time.Minute}}, ""},
		{RelayConfig{RetryBackoff: Backoff{Base: -time.Second}}, "RetryBackoff.Base"},
		{RelayConfig{RetryBackoff: Backoff{Base: time.Minute, Max: time.Second}}, "RetryBackoff.Max"},
		{RelayConfig{RetryBackoff: Backoff{Jitter: -0.5}}, "RetryBackoff.Jitter"},
		{RelayConfig{FailurePolicy: ExponentialBackoff(1, Backoff{}), MaxAttempts: 3}, "FailurePolicy"},
		{RelayConfig{FailurePolicy: ExponentialBackoff(1, Backoff{}), RetryBackoff: Backoff{Base: time.Second}}, "FailurePolicy"},
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

// Backoff's Validate applies the rules RelayConfig applies to its two
// backoffs; zero fields are valid, and a Base over the default Max
// raises the Max rather than being capped below itself.
func TestBackoffValidate(t *testing.T) {
	t.Parallel()
	for _, b := range []Backoff{{}, {Base: time.Millisecond, Max: time.Millisecond}, {Jitter: NoJitter}, {Jitter: 1}, {Base: 2 * time.Minute}} {
		assert.NoError(t, b.Validate(), "%+v", b)
	}
	for field, b := range map[string]Backoff{
		"Backoff.Base": {Base: -1}, "Backoff.Max": {Base: time.Second, Max: time.Millisecond}, "Backoff.Jitter": {Jitter: 1.5},
	} {
		err := b.Validate()
		if assert.ErrorIs(t, err, ErrInvalidConfig, field) {
			assert.Contains(t, err.Error(), field)
		}
	}
	assert.Equal(t, 2*time.Minute, Backoff{Base: 2 * time.Minute, Jitter: NoJitter}.Delay(1))
}

// MaxAttempts and RetryBackoff build the default policy: the event is
// retried after RetryBackoff's delay, and dead-lettered at MaxAttempts.
func TestRelayConfig_MaxAttemptsAndRetryBackoffMakeThePolicy(t *testing.T) {
	t.Parallel()
	f := newFixture(t, SQLite, true)
	relay, err := f.ob.NewRelay(newRecorder(), RelayConfig{MaxAttempts: 2, RetryBackoff: Backoff{Base: 3 * time.Second, Jitter: NoJitter}})
	require.NoError(t, err)
	at := f.clock.Now()
	d := relay.cfg.FailurePolicy(t.Context(), Failure{Err: errors.New("refused"), Attempts: 1, At: at})
	assert.Equal(t, Decision{RetryAt: at.Add(3 * time.Second)}, d)
	d = relay.cfg.FailurePolicy(t.Context(), Failure{Err: errors.New("refused"), Attempts: 2, At: at})
	assert.True(t, d.DeadLetter)

	relay, err = f.ob.NewRelay(newRecorder(), RelayConfig{MaxAttempts: NoMaxAttempts})
	require.NoError(t, err)
	d = relay.cfg.FailurePolicy(t.Context(), Failure{Err: errors.New("refused"), Attempts: 1000, At: at})
	assert.False(t, d.DeadLetter, "NoMaxAttempts retries for ever")
}

// RelayError is an error, as a value and as a pointer: it names the kind
// and the row, and errors.Is sees the cause through it.
func TestRelayErrorIsAnError(t *testing.T) {
	t.Parallel()
	cause := &OwnershipError{Seq: 7, EventID: "ev-1", AttemptedBy: "a", CurrentOwner: "b"}
	var err error = RelayError{Kind: OwnershipMismatch, Seq: 7, EventID: "ev-1", Err: cause}
	assert.ErrorIs(t, err, ErrOwnership)
	var oe *OwnershipError
	require.ErrorAs(t, err, &oe)
	assert.Equal(t, "b", oe.CurrentOwner)
	assert.Equal(t, `outbox: relay ownership_mismatch for event "ev-1" (seq 7): `+cause.Error(), err.Error())

	err = &RelayError{Kind: ClaimFailed, Err: ErrMissingTable}
	assert.ErrorIs(t, err, ErrMissingTable)
	assert.Equal(t, "outbox: relay claim_failed: "+ErrMissingTable.Error(), err.Error())
	var re RelayError
	assert.ErrorAs(t, fmt.Errorf("wrapped: %w", RelayError{Kind: PublishFailed}), &re)
	assert.Equal(t, PublishFailed, re.Kind)
}
