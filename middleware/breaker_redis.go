package middleware

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// sharedBreaker keeps a breaker's state in Redis for every instance of the
// same name. The keys share one hash tag (the name), so the scripts work
// on Redis Cluster:
//
//	<prefix>{<name>}:tripped  exists while the breaker is open or half-open
//	<prefix>{<name>}:open     exists while it is open; its TTL is CoolDown
//	<prefix>{<name>}:probe    the fleet's one probe (SET NX, TTL ProbeLease)
//	<prefix>{<name>}:window   hash of "<slice>:ok" and "<slice>:bad" counts
//
// Half-open is tripped without open: the cool-down key expired by itself.
type sharedBreaker struct {
	client                           redis.UniversalClient
	tripped, open, probe, win        string
	buckets                          int
	width                            time.Duration
	minRequests                      int
	threshold                        string
	coolDown, probeLease, windowTTL  time.Duration
	timeout                          time.Duration
	recordScript, readScript         *redis.Script
	probeScript, doneScript, release *redis.Script
}

// breakerStateLua returns 0 (closed), 1 (open) or 2 (half-open).
const breakerStateLua = `
local function state()
  if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
  if redis.call('EXISTS', KEYS[2]) == 1 then return 1 end
  return 2
end
`

// breakerRecordLua adds outcomes to the window (KEYS[4]) of a closed
// breaker and trips it when the rate says so. ARGV: slice, buckets, ok,
// bad, min requests, threshold, cool-down ms, window TTL ms. Returns
// {state, tripped now}.
const breakerRecordLua = breakerStateLua + `
local st = state()
if st ~= 0 then return {st, 0} end
local slice = tonumber(ARGV[1])
local n = tonumber(ARGV[2])
local ok = tonumber(ARGV[3])
local bad = tonumber(ARGV[4])
if ok > 0 then redis.call('HINCRBY', KEYS[4], slice .. ':ok', ok) end
if bad > 0 then redis.call('HINCRBY', KEYS[4], slice .. ':bad', bad) end
redis.call('PEXPIRE', KEYS[4], ARGV[8])
local flat = redis.call('HGETALL', KEYS[4])
local sok, sbad = 0, 0
for i = 1, #flat, 2 do
  local f = flat[i]
  local sep = string.find(f, ':', 1, true)
  local s = tonumber(string.sub(f, 1, sep - 1))
  if s <= slice - n then
    redis.call('HDEL', KEYS[4], f)
  elseif s <= slice then
    if string.sub(f, sep + 1) == 'ok' then sok = sok + tonumber(flat[i + 1]) else sbad = sbad + tonumber(flat[i + 1]) end
  end
end
local total = sok + sbad
if total > 0 and total >= tonumber(ARGV[5]) and sbad >= tonumber(ARGV[6]) * total then
  redis.call('SET', KEYS[1], '1')
  redis.call('SET', KEYS[2], '1', 'PX', ARGV[7])
  redis.call('DEL', KEYS[4])
  return {1, 1}
end
return {0, 0}
`

const breakerReadLua = breakerStateLua + `return state()`

// breakerProbeLua takes the fleet's probe slot of a half-open breaker.
// ARGV: token, lease ms. Returns {state, got}.
const breakerProbeLua = breakerStateLua + `
local st = state()
if st ~= 2 then return {st, 0} end
if redis.call('SET', KEYS[3], ARGV[1], 'NX', 'PX', ARGV[2]) then return {2, 1} end
return {2, 0}
`

// breakerDoneLua records a probe's outcome: success closes the breaker,
// failure opens it for another cool-down. ARGV: token, 1 or 0, cool-down
// ms. Returns the state.
const breakerDoneLua = `
if ARGV[2] == '1' then
  redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
  return 0
end
if redis.call('GET', KEYS[3]) == ARGV[1] then redis.call('DEL', KEYS[3]) end
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('SET', KEYS[2], '1', 'PX', ARGV[3])
return 1
`

