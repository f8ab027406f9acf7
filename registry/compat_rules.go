package registry

import (
	"fmt"
	"maps"
	"math"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// comparer walks a writer schema and a reader schema side by side and
// records what the reader refuses that the writer allows. Each rule is
// sound on its own (a reported change is a real narrowing) except where a
// comment says it is conservative; what the walk cannot decide, it reports
// (UNCHECKED_KEYWORD_CHANGED), so a silent pass means compatible as far as
// the rules go.
type comparer struct {
	wRoot, rRoot any
	seen         map[[2]string]bool // pairs of $refs already being compared
	depth        int
	out          []Change
	work         int    // steps spent, against maxWork
	stoppedAt    string // where maxWork ran out; "" while it has not
	exhausted    bool
	limited      bool // a bound (maxDepth, maxWork, maxChanges) cut the walk somewhere
	probing      int  // inside covered: changes are not recorded, only noticed
	failed       bool // covered's walk met a change
}

// maxDepth bounds the walk; a deeper schema is reported rather than walked.
const maxDepth = 64

// maxWork bounds the steps of one comparison (a subschema visited, a
// keyword, list item or value node read, 32 bytes of a pointer). Local
// $refs make a schema a graph, and two graphs compared path by path, or
// anyOf branches compared pairwise, can cost exponential or quadratic
// time; past the bound the rest is reported (UNCHECKED_TOO_COMPLEX), not
// compared. Ordinary schemas need a few thousand steps; 2,000 properties
// of five each, about 100,000.
const maxWork = 1 << 18

// maxDetail bounds a change's Detail, in bytes.
const maxDetail = 1000

// maxChanges bounds the changes one comparison reports; past it the
// comparison stops (UNCHECKED_TOO_COMPLEX).
const maxChanges = 1000

// charge spends n steps and reports whether any are left.
func (c *comparer) charge(n int, p string) bool {
	if c.exhausted {
		return false
	}
	c.work += n
	if c.work > maxWork {
		c.exhausted, c.limited, c.stoppedAt = true, true, p
	}
	return !c.exhausted
}

// shallow is the number of steps reading a keyword's value costs at one
// level (the lists and maps the rules iterate).
func shallow(v any) int {
	switch x := v.(type) {
	case []any:
		return len(x)
	case map[string]any:
		return len(x)
	case string:
		return len(x) / 32
	}
	return 0
}

// annotations never change which payloads a schema accepts. format is one:
// 2020-12 makes it an annotation, and the registry's validator does not
// assert it.
var annotations = map[string]bool{
	"title": true, "description": true, "$comment": true, "examples": true, "default": true,
	"deprecated": true, "readOnly": true, "writeOnly": true, "$schema": true, "$id": true,
	"$anchor": true, "$dynamicAnchor": true, "$defs": true, "definitions": true, "format": true,
	"contentMediaType": true, "contentEncoding": true, "contentSchema": true, "$vocabulary": true,
	// Not a keyword: where ParseCatalog keeps the AsyncAPI schemas a
	// payload refers to.
	"components": true,
}

// handled are the keywords the rules below compare; every other keyword
// the reader has is compared by value (UNCHECKED_KEYWORD_CHANGED).
var handled = map[string]bool{
	"type": true, "enum": true, "const": true,
	"maximum": true, "minimum": true, "exclusiveMaximum": true, "exclusiveMinimum": true, "multipleOf": true,
	"maxLength": true, "minLength": true, "pattern": true,
	"items": true, "prefixItems": true, "additionalItems": true, "maxItems": true, "minItems": true, "uniqueItems": true,
	"properties": true, "required": true, "additionalProperties": true, "maxProperties": true, "minProperties": true,
	"allOf": true, "anyOf": true, "oneOf": true,
}

func (c *comparer) add(rule, ptr, format string, args ...any) {
	if c.probing > 0 {
		c.failed = true // covered needs to know that, not what
		return
	}
	if c.exhausted {
		return // what follows the bound is not known; UNCHECKED_TOO_COMPLEX says so
	}
	if len(c.out) >= maxChanges {
		c.charge(maxWork+1, ptr) // stop here
		return
	}
	detail := fmt.Sprintf(format, args...)
	c.charge(1+(len(ptr)+len(detail))/32, ptr)
	if len(detail) > maxDetail { // a pattern or name of megabytes
		detail = strings.ToValidUTF8(detail[:maxDetail], "") + "…"
	}
	c.out = append(c.out, Change{Rule: rule, Pointer: ptr, Detail: detail})
}

// schema compares the writer's subschema w with the reader's r at p.
func (c *comparer) schema(w, r any, p string) {
	if !c.charge(1+len(p)/32, p) || (c.probing > 0 && c.failed) {
		return
	}
	if c.depth >= maxDepth {
		c.limited = true
		c.add("UNCHECKED_KEYWORD_CHANGED", p, "schema nested deeper than %d levels, not compared", maxDepth)
		return
	}
	c.depth++
	defer func() { c.depth-- }()
	w, wref := c.resolve(c.wRoot, w, p)
	r, rref := c.resolve(c.rRoot, r, p)
	if wref != "" && rref != "" {
		// A recursive schema meets itself again: assume the pair
		// compatible while it is being compared (the usual co-inductive
		// rule for recursive types), so the walk ends.
		key := [2]string{wref, rref}
		if c.seen[key] {
			return
		}
		c.seen[key] = true
		defer delete(c.seen, key)
	}
	rm, ok := asSchema(r)
	if !ok { // reader false: it accepts nothing
		if wb, isBool := w.(bool); !isBool || wb {
			c.add("TYPE_NARROWED", p, "the {r} schema is false and accepts nothing")
		}
		return
	}
	if len(rm) == 0 {
		return // the reader accepts anything
	}
	wm, ok := asSchema(w)
	if !ok {
		return // the writer writes nothing
	}
	n := len(wm) + len(rm)
	for _, v := range wm {
		n += shallow(v)
	}
	for _, v := range rm {
		n += shallow(v)
	}
	if !c.charge(n, p) {
		return
	}
	if c.branchesCovered(wm, r, p) {
		return
	}
	wTypes := c.types(wm, rm, p)
	may := func(kinds ...string) bool {
		if wTypes == nil {
			return true
		}
		for _, k := range kinds {
			if wTypes[k] || (k == "number" && wTypes["integer"]) {
				return true
			}
		}
		return false
	}
	c.enum(wm, rm, p)
	if may("number", "integer") {
		c.numbers(wm, rm, p)
	}
	if may("string") {
		c.text(wm, rm, p)
	}
	if may("array") {
		c.arrays(wm, rm, p)
	}
	if may("object") {
		c.objects(wm, rm, p)
	}
	c.combinators(wm, rm, p)
	for _, k := range slices.Sorted(maps.Keys(rm)) {
		if annotations[k] || handled[k] || strings.HasPrefix(k, "x-") {
			continue
		}
		// Conservative: not, if/then/else,
		// patternProperties, dependentRequired, propertyNames, contains,
		// unevaluated*, external $refs… are compared by value only. Any
		// difference is reported, though many are harmless.
		if !c.equal(wm[k], rm[k], p) {
			c.add("UNCHECKED_KEYWORD_CHANGED", p+"/"+escape(k), "%q differs between the schemas and arcmill does not decide its compatibility", k)
		}
	}
}

// resolve follows a local $ref ("#", "#/$defs/x", "#/definitions/x") and
// returns its target, with the referring schema's other keywords laid
// over it, and the reference (empty when there was none). A $ref to
// another document is left for the by-value comparison.
func (c *comparer) resolve(root, s any, p string) (any, string) {
	m, ok := s.(map[string]any)
	if !ok {
		return s, ""
	}
	ref, ok := m["$ref"].(string)
	if !ok || !strings.HasPrefix(ref, "#") {
		return s, ""
	}
	c.charge(1+len(ref)/32, p)
	target, ok := pointerGet(root, fragment(ref))
	if !ok {
		return s, ""
	}
	for range maxDepth { // a $ref to a $ref
		tm, isMap := target.(map[string]any)
		if !isMap {
			break
		}
		next, isRef := tm["$ref"].(string)
		if !isRef || !strings.HasPrefix(next, "#") || !c.charge(1+len(next)/32+len(tm), p) {
			break
		}
		t, found := pointerGet(root, fragment(next))
		if !found {
			break
		}
		ref, target = next, t
	}
	if len(m) == 1 {
		return target, ref
	}
	out := map[string]any{}
	if tm, isMap := target.(map[string]any); isMap {
		maps.Copy(out, tm)
	} else if target == false {
		return false, ref
	}
	for k, v := range m {
		if k != "$ref" {
			out[k] = v
		}
	}
	return out, ref
}

// fragment is the JSON Pointer of a local $ref: the URI fragment,
// percent-decoded ("#/$defs/a%20b" is "/$defs/a b").
func fragment(ref string) string {
	f := strings.TrimPrefix(ref, "#")
	if u, err := url.PathUnescape(f); err == nil {
		return u
	}
	return f
}

// pointerGet follows a JSON Pointer in a decoded document.
func pointerGet(doc any, ptr string) (any, bool) {
	if ptr == "" {
		return doc, true
	}
	if !strings.HasPrefix(ptr, "/") {
		return nil, false
	}
	cur := doc
	for _, tok := range strings.Split(ptr[1:], "/") {
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		switch v := cur.(type) {
		case map[string]any:
			next, ok := v[tok]
			if !ok {
				return nil, false
			}
			cur = next
		case []any:
			i, err := strconv.Atoi(tok)
			if err != nil || i < 0 || i >= len(v) || (tok != "0" && tok[0] == '0') || tok[0] == '+' {
				return nil, false
			}
			cur = v[i]
		default:
			return nil, false
		}
	}
	return cur, true
}

// asSchema returns a schema's keywords; true is the empty schema, false
// is reported as not ok. Annotations are left out.
func asSchema(s any) (map[string]any, bool) {
	switch v := s.(type) {
	case bool:
		return map[string]any{}, v
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, x := range v {
			if !annotations[k] && !strings.HasPrefix(k, "x-") {
				out[k] = x
			}
		}
		return out, true
	}
	return map[string]any{}, true // not a schema: treat as accepting anything, as validators do
}

func escape(tok string) string {
	return strings.ReplaceAll(strings.ReplaceAll(tok, "~", "~0"), "/", "~1")
}

// typeSet reads "type" (a string or a list); nil means any type.
func typeSet(m map[string]any) map[string]bool {
	switch t := m["type"].(type) {
	case string:
		return map[string]bool{t: true}
	case []any:
		out := map[string]bool{}
		for _, x := range t {
			if s, ok := x.(string); ok {
				out[s] = true
			}
		}
		return out
	}
	return nil
}

// jsonType is the JSON Schema type of a decoded value.
func jsonType(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case float64:
		if x == math.Trunc(x) {
			return "integer"
		}
		return "number"
	case string:
		return "string"
	case []any:
		return "array"
	}
	return "object"
}

