package receiver

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/meshtrace/meshtrace/indexer/flatten"
	"github.com/meshtrace/meshtrace/indexer/otlpjson"
	"github.com/meshtrace/meshtrace/indexer/wal"
)

// refusal is how both transports answer an error: an HTTP status, a gRPC code, a retry delay (0: none), the
// message, and the reason label of the refused-requests metric.
type refusal struct {
	http       int
	grpc       codes.Code
	retryAfter time.Duration
	msg        string
	reason     string
}

// errBudget refuses a request while the in-flight byte budget is used up.
var errBudget = errors.New("too many bytes in flight")

// errTooLarge marks a body above the size limit.
var errTooLarge = errors.New("request body too large")

// errJSONTooLarge refuses a JSON body whose decoding could never fit the in-flight budget.
var errJSONTooLarge = errors.New("JSON body too large to decode within the in-flight budget: send smaller requests or protobuf")

// refusalOf maps every error a request can meet to its answer: the one error mapping of this edge.
func (r *Receiver) refusalOf(err error) refusal {
	var de *DecodeError
	var le *flatten.LimitError
	var je *otlpjson.Error
	var ue *errUnauthenticated
	var rl *rateLimited
	switch {
	case errors.As(err, &ue):
		return refusal{401, codes.Unauthenticated, 0, err.Error(), "unauthenticated"}
	case errors.As(err, &rl):
		return refusal{429, codes.ResourceExhausted, rl.retryAfter, err.Error(), "rate_limited"}
	case errors.As(err, &je) && je.TooLarge, errors.Is(err, errJSONTooLarge):
		return refusal{413, codes.InvalidArgument, 0, err.Error(), "too_large"}
	case errors.As(err, &le) && le.TooLarge():
		return refusal{413, codes.InvalidArgument, 0, err.Error(), "too_large"}
	case errors.As(err, &le):
		return refusal{400, codes.InvalidArgument, 0, err.Error(), "limit"}
	case errors.As(err, &de):
		return refusal{400, codes.InvalidArgument, 0, err.Error(), "invalid"}
	case errors.Is(err, errTooLarge), errors.Is(err, wal.ErrTooLarge):
		return refusal{413, codes.InvalidArgument, 0, fmt.Sprintf("request body exceeds %d bytes", r.cfg.MaxBodyBytes), "too_large"}
	case errors.Is(err, errBudget):
		return refusal{429, codes.ResourceExhausted, time.Second,
			fmt.Sprintf("indexer busy: requests in flight hold its %d-byte budget; retry", r.cfg.MaxInflightBytes), "busy"}
	case errors.Is(err, wal.ErrFull):
		return refusal{429, codes.ResourceExhausted, r.cfg.FullRetryAfter,
			"ingest backlog full (" + err.Error() + "): the store is behind; retry", "log_full"}
	case errors.Is(err, wal.ErrClosed):
		return refusal{503, codes.Unavailable, time.Second, "indexer is shutting down", "stopping"}
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		// The client gave up while its record was being synced; it may still be written (a retry duplicates).
		return refusal{503, codes.Unavailable, time.Second, "request ended before its spans were on disk", "cancelled"}
	default:
		// Disk full, a failed write or fsync: nothing was acknowledged.
		r.cfg.Logger.Error("cannot log request", "err", err)
		return refusal{503, codes.Unavailable, 5 * time.Second, "cannot write the ingest log: " + err.Error(), "log_error"}
	}
}
