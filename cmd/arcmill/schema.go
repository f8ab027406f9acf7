package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"slices"
	"strings"

	"github.com/arcmill/arcmill/registry"
)

const schemaUsage = `Usage: arcmill schema check OLD NEW [flags]

Compares two event catalogs and prints every change in NEW that breaks
consumers under the compatibility mode, for CI. OLD and NEW are files
holding Arc's registry.catalog() as JSON, arcmill's Registry.Catalog
marshalled, or an AsyncAPI 3.0 document (Registry.AsyncAPI writes one).

A version of an event that NEW adds is checked against the earlier
versions (the latest only, unless the mode is transitive); a version both
hold with different schemas is checked against OLD's as if it were new.
Events or versions NEW drops are noted, not counted as breaking.

Modes (Confluent's): BACKWARD (the default: consumers on the new schema
read old data), FORWARD (consumers on the old schema read new data), FULL
(both), BACKWARD_TRANSITIVE, FORWARD_TRANSITIVE, FULL_TRANSITIVE (against
every earlier version), NONE.

Foreign files are bounded: a file larger than 32 MiB is refused, and so are
catalogs that need more than 100,000 comparisons of two versions (a
transitive mode compares each version with every earlier one).

Exits 0 when nothing breaks, 1 when something does, 2 when a file is not a
catalog or exceeds a bound (or bad usage), 3 when a file does not exist.

Examples:
  arcmill schema check main/catalog.json catalog.json
  arcmill schema check old-asyncapi.json asyncapi.json --mode full_transitive
  arcmill schema check a.json b.json --format json | jq '.changes[].pointer'
`

// errBreaking is schema check's verdict for a catalog that breaks consumers.
var errBreaking = errors.New("breaking changes (see above)")

func schemaCmd(_ context.Context, e env, args []string) error {
	var modeFlag, format string
	fset := newFlags(e, "schema", schemaUsage)
	fset.StringVar(&modeFlag, "mode", string(registry.CompatBackward), "compatibility mode: NONE, BACKWARD, FORWARD, FULL, or one of those with _TRANSITIVE")
	fset.StringVar(&format, "format", "text", "text or json")
	pos, err := parse(fset, args)
	if err != nil {
		return err
	}
	if len(pos) == 0 || pos[0] != "check" {
		return usageErr("want: schema check OLD NEW")
	}
	if len(pos) != 3 {
		return usageErr("schema check takes two files, OLD and NEW; got %d", len(pos)-1)
	}
	mode, err := registry.ParseCompatibility(modeFlag)
	if err != nil {
		return usageErr("--mode: %v", err)
	}
	p, err := newPrinter(e.stdout, format)
	if err != nil {
		return err
	}
	oldDefs, err := readCatalog(pos[1])
	if err != nil {
		return err
	}
	newDefs, err := readCatalog(pos[2])
	if err != nil {
		return err
	}
	report, err := compareCatalogs(mode, oldDefs, newDefs)
	if err != nil {
		return err
	}
	err = p.value(report, func(w io.Writer) { report.text(w) })
	if err != nil {
		return err
	}
	if len(report.Changes) > 0 {
		return fmt.Errorf("%d %w", len(report.Changes), errBreaking)
	}
	return nil
}

// maxCatalogBytes bounds a catalog file: the files are foreign input, and
// a catalog of thousands of events is a few MiB.
const maxCatalogBytes = 32 << 20

