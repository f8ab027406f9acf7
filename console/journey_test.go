package console

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/arcmill/arcmill/arc"
	"github.com/arcmill/arcmill/internal/testenv"
)

// chromiumPath finds the browser the journeys drive: ARCMILL_CHROMIUM, or
// Debian's chromium (scripts/services.sh installs it). A missing browser
// fails the test unless ARCMILL_SKIP_MISSING_SERVICES=1, like a missing
// server.
func chromiumPath(t *testing.T) string {
	t.Helper()
	candidates := []string{os.Getenv("ARCMILL_CHROMIUM"), "/usr/bin/chromium"}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			candidates = append(candidates, p)
		}
	}
	for _, p := range candidates {
		if p == "" {
			continue
		}
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p
		}
	}
	if testenv.Required() {
		t.Fatalf("chromium not found (ARCMILL_CHROMIUM, /usr/bin/chromium): run `make services`, which installs it; "+
			"to skip the browser journeys instead, set %s=1", testenv.SkipVariable)
	}
	t.Skipf("chromium not found, skipped as %s=1 asks", testenv.SkipVariable)
	return ""
}

// screenshotDir is where the journey saves its screenshots, for CI to keep
// as artifacts: ARCMILL_SCREENSHOTS, else arcmill-console-journey in the
// system's temporary folder (outside the checkout). The test logs it.
func screenshotDir(t *testing.T) string {
	dir := os.Getenv("ARCMILL_SCREENSHOTS")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "arcmill-console-journey")
	}
	require.NoError(t, os.MkdirAll(dir, 0o755))
	return dir
}

