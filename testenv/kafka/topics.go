package kafka

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// CreateTopic creates topic with the given number of partitions (replication factor 1) and waits until every
// partition has a leader, failing the test otherwise. configs are topic configs, e.g. "compression.type":
// "producer" or "message.timestamp.type": "LogAppendTime".
func (b *Broker) CreateTopic(t testing.TB, topic string, partitions int, configs map[string]string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := b.createTopic(ctx, topic, partitions, configs); err != nil {
		t.Fatalf("kafka: creating topic %q: %v", topic, err)
	}
}

func (b *Broker) createTopic(ctx context.Context, topic string, partitions int, configs map[string]string) error {
	cl, err := b.adminClient()
	if err != nil {
		return err
	}
	defer cl.Close()
	req := kmsg.NewPtrCreateTopicsRequest()
	req.TimeoutMillis = 15000
	rt := kmsg.NewCreateTopicsRequestTopic()
	rt.Topic = topic
	rt.NumPartitions = int32(partitions)
	rt.ReplicationFactor = 1
	for k, v := range configs {
		c := kmsg.NewCreateTopicsRequestTopicConfig()
		c.Name, c.Value = k, kmsg.StringPtr(v)
		rt.Configs = append(rt.Configs, c)
	}
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return err
	}
	if len(resp.Topics) != 1 {
		return fmt.Errorf("CreateTopics answered %d topics", len(resp.Topics))
	}
	if err := kerr.ErrorForCode(resp.Topics[0].ErrorCode); err != nil {
		msg := ""
		if m := resp.Topics[0].ErrorMessage; m != nil {
			msg = ": " + *m
		}
		return fmt.Errorf("%w%s", err, msg)
	}
	// Wait for the leaders, so that a client started next finds every partition.
	for {
		n, err := b.leaders(ctx, cl, topic)
		if err == nil && n == partitions {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d of %d partitions have a leader: %w (last: %v)", n, partitions, ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Partitions returns the number of partitions of topic that have a leader (0 and an error when the topic does
// not exist).
func (b *Broker) Partitions(ctx context.Context, topic string) (int, error) {
	cl, err := b.adminClient()
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	return b.leaders(ctx, cl, topic)
}

func (b *Broker) leaders(ctx context.Context, cl kmsg.Requestor, topic string) (int, error) {
	req := kmsg.NewPtrMetadataRequest()
	rt := kmsg.NewMetadataRequestTopic()
	rt.Topic = kmsg.StringPtr(topic)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return 0, err
	}
	if len(resp.Topics) != 1 {
		return 0, fmt.Errorf("metadata answered %d topics", len(resp.Topics))
	}
	if err := kerr.ErrorForCode(resp.Topics[0].ErrorCode); err != nil {
		return 0, err
	}
	n := 0
	for _, p := range resp.Topics[0].Partitions {
		if p.ErrorCode == 0 && p.Leader >= 0 {
			n++
		}
	}
	return n, nil
}

// HighWatermarks returns the high watermark (the offset the next record gets; a transaction's commit marker
// takes an offset too) of each partition of topic, by partition.
func (b *Broker) HighWatermarks(t testing.TB, topic string) map[int32]int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	cl, err := b.adminClient()
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	n, err := b.leaders(ctx, cl, topic)
	if err != nil {
		t.Fatalf("kafka: metadata of %q: %v", topic, err)
	}
	req := kmsg.NewPtrListOffsetsRequest()
	req.ReplicaID = -1
	rt := kmsg.NewListOffsetsRequestTopic()
	rt.Topic = topic
	for i := range n {
		p := kmsg.NewListOffsetsRequestTopicPartition()
		p.Partition = int32(i)
		p.Timestamp = -1 // latest
		rt.Partitions = append(rt.Partitions, p)
	}
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		t.Fatalf("kafka: ListOffsets %q: %v", topic, err)
	}
	out := map[int32]int64{}
	for _, tp := range resp.Topics {
		for _, p := range tp.Partitions {
			if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
				t.Fatalf("kafka: ListOffsets %q partition %d: %v", topic, p.Partition, err)
			}
			out[p.Partition] = p.Offset
		}
	}
	return out
}
