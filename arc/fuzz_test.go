package arc

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
)

var fuzzSeeds = []string{
	contractExample,
	`{"type":"t","payload":null,"meta":{"id":"1","timestamp":null,"aggregate":{"type":"A"},"x":[1,{"y":"z"}]}}`,
	`{"type":"t","meta":{"id":"1","timestamp":1777370400123.5,"schemaVersion":"2","userId":7}}`,
	`{"type":"caf\u00e9","meta":{"\u0069d":"\ud800","timestamp":"2026-04-28t10:00:00.123456789+05:30"}}`,
	`{"type":"t","payload":"\u2028<>&","meta":{"id":"1","userId":"a","userId":null,"aggregate":[1]}}`,
	`{"type":"t","meta":{"id":"1","timestamp":"0000-01-01T00:00:00Z"}}`,
	`{"type":"t","meta":{"id":"1","timestamp":-62167219200000}}`,
	`[{"type":"t"}]`, `{"type":`, `{"type":"t","meta":{"id":420}}`, "\xff\xfe", `{"type":"\xff","meta":{"id":"\x80"}}`,
	// Input classes of issue 14: payload timestamps of every form, nulls,
	// lone surrogates, key order.
	`{"type":"t","payload":{"timestamp":"yesterday","a":[{"timestamp":""}]},"meta":{"id":"1","timestamp":"n/a"}}`,
	`{"type":"t","payload":{"timestamp":"Thu, 01 Jan 2026 00:00:00 GMT"},"meta":{"id":"1","timestamp":"2026-01-01T10:00:00"}}`,
	`{"type":"t","meta":{"userId":null,"id":"1","organizationId":null,"correlationId":null,"aggregate":null,"x":null}}`,
	`{"type":"t","meta":{"id":"1","userId":"\ud800","source":"a\udc00b","aggregate":{"type":"\udbff","id":"x"},"k":"\ud800"}}`,
	`{"type":"t","meta":{"z":1,"source":"s","id":"1","a":2,"userId":"u","timestamp":"2026-01-01T00:00:00.000Z","source":"t"}}`,
	// Ids with lone surrogates, escaped and as raw WTF-8 / CESU-8 bytes.
	`{"type":"t","meta":{"id":"\ud800\udc00\udc00","correlationId":"\uDBFF","causationId":"\ud83d","idempotencyKey":"\udfff\ud800"}}`,
	"{\"type\":\"t\",\"meta\":{\"id\":\"\xed\xa0\x80\\ud800\xed\xa0\xbd\xed\xb8\x80\\ud83d\xed\xb8\x80\",\"causationId\":\"\xed\xb0\x80\"}}",
}

// metaKeys returns the keys of data's top-level "meta" object in their
// first-occurrence order, with their last raw values, using encoding/json
// as the reference reader.
func metaKeys(t *testing.T, data []byte) ([]string, map[string]json.RawMessage) {
	t.Helper()
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil {
		t.Fatalf("reference decode: %v", err)
	}
	dec := json.NewDecoder(bytes.NewReader(top["meta"]))
	if _, err := dec.Token(); err != nil {
		t.Fatalf("reference decode: %v", err)
	}
	var keys []string
	vals := map[string]json.RawMessage{}
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			t.Fatalf("reference decode: %v", err)
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			t.Fatalf("reference decode: %v", err)
		}
		name := k.(string)
		if _, seen := vals[name]; !seen {
			keys = append(keys, name)
		}
		vals[name] = v
	}
	return keys, vals
}

// FuzzUnmarshal: never panic; what decodes re-encodes, and the re-encoded
// bytes decode to the same event and encode to the same bytes.
func FuzzUnmarshal(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var ev Event
		err := Unmarshal(data, &ev)
		if err != nil {
			return
		}
		if !json.Valid(data) {
			t.Fatalf("accepted invalid JSON: %q", data)
		}
		out, err := Marshal(ev)
		if err != nil {
			t.Fatalf("decoded event does not encode: %v\n%q", err, data)
		}
		var again Event
		if err := Unmarshal(out, &again); err != nil {
			t.Fatalf("re-encoded event does not decode: %v\n%q", err, out)
		}
		if !ev.Equal(again) {
			t.Fatalf("round trip changed the event\n%+v\n%+v", ev, again)
		}
		out2, err := Marshal(again)
		if err != nil || string(out) != string(out2) {
			t.Fatalf("encoding is not stable\n%q\n%q", out, out2)
		}
		if !json.Valid(out) {
			t.Fatalf("wrote invalid JSON: %q", out)
		}
		// Against encoding/json: meta keys keep their wire order, null stays
		// null, and the payload bytes are untouched.
		inKeys, inVals := metaKeys(t, data)
		outKeys, outVals := metaKeys(t, out)
		j := 0
		for _, k := range inKeys {
			if j < len(outKeys) && outKeys[j] == k {
				j++
			}
			if string(inVals[k]) == "null" && k != "id" && string(outVals[k]) != "null" {
				t.Fatalf("meta.%s: null became %s\n%q", k, outVals[k], out)
			}
		}
		if j != len(outKeys) {
			t.Fatalf("meta key order changed: %q -> %q", inKeys, outKeys)
		}
		var inTop, outTop map[string]json.RawMessage
		_ = json.Unmarshal(data, &inTop)
		_ = json.Unmarshal(out, &outTop)
		if !bytes.Equal(inTop["payload"], outTop["payload"]) {
			t.Fatalf("payload bytes changed: %q -> %q", inTop["payload"], outTop["payload"])
		}
		msg, err := ToMessage(ev)
		if err != nil {
			t.Fatalf("decoded event does not map to a message: %v", err)
		}
		back, err := FromMessage(msg)
		if err != nil || !ev.Equal(back) {
			t.Fatalf("message round trip: %v\n%+v\n%+v", err, ev, back)
		}
		if viaMsg, err := Marshal(back); err != nil || !bytes.Equal(viaMsg, out) {
			t.Fatalf("message round trip changed the bytes: %v\n%q\n%q", err, out, viaMsg)
		}
	})
}

