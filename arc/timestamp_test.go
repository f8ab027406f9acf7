package arc

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseTimestamp(t *testing.T) {
	ms := func(y, mo, d, h, mi, s, milli int) time.Time {
		return time.Date(y, time.Month(mo), d, h, mi, s, milli*1e6, time.UTC)
	}
	cases := map[string]time.Time{
		"2026-04-28T10:00:00.000Z":            ms(2026, 4, 28, 10, 0, 0, 0),
		"2026-04-28T10:00:00Z":                ms(2026, 4, 28, 10, 0, 0, 0),
		"2026-04-28T10:00:00.1Z":              ms(2026, 4, 28, 10, 0, 0, 100),
		"2026-04-28T10:00:00.12Z":             ms(2026, 4, 28, 10, 0, 0, 120),
		"2026-04-28T10:00:00.123456Z":         ms(2026, 4, 28, 10, 0, 0, 123),
		"2026-04-28T10:00:00.123456789+00:00": ms(2026, 4, 28, 10, 0, 0, 123), // truncated, as Node does
		"2026-04-28T10:00:00.999999999Z":      ms(2026, 4, 28, 10, 0, 0, 999),
		"2026-04-28T12:30:00.5+02:30":         ms(2026, 4, 28, 10, 0, 0, 500),
		"2026-04-28T05:00:00-05:00":           ms(2026, 4, 28, 10, 0, 0, 0),
		"2026-04-28t10:00:00.000z":            ms(2026, 4, 28, 10, 0, 0, 0),
		"2026-04-28T10:00:00.000+0000":        ms(2026, 4, 28, 10, 0, 0, 0),
		"2026-04-28T10:00Z":                   ms(2026, 4, 28, 10, 0, 0, 0),
		"2026-04-28":                          ms(2026, 4, 28, 0, 0, 0, 0),
		"0001-01-01T00:00:00Z":                ms(1, 1, 1, 0, 0, 0, 0),
		"2024-02-29T00:00:00.000Z":            ms(2024, 2, 29, 0, 0, 0, 0),
	}
	for in, want := range cases {
		got, err := ParseTimestamp(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, got, in)
	}
	for _, bad := range []string{"", "yesterday", "1714298400000", "2026-04-28T10:00:00", "2026-02-30T00:00:00.000Z",
		"2026-13-01T00:00:00.000Z", "2026-04-28T24:00:00.000Z", "2026-04-28T10:60:00.000Z", "2026-04-28 10:00:00Z",
		"0000-01-01T00:00:00+01:00", "Tue, 28 Apr 2026 10:00:00 PST", "2026-04-28T10:00:00.000Zjunk"} {
		_, err := ParseTimestamp(bad)
		assert.Error(t, err, "%q", bad)
	}
}

func TestFormatTimestamp(t *testing.T) {
	cases := map[time.Time]string{
		time.Date(2026, 4, 28, 10, 0, 0, 0, time.UTC):                            "2026-04-28T10:00:00.000Z",
		time.Date(2026, 4, 28, 10, 0, 0, 123999999, time.UTC):                    "2026-04-28T10:00:00.123Z",
		time.Date(2026, 4, 28, 12, 0, 0, 5e6, time.FixedZone("CEST", 2*3600)):    "2026-04-28T10:00:00.005Z",
		time.Date(7, 1, 2, 3, 4, 5, 0, time.UTC):                                 "0007-01-02T03:04:05.000Z",
		time.Date(9999, 12, 31, 23, 59, 59, 999e6, time.UTC):                     "9999-12-31T23:59:59.999Z",
		time.Date(2026, 4, 27, 22, 0, 0, 0, time.FixedZone("m", -(12*3600))):     "2026-04-28T10:00:00.000Z",
		time.Date(2026, 4, 28, 10, 0, 0, 0, time.UTC).Add(time.Nanosecond * 1e6): "2026-04-28T10:00:00.001Z",
	}
	for in, want := range cases {
		assert.Equal(t, want, FormatTimestamp(in))
		assert.Equal(t, in.UTC().Format("2006-01-02T15:04:05.000Z07:00"), FormatTimestamp(in), "matches Go's layout")
	}
}

// Arc never checks meta.timestamp: a number, garbage or null reaches its
// handlers, and relaying writes it back as it came.
func TestOddMetaTimestampsAreKeptRaw(t *testing.T) {
	t.Parallel()
	for _, v := range []string{`1777370400123`, `-1000`, `1e300`, `"yesterday"`, `"1714298400000"`,
		`"2026-04-28T10:00:00"`, `{}`, `true`, `null`, `"\ud800"`, `""`} {
		in := `{"type":"t","meta":{"id":"1","timestamp":` + v + `}}`
		ev := mustUnmarshal(t, in)
		assert.True(t, ev.Meta.Timestamp.IsZero(), v)
		assert.Equal(t, json.RawMessage(v), ev.Meta.Extra["timestamp"], v)
		assert.Equal(t, in, mustMarshal(t, ev), v)
	}
}

// Go's time.Parse reads these; Node's Date parser does not.
func TestParseTimestampOnlyWhatNodeReads(t *testing.T) {
	for _, s := range []string{"2026-04-28T1:00:00Z", "2026-04-28T1:00Z", "2026-04-28T10:00:00,123Z",
		"2026-04-28T10:00:00+24:00", "2026-04-28T10:00:00+23:60", "2026-04-28T10:00:00+2400",
		"2026-04-28T10:00:00+0060", "2026-04-28T10:00:00.Z", "2026-04-28T10:00:00.1234567890Z",
		"2026-4-28T10:00:00Z", "+2026-04-28T10:00:00Z", "2026-04-28T10:00:00+02", "2026-04-28Z"} {
		_, err := ParseTimestamp(s)
		assert.Error(t, err, s)
	}
	_, err := NewEvent("x", map[string]string{"timestamp": "2026-04-28T10:00:00,123Z"}, Meta{})
	assert.ErrorIs(t, err, ErrInvalidEvent)
}

func TestFormatTimestampNeverPanics(t *testing.T) {
	assert.Equal(t, "+010000-01-01T00:00:00.000Z", FormatTimestamp(time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)))
	assert.Equal(t, "-000001-01-01T00:00:00.000Z", FormatTimestamp(time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC)))
	assert.NotPanics(t, func() { FormatTimestamp(time.Date(100000000, 1, 1, 0, 0, 0, 0, time.UTC)) })
	assert.NotPanics(t, func() { FormatTimestamp(time.Date(-100000000, 1, 1, 0, 0, 0, 0, time.UTC)) })
}
