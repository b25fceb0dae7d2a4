package receiver

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
	"google.golang.org/grpc/metadata"
)

// Tenancy decides the tenant an export request is accepted for, from its headers (HTTP headers or gRPC
// metadata, looked up by name with header): an ingest token, or the verified identity of the sending
// workload. An error refuses the request as unauthenticated (401, gRPC UNAUTHENTICATED) with its text, which
// must not echo a credential. A tenant is never taken from the spans: they are whatever the client wrote.
type Tenancy interface {
	Tenant(header func(name string) string) (string, error)
}

// TenantLimits bound what each tenant may send; zero fields are no limit. A tenant over a limit is answered
// 429 (gRPC RESOURCE_EXHAUSTED) with the delay after which its request would fit, and nothing of it is logged.
type TenantLimits struct {
	SpansPerSecond float64 // accepted spans per second, with a burst of a second's worth (at least one request's spans)
	BytesPerSecond float64 // request bytes (as decoded) per second, with a burst of a second's worth (at least MaxBodyBytes)
}

// maxTenantLimiters bounds the limiters kept: past it they are all dropped and start full again, so tenants
// named by a hostile source cannot grow memory (tenants come from configured tokens or mesh namespaces).
const maxTenantLimiters = 10_000

// errUnauthenticated wraps what a Tenancy refused.
type errUnauthenticated struct{ err error }

func (e *errUnauthenticated) Error() string {
	if msg := e.err.Error(); strings.HasPrefix(msg, "unauthenticated") {
		return msg // the Tenancy said it already (auth.ErrUnauthenticated)
	}
	return "unauthenticated: " + e.err.Error()
}
func (e *errUnauthenticated) Unwrap() error { return e.err }

// rateLimited refuses a request of a tenant over its limit.
type rateLimited struct {
	tenant, what string
	limit        float64
	retryAfter   time.Duration
}

func (e *rateLimited) Error() string {
	return fmt.Sprintf("tenant %q is over its ingest limit of %g %s per second; retry in %v", e.tenant, e.limit, e.what, e.retryAfter)
}

// tenants holds the Tenancy and the limiters of each tenant.
type tenants struct {
	tenancy  Tenancy
	limits   TenantLimits
	maxSpans int // burst floors: one largest request
	maxBytes int

	mu       sync.Mutex
	limiters map[string]*tenantLimiter
}

type tenantLimiter struct{ spans, bytes *rate.Limiter }

// of returns the tenant of a request: the empty tenant without a Tenancy.
func (t *tenants) of(header func(string) string) (string, error) {
	if t.tenancy == nil {
		return "", nil
	}
	tn, err := t.tenancy.Tenant(header)
	if err != nil {
		return "", &errUnauthenticated{err}
	}
	return tn, nil
}

// allow takes spans and bytes from the tenant's budgets, or refuses with a *rateLimited and takes nothing.
func (t *tenants) allow(tenant string, spans, bytes int) error {
	if t.limits.SpansPerSecond <= 0 && t.limits.BytesPerSecond <= 0 {
		return nil
	}
	l := t.limiter(tenant)
	now := time.Now()
	var taken []*rate.Reservation
	for _, c := range []struct {
		lim  *rate.Limiter
		n    int
		what string
		per  float64
	}{{l.spans, spans, "spans", t.limits.SpansPerSecond}, {l.bytes, bytes, "bytes", t.limits.BytesPerSecond}} {
		if c.lim == nil || c.n == 0 {
			continue
		}
		res := c.lim.ReserveN(now, c.n)
		if delay := res.DelayFrom(now); !res.OK() || delay > 0 {
			res.CancelAt(now)
			for _, r := range taken {
				r.CancelAt(now)
			}
			return &rateLimited{tenant: tenant, what: c.what, limit: c.per, retryAfter: max(time.Second, delay.Round(time.Second))}
		}
		taken = append(taken, res)
	}
	return nil
}

func (t *tenants) limiter(tenant string) *tenantLimiter {
	t.mu.Lock()
	defer t.mu.Unlock()
	if l := t.limiters[tenant]; l != nil {
		return l
	}
	if t.limiters == nil || len(t.limiters) >= maxTenantLimiters {
		t.limiters = map[string]*tenantLimiter{}
	}
	l := &tenantLimiter{}
	if r := t.limits.SpansPerSecond; r > 0 {
		l.spans = rate.NewLimiter(rate.Limit(r), burst(r, t.maxSpans))
	}
	if r := t.limits.BytesPerSecond; r > 0 {
		l.bytes = rate.NewLimiter(rate.Limit(r), burst(r, t.maxBytes))
	}
	t.limiters[tenant] = l
	return l
}

// burst is a second's worth of rate, and at least floor.
func burst(perSecond float64, floor int) int {
	return max(floor, int(math.Min(math.Ceil(perSecond), math.MaxInt32)))
}

// httpHeader looks headers up in an HTTP request.
func httpHeader(req *http.Request) func(string) string { return req.Header.Get }

// grpcHeader looks headers up in a gRPC call's metadata.
func grpcHeader(ctx context.Context) func(string) string {
	md, _ := metadata.FromIncomingContext(ctx)
	return func(name string) string {
		if v := md.Get(name); len(v) > 0 {
			return v[0]
		}
		return ""
	}
}
