package registry

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/stretchr/testify/require"
)

const suiteDir = "testdata/JSON-Schema-Test-Suite"

// suiteLoader serves the suite's remote documents (http://localhost:1234/…)
// from testdata, so no test reaches for the network.
type suiteLoader struct{}

func (suiteLoader) Load(url string) (any, error) {
	const prefix = "http://localhost:1234/"
	if !strings.HasPrefix(url, prefix) {
		return nil, fmt.Errorf("no remote %q in the suite", url)
	}
	f, err := os.Open(filepath.Join(suiteDir, "remotes", filepath.FromSlash(strings.TrimPrefix(url, prefix))))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return jsonschema.UnmarshalJSON(f)
}

type suiteGroup struct {
	Description string          `json:"description"`
	Schema      json.RawMessage `json:"schema"`
	Tests       []struct {
		Description string          `json:"description"`
		Data        json.RawMessage `json:"data"`
		Valid       bool            `json:"valid"`
	} `json:"tests"`
}

// knownBad are the cases of this copy of the suite that cannot pass as
// stored (see testdata/JSON-Schema-Test-Suite/README.md: the store mixes
// commits and lacks some remotes). Keys are "file/group" or
// "file/group/test". Each must still fail: a corrected copy of the suite
// forces its entry out of this list, so nothing stays hidden here.
var knownBad = map[string]string{
	"prefixItems/3":                   "stale test: the pre-2020-12 array form of items, which the 2020-12 metaschema rightly refuses (fixed upstream)",
	"not/6/no properties to evaluate": "stale test: {} satisfies the inner schema, so its 'not' fails (fixed upstream)",
	"refRemote/3":                     "remote baseUriChange/folderInteger.json is missing from the copy",
	"refRemote/4":                     "remote baseUriChangeFolder/folderInteger.json is missing from the copy",
	"refRemote/5":                     "remote baseUriChangeFolderInSubschema/folderInteger.json is missing from the copy",
	"refRemote/7":                     "remote ref-and-defs.json is missing from the copy",
	"refRemote/8":                     "remote locationIndependentIdentifier.json is an older version without $defs/refToInteger",
	"refRemote/9":                     "remote nested/foo-ref-string.json is missing from the copy",
}

// TestJSONSchemaTestSuite runs the official suite's required draft 2020-12
// tests (testdata/JSON-Schema-Test-Suite, see its README for which files it
// holds) through the registry's own path: every group's schema through
// Register, every test through Validate.
func TestJSONSchemaTestSuite(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(suiteDir, "tests", "draft2020-12", "*.json"))
	require.NoError(t, err)
	require.NotEmpty(t, files, "the suite is missing from testdata")
	passed, excluded := 0, 0
	stillBad := map[string]bool{}
	for _, file := range files {
		raw, err := os.ReadFile(file)
		require.NoError(t, err)
		var groups []suiteGroup
		require.NoError(t, json.Unmarshal(raw, &groups), file)
		base := strings.TrimSuffix(filepath.Base(file), ".json")
		for gi, g := range groups {
			name := fmt.Sprintf("%s/%d", base, gi)
			r := New(Config{Loader: suiteLoader{}})
			if err := r.Register(Definition{Name: name, Schema: g.Schema}); err != nil {
				if _, bad := knownBad[name]; bad {
					stillBad[name] = true
					excluded += len(g.Tests)
					continue
				}
				t.Errorf("%s (%s): schema does not register: %v", name, g.Description, err)
				continue
			}
			for _, tc := range g.Tests {
				key := name + "/" + tc.Description
				err := r.Validate(name, tc.Data, 0)
				if (err == nil) == tc.Valid {
					passed++
					continue
				}
				if _, bad := knownBad[key]; bad {
					stillBad[key] = true
					excluded++
					continue
				}
				if _, bad := knownBad[name]; bad {
					stillBad[name] = true
					excluded++
					continue
				}
				t.Errorf("%s: %s / %s: want valid=%v, got %v", base, g.Description, tc.Description, tc.Valid, err)
			}
		}
	}
	for key, why := range knownBad {
		if !stillBad[key] {
			t.Errorf("%s passes now (%s): remove it from knownBad", key, why)
		}
	}
	t.Logf("JSON-Schema-Test-Suite draft 2020-12: %d tests passed in %d files; %d excluded as listed in knownBad", passed, len(files), excluded)
}