// FuzzNodeDate: the V8 port never panics and is deterministic; where the
// strict RFC 3339 reader (a subset of Node's grammar) reads a string, the
// port reads the same instant; what it reads, written in Arc's form, reads
// back to the same instant.
func FuzzNodeDate(f *testing.F) {
	for _, s := range []string{"2026-01-01T10:00:00.000Z", "2026-01-01T10:00:00", "2026-01-01", "+002026-01-01T00:00:00Z",
		"-000001-01-01T00:00:00Z", "Thu, 01 Jan 2026 00:00:00 GMT", "2026/01/01", "Jan 1 2026", "1 January 2026 10:00",
		"2026-01-01 10:00:00", "2026-01-01t10:00:00z", "2026-01-01T10:00:00+0000", "", "yesterday", "n/a",
		"1/1/2026 10:00 pm GMT+0130 (x)", "2026-01-01T24:00", "\u00a02026-01-01", "\u20282026", "12:00:00.123456 Jan 1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ms, ok := parseJSDate(s)
		if ms2, ok2 := parseJSDate(s); ms2 != ms || ok2 != ok {
			t.Fatalf("%q: not deterministic", s)
		}
		if tm, strict := parseRFC3339(s, true); strict && (!ok || tm.UnixMilli() != ms) {
			t.Fatalf("%q: RFC 3339 reads %v, the V8 port %d %v", s, tm, ms, ok)
		}
		if !ok {
			return
		}
		if ms < -jsMaxTime || ms > jsMaxTime {
			t.Fatalf("%q: %d ms is outside the Date range", s, ms)
		}
		iso := FormatTimestamp(time.UnixMilli(ms).UTC())
		if back, ok := parseJSDate(iso); !ok || back != ms {
			t.Fatalf("%q: %d ms written as %q reads back as %d %v", s, ms, iso, back, ok)
		}
	})
}

// FuzzFromMessage: never panic on any message; what decodes maps back to a
// message that decodes to the same event, and encodes as Arc JSON.
func FuzzFromMessage(f *testing.F) {
	f.Add("1", []byte(`{"a":1}`), "t", "2026-04-28T10:00:00.123Z", "3", "c", "k", `{"x":1}`, "", "")
	f.Add("", []byte(``), "", "nope", "x", "", "timestamp", `nope`, "A", "true")
	f.Add("é", []byte(`null`), "$deadLetter", "2026-04-28T10:00:00.123456789-07:00", "-1", "\u2028", "id", `[]`, "", "")
	f.Fuzz(func(t *testing.T, uuid string, payload []byte, typ, ts, version, corr, extraKey, extraVal, aggType, absent string) {
		msg := message.NewMessage(uuid, payload)
		msg.Metadata = message.Metadata{MetadataType: typ, MetadataTimestamp: ts, MetadataSchemaVersion: version,
			MetadataCorrelationID: corr, MetadataExtraPrefix + extraKey: extraVal, MetadataPayloadAbsent: absent}
		if aggType != "" {
			msg.Metadata[MetadataAggregateType] = aggType
		}
		ev, err := FromMessage(msg)
		if err != nil {
			return
		}
		again, err := ToMessage(ev)
		if err != nil {
			t.Fatalf("decoded event does not map back: %v", err)
		}
		back, err := FromMessage(again)
		if err != nil || !ev.Equal(back) {
			t.Fatalf("message round trip: %v\n%+v\n%+v", err, ev, back)
		}
		out, err := Marshal(ev)
		if err != nil {
			t.Fatalf("decoded event does not encode: %v", err)
		}
		var wire Event
		if err := Unmarshal(out, &wire); err != nil {
			t.Fatalf("encoded event does not decode: %v\n%q", err, out)
		}
	})
}

// FuzzValidJSON: the scanner accepts exactly what encoding/json accepts.
func FuzzValidJSON(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	f.Add([]byte(`[1e5,-0.0,"\u00e9",{"a":{}}]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		if got, want := validJSON(data) == nil, json.Valid(data); got != want {
			t.Fatalf("validJSON=%v json.Valid=%v for %q", got, want, data)
		}
	})
}
