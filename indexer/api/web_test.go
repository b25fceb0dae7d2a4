package api

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/meshtrace/meshtrace/indexer/auth"
	"github.com/meshtrace/meshtrace/indexer/store/embedded"
	"github.com/meshtrace/meshtrace/indexer/store/storetest"
)

// settled waits until the page has drawn the answer to its latest navigation.
var settled = chromedp.WaitReady(`main[aria-busy="false"]`, chromedp.ByQuery)

// chromium is where Debian's chromium package (scripts/install-chromium.sh) puts the browser.
const chromium = "/usr/bin/chromium"

// newBrowser starts headless Chromium for one test and returns a context that drives a tab in it. chromedp
// gives the browser a temporary --user-data-dir and removes it once the browser has exited (a t.TempDir would
// race with files the exiting browser still writes).
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	if _, err := exec.LookPath(chromium); err != nil {
		t.Fatalf("no browser at %s (%v): run `make tools` or scripts/install-chromium.sh", chromium, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	t.Cleanup(cancel)
	ctx, cancelAlloc := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(chromium),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.WindowSize(1400, 900),
	)
	t.Cleanup(cancelAlloc)
	ctx, cancelTab := chromedp.NewContext(ctx, chromedp.WithErrorf(t.Logf))
	t.Cleanup(cancelTab)
	// An uncaught exception in the page fails the test.
	chromedp.ListenTarget(ctx, func(ev any) {
		if ev, ok := ev.(*runtime.EventExceptionThrown); ok {
			t.Errorf("page exception: %s", ev.ExceptionDetails.Error())
		}
	})
	return ctx
}

// newFixtureServer serves the real API over the embedded store holding the shared store fixture, with the
// server's clock at the fixture's reference time so relative windows (since=1h) select the same traces.
func newFixtureServer(t *testing.T, configure ...func(*Config)) *httptest.Server {
	t.Helper()
	st, err := embedded.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	f := storetest.NewFixture()
	if err := st.Write(context.Background(), f.Spans, f.Traces); err != nil {
		t.Fatal(err)
	}
	c := Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	for _, f := range configure {
		f(&c)
	}
	s := New(st, c)
	s.now = func() time.Time { return storetest.Now }
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return srv
}

