package arc

import (
	"flag"
	"os"
	"path/filepath"
)

var updateGolden = flag.Bool("update", false, "rewrite testdata/*.golden.json from the current output")

// readGolden returns testdata/<name>.golden.json, first writing got there
// when the test runs with -update.
func readGolden(name, got string) (string, error) {
	path := filepath.Join("testdata", name+".golden.json")
	if *updateGolden {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			return "", err
		}
	}
	b, err := os.ReadFile(path)
	return string(b), err
}
