package querysvc_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/meshtrace/meshtrace/indexer/document"
	"github.com/meshtrace/meshtrace/indexer/query"
	"github.com/meshtrace/meshtrace/indexer/querysvc"
	"github.com/meshtrace/meshtrace/indexer/rollup"
	"github.com/meshtrace/meshtrace/indexer/tenant"
)

// tenantSpans makes n spans of one trace of service svc sent by tenant tn, as the pipeline stamps them.
func tenantSpans(tn string, trace, n int, base int64, svc string) []document.Span {
	out := makeSpans(trace, n, base, svc, 1)
	for i := range out {
		out[i].SpanID = fmt.Sprintf("%d%s", len(tn)%10, out[i].SpanID[1:]) // distinct span ids per tenant
		out[i].Tenant, out[i].ID = tn, document.SpanDocID(tn, out[i].TraceID, out[i].SpanID)
	}
	return out
}

func scopeOf(t *testing.T, tenants ...string) context.Context {
	t.Helper()
	if tenants == nil {
		return admin
	}
	sc, err := tenant.Of(tenants...)
	if err != nil {
		t.Fatal(err)
	}
	return tenant.NewContext(context.Background(), sc)
}

// TestScopeRestrictsEveryRead writes a trace that crosses tenants team-a (3 spans of checkout) and team-bb
// (2 spans of payments), plus a trace of team-bb alone, each part rolled up as the pipeline does, and checks
// what every read of the service returns for each scope: nothing without a scope, one tenant's documents
// only, with the crossing trace's other part hidden and counted.
func TestScopeRestrictsEveryRead(t *testing.T) {
	st := openStore(t)
	base := int64(1_700_000_000_000_000)
	crossing := append(tenantSpans("team-a", 1, 3, base, "checkout"), tenantSpans("team-bb", 1, 2, base+100, "payments")...)
	crossing[3].ParentSpanID = crossing[0].SpanID // payments is called by checkout
	own := tenantSpans("team-bb", 2, 4, base+1000, "payments")
	spans := append(crossing, own...)
	docs, err := rollup.New(rollup.Config{}, nil).Apply(admin, spans, time.Now())
	if err != nil || len(docs) != 3 {
		t.Fatalf("rollup: %d documents, %v", len(docs), err)
	}
	if err := st.Write(admin, spans, docs); err != nil {
		t.Fatal(err)
	}
	svc := querysvc.New(st, querysvc.Config{})
	traceA := crossing[0].TraceID

	type want struct {
		spans, traces int      // search hits
		services      []string // Services
		traceSpans    int      // spans of the crossing trace visible
		hidden        int      // and hidden
		traceService  []string // the services of its trace document
	}
	for _, tc := range []struct {
		name    string
		tenants []string
		want    want
	}{
		{"team-a", []string{"team-a"}, want{3, 1, []string{"checkout"}, 3, 2, []string{"checkout"}}},
		{"team-bb", []string{"team-bb"}, want{6, 2, []string{"payments"}, 2, 3, []string{"payments"}}},
		{"both", []string{"team-a", "team-bb"}, want{9, 3, []string{"checkout", "payments"}, 5, 0, []string{"checkout", "payments"}}},
		{"other", []string{"team-c"}, want{0, 0, []string{}, 0, 5, nil}},
		{"admin", nil, want{9, 3, []string{"checkout", "payments"}, 5, 0, []string{"checkout", "payments"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := scopeOf(t, tc.tenants...)
			q, err := query.Compile("since=2023-11-01T00:00:00Z", time.UnixMicro(base))
			if err != nil {
				t.Fatal(err)
			}
			res, err := svc.Search(ctx, q, querysvc.Page{})
			if err != nil || res.Total != tc.want.spans {
				t.Errorf("span search: %d spans, %v; want %d", res.Total, err, tc.want.spans)
			}
			for _, sp := range res.Spans {
				if tc.tenants != nil && !slices.Contains(tc.tenants, sp.Tenant) {
					t.Errorf("span of tenant %q returned", sp.Tenant)
				}
			}
			tq := *q
			tq.Target = query.TraceScope
			if res, err := svc.Search(ctx, &tq, querysvc.Page{}); err != nil || res.Total != tc.want.traces {
				t.Errorf("trace search: %d traces, %v; want %d", res.Total, err, tc.want.traces)
			}
			if names, _, err := svc.Services(ctx, querysvc.Window{}); err != nil || !slices.Equal(names, tc.want.services) {
				t.Errorf("Services = %v, %v; want %v", names, err, tc.want.services)
			}
			tr, found, err := svc.Trace(ctx, traceA)
			if err != nil || found != (tc.want.traceSpans > 0) || len(tr.Spans) != tc.want.traceSpans || tr.Hidden != tc.want.hidden ||
				!slices.Equal(tr.Trace.Services, tc.want.traceService) {
				t.Errorf("Trace: found %v, %d spans, %d hidden, services %v, %v; want %d spans, %d hidden, services %v",
					found, len(tr.Spans), tr.Hidden, tr.Trace.Services, err, tc.want.traceSpans, tc.want.hidden, tc.want.traceService)
			}
			if found && len(tc.tenants) == 2 && tr.Trace.SpanCount != 5 {
				t.Errorf("the trace seen by both tenants counts %d spans, want 5", tr.Trace.SpanCount)
			}
			found2, err := svc.FindTraces(ctx, q, 10)
			if err != nil || len(found2) != min(tc.want.traces, 2) {
				t.Errorf("FindTraces: %d traces, %v; want %d (each trace once)", len(found2), err, min(tc.want.traces, 2))
			}
			deps, err := svc.Dependencies(ctx, time.UnixMicro(0), time.UnixMicro(base+10_000))
			if err != nil {
				t.Fatal(err)
			}
			if tc.tenants != nil && len(deps) != 0 {
				t.Errorf("a tenant's dependencies cross into another tenant: %+v", deps)
			}
		})
	}
}

// TestNoScopeFailsClosed checks that every read refuses a context without a scope.
func TestNoScopeFailsClosed(t *testing.T) {
	svc := querysvc.New(openStore(t), querysvc.Config{})
	ctx := context.Background()
	q, err := query.Compile("error=true", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	_, _, errTrace := svc.Trace(ctx, "0123456789abcdef0123456789abcdef")
	_, errSearch := svc.Search(ctx, q, querysvc.Page{})
	_, _, errServices := svc.Services(ctx, querysvc.Window{})
	_, errFacet := svc.Facet(ctx, q, "service", 0)
	_, errDeps := svc.Dependencies(ctx, time.Time{}, time.Now())
	_, _, errQDeps := svc.QueryDependencies(ctx, q)
	_, errFind := svc.FindTraces(ctx, q, 1)
	_, errSpans := svc.TraceSpans(ctx, "0123456789abcdef0123456789abcdef")
	for i, err := range []error{errTrace, errSearch, errServices, errFacet, errDeps, errQDeps, errFind, errSpans} {
		if !errors.Is(err, querysvc.ErrNoScope) {
			t.Errorf("read %d without a scope: %v", i, err)
		}
	}
}