// TestWebPageInBrowser drives the page in headless Chromium as an incident responder would: a trace search
// (query in the URL), a trace's waterfall (folding, arrow keys) and a span's details, the back button, a query
// error with its position marked, a span search, and a trace id typed into the search box.
func TestWebPageInBrowser(t *testing.T) {
	srv := newFixtureServer(t)
	ctx := newBrowser(t)

	// submit clicks Search, as a user does (form.submit() would bypass the page's submit handler), and waits
	// until the page has drawn the answer.
	submit := chromedp.Tasks{chromedp.Click("#search button", chromedp.ByQuery), settled}
	count := func(sel string, n *int) chromedp.Action {
		return chromedp.Evaluate(`document.querySelectorAll(`+strconv.Quote(sel)+`).length`, n)
	}
	text := func(sel string) string {
		t.Helper()
		var s string
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second) // the element should be there already
		defer cancel()
		if err := chromedp.Run(ctx, chromedp.Text(sel, &s, chromedp.ByQuery)); err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return s
	}

	// Search: customer 123 in the last hour; t1, t2 and t4 are shop traces, t6 and t8 Kafka traces.
	var rows int
	var search string
	if err := chromedp.Run(ctx,
		chromedp.Navigate(srv.URL+"/"),
		settled,
		chromedp.SetValue("#q", "customer_id=123 since=1h", chromedp.ByID),
		chromedp.SetValue("#target", "traces", chromedp.ByID),
		submit,
		count("table.results tbody tr", &rows),
		chromedp.Evaluate(`location.search`, &search),
	); err != nil {
		t.Fatal(err)
	}
	if rows != 5 {
		t.Fatalf("%d result rows, want 5:\n%s", rows, text("main"))
	}
	if want := "?q=customer_id%3D123+since%3D1h&target=traces"; search != want {
		t.Errorf("URL query %q, want %q", search, want)
	}
	if got := text("#status"); !strings.HasPrefix(got, "5 traces") {
		t.Errorf("status %q, want 5 traces", got)
	}
	t1 := `a[aria-label="Open trace ` + storetest.TraceID(1) + `"]`
	if row := text("tr:has(" + t1 + ")"); !strings.Contains(row, "customer_id=123") || !strings.Contains(row, "gateway") {
		t.Errorf("trace row lacks its customer key or root: %q", row)
	}
	if badge := text("tr:has(" + t1 + ") .badge.error"); badge != "1" {
		t.Errorf("t1 error badge %q, want 1", badge)
	}
	screenshot(ctx, t, "results.png")

	// Open t1: five spans, indented under their parents, the failing inventory-service span in red.
	var spans, errorRows int
	if err := chromedp.Run(ctx,
		chromedp.Click(t1, chromedp.ByQuery),
		settled,
		count(".span-row", &spans),
		count(".span-row.error", &errorRows),
	); err != nil {
		t.Fatal(err)
	}
	if spans != 5 || errorRows != 1 {
		t.Fatalf("waterfall has %d rows (%d red), want 5 (1 red):\n%s", spans, errorRows, text("main"))
	}
	if got := text(".span-row.error .label"); got != "inventory-service GET /stock/{sku}" {
		t.Errorf("red row %q, want the inventory-service span", got)
	}
	var indent string
	if err := chromedp.Run(ctx, chromedp.Evaluate(`document.querySelector(".span-row.error .label").style.paddingLeft`, &indent)); err != nil {
		t.Fatal(err)
	}
	if indent != "62px" { // depth 3, under gateway > frontend > checkout
		t.Errorf("inventory-service indented by %s, want 62px (depth 3)", indent)
	}

	// Folding checkout hides its two children; unfolding shows them again.
	toggle := `li:has(> .span-row[title^="checkout "]) > .toggle`
	var folded, unfolded int
	visible := `Array.from(document.querySelectorAll(".waterfall li")).filter((li) => !li.hidden).length`
	if err := chromedp.Run(ctx,
		chromedp.Click(toggle, chromedp.ByQuery), chromedp.Evaluate(visible, &folded),
		chromedp.Click(toggle, chromedp.ByQuery), chromedp.Evaluate(visible, &unfolded),
	); err != nil {
		t.Fatal(err)
	}
	if folded != 3 || unfolded != 5 {
		t.Errorf("%d rows shown with checkout folded and %d unfolded, want 3 and 5", folded, unfolded)
	}

	// The arrow keys walk the rows: up from postgres selects checkout.
	if err := chromedp.Run(ctx,
		chromedp.Focus(`.span-row[title^="postgres "]`, chromedp.ByQuery),
		chromedp.KeyEvent(kb.ArrowUp),
	); err != nil {
		t.Fatal(err)
	}
	if got := text("#details h3"); got != "checkout POST /orders" {
		t.Errorf("after ArrowUp from postgres, details show %q, want checkout", got)
	}

	// Its details: status message, attributes, resource and events.
	if err := chromedp.Run(ctx, chromedp.Click(".span-row.error", chromedp.ByQuery)); err != nil {
		t.Fatal(err)
	}
	details := text("#details")
	for _, want := range []string{"upstream connect error", "http.response.status_code\t503", "http.route\t/stock/{sku}",
		"k8s.namespace.name\tshop", "cache miss", storetest.SpanID(1, 5)[33:]} {
		if !strings.Contains(details, want) {
			t.Errorf("span details lack %q:\n%s", want, details)
		}
	}
	if err := chromedp.Run(ctx, chromedp.Evaluate(`location.search`, &search)); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(search, "trace="+storetest.TraceID(1)) || !strings.Contains(search, "span="+storetest.SpanID(1, 5)[33:]) {
		t.Errorf("URL %q does not name the trace and span", search)
	}
	screenshot(ctx, t, "trace.png")

	// Back to the results, then a query error with the failing character marked.
	var mark string
	var resultsHidden bool
	if err := chromedp.Run(ctx,
		chromedp.NavigateBack(),
		chromedp.WaitVisible("table.results tbody tr", chromedp.ByQuery),
		chromedp.SetValue("#q", "customer_id==123", chromedp.ByID),
		submit,
		chromedp.Evaluate(`document.querySelector("#query-error mark")?.textContent ?? ""`, &mark),
		chromedp.Evaluate(`document.getElementById("results").hidden`, &resultsHidden),
	); err != nil {
		t.Fatal(err)
	}
	if pre := text("#query-error pre"); mark != "=" || pre != "customer_id==123\n            ^" {
		t.Errorf("query error marks %q in %q, want the second \"=\" of customer_id==123", mark, pre)
	}
	if !resultsHidden {
		t.Error("stale results still shown under a query error")
	}
	screenshot(ctx, t, "error.png")

	// Span search: the two failing spans, each with its status message and key attributes; opening one
	// selects it in the trace view.
	if err := chromedp.Run(ctx,
		chromedp.SetValue("#q", "error=true", chromedp.ByID),
		chromedp.SetValue("#target", "spans", chromedp.ByID),
		submit,
		count("table.results tbody tr", &rows),
	); err != nil {
		t.Fatal(err)
	}
	if rows != 2 {
		t.Fatalf("%d span rows, want 2:\n%s", rows, text("main"))
	}
	row := text("tr:has(" + t1 + ")")
	for _, want := range []string{"inventory-service", "GET /stock/{sku}", "390ms", "error: upstream connect error", "customer_id=123", "http.response.status_code=503"} {
		if !strings.Contains(row, want) {
			t.Errorf("span row lacks %q: %q", want, row)
		}
	}
	if err := chromedp.Run(ctx,
		chromedp.Click(t1, chromedp.ByQuery),
		settled,
	); err != nil {
		t.Fatal(err)
	}
	if got := text("#details h3"); got != "inventory-service GET /stock/{sku}" {
		t.Errorf("selected span %q, want the inventory-service span", got)
	}

	// A trace id in the search box opens the trace, its failing span selected.
	if err := chromedp.Run(ctx,
		chromedp.SetValue("#q", storetest.TraceID(7), chromedp.ByID),
		submit,
	); err != nil {
		t.Fatal(err)
	}
	if got := text("#details h3"); got != "service-b process orders" {
		t.Errorf("selected span %q, want the failing Kafka consumer", got)
	}
	// The Kafka trace lists the span that read its message (it links to the producer span).
	if got := text(".linked-from"); got != "Read by: service-b process orders" {
		t.Errorf("read by %q, want the service-b consumer", got)
	}
}

