package receiver

import (
	"context"
	"errors"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	_ "google.golang.org/grpc/encoding/gzip" // registers the gzip decompressor OTLP/gRPC clients may use
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/meshtrace/meshtrace/indexer/document"
	"github.com/meshtrace/meshtrace/indexer/flatten"
	"github.com/meshtrace/meshtrace/indexer/pipeline"
)

// RegisterGRPC registers the OTLP TraceService on s.
func (r *Receiver) RegisterGRPC(s *grpc.Server) {
	coltracepb.RegisterTraceServiceServer(s, r)
}

// ServerOptions are the gRPC server options matching the receiver's limits.
func (r *Receiver) ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.MaxRecvMsgSize(int(r.cfg.MaxBodyBytes))}
}

// Export implements the OTLP/gRPC TraceService. A refusal is UNAVAILABLE with a RetryInfo detail, which OTLP
// clients honour as the retry delay.
func (r *Receiver) Export(ctx context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	docs, rej := flatten.Spans(make([]document.Span, 0, flatten.Count(req.ResourceSpans)), req.ResourceSpans)
	partial, err := r.export(ctx, docs, rej)
	if err == nil {
		return &coltracepb.ExportTraceServiceResponse{PartialSuccess: partial}, nil
	}
	if oe, ok := overload(err); ok {
		st, derr := status.New(codes.Unavailable, oe.Reason).WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(oe.RetryAfter)})
		if derr != nil {
			return nil, status.Error(codes.Unavailable, oe.Reason)
		}
		return nil, st.Err()
	}
	if errors.Is(err, pipeline.ErrStopped) {
		return nil, status.Error(codes.Unavailable, "indexer is shutting down")
	}
	if ctx.Err() != nil {
		return nil, status.FromContextError(ctx.Err()).Err()
	}
	r.cfg.Logger.Error("export failed", "err", err)
	return nil, status.Error(codes.Internal, err.Error())
}
