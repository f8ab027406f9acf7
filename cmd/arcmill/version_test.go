package main

import (
	"runtime/debug"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestVersionNamesModuleVersionCommitAndTime(t *testing.T) {
	t.Parallel()
	info := &debug.BuildInfo{GoVersion: "go1.25.1", Main: debug.Module{Version: "v0.3.0"}, Settings: []debug.BuildSetting{
		{Key: "vcs.revision", Value: "7afc0d68669d11d37f59feb77cdfd14e95573809"},
		{Key: "vcs.time", Value: "2026-11-30T19:00:00Z"}, {Key: "vcs.modified", Value: "true"},
	}}
	assert.Equal(t, "arcmill v0.3.0 commit 7afc0d68669d+dirty 2026-11-30T19:00:00Z go1.25.1", versionString(info, true))
	assert.Equal(t, "arcmill (devel) go1.25.1", versionString(&debug.BuildInfo{GoVersion: "go1.25.1"}, true))
	assert.Contains(t, versionString(nil, false), "unknown version")
}

func TestVersionFlagPrintsTheBuildAndExitsZero(t *testing.T) {
	for _, arg := range []string{"--version", "-version", "version"} {
		r := arcmill(t, "", arg)
		assert.Equal(t, exitOK, r.code, arg)
		assert.True(t, strings.HasPrefix(r.stdout, "arcmill "), r.stdout)
		assert.Contains(t, r.stdout, " go1.", "the Go version it was built with")
	}
}
