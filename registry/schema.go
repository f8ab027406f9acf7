package registry

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	neturl "net/url"
	"strings"
	"sync/atomic"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
)

// ErrInvalidSchema is wrapped by the error of a schema that does not compile.
var ErrInvalidSchema = errors.New("registry: invalid schema")

// ErrValidation is wrapped by every *ValidationError.
var ErrValidation = errors.New("registry: payload does not match its schema")

// Violation is one way a payload breaks its schema.
type Violation struct {
	// Path is a JSON Pointer to the offending value ("" is the payload).
	Path string `json:"path"`
	// Message says what is wrong, in English.
	Message string `json:"message"`
}

// ValidationError lists what is wrong with a payload. It wraps ErrValidation.
type ValidationError struct {
	Name       string
	Version    int
	Violations []Violation
}

func (e *ValidationError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "event %q v%d: ", e.Name, e.Version)
	for i, v := range e.Violations {
		if i > 0 {
			b.WriteString("; ")
		}
		path := v.Path
		if path == "" {
			path = "/"
		}
		b.WriteString(path + ": " + v.Message)
	}
	return b.String()
}

// Is reports whether target is ErrValidation.
func (e *ValidationError) Is(target error) bool { return target == ErrValidation }

var printer = message.NewPrinter(language.English)

var schemaSeq atomic.Uint64

// compile compiles a schema document; draft 2020-12 unless it names another
// with $schema. loader resolves $refs to other documents (nil: none).
func compile(name string, version int, schema json.RawMessage, loader jsonschema.URLLoader) (*jsonschema.Schema, error) {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(schema))
	if err != nil {
		return nil, fmt.Errorf("%w: event %q v%d: not JSON: %v", ErrInvalidSchema, name, version, err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	if loader == nil {
		loader = refuseLoader{}
	}
	c.UseLoader(loader)
	// A unique, hierarchical URL per compilation, so that relative $ids and
	// $refs resolve against it (a urn: cannot take relative references). The
	// .invalid host is reserved and never fetched: the loader refuses it.
	url := fmt.Sprintf("http://arcmill.invalid/registry/%d/%s/v%d.json", schemaSeq.Add(1), neturl.PathEscape(name), version)
	if err := c.AddResource(url, doc); err != nil {
		return nil, fmt.Errorf("%w: event %q v%d: %v", ErrInvalidSchema, name, version, err)
	}
	sch, err := c.Compile(url)
	if err != nil {
		return nil, fmt.Errorf("%w: event %q v%d: %v", ErrInvalidSchema, name, version, err)
	}
	return sch, nil
}

// refuseLoader keeps compilation off the network: a $ref to another
// document fails registration unless a Loader is configured.
type refuseLoader struct{}

func (refuseLoader) Load(url string) (any, error) {
	return nil, fmt.Errorf("no loader for %q: set Config.Loader to resolve references to other documents", url)
}

// check validates a payload against a compiled schema.
func check(sch *jsonschema.Schema, name string, version int, payload []byte) error {
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(payload))
	if err != nil {
		return &ValidationError{Name: name, Version: version,
			Violations: []Violation{{Message: "payload is not JSON: " + err.Error()}}}
	}
	err = sch.Validate(inst)
	if err == nil {
		return nil
	}
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return err
	}
	out := &ValidationError{Name: name, Version: version}
	collect(ve, &out.Violations)
	return out
}

// collect gathers the leaves of the error tree: the specific failures, not
// the "doesn't validate with ..." summaries above them.
func collect(ve *jsonschema.ValidationError, into *[]Violation) {
	if len(ve.Causes) == 0 {
		*into = append(*into, Violation{Path: pointer(ve.InstanceLocation), Message: ve.ErrorKind.LocalizedString(printer)})
		return
	}
	for _, c := range ve.Causes {
		collect(c, into)
	}
}

// pointer turns path tokens into a JSON Pointer (RFC 6901).
func pointer(tokens []string) string {
	var b strings.Builder
	for _, t := range tokens {
		b.WriteByte('/')
		b.WriteString(strings.NewReplacer("~", "~0", "/", "~1").Replace(t))
	}
	return b.String()
}