// readCatalog reads a catalog file: a missing file is errNotFound (exit
// 3), a file that is not a catalog, or larger than maxCatalogBytes, a
// usage error (exit 2).
func readCatalog(path string) ([]registry.Definition, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s: no such file", errNotFound, path)
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	// Read at most one byte past the bound, whatever the file claims to be
	// (a pipe or a growing file has no useful size).
	data, err := io.ReadAll(io.LimitReader(f, maxCatalogBytes+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxCatalogBytes {
		return nil, usageErr("%s: larger than %d MiB, refused as a catalog", path, maxCatalogBytes>>20)
	}
	defs, err := registry.ParseCatalog(data)
	if err != nil {
		return nil, usageErr("%s: %v", path, err)
	}
	return defs, nil
}

// schemaReport is what schema check prints.
type schemaReport struct {
	Mode       registry.Compatibility `json:"mode"`
	Compatible bool                   `json:"compatible"`
	Checked    int                    `json:"checked"` // versions checked
	Changes    []schemaChange         `json:"changes"`
	Notes      []string               `json:"notes"`
}

type schemaChange struct {
	Event     string `json:"event"`
	Version   int    `json:"version"`
	Against   int    `json:"against"`
	Rule      string `json:"rule"`
	Pointer   string `json:"pointer"`
	Detail    string `json:"detail"`
	Direction string `json:"direction"`
}

func (r schemaReport) text(w io.Writer) {
	for _, n := range r.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	for _, c := range r.Changes {
		fmt.Fprintf(w, "%s v%d (against v%d) %s %s: %s [%s]\n", c.Event, c.Version, c.Against, c.Pointer, c.Rule, c.Detail, c.Direction)
	}
	if r.Compatible {
		fmt.Fprintf(w, "ok: %d new or changed version(s) compatible under %s\n", r.Checked, r.Mode)
	} else {
		fmt.Fprintf(w, "%d breaking change(s) under %s\n", len(r.Changes), r.Mode)
	}
}

// maxVersionPairs bounds the versions compared in one schema check: a
// transitive mode compares each version with every earlier one, so an
// event with thousands of versions costs millions of comparisons (4,000
// took two minutes).
const maxVersionPairs = 100_000

// compareCatalogs checks every version NEW adds or changes against the
// versions before it, as Register would have.
func compareCatalogs(mode registry.Compatibility, oldDefs, newDefs []registry.Definition) (schemaReport, error) {
	report := schemaReport{Mode: mode, Changes: []schemaChange{}, Notes: []string{}}
	byName := func(defs []registry.Definition) map[string]map[int]registry.Definition {
		out := map[string]map[int]registry.Definition{}
		for _, d := range defs {
			if out[d.Name] == nil {
				out[d.Name] = map[int]registry.Definition{}
			}
			out[d.Name][d.Version] = d
		}
		return out
	}
	oldBy, newBy := byName(oldDefs), byName(newDefs)
	pairs := 0
	for _, name := range slices.Sorted(maps.Keys(oldBy)) {
		if newBy[name] == nil {
			report.Notes = append(report.Notes, fmt.Sprintf("event %s is not in the new catalog", name))
			continue
		}
		for _, v := range slices.Sorted(maps.Keys(oldBy[name])) {
			if _, ok := newBy[name][v]; !ok {
				report.Notes = append(report.Notes, fmt.Sprintf("%s v%d is not in the new catalog", name, v))
			}
		}
	}
	// The earlier versions of each version to check, as sorted version
	// lists cut at it: a version's are OLD's below it (at or below, for a
	// version edited in place) and NEW's below it that OLD lacks. Only
	// the latest of them, unless the mode is transitive.
	transitive := strings.HasSuffix(string(mode), "_TRANSITIVE")
	type job struct {
		name    string
		v       int
		next    registry.Definition
		earlier []int // OLD's versions, then NEW's
		nOld    int
	}
	var jobs []job
	for _, name := range slices.Sorted(maps.Keys(newBy)) {
		oldVers := slices.Sorted(maps.Keys(oldBy[name]))
		var newOnly []int
		for _, v := range slices.Sorted(maps.Keys(newBy[name])) {
			if _, inOld := oldBy[name][v]; !inOld {
				newOnly = append(newOnly, v)
			}
		}
		for _, v := range slices.Sorted(maps.Keys(newBy[name])) {
			next := newBy[name][v]
			old, existed := oldBy[name][v]
			nOld, _ := slices.BinarySearch(oldVers, v)
			nNew, _ := slices.BinarySearch(newOnly, v)
			switch {
			case existed && sameSchema(old.Schema, next.Schema):
				continue
			case existed:
				// A published version edited in place: check it as the
				// version after OLD's, then report it under its own number.
				next.Version = v + 1
				nOld++ // OLD's own v
				nNew = 0
			}
			olds, news := oldVers[:nOld], newOnly[:nNew]
			if !transitive { // the latest earlier version only
				switch {
				case len(news) > 0 && (len(olds) == 0 || news[len(news)-1] > olds[len(olds)-1]):
					olds, news = nil, news[len(news)-1:]
				case len(olds) > 0:
					olds, news = olds[len(olds)-1:], nil
				}
			}
			if mode != registry.CompatNone {
				if pairs += len(olds) + len(news); pairs > maxVersionPairs {
					return report, usageErr("under %s the catalogs need more than %d comparisons of two versions; check a non-transitive mode or fewer versions", mode, maxVersionPairs)
				}
			}
			jobs = append(jobs, job{name: name, v: v, next: next, earlier: append(slices.Clip(olds), news...), nOld: len(olds)})
		}
	}
	for _, j := range jobs {
		name, v, next := j.name, j.v, j.next
		earlier := make([]registry.Definition, 0, len(j.earlier))
		for i, ev := range j.earlier {
			if i < j.nOld {
				earlier = append(earlier, oldBy[name][ev])
			} else {
				earlier = append(earlier, newBy[name][ev])
			}
		}
		report.Checked++
		err := registry.Check(mode, next, earlier)
		var ie *registry.IncompatibleError
		if errors.As(err, &ie) {
			for _, c := range ie.Changes {
				report.Changes = append(report.Changes, schemaChange{Event: name, Version: v, Against: c.Against,
					Rule: c.Rule, Pointer: c.Pointer, Detail: c.Detail, Direction: string(c.Direction)})
			}
		} else if err != nil {
			return report, usageErr("%s v%d: %v", name, v, err)
		}
	}
	report.Compatible = len(report.Changes) == 0
	return report, nil
}

// sameSchema compares two schemas as JSON, ignoring layout; no schema and
// the empty schema are the same.
func sameSchema(a, b json.RawMessage) bool {
	norm := func(raw json.RawMessage) string {
		raw = bytes.TrimSpace(raw)
		if len(raw) == 0 || string(raw) == "null" || string(raw) == "true" {
			return "{}"
		}
		var v any
		if json.Unmarshal(raw, &v) != nil {
			return string(raw)
		}
		out, _ := json.Marshal(v) // maps marshal with sorted keys
		return string(out)
	}
	return norm(a) == norm(b)
}
