package redisstream

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"
)

// excerptFields is how many fields (names and values) an oversized entry's
// excerpt keeps: an entry of a million tiny fields is over MaxEntryBytes
// while each field is under excerptBytes, and its excerpt must stay small.
const excerptFields = 32

// boundedReadScript runs the read (XREADGROUP without BLOCK, which scripts
// allow), the claim (XCLAIM) or the fetch by ids (XRANGE each) of one batch
// on the server, and returns only what the client may hold: entries whole
// while their bytes stay within the batch budget (the first one always),
// an entry over the entry limit as an excerpt with its size, and the rest
// as ids only ("deferred"), still pending to the consumer, to be fetched
// by id in order as the batch is delivered. An oversized entry thus never
// crosses the network whole. One key per call, so it runs on Redis Cluster.
//
// KEYS[1] the stream. ARGV: mode ("read", "claim" or "ids"), the entry
// limit, the batch budget (-1: none), excerpt bytes per value, excerpt
// fields; then for "read" group, consumer, count, id; for "claim" group,
// consumer, min-idle ms, ids…; for "ids" the ids.
//
// The reply is {2, id, type, data, …} when every entry came whole in Arc's
// layout, {1, entries} when every entry came whole (entries as XREADGROUP
// or XCLAIM gives them), else 0 followed by three items an
// entry: id, fields (false for an entry deleted while pending, or
// deferred), and 0 (whole), -1 (deferred) or the size of an entry cut to an
// excerpt.
var boundedReadScript = redis.NewScript(`
local mode = ARGV[1]
local maxEntry, budget = tonumber(ARGV[2]), tonumber(ARGV[3])
local cut, maxFields = tonumber(ARGV[4]), tonumber(ARGV[5])
local out, n, used, full = {0}, 1, 0, false
local function add(id, f)
  if full then
    out[n+1], out[n+2], out[n+3] = id, false, -1
  elseif not f then
    out[n+1], out[n+2], out[n+3] = id, false, 0
  else
    local size = 0
    for j = 1, #f do size = size + #f[j] end
    if maxEntry >= 0 and size > maxEntry then
      local c = {}
      for j = 1, math.min(#f, maxFields) do
        c[j] = string.sub(f[j], 1, cut)
        used = used + #c[j]
      end
      out[n+1], out[n+2], out[n+3] = id, c, size
    elseif budget >= 0 and used > 0 and used + size > budget then
      full = true
      out[n+1], out[n+2], out[n+3] = id, false, -1
    else
      used = used + size
      out[n+1], out[n+2], out[n+3] = id, f, 0
    end
  end
  n = n + 3
end
if mode == 'ids' then
  -- The server's own work is bounded too: past 4 budgets of entries read
  -- (oversized ones count whole), the rest waits for the next call.
  local scanned = 0
  for i = 6, #ARGV do
    if full then
      add(ARGV[i], false)
    else
      local e = redis.call('XRANGE', KEYS[1], ARGV[i], ARGV[i])
      if #e == 0 then add(ARGV[i], false) else add(ARGV[i], e[1][2]) end
      if #e > 0 then
        for j = 1, #e[1][2] do scanned = scanned + #e[1][2][j] end
      end
      if budget >= 0 and scanned > 4 * budget then full = true end
    end
  end
  return out
end
local entries
if mode == 'read' then
  local r = redis.call('XREADGROUP', 'GROUP', ARGV[6], ARGV[7], 'COUNT', ARGV[8], 'STREAMS', KEYS[1], ARGV[9])
  if not r then return {1, {}} end
  entries = r[1][2]
else
  entries = redis.call('XCLAIM', KEYS[1], ARGV[6], ARGV[7], ARGV[8], unpack(ARGV, 9))
end
-- The common case, every entry small and the batch within the budget, is
-- checked on lengths alone, in one pass that also lays Arc's layout (type,
-- data) out flat, three items an entry: a third of the objects to build and
-- to parse of the nested reply. Other layouts come as they came.
local total, fits, arc, flat, m = 0, true, true, {2}, 1
for i = 1, #entries do
  local e = entries[i]
  local f = type(e) == 'table' and e[2]
  if f then
    local size = 0
    for j = 1, #f do size = size + #f[j] end
    total = total + size
    if (maxEntry >= 0 and size > maxEntry) or (budget >= 0 and total > budget and i > 1) then
      fits = false
      break
    end
    if arc and #f == 4 and f[1] == 'type' and f[3] == 'data' then
      flat[m+1], flat[m+2], flat[m+3] = e[1], f[2], f[4]
      m = m + 3
    else
      arc = false
    end
  else
    arc = false
  end
end
if fits and arc then return flat end
if fits then return {1, entries} end
for i = 1, #entries do
  local e = entries[i]
  if type(e) == 'table' then add(e[1], e[2]) end
end
return out`)