// breakerReleaseLua gives the probe slot back. ARGV: token.
const breakerReleaseLua = `
if redis.call('GET', KEYS[3]) == ARGV[1] then redis.call('DEL', KEYS[3]) end
return 0
`

func newSharedBreaker(cfg BreakerConfig) *sharedBreaker {
	base := cfg.KeyPrefix + "{" + cfg.Name + "}:"
	width := cfg.Window / time.Duration(cfg.Buckets)
	return &sharedBreaker{client: cfg.Redis, tripped: base + "tripped", open: base + "open", probe: base + "probe",
		win: base + "window", buckets: cfg.Buckets, width: width, minRequests: cfg.MinRequests,
		threshold: strconv.FormatFloat(cfg.Threshold, 'g', -1, 64), coolDown: cfg.CoolDown, probeLease: cfg.ProbeLease,
		windowTTL: cfg.Window + width, timeout: cfg.CommandTimeout,
		recordScript: redis.NewScript(breakerRecordLua), readScript: redis.NewScript(breakerReadLua),
		probeScript: redis.NewScript(breakerProbeLua), doneScript: redis.NewScript(breakerDoneLua),
		release: redis.NewScript(breakerReleaseLua)}
}

func (s *sharedBreaker) keys() []string { return []string{s.tripped, s.open, s.probe, s.win} }

// ctx detaches the shared state's calls from the message's context (a
// probe's outcome must be written even while the router shuts down) and
// bounds them.
func (s *sharedBreaker) ctx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), s.timeout)
}

// record adds ok successes and bad failures to the shared window of the
// slice of now; it returns the shared state and whether this call tripped
// the breaker.
func (s *sharedBreaker) record(ctx context.Context, now time.Time, ok, bad int) (BreakerState, bool, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	res, err := s.recordScript.Run(ctx, s.client, s.keys(), now.UnixNano()/int64(s.width), s.buckets, ok, bad,
		s.minRequests, s.threshold, s.coolDown.Milliseconds(), s.windowTTL.Milliseconds()).Int64Slice()
	if err != nil {
		return 0, false, fmt.Errorf("middleware: breaker shared state: %w", err)
	}
	return BreakerState(res[0]), res[1] == 1, nil
}

// read returns the shared state.
func (s *sharedBreaker) read(ctx context.Context) (BreakerState, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	st, err := s.readScript.Run(ctx, s.client, s.keys()).Int64()
	if err != nil {
		return 0, fmt.Errorf("middleware: breaker shared state: %w", err)
	}
	return BreakerState(st), nil
}

// takeProbe takes the fleet's probe slot for token, if the breaker is
// half-open and the slot free.
func (s *sharedBreaker) takeProbe(ctx context.Context, token string) (BreakerState, bool, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	res, err := s.probeScript.Run(ctx, s.client, s.keys(), token, s.probeLease.Milliseconds()).Int64Slice()
	if err != nil {
		return 0, false, fmt.Errorf("middleware: breaker shared state: %w", err)
	}
	return BreakerState(res[0]), res[1] == 1, nil
}

// probeDone records the outcome of token's probe and returns the state.
func (s *sharedBreaker) probeDone(ctx context.Context, token string, success bool) (BreakerState, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	ok := "0"
	if success {
		ok = "1"
	}
	st, err := s.doneScript.Run(ctx, s.client, s.keys(), token, ok, s.coolDown.Milliseconds()).Int64()
	if err != nil {
		return 0, fmt.Errorf("middleware: breaker shared state: %w", err)
	}
	return BreakerState(st), nil
}

// releaseProbe gives token's probe slot back, for a probe whose outcome
// was neither a success nor a counted failure.
func (s *sharedBreaker) releaseProbe(ctx context.Context, token string) error {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	if err := s.release.Run(ctx, s.client, s.keys(), token).Err(); err != nil {
		return fmt.Errorf("middleware: breaker shared state: %w", err)
	}
	return nil
}