// enumValues reads enum, or const as a one-value enum; nil when neither.
func enumValues(m map[string]any) []any {
	if v, ok := m["const"]; ok {
		return []any{v}
	}
	if e, ok := m["enum"].([]any); ok {
		return e
	}
	return nil
}

// types applies Confluent's TYPE_NARROWED and TYPE_CHANGED: every type
// the writer allows must be one the reader allows (integer is a number).
// It returns the writer's types (from its enum when it has no type), nil
// for any.
func (c *comparer) types(wm, rm map[string]any, p string) map[string]bool {
	wt := typeSet(wm)
	if wt == nil {
		if vals := enumValues(wm); vals != nil {
			wt = map[string]bool{}
			for _, v := range vals {
				wt[jsonType(v)] = true
			}
		}
	}
	rt := typeSet(rm)
	if rt == nil {
		return wt
	}
	names := slices.Sorted(maps.Keys(rt))
	if wt == nil {
		c.add("TYPE_NARROWED", p+"/type", "the {w} schema allows any type, the {r} only %s", strings.Join(names, ", "))
		return wt
	}
	var missing []string
	shared := false
	for _, t := range slices.Sorted(maps.Keys(wt)) {
		if rt[t] || (t == "integer" && rt["number"]) {
			shared = true
			continue
		}
		if t == "number" && rt["integer"] {
			shared = true // integers still pass; fractions do not
		}
		missing = append(missing, t)
	}
	switch {
	case len(missing) == 0:
	case shared:
		c.add("TYPE_NARROWED", p+"/type", "the {r} schema no longer allows %s (it allows %s)", strings.Join(missing, ", "), strings.Join(names, ", "))
	default:
		c.add("TYPE_CHANGED", p+"/type", "type %s in the {w} schema, %s in the {r}", strings.Join(slices.Sorted(maps.Keys(wt)), ", "), strings.Join(names, ", "))
	}
	return wt
}