// screenshot saves the page to the test's artifact directory (kept with `go test -artifacts`).
func screenshot(ctx context.Context, t *testing.T, name string) {
	t.Helper()
	var png []byte
	if err := chromedp.Run(ctx, chromedp.FullScreenshot(&png, 100)); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.ArtifactDir(), name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
}

// TestWebPlotAndGraphInBrowser checks the result plot (one point per trace of the answer, errors red, a
// tooltip on hover, a click opening the trace) and the service graph view (the fixture's services and
// topic, and a business key narrowing them). With MESHTRACE_DOCS_SCREENSHOTS=1 it also writes the README's
// screenshots, docs/web-search.png and docs/web-graph.png.
func TestWebPlotAndGraphInBrowser(t *testing.T) {
	srv := newFixtureServer(t)
	ctx := newBrowser(t)
	count := func(sel string, n *int) chromedp.Action {
		return chromedp.Evaluate(`document.querySelectorAll(`+strconv.Quote(sel)+`).length`, n)
	}

	// The answer the page draws: every trace of the last hour, t1 and t7 failing.
	resp, err := http.Get(srv.URL + "/api/v1/search?target=traces&limit=50&q=" + url.QueryEscape("since=1h"))
	if err != nil {
		t.Fatal(err)
	}
	var answer SearchResponse
	err = json.NewDecoder(resp.Body).Decode(&answer)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	var wantRed []string
	for _, tr := range answer.Traces {
		if tr.ErrorCount > 0 {
			wantRed = append(wantRed, tr.TraceID)
		}
	}
	slices.Sort(wantRed)
	if len(answer.Traces) != 7 || len(wantRed) != 2 {
		t.Fatalf("fixture answer has %d traces (%d failing), want 7 (2)", len(answer.Traces), len(wantRed))
	}

	var points, bins int
	var red []string
	var label string
	if err := chromedp.Run(ctx,
		chromedp.Navigate(srv.URL+"/?q=since%3D1h&target=traces"),
		settled,
		count(".plot circle.pt", &points),
		count(".plot .bin:not(.error)", &bins),
		chromedp.Evaluate(`Array.from(document.querySelectorAll(".plot circle.pt.error"), (c) => c.dataset.traceId).sort()`, &red),
		chromedp.Evaluate(`document.querySelector(".plot .scatter").getAttribute("aria-label")`, &label),
	); err != nil {
		t.Fatal(err)
	}
	if points != len(answer.Traces) {
		t.Errorf("%d points, want one per trace (%d)", points, len(answer.Traces))
	}
	if !slices.Equal(red, wantRed) {
		t.Errorf("red points %v, want the failing traces %v", red, wantRed)
	}
	if bins == 0 {
		t.Error("no histogram bins")
	}
	if !strings.Contains(label, "log scale") { // 40 ms to 1.5 s
		t.Errorf("scatter %q, want a log scale for durations from 40ms to 1.5s", label)
	}
	if docsScreenshots {
		docScreenshot(ctx, t, "web-search.png")
	}

	// Hovering t1's point shows its root and duration; clicking it opens the trace.
	t1 := `circle.pt[data-trace-id="` + storetest.TraceID(1) + `"]`
	var box []float64
	var tip string
	if err := chromedp.Run(ctx,
		chromedp.Evaluate(`(() => { const r = document.querySelector(`+strconv.Quote(t1)+`).getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; })()`, &box),
	); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Run(ctx,
		chromedp.MouseEvent(input.MouseMoved, box[0], box[1]),
		chromedp.WaitVisible(".plot-tip", chromedp.ByQuery),
		chromedp.Text(".plot-tip", &tip, chromedp.ByQuery),
	); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(tip, "gateway GET /checkout") || !strings.Contains(tip, "800ms") {
		t.Errorf("tooltip %q, want t1's root (gateway GET /checkout) and duration (800ms)", tip)
	}
	var search string
	var spans int
	if err := chromedp.Run(ctx,
		chromedp.MouseClickXY(box[0], box[1]),
		settled,
		chromedp.WaitVisible(".span-row", chromedp.ByQuery),
		count(".span-row", &spans),
		chromedp.Evaluate(`location.search`, &search),
	); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(search, "trace="+storetest.TraceID(1)) || spans != 5 {
		t.Errorf("after clicking t1's point: URL %q with %d span rows, want t1's trace view (5 spans)", search, spans)
	}

	// A span search plots its spans; a point opens the trace with that span selected.
	var redSpans int
	var details string
	if err := chromedp.Run(ctx,
		chromedp.Navigate(srv.URL+"/?q=error%3Dtrue&target=spans"),
		settled,
		count(".plot circle.pt", &points),
		count(".plot circle.pt.error", &redSpans),
		chromedp.Click(t1, chromedp.ByQuery),
		settled,
		chromedp.WaitVisible("#details h3", chromedp.ByQuery),
		chromedp.Text("#details h3", &details, chromedp.ByQuery),
		chromedp.Evaluate(`location.search`, &search),
	); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(search, "span="+storetest.SpanID(1, 5)[33:]) {
		t.Errorf("after clicking a span's point: URL %q does not name the span", search)
	}
	if points != 2 || redSpans != 2 || details != "inventory-service GET /stock/{sku}" {
		t.Errorf("span plot: %d points (%d red), the click selected %q; want 2 red points, the inventory-service span", points, redSpans, details)
	}

	// The service graph: the shop's five services, the Kafka pair and their topic.
	graph := func(q string) (nodes, edges []string) {
		t.Helper()
		if err := chromedp.Run(ctx,
			chromedp.Navigate(srv.URL+"/?view=graph&q="+url.QueryEscape(q)),
			settled,
			chromedp.Evaluate(`Array.from(document.querySelectorAll("#graph .node"), (n) => n.dataset.node).sort()`, &nodes),
			chromedp.Evaluate(`Array.from(document.querySelectorAll("#graph .edge"), (e) => e.dataset.edge + "=" + e.querySelector(".count").textContent).sort()`, &edges),
		); err != nil {
			t.Fatal(err)
		}
		return nodes, edges
	}
	nodes, edges := graph("")
	if want := []string{"checkout", "frontend", "gateway", "inventory-service", "orders-api", "postgres", "service-b", "topic:orders"}; !slices.Equal(nodes, want) {
		t.Errorf("graph nodes %v, want %v", nodes, want)
	}
	if want := []string{"checkout>inventory-service=4", "checkout>postgres=5", "frontend>checkout=5", "gateway>frontend=5",
		"orders-api>service-b=3", "orders-api>topic:orders=3", "topic:orders>service-b=3"}; !slices.Equal(edges, want) {
		t.Errorf("graph edges %v, want %v", edges, want)
	}
	// Layered left to right: gateway, frontend, checkout, then what checkout calls.
	var xs []float64
	if err := chromedp.Run(ctx, chromedp.Evaluate(`["gateway", "frontend", "checkout", "postgres"].map((n) => document.querySelector('#graph .node[data-node="' + n + '"]').getBoundingClientRect().x)`, &xs)); err != nil {
		t.Fatal(err)
	}
	if !(xs[0] < xs[1] && xs[1] < xs[2] && xs[2] < xs[3]) {
		t.Errorf("node x positions %v, want gateway < frontend < checkout < postgres", xs)
	}

	// Customer 456's requests touched the shop only, once.
	nodes, edges = graph("customer_id=456")
	if want := []string{"checkout", "frontend", "gateway", "inventory-service", "postgres"}; !slices.Equal(nodes, want) {
		t.Errorf("customer 456's graph nodes %v, want %v", nodes, want)
	}
	if want := []string{"checkout>inventory-service=1", "checkout>postgres=1", "frontend>checkout=1", "gateway>frontend=1"}; !slices.Equal(edges, want) {
		t.Errorf("customer 456's graph edges %v, want %v", edges, want)
	}
	// The search box filters the graph in place: a span condition (joined) keeps the view.
	if err := chromedp.Run(ctx,
		chromedp.SetValue("#q", "service=service-b", chromedp.ByID),
		chromedp.Click("#search button", chromedp.ByQuery),
		settled,
		chromedp.Evaluate(`Array.from(document.querySelectorAll("#graph .node"), (n) => n.dataset.node).sort()`, &nodes),
	); err != nil {
		t.Fatal(err)
	}
	if want := []string{"orders-api", "service-b", "topic:orders"}; !slices.Equal(nodes, want) {
		t.Errorf("graph of service=service-b: nodes %v, want %v", nodes, want)
	}
	if docsScreenshots {
		graph("since=1h")
		docScreenshot(ctx, t, "web-graph.png")
	}
}