// TestBrowserJourney drives headless Chromium through the operator's main
// journeys against real Redis and PostgreSQL: the overview, a failure
// group, one dead letter, redriving the group and watching the task
// finish, then the events back on the stream for the consumer group and
// the audit list.
func TestBrowserJourney(t *testing.T) {
	browser := chromiumPath(t)
	b := setup(t)
	ctx := context.Background()
	require.NoError(t, b.rdb.XGroupCreateMkStream(ctx, b.stream, "billing", "$").Err())
	b.deadLetters("order.created", 120, func(i int) string { return fmt.Sprintf("order %d not found", i) })
	b.deadLetters("payment.captured", 4, func(int) string { return "card declined" })
	b.outboxDead("invoice.sent", 3, "dial tcp: connection refused")
	cfg := b.config()
	cfg.RedriveRate = 200
	cfg.SampleInterval, cfg.SampleWindow = 250*time.Millisecond, time.Minute // charts fill within the journey
	srv := b.serve(b.console(cfg))
	shots := screenshotDir(t)

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(browser),
		chromedp.WindowSize(1280, 900), chromedp.NoSandbox, chromedp.Flag("disable-dev-shm-usage", true))
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(actx)
	defer cancelBrowser()
	// The journey takes about 10 s here alone; a browser and a -race
	// server share two cores with the rest of CI: minutes to spare.
	tctx, cancel := context.WithTimeout(bctx, 3*time.Minute)
	defer cancel()

	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte(opUser+":"+opPass))
	shot := func(name string) chromedp.Action {
		return chromedp.ActionFunc(func(ctx context.Context) error {
			var buf []byte
			if err := chromedp.FullScreenshot(&buf, 100).Do(ctx); err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(shots, name+".png"), buf, 0o644)
		})
	}
	var read, pending, lag, movedAfterReload, explored string
	var handled int
	var total, groupCount, groupHref, letterType, taskState, moved, auditText string
	var groups int
	require.NoError(t, chromedp.Run(tctx,
		network.Enable(),
		network.SetExtraHTTPHeaders(network.Headers{"Authorization": auth}),
		// 1. The overview.
		chromedp.Navigate(srv.URL+"/"),
		chromedp.WaitVisible(`#dead-letter-total`, chromedp.ByQuery),
		chromedp.Text(`#dead-letter-total`, &total, chromedp.ByQuery),
		shot("1-overview"),
		// 2. A failure group.
		chromedp.Click(`#dead-letter-total`, chromedp.ByQuery),
		chromedp.WaitVisible(`#groups`, chromedp.ByQuery),
		chromedp.Evaluate(`document.querySelectorAll("tr.failure-group").length`, &groups),
		chromedp.Text(`tr.failure-group td.num`, &groupCount, chromedp.ByQuery),
		chromedp.AttributeValue(`tr.failure-group a.group-link`, "href", &groupHref, nil, chromedp.ByQuery),
		shot("2-failure-groups"),
		// 3. One dead letter of the largest group.
		chromedp.Click(`tr.failure-group a.group-link`, chromedp.ByQuery),
		chromedp.WaitVisible(`#letters`, chromedp.ByQuery),
		shot("3-group-letters"),
		chromedp.Click(`a.letter-link`, chromedp.ByQuery),
		chromedp.WaitVisible(`#letter`, chromedp.ByQuery),
		chromedp.Text(`#letter-type`, &letterType, chromedp.ByQuery),
		shot("4-dead-letter"),
		// Its causation chain, in the explorer.
		chromedp.Click(`#causation-link`, chromedp.ByQuery),
		chromedp.WaitVisible(`#tree`, chromedp.ByQuery),
		chromedp.Text(`#explore-summary`, &explored, chromedp.ByQuery),
		shot("4b-explorer"),
		// 4. Redrive the group and watch the progress finish.
		chromedp.ActionFunc(func(ctx context.Context) error {
			return chromedp.Navigate(srv.URL + groupHref).Do(ctx)
		}),
		chromedp.WaitVisible(`#redrive-all`, chromedp.ByQuery),
		chromedp.Click(`#redrive-all`, chromedp.ByQuery),
		chromedp.WaitVisible(`#task-progress`, chromedp.ByQuery),
		shot("5-redrive-running"),
		chromedp.Poll(`document.getElementById("task").getAttribute("data-state") !== "running"`, nil,
			chromedp.WithPollingTimeout(30*time.Second)),
		chromedp.Text(`#task-state`, &taskState, chromedp.ByQuery),
		chromedp.Text(`#task-moved`, &moved, chromedp.ByQuery),
		shot("6-redrive-done"),
		// The progress survives a reload.
		chromedp.Reload(),
		chromedp.WaitVisible(`#task-state`, chromedp.ByQuery),
		chromedp.Text(`#task-moved`, &movedAfterReload, chromedp.ByQuery),
		// 5. A consumer handles the redriven events; the overview shows the
		// group has read them all and has nothing pending.
		chromedp.ActionFunc(func(context.Context) error { handled = consume(t, b, "billing", 120); return nil }),
		chromedp.Navigate(srv.URL+"/"),
		chromedp.WaitVisible(`tr.group-row[data-group="billing"]`, chromedp.ByQuery),
		chromedp.Text(`tr.group-row[data-group="billing"] td.read`, &read, chromedp.ByQuery),
		chromedp.Text(`tr.group-row[data-group="billing"] td.pending`, &pending, chromedp.ByQuery),
		chromedp.Text(`tr.group-row[data-group="billing"] td.lag`, &lag, chromedp.ByQuery),
		shot("7-overview-after"),
		chromedp.Navigate(srv.URL+"/audit"),
		chromedp.WaitVisible(`#audit`, chromedp.ByQuery),
		chromedp.Text(`#audit`, &auditText, chromedp.ByQuery),
		shot("8-audit"),
		// On a phone: the failure groups still read.
		chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2), chromedp.EmulateMobile),
		chromedp.Navigate(srv.URL+"/dead-letters"),
		chromedp.WaitVisible(`#groups`, chromedp.ByQuery),
		shot("9-phone-dead-letters"),
	))
	require.Contains(t, total, "127 dead letter(s)")
	require.Equal(t, 3, groups)
	require.Equal(t, "120", strings.TrimSpace(groupCount))
	require.Equal(t, "order.created", letterType)
	require.Contains(t, explored, "event(s) in the chain")
	require.Equal(t, TaskDone, taskState)
	require.Equal(t, "120", moved)
	require.Contains(t, auditText, "alice")
	require.Contains(t, auditText, "redrive.finished")

	require.Equal(t, "120", movedAfterReload)
	// The consumer group saw the redriven events, once each.
	require.Equal(t, 120, handled)
	require.Equal(t, "120", read)
	require.Equal(t, "0", pending)
	require.Equal(t, "0", lag)
	require.EqualValues(t, 7, b.rdb.XLen(ctx, b.dlq).Val()+3, "the other groups stay dead-lettered")
	for _, name := range []string{"1-overview", "2-failure-groups", "4-dead-letter", "6-redrive-done", "9-phone-dead-letters"} {
		st, err := os.Stat(filepath.Join(shots, name+".png"))
		require.NoError(t, err)
		require.Positive(t, st.Size())
	}
	t.Logf("screenshots in %s", shots)
}

// consume reads and acks every entry of the bundle's stream as a consumer
// of group, and returns how many distinct events it handled (it fails the
// test on a duplicate or when fewer than want arrive).
func consume(t *testing.T, b *bundle, group string, want int) int {
	ctx := context.Background()
	seen := map[string]bool{}
	deadline := time.Now().Add(testWait)
	for len(seen) < want && time.Now().Before(deadline) {
		got, err := b.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: group, Consumer: "journey", Streams: []string{b.stream, ">"},
			Count: 100, Block: 200 * time.Millisecond}).Result()
		if errors.Is(err, redis.Nil) {
			continue
		}
		require.NoError(t, err)
		for _, m := range got[0].Messages {
			data, _ := m.Values["data"].(string)
			var ev arc.Event
			require.NoError(t, arc.Unmarshal([]byte(data), &ev))
			require.False(t, seen[ev.Meta.ID], "event %s handled twice", ev.Meta.ID)
			seen[ev.Meta.ID] = true
			require.NoError(t, b.rdb.XAck(ctx, b.stream, group, m.ID).Err())
		}
	}
	require.Len(t, seen, want)
	return len(seen)
}
