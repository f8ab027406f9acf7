package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
)

const completionUsage = `Usage: arcmill completion bash|zsh|fish

Print a shell completion script for commands, subcommands and flags.

Examples:
  source <(arcmill completion bash)                        # in ~/.bashrc
  arcmill completion zsh > "${fpath[1]}/_arcmill"          # then restart zsh
  arcmill completion fish > ~/.config/fish/completions/arcmill.fish
`

// completionCommands are the commands and their subcommands.
var completionCommands = []struct {
	name string
	subs []string
}{
	{"tail", nil}, {"publish", nil}, {"dlq", []string{"list", "show", "redrive", "purge", "parked", "release", "discard"}},
	{"outbox", []string{"status", "purge", "schema"}}, {"completion", []string{"bash", "zsh", "fish"}}, {"doctor", nil},
	{"console", nil}, {"schema", []string{"check"}},
}

func completionCmd(ctx context.Context, e env, args []string) error {
	fs := newFlags(e, "completion", completionUsage)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageErr("want one shell: bash, zsh or fish")
	}
	flags := map[string][]string{}
	for _, c := range completionCommands {
		if c.name != "completion" {
			flags[c.name] = commandFlags(ctx, c.name)
		}
	}
	switch pos[0] {
	case "bash":
		writeBash(e.stdout, flags, false)
	case "zsh":
		writeBash(e.stdout, flags, true)
	case "fish":
		writeFish(e.stdout, flags)
	default:
		return usageErr("unknown shell %q: use bash, zsh or fish", pos[0])
	}
	return nil
}

// commandFlags reads a command's flags from its own help, so that the
// completion never lags behind the flags.
func commandFlags(ctx context.Context, name string) []string {
	var out bytes.Buffer
	run(ctx, []string{name, "--help"}, strings.NewReader(""), &out, io.Discard)
	_, list, _ := strings.Cut(out.String(), "\nFlags:\n")
	var flags []string
	for _, line := range strings.Split(list, "\n") {
		if rest, ok := strings.CutPrefix(line, "  --"); ok {
			flags = append(flags, "--"+strings.Fields(rest)[0])
		}
	}
	slices.Sort(flags)
	return flags
}

func writeBash(w io.Writer, flags map[string][]string, zsh bool) {
	if zsh {
		fmt.Fprint(w, "#compdef arcmill\nautoload -U +X bashcompinit && bashcompinit\n")
	}
	var names []string
	for _, c := range completionCommands {
		names = append(names, c.name)
	}
	fmt.Fprintf(w, `_arcmill() {
  local cur="${COMP_WORDS[COMP_CWORD]}" cmd="${COMP_WORDS[1]}" words=""
  if [ "$COMP_CWORD" -eq 1 ]; then
    COMPREPLY=($(compgen -W "%s --help --version" -- "$cur"))
    return
  fi
  case "$cmd" in
`, strings.Join(names, " "))
	for _, c := range completionCommands {
		fmt.Fprintf(w, "    %s)\n", c.name)
		fmt.Fprintf(w, "      if [[ \"$cur\" == -* ]]; then words=\"%s --help\"\n", strings.Join(flags[c.name], " "))
		if len(c.subs) > 0 {
			fmt.Fprintf(w, "      elif [ \"$COMP_CWORD\" -eq 2 ]; then words=\"%s\"\n", strings.Join(c.subs, " "))
		}
		fmt.Fprint(w, "      fi ;;\n")
	}
	fmt.Fprint(w, `  esac
  if [ -n "$words" ]; then COMPREPLY=($(compgen -W "$words" -- "$cur")); fi
}
complete -o default -F _arcmill arcmill
`)
}

func writeFish(w io.Writer, flags map[string][]string) {
	var names []string
	for _, c := range completionCommands {
		names = append(names, c.name)
	}
	fmt.Fprintf(w, "complete -c arcmill -f -n __fish_use_subcommand -a '%s'\n", strings.Join(names, " "))
	fmt.Fprint(w, "complete -c arcmill -f -n __fish_use_subcommand -l version -d 'print the version'\n")
	for _, c := range completionCommands {
		if len(c.subs) > 0 {
			fmt.Fprintf(w, "complete -c arcmill -f -n '__fish_seen_subcommand_from %s' -a '%s'\n", c.name, strings.Join(c.subs, " "))
		}
		for _, f := range flags[c.name] {
			fmt.Fprintf(w, "complete -c arcmill -n '__fish_seen_subcommand_from %s' -l %s\n", c.name, strings.TrimPrefix(f, "--"))
		}
	}
}