// enum applies ENUM_ARRAY_NARROWED: every value the writer may write must
// be in the reader's enum (or be its const).
func (c *comparer) enum(wm, rm map[string]any, p string) {
	rv := enumValues(rm)
	if rv == nil {
		return
	}
	kw := "/enum"
	if _, ok := rm["const"]; ok {
		kw = "/const"
	}
	wv := enumValues(wm)
	if wv == nil {
		for _, v := range rv[:min(len(rv), maxListed)] {
			c.key(nil, v, p) // the steps of formatting the values listed
		}
		c.add("ENUM_ARRAY_NARROWED", p+kw, "the {r} schema restricts the value to %s, the {w} did not", jsonList(rv))
		return
	}
	// By canonical key, not value against value: enums of thousands of
	// values would cost their product.
	allowed := make(map[string]bool, len(rv))
	var b []byte
	for _, v := range rv {
		b = c.key(b[:0], v, p)
		allowed[string(b)] = true
	}
	var removed []any
	for _, v := range wv {
		b = c.key(b[:0], v, p)
		if !allowed[string(b)] || c.exhausted {
			removed = append(removed, v)
		}
	}
	if len(removed) > 0 {
		c.add("ENUM_ARRAY_NARROWED", p+kw, "value %s of the {w} schema is not allowed by the {r}", jsonList(removed))
	}
}

