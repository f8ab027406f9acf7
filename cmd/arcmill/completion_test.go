package main

import (
	"context"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The bash script, sourced in a real bash, completes commands,
// subcommands and each command's flags (read from its help).
func TestBashCompletionCompletesCommandsSubcommandsAndFlags(t *testing.T) {
	t.Parallel()
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash on this machine")
	}
	r := arcmill(t, "", "completion", "bash")
	require.Equal(t, exitOK, r.code, r.stderr)
	complete := func(words ...string) string {
		t.Helper()
		script := r.stdout + "\nCOMP_WORDS=(" + strings.Join(words, " ") + "); COMP_CWORD=" +
			strconv.Itoa(len(words)-1) + "; _arcmill; echo \"${COMPREPLY[@]}\"\n"
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, bash, "-c", script).CombinedOutput()
		require.NoError(t, err, string(out))
		return strings.TrimSpace(string(out))
	}
	assert.Equal(t, "outbox", complete("arcmill", "ou"))
	assert.Equal(t, "redrive", complete("arcmill", "dlq", "red"))
	assert.Equal(t, "redrive release", complete("arcmill", "dlq", "re"))
	assert.Equal(t, "--limit", complete("arcmill", "dlq", "--li"))
	assert.Equal(t, "--redis-tls-ca --redis-tls-cert", complete("arcmill", "tail", "--redis-tls-c"))

	for _, shell := range []string{"zsh", "fish"} {
		r := arcmill(t, "", "completion", shell)
		assert.Equal(t, exitOK, r.code, shell)
		assert.Contains(t, r.stdout, "redis-tls-ca", shell)
	}
	r = arcmill(t, "", "completion", "powershell")
	assert.Equal(t, exitUsage, r.code)
}
