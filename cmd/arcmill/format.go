package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/arcmill/arcmill/arc"
)

// printer writes events as JSON lines or readable lines.
type printer struct {
	w    io.Writer
	json bool
}

// newPrinter takes format "json", "text", or "" (text on a terminal, JSON
// otherwise, so that pipes get machine-readable lines).
func newPrinter(w io.Writer, format string) (printer, error) {
	switch format {
	case "json":
		return printer{w, true}, nil
	case "text":
		return printer{w, false}, nil
	case "":
		return printer{w, !isTerminal(w)}, nil
	}
	return printer{}, usageErr("--format must be json or text, not %q", format)
}

// event prints one event; where says where it came from (an entry id or a
// channel).
func (p printer) event(ev arc.Event, where string) error {
	if p.json {
		b, err := arc.Marshal(ev)
		if err != nil {
			return err
		}
		// One line per event, even for a payload stored pretty-printed.
		var line bytes.Buffer
		if json.Compact(&line, b) != nil {
			line.Reset()
			line.Write(b)
		}
		_, err = fmt.Fprintf(p.w, "%s\n", line.Bytes())
		return err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s  %-24s id=%s", arc.FormatTimestamp(ev.Meta.Timestamp), ev.Type, ev.Meta.ID)
	if c := ev.Meta.CorrelationID; c != "" {
		fmt.Fprintf(&b, "  correlation=%s", c)
	}
	if c := ev.Meta.CausationID; c != "" {
		fmt.Fprintf(&b, "  causation=%s", c)
	}
	if where != "" {
		fmt.Fprintf(&b, "  [%s]", where)
	}
	if len(ev.Payload) > 0 {
		var compact bytes.Buffer
		payload := string(ev.Payload)
		if json.Compact(&compact, ev.Payload) == nil {
			payload = compact.String()
		}
		if len(payload) > 120 {
			cut := 117
			for cut > 0 && !utf8.RuneStart(payload[cut]) {
				cut--
			}
			payload = payload[:cut] + "..."
		}
		fmt.Fprintf(&b, "  %s", payload)
	}
	_, err := fmt.Fprintln(p.w, b.String())
	return err
}

// malformed prints an entry that is not an Arc event, so tail never stops
// on one.
func (p printer) malformed(where, why string) error {
	if p.json {
		b, _ := json.Marshal(map[string]string{"malformed": why, "at": where})
		_, err := fmt.Fprintf(p.w, "%s\n", b)
		return err
	}
	_, err := fmt.Fprintf(p.w, "MALFORMED  [%s]  %s\n", where, why)
	return err
}

// value prints any value: JSON, or the text form text gives.
func (p printer) value(v any, text func(io.Writer)) error {
	if p.json {
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(p.w, "%s\n", b)
		return err
	}
	text(p.w)
	return nil
}