// maxListed bounds the values a detail lists.
const maxListed = 10

func jsonList(vs []any) string {
	more := len(vs) - maxListed
	if more > 0 {
		vs = vs[:maxListed]
	}
	parts := make([]string, len(vs), len(vs)+1)
	for i, v := range vs {
		if s, ok := v.(string); ok {
			parts[i] = fmt.Sprintf("%q", s)
		} else {
			parts[i] = fmt.Sprint(v)
		}
		if len(parts[i]) > 200 {
			parts[i] = parts[i][:200] + "…"
		}
	}
	if more > 0 {
		parts = append(parts, fmt.Sprintf("and %d more", more))
	}
	return strings.Join(parts, ", ")
}

func num(m map[string]any, k string) (float64, bool) {
	f, ok := m[k].(float64)
	return f, ok
}

// numbers applies MAXIMUM_ADDED/DECREASED, MINIMUM_ADDED/INCREASED, their
// EXCLUSIVE_ forms and MULTIPLE_OF_ADDED/EXPANDED/CHANGED. A writer bound
// of either kind may satisfy a reader bound of the other.
func (c *comparer) numbers(wm, rm map[string]any, p string) {
	wMax, hasWMax := num(wm, "maximum")
	wXMax, hasWXMax := num(wm, "exclusiveMaximum")
	wMin, hasWMin := num(wm, "minimum")
	wXMin, hasWXMin := num(wm, "exclusiveMinimum")
	if r, ok := num(rm, "maximum"); ok {
		switch {
		case (hasWMax && wMax <= r) || (hasWXMax && wXMax <= r):
		case !hasWMax && !hasWXMax:
			c.add("MAXIMUM_ADDED", p+"/maximum", "the {r} schema adds maximum %v", r)
		default:
			c.add("MAXIMUM_DECREASED", p+"/maximum", "maximum lowered to %v", r)
		}
	}
	if r, ok := num(rm, "exclusiveMaximum"); ok {
		switch {
		case (hasWXMax && wXMax <= r) || (hasWMax && wMax < r):
		case !hasWMax && !hasWXMax:
			c.add("EXCLUSIVE_MAXIMUM_ADDED", p+"/exclusiveMaximum", "the {r} schema adds exclusiveMaximum %v", r)
		default:
			c.add("EXCLUSIVE_MAXIMUM_DECREASED", p+"/exclusiveMaximum", "exclusiveMaximum lowered to %v", r)
		}
	}
	if r, ok := num(rm, "minimum"); ok {
		switch {
		case (hasWMin && wMin >= r) || (hasWXMin && wXMin >= r):
		case !hasWMin && !hasWXMin:
			c.add("MINIMUM_ADDED", p+"/minimum", "the {r} schema adds minimum %v", r)
		default:
			c.add("MINIMUM_INCREASED", p+"/minimum", "minimum raised to %v", r)
		}
	}
	if r, ok := num(rm, "exclusiveMinimum"); ok {
		switch {
		case (hasWXMin && wXMin >= r) || (hasWMin && wMin > r):
		case !hasWMin && !hasWXMin:
			c.add("EXCLUSIVE_MINIMUM_ADDED", p+"/exclusiveMinimum", "the {r} schema adds exclusiveMinimum %v", r)
		default:
			c.add("EXCLUSIVE_MINIMUM_INCREASED", p+"/exclusiveMinimum", "exclusiveMinimum raised to %v", r)
		}
	}
	if r, ok := num(rm, "multipleOf"); ok && r > 0 {
		w, hasW := num(wm, "multipleOf")
		switch {
		case !hasW:
			c.add("MULTIPLE_OF_ADDED", p+"/multipleOf", "the {r} schema adds multipleOf %v", r)
		case isMultiple(w, r): // every multiple of w is one of r
		case isMultiple(r, w):
			c.add("MULTIPLE_OF_EXPANDED", p+"/multipleOf", "multipleOf %v in the {w} schema, %v in the {r}", w, r)
		default:
			c.add("MULTIPLE_OF_CHANGED", p+"/multipleOf", "multipleOf %v in the {w} schema, %v in the {r}", w, r)
		}
	}
}