// docsScreenshots makes TestWebPlotAndGraphInBrowser write the README's screenshots into docs/ (off by default,
// so tests never write into the repository): MESHTRACE_DOCS_SCREENSHOTS=1 go test -run PlotAndGraph ./indexer/api/
var docsScreenshots = os.Getenv("MESHTRACE_DOCS_SCREENSHOTS") == "1"

// docScreenshot saves the visible page as docs/NAME.
func docScreenshot(ctx context.Context, t *testing.T, name string) {
	t.Helper()
	var png []byte
	if err := chromedp.Run(ctx, chromedp.CaptureScreenshot(&png)); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("..", "..", "docs", name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
}

// TestWebPageAsksForAToken runs the page against an indexer that requires API tokens: the page itself loads
// without one, its first search is refused (401) and the page asks for a token, sends it with every call
// from then on (the search, the trace view), and keeps it for the tab only.
func TestWebPageAsksForAToken(t *testing.T) {
	tokens := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(tokens, []byte("a-token-for-every-team *\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := auth.New(context.Background(), auth.Config{TokensFile: tokens}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	srv := newFixtureServer(t, func(c *Config) { c.Auth = a })
	for _, path := range []string{"/", "/app.js", "/style.css"} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s without a token: %d, want the page's file", path, resp.StatusCode)
		}
	}
	if resp, err := http.Get(srv.URL + "/api/v1/search?q=since%3D1h"); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("the API without a token: %v %v, want 401", resp.StatusCode, err)
	}

	ctx := newBrowser(t)
	asked := make(chan string, 4)
	chromedp.ListenTarget(ctx, func(ev any) {
		if d, ok := ev.(*page.EventJavascriptDialogOpening); ok {
			answer := true
			select {
			case asked <- d.Message:
			default:
				answer = false // asked too often: dismiss, so that a page that keeps asking ends
			}
			go chromedp.Run(ctx, page.HandleJavaScriptDialog(answer).WithPromptText("a-token-for-every-team"))
		}
	})
	var rows int
	var kept string
	if err := chromedp.Run(ctx,
		chromedp.Navigate(srv.URL+"/?q="+url.QueryEscape("customer_id=123 since=1h")+"&target=traces"),
		settled,
		chromedp.Evaluate(`document.querySelectorAll("table.results tbody tr").length`, &rows),
		chromedp.Evaluate(`sessionStorage.getItem("meshtrace-api-token")`, &kept),
	); err != nil {
		t.Fatal(err)
	}
	select {
	case msg := <-asked:
		if !strings.Contains(msg, "API token") {
			t.Errorf("the page asked %q", msg)
		}
	default:
		t.Fatal("the page never asked for a token")
	}
	if rows != 5 || kept != "a-token-for-every-team" {
		t.Fatalf("after the token: %d rows (want 5), token kept %q", rows, kept)
	}
	if len(asked) != 0 {
		t.Errorf("asked again: %q", <-asked)
	}
}
