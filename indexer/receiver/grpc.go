package receiver

import (
	"context"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	_ "google.golang.org/grpc/encoding/gzip" // registers the gzip decompressor OTLP/gRPC clients may use
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
)

// GRPCServer returns a gRPC server with the OTLP TraceService registered and the receiver's limits: message
// size, streams per connection, connection idle time and age, and a floor on client keepalive pings.
func (r *Receiver) GRPCServer() *grpc.Server {
	s := grpc.NewServer(
		grpc.MaxRecvMsgSize(int(r.cfg.MaxBodyBytes)),
		grpc.MaxConcurrentStreams(r.cfg.MaxConcurrentStreams),
		grpc.ConnectionTimeout(r.cfg.ReadHeaderTimeout),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			MaxConnectionIdle:     r.cfg.MaxConnectionIdle,
			MaxConnectionAge:      r.cfg.MaxConnectionAge,
			MaxConnectionAgeGrace: r.cfg.MaxConnectionAgeGrace,
		}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
	)
	coltracepb.RegisterTraceServiceServer(s, r)
	return s
}

// Export implements the OTLP/gRPC TraceService. gRPC has decoded the message (within MaxRecvMsgSize) before
// Export runs; the in-flight budget then bounds the decoding and logging of the requests in progress.
// Refusals carry RetryInfo where a retry helps, which OTLP clients honour as the delay.
func (r *Receiver) Export(ctx context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	began := time.Now()
	tn, err := r.tenants.of(grpcHeader(ctx))
	if err != nil {
		return nil, r.refuseGRPC(err)
	}
	need := int64(proto.Size(req)) * decodeFactor
	if !r.reserve(need) {
		return nil, r.refuseGRPC(errBudget)
	}
	defer r.release(need)
	a, err := r.decodeMessage(req)
	if err != nil {
		return nil, r.refuseGRPC(err)
	}
	partial, err := r.export(ctx, tn, a)
	if err != nil {
		r.m.spans.WithLabelValues("grpc", "refused").Add(float64(a.spans))
		return nil, r.refuseGRPC(err)
	}
	r.accepted("grpc", a, began)
	return &coltracepb.ExportTraceServiceResponse{PartialSuccess: partial}, nil
}

// refuseGRPC answers err as refusalOf maps it.
func (r *Receiver) refuseGRPC(err error) error {
	f := r.refusalOf(err)
	r.m.requests.WithLabelValues("grpc", f.reason).Inc()
	st := status.New(f.grpc, f.msg)
	if f.retryAfter > 0 {
		if withInfo, derr := st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(f.retryAfter)}); derr == nil {
			st = withInfo
		}
	}
	return st.Err()
}