func isMultiple(a, b float64) bool {
	q := a / b
	return math.Abs(q-math.Round(q)) < 1e-9
}

// upper applies a reader's upper limit (maxLength, maxItems,
// maxProperties): *_ADDED when the writer had none, *_DECREASED when the
// reader's is lower.
func (c *comparer) upper(wm, rm map[string]any, p, kw, rule string) {
	r, ok := num(rm, kw)
	if !ok {
		return
	}
	w, hasW := num(wm, kw)
	switch {
	case !hasW:
		c.add(rule+"_ADDED", p+"/"+kw, "the {r} schema adds %s %v", kw, r)
	case w > r:
		c.add(rule+"_DECREASED", p+"/"+kw, "%s lowered from %v to %v", kw, w, r)
	}
}

// lower applies a reader's lower limit (minLength, minItems,
// minProperties): *_ADDED, *_INCREASED.
func (c *comparer) lower(wm, rm map[string]any, p, kw, rule string) {
	r, ok := num(rm, kw)
	if !ok || r == 0 {
		return
	}
	w, hasW := num(wm, kw)
	switch {
	case !hasW:
		c.add(rule+"_ADDED", p+"/"+kw, "the {r} schema adds %s %v", kw, r)
	case w < r:
		c.add(rule+"_INCREASED", p+"/"+kw, "%s raised from %v to %v", kw, w, r)
	}
}

// text applies MAX_LENGTH_*, MIN_LENGTH_* and PATTERN_ADDED/CHANGED.
// Conservative: any change of pattern is reported, as Confluent does;
// regular-language inclusion is not computed.
func (c *comparer) text(wm, rm map[string]any, p string) {
	c.upper(wm, rm, p, "maxLength", "MAX_LENGTH")
	c.lower(wm, rm, p, "minLength", "MIN_LENGTH")
	if r, ok := rm["pattern"].(string); ok {
		w, hasW := wm["pattern"].(string)
		switch {
		case !hasW:
			c.add("PATTERN_ADDED", p+"/pattern", "the {r} schema adds pattern %q", r)
		case w != r:
			c.add("PATTERN_CHANGED", p+"/pattern", "pattern %q in the {w} schema, %q in the {r}", w, r)
		}
	}
}