// parseArcEntries reads the flat reply of entries in Arc's layout: id,
// type, data, id, type, data, …
//
// The entries' Fields share one array, cut so that an append to one
// entry's Fields copies rather than writes over the next entry's: one
// allocation a batch instead of one an entry. Whoever drops an entry's
// fields clears them (dropFields), so the array keeps no entry's data alive
// after it was decoded.
func parseArcEntries(res []any) ([]Entry, error) {
	out := make([]Entry, 0, len(res)/3)
	fields := make([]string, 4*(len(res)/3))
	for i := 0; i+2 < len(res); i += 3 {
		id, ok1 := res[i].(string)
		typ, ok2 := res[i+1].(string)
		data, ok3 := res[i+2].(string)
		if !ok1 || !ok2 || !ok3 {
			return nil, errBoundedReply
		}
		f := fields[:4:4]
		fields = fields[4:]
		f[0], f[1], f[2], f[3] = FieldType, typ, FieldData, data
		out = append(out, Entry{ID: id, Fields: f})
	}
	return out, nil
}

// dropFields forgets e's fields, clearing them first: they may share an
// array with other entries' (parseArcEntries), which would otherwise keep
// them alive.
func (e *Entry) dropFields() {
	clear(e.Fields)
	e.Fields = nil
}

// errBoundedReply is a reply of boundedReadScript that cannot be read.
var errBoundedReply = errors.New("redisstream: unexpected reply of the bounded read")

// boundedReader reads a stream for one consumer within the byte bounds of
// SubscriberConfig (MaxEntryBytes, MaxBatchBytes).
type boundedReader struct {
	client   redis.UniversalClient
	stream   string
	group    string
	consumer string
	maxEntry int // None: no limit
	budget   int // None: no budget
}

// read runs XREADGROUP … COUNT count STREAMS stream id on the server, without
// BLOCK, and returns the entries within the bounds.
func (r *boundedReader) read(ctx context.Context, id string, count int) ([]Entry, error) {
	return r.run(ctx, "read", r.group, r.consumer, count, id)
}

// claim runs XCLAIM stream group consumer minIdle ids… on the server and
// returns the entries claimed, within the bounds.
func (r *boundedReader) claim(ctx context.Context, minIdleMs int64, ids []string) ([]Entry, error) {
	args := make([]any, 0, 3+len(ids))
	args = append(args, r.group, r.consumer, minIdleMs)
	for _, id := range ids {
		args = append(args, id)
	}
	return r.run(ctx, "claim", args...)
}

// fetch returns the deferred entries ids, in order: the first ones whole
// (or cut, when oversized), the rest deferred again.
func (r *boundedReader) fetch(ctx context.Context, ids []string) ([]Entry, error) {
	args := make([]any, len(ids))
	for i, id := range ids {
		args[i] = id
	}
	return r.run(ctx, "ids", args...)
}

func (r *boundedReader) run(ctx context.Context, mode string, rest ...any) ([]Entry, error) {
	args := make([]any, 0, 5+len(rest))
	args = append(args, mode, r.maxEntry, r.budget, excerptBytes, excerptFields)
	args = append(args, rest...)
	res, err := boundedReadScript.Run(ctx, r.client, []string{r.stream}, args...).Slice()
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, err
	}
	if len(res) == 0 {
		return nil, errBoundedReply
	}
	switch shape, _ := res[0].(int64); {
	case shape == 1 && len(res) == 2:
		list, _ := res[1].([]any)
		return parseEntries(list)
	case shape == 2 && len(res)%3 == 1:
		return parseArcEntries(res[1:])
	case shape != 0 || len(res)%3 != 1:
		return nil, errBoundedReply
	}
	res = res[1:]
	out := make([]Entry, 0, len(res)/3)
	for i := 0; i < len(res); i += 3 {
		id, ok := res[i].(string)
		flag, ok2 := res[i+2].(int64)
		if !ok || !ok2 {
			return nil, errBoundedReply
		}
		e := Entry{ID: id}
		switch {
		case flag < 0:
			e.deferred = true
		case flag > 0:
			e.truncated = int(flag)
		}
		if raw, ok := res[i+1].([]any); ok {
			e.Fields = make([]string, 0, len(raw))
			for _, f := range raw {
				switch v := f.(type) {
				case string:
					e.Fields = append(e.Fields, v)
				case int64:
					e.Fields = append(e.Fields, strconv.FormatInt(v, 10))
				default:
					e.Fields = append(e.Fields, fmt.Sprint(v))
				}
			}
		}
		out = append(out, e)
	}
	return out, nil
}
