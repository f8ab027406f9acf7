package arc

import (
	"encoding/json"
	"testing"

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
		msg, err := ToMessage(ev)
		if err != nil {
			t.Fatalf("decoded event does not map to a message: %v", err)
		}
		back, err := FromMessage(msg)
		if err != nil || !ev.Equal(back) {
			t.Fatalf("message round trip: %v\n%+v\n%+v", err, ev, back)
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