// tuple reads an array schema's positional items and the schema of the
// items after them, in 2020-12 (prefixItems, items) or draft-07 (items as
// a list, additionalItems) form.
func tuple(m map[string]any) (prefix []any, rest any) {
	rest = true
	if list, ok := m["items"].([]any); ok {
		prefix = list
		if a, ok := m["additionalItems"]; ok {
			rest = a
		}
		return prefix, rest
	}
	prefix, _ = m["prefixItems"].([]any)
	if it, ok := m["items"]; ok {
		rest = it
	}
	return prefix, rest
}

// arrays compares items position by position (the rules of the item
// schemas apply there), then MAX_ITEMS_*, MIN_ITEMS_*, UNIQUE_ITEMS_ADDED.
func (c *comparer) arrays(wm, rm map[string]any, p string) {
	wp, wRest := tuple(wm)
	rp, rRest := tuple(rm)
	rKw := "/prefixItems"
	if _, list := rm["items"].([]any); list {
		rKw = "/items"
	}
	for i := range max(len(wp), len(rp)) {
		w, r := wRest, rRest
		if i < len(wp) {
			w = wp[i]
		}
		ptr := p + "/items"
		if i < len(rp) {
			r, ptr = rp[i], fmt.Sprintf("%s%s/%d", p, rKw, i)
		}
		c.schema(w, r, ptr)
	}
	restKw := "/items"
	if _, list := rm["items"].([]any); list {
		restKw = "/additionalItems"
	}
	c.schema(wRest, rRest, p+restKw)
	c.upper(wm, rm, p, "maxItems", "MAX_ITEMS")
	c.lower(wm, rm, p, "minItems", "MIN_ITEMS")
	if rm["uniqueItems"] == true && wm["uniqueItems"] != true {
		c.add("UNIQUE_ITEMS_ADDED", p+"/uniqueItems", "the {r} schema requires unique items")
	}
}

func stringSet(v any) map[string]bool {
	out := map[string]bool{}
	if list, ok := v.([]any); ok {
		for _, x := range list {
			if s, ok := x.(string); ok {
				out[s] = true
			}
		}
	}
	return out
}

