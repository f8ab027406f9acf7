package console

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestSamplerFeedsTheCharts samples a stream and an outbox quickly, and
// the overview draws their charts as inline SVG.
func TestSamplerFeedsTheCharts(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	require.NoError(t, b.rdb.XGroupCreateMkStream(ctx, b.stream, "billing", "$").Err())
	b.outboxDead("invoice.sent", 2, "no")
	cfg := b.config()
	cfg.SampleInterval, cfg.SampleWindow = 20*time.Millisecond, time.Second
	cl := bearer(t, b.serve(b.console(cfg)), readToken)

	deadline := time.Now().Add(testWait)
	for i := 0; ; i++ {
		require.NoError(t, b.rdb.XAdd(ctx, &redis.XAddArgs{Stream: b.stream, Values: []any{"type", "x", "data", "{}"}}).Err())
		var sr SamplesResponse
		require.Equal(t, http.StatusOK, cl.getJSON("/api/samples", &sr))
		if len(sr.Series) == 2 && len(sr.Series[0].Samples) >= 3 && sr.Series[0].Samples[len(sr.Series[0].Samples)-1].Lag > 0 {
			assert.Equal(t, "stream:"+b.stream, sr.Series[0].Name)
			assert.Equal(t, "outbox:orders", sr.Series[1].Name)
			assert.EqualValues(t, 2, sr.Series[1].Samples[0].DeadLetters)
			assert.LessOrEqual(t, len(sr.Series[0].Samples), 50, "the window keeps SampleWindow/SampleInterval samples")
			break
		}
		require.True(t, time.Now().Before(deadline), "no samples: %+v", sr)
		time.Sleep(20 * time.Millisecond) // polling a real condition, with a deadline
	}
	status, page := cl.do(http.MethodGet, "/", "", "", nil)
	require.Equal(t, http.StatusOK, status)
	assert.Equal(t, 2, strings.Count(string(page), `<svg class="chart"`))
}

func TestChartEscapesAndNeedsTwoSamples(t *testing.T) {
	t.Parallel()
	now := time.Now()
	assert.Empty(t, chart("x", []Sample{{Time: now}}))
	svg := string(chart(`a <script>"`, []Sample{{Time: now, Lag: 3}, {Time: now.Add(time.Second), Lag: 5, PerSecond: 2}}))
	assert.Contains(t, svg, "<svg")
	assert.NotContains(t, svg, "<script>")
	assert.Equal(t, 4, strings.Count(svg, "<polyline"))
}
