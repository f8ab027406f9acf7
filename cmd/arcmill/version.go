package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
)

// versionString describes the build: the module version (a tag for
// "go install …@v0.x.y", "(devel)" for a build from a checkout), the
// commit and its time when the build recorded them, and the Go version.
func versionString(info *debug.BuildInfo, ok bool) string {
	if !ok || info == nil {
		return "arcmill (unknown version: built without module information) " + runtime.Version()
	}
	version := info.Main.Version
	if version == "" {
		version = "(devel)"
	}
	s := "arcmill " + version
	var rev, at, modified string
	for _, kv := range info.Settings {
		switch kv.Key {
		case "vcs.revision":
			rev = kv.Value
		case "vcs.time":
			at = kv.Value
		case "vcs.modified":
			modified = kv.Value
		}
	}
	if rev != "" {
		if len(rev) > 12 {
			rev = rev[:12]
		}
		s += " commit " + rev
		if modified == "true" {
			s += "+dirty"
		}
	}
	if at != "" {
		s += " " + at
	}
	goVersion := info.GoVersion
	if goVersion == "" {
		goVersion = runtime.Version()
	}
	return s + " " + goVersion
}

func printVersion(w io.Writer) {
	info, ok := debug.ReadBuildInfo()
	fmt.Fprintln(w, versionString(info, ok))
}