// objects applies the property rules: required properties, properties
// compared by name, the content model (additionalProperties), and
// MAX_PROPERTIES_*, MIN_PROPERTIES_*.
func (c *comparer) objects(wm, rm map[string]any, p string) {
	wProps, _ := wm["properties"].(map[string]any)
	rProps, _ := rm["properties"].(map[string]any)
	wAdd, hasWAdd := wm["additionalProperties"]
	if !hasWAdd {
		wAdd = true
	}
	rAdd, hasRAdd := rm["additionalProperties"]
	if !hasRAdd {
		rAdd = true
	}
	wReq, rReq := stringSet(wm["required"]), stringSet(rm["required"])
	for _, name := range slices.Sorted(maps.Keys(rReq)) {
		if wReq[name] {
			continue
		}
		ptr := p + "/required"
		if _, ok := rProps[name]; ok {
			ptr = p + "/properties/" + escape(name)
		}
		if _, existed := wProps[name]; existed {
			c.add("REQUIRED_ATTRIBUTE_ADDED", ptr, "property %q is optional in the {w} schema, required in the {r}", name)
		} else {
			c.add("REQUIRED_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL", ptr, "property %q is required by the {r} schema and not declared by the {w}", name)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(wProps)) {
		ptr := p + "/properties/" + escape(name)
		if r, ok := rProps[name]; ok {
			c.schema(wProps[name], r, ptr)
			continue
		}
		// The reader dropped the property: its additionalProperties now
		// decides what the writer's values must satisfy.
		if b, isBool := rAdd.(bool); isBool {
			if !b {
				c.add("PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL", ptr, "property %q is removed and the {r} schema is closed (additionalProperties false)", name)
			}
			continue
		}
		if c.covered(wProps[name], rAdd, p+"/additionalProperties") {
			continue
		}
		c.add("PROPERTY_REMOVED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL", ptr, "property %q is removed and the {r} schema's additionalProperties refuses its values", name)
	}
	for _, name := range slices.Sorted(maps.Keys(rProps)) {
		if _, ok := wProps[name]; ok {
			continue
		}
		// A property the writer did not declare. A closed writer never
		// writes it; a partially open one writes what its
		// additionalProperties allows. An open writer could have written
		// anything under that name: Confluent reports
		// PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL there; arcmill does not,
		// because an optional property added to an open object is the
		// ordinary way to evolve an event (see the package doc).
		if _, isBool := wAdd.(bool); isBool {
			continue
		}
		if !c.covered(wAdd, rProps[name], p+"/properties/"+escape(name)) {
			c.add("PROPERTY_ADDED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL", p+"/properties/"+escape(name),
				"property %q of the {r} schema refuses values the {w} schema's additionalProperties allows", name)
		}
	}
	switch rb, rIsBool := rAdd.(bool); {
	case rIsBool && rb:
	case rIsBool: // closed reader
		if wb, wIsBool := wAdd.(bool); !wIsBool || wb {
			c.add("ADDITIONAL_PROPERTIES_REMOVED", p+"/additionalProperties", "the {r} schema is closed (additionalProperties false), the {w} was open")
		}
	default:
		if wb, wIsBool := wAdd.(bool); wIsBool && wb {
			c.add("ADDITIONAL_PROPERTIES_NARROWED", p+"/additionalProperties", "the {r} schema constrains additional properties, the {w} allowed any")
		} else if !wIsBool {
			c.schema(wAdd, rAdd, p+"/additionalProperties")
		}
	}
	c.upper(wm, rm, p, "maxProperties", "MAX_PROPERTIES")
	c.lower(wm, rm, p, "minProperties", "MIN_PROPERTIES")
}

// covered reports whether the reader's subschema r accepts every value of
// the writer's w, without recording the changes.
func (c *comparer) covered(w, r any, p string) bool {
	failed := c.failed
	c.probing++
	c.failed = false
	c.schema(w, r, p)
	ok := !c.failed && !c.exhausted // out of steps: not known, so not covered
	c.probing--
	c.failed = failed
	return ok
}

// combinators applies the sum and product rules. A reader's anyOf accepts
// the writer's values when each alternative the writer has (its own
// anyOf or oneOf branches, else the writer itself) is covered by some
// reader branch (SUM_TYPE_NARROWED otherwise). A reader's oneOf is treated
// so only when its branches allow pairwise disjoint types (the nullable
// pattern [{"type":"null"}, {…}]), where at most one branch can match;
// otherwise an unequal oneOf is reported (COMBINED_TYPE_CHANGED,
// conservative). A reader's allOf accepts the writer's values when each of
// its branches covers the writer, or one of the writer's allOf branches
// (PRODUCT_TYPE_NARROWED otherwise). Ignoring the writer's other keywords
// while doing so only widens the writer, so these rules stay sound.
func (c *comparer) combinators(wm, rm map[string]any, p string) {
	wAlts := []any{wm}
	if list, ok := wm["anyOf"].([]any); ok {
		wAlts = list
	} else if list, ok := wm["oneOf"].([]any); ok {
		wAlts = list
	}
	sum := func(kw string, branches []any) {
		for i, wb := range wAlts {
			// The branch at the same index first: an unchanged or
			// extended list then costs one comparison per branch.
			ptr := p + "/" + kw
			same := i < len(branches) && c.covered(wb, branches[i], ptr)
			if !same && !slices.ContainsFunc(branches, func(rb any) bool { return c.covered(wb, rb, ptr) }) {
				where := "the {w} schema"
				if len(wAlts) > 1 {
					where = fmt.Sprintf("branch %d of the {w} schema", i)
				}
				c.add("SUM_TYPE_NARROWED", p+"/"+kw, "no branch of the {r} schema's %s accepts every value of %s", kw, where)
			}
		}
	}
	if list, ok := rm["anyOf"].([]any); ok {
		sum("anyOf", list)
	}
	if list, ok := rm["oneOf"].([]any); ok {
		switch {
		case c.equal(wm["oneOf"], rm["oneOf"], p):
		case c.disjoint(list):
			sum("oneOf", list)
		default:
			c.add("COMBINED_TYPE_CHANGED", p+"/oneOf", "oneOf differs between the schemas and its branches may overlap: not decided")
		}
	}
	if list, ok := rm["allOf"].([]any); ok {
		candidates := []any{wm}
		if wAll, ok := wm["allOf"].([]any); ok {
			candidates = append(candidates, wAll...)
		}
		for i, rb := range list {
			ptr := fmt.Sprintf("%s/allOf/%d", p, i)
			if !slices.ContainsFunc(candidates, func(w any) bool { return c.covered(w, rb, ptr) }) {
				c.add("PRODUCT_TYPE_NARROWED", ptr, "the {r} schema's allOf branch %d refuses values the {w} schema allows", i)
			}
		}
	}
}

// disjoint reports whether schemas allow pairwise disjoint sets of types,
// so that a value matches at most one of them.
func (c *comparer) disjoint(branches []any) bool {
	seen := map[string]bool{}
	for _, b := range branches {
		b, _ = c.resolve(c.rRoot, b, "")
		m, ok := b.(map[string]any)
		if !ok {
			return false
		}
		ts := typeSet(m)
		if ts == nil {
			return false
		}
		if ts["number"] || ts["integer"] {
			ts["number"], ts["integer"] = true, true
		}
		for t := range ts {
			if seen[t] {
				return false
			}
		}
		for t := range ts {
			seen[t] = true
		}
	}
	return true
}

// branchesCovered reports whether a writer made of alternatives (anyOf or
// oneOf) has every alternative accepted by the whole reader: its values
// are then all accepted, whatever the top-level keywords say.
func (c *comparer) branchesCovered(wm map[string]any, r any, p string) bool {
	list, ok := wm["anyOf"].([]any)
	if !ok {
		list, ok = wm["oneOf"].([]any)
	}
	if !ok || len(list) == 0 {
		return false
	}
	if rm, isMap := r.(map[string]any); isMap && (rm["anyOf"] != nil || rm["oneOf"] != nil) {
		return false // the sum rules compare branch to branch
	}
	for _, wb := range list {
		if !c.covered(wb, r, p) {
			return false
		}
	}
	return true
}

// equal reports whether two decoded JSON values are equal, as
// reflect.DeepEqual does, spending a step per node; out of steps, it
// reports them unequal (the conservative answer).
func (c *comparer) equal(a, b any, p string) bool {
	if !c.charge(1, p) {
		return false
	}
	switch x := a.(type) {
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		// In key order: the steps spent, and so where the bound falls,
		// must not depend on map order.
		for _, k := range slices.Sorted(maps.Keys(x)) {
			w, ok := y[k]
			if !ok || !c.equal(x[k], w, p) {
				return false
			}
		}
		return true
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !c.equal(x[i], y[i], p) {
				return false
			}
		}
		return true
	}
	return a == b // nil, bool, float64, string
}

// key appends a canonical encoding of a decoded JSON value to b (equal
// values, and only those, have equal keys), spending a step per node.
func (c *comparer) key(b []byte, v any, p string) []byte {
	c.charge(1, p)
	switch x := v.(type) {
	case nil:
		return append(b, 'n')
	case bool:
		if x {
			return append(b, 't')
		}
		return append(b, 'f')
	case float64:
		if x == 0 {
			x = 0 // -0 equals 0
		}
		return strconv.AppendFloat(append(b, 'd'), x, 'g', -1, 64)
	case string:
		return strconv.AppendQuote(append(b, 's'), x)
	case []any:
		b = append(b, '[')
		for _, e := range x {
			b = append(c.key(b, e, p), ',')
		}
		return append(b, ']')
	case map[string]any:
		b = append(b, '{')
		for _, k := range slices.Sorted(maps.Keys(x)) {
			b = strconv.AppendQuote(b, k)
			b = append(c.key(append(b, ':'), x[k], p), ',')
		}
		return append(b, '}')
	}
	return append(b, '?')
}
