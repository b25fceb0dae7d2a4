package kafka_test

import (
	"strconv"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/meshtrace/meshtrace/filter/kafka"
	"github.com/meshtrace/meshtrace/filter/kafka/kafkatest"
)

// groupRequest returns a group request of this API key and version naming group, encoded by kmsg.
func groupRequest(key, version int16, group string) kmsg.Request {
	switch key {
	case kafka.APIJoinGroup:
		r := kmsg.NewPtrJoinGroupRequest()
		r.Group, r.ProtocolType, r.SessionTimeoutMillis = group, "consumer", 45000
		r.Protocols = append(r.Protocols, kmsg.JoinGroupRequestProtocol{Name: "cooperative-sticky", Metadata: []byte{0, 3}})
		r.Version = version
		return r
	case kafka.APISyncGroup:
		r := kmsg.NewPtrSyncGroupRequest()
		r.Group, r.MemberID, r.Version = group, "m-1", version
		return r
	case kafka.APIHeartbeat:
		r := kmsg.NewPtrHeartbeatRequest()
		r.Group, r.MemberID, r.Version = group, "m-1", version
		return r
	case kafka.APILeaveGroup:
		r := kmsg.NewPtrLeaveGroupRequest()
		r.Group, r.MemberID, r.Version = group, "m-1", version
		r.Members = append(r.Members, kmsg.LeaveGroupRequestMember{MemberID: "m-1"})
		return r
	case kafka.APIOffsetCommit:
		r := kmsg.NewPtrOffsetCommitRequest()
		r.Group, r.MemberID, r.Version = group, "m-1", version
		t := kmsg.NewOffsetCommitRequestTopic()
		t.Topic = "orders"
		t.Partitions = append(t.Partitions, kmsg.OffsetCommitRequestTopicPartition{Offset: 7})
		r.Topics = append(r.Topics, t)
		return r
	case kafka.APIOffsetFetch:
		r := kmsg.NewPtrOffsetFetchRequest()
		r.Version = version
		if version >= 8 {
			g := kmsg.NewOffsetFetchRequestGroup()
			g.Group = group
			r.Groups = append(r.Groups, g, kmsg.OffsetFetchRequestGroup{Group: "second-group"})
		} else {
			r.Group = group
		}
		return r
	case kafka.APIConsumerGroupHeartbeat:
		r := kmsg.NewPtrConsumerGroupHeartbeatRequest()
		r.Group, r.MemberID, r.MemberEpoch, r.Version = group, "m-1", 0, version
		r.SubscribedTopicNames = []string{"orders"}
		return r
	}
	panic("no such group request")
}

// fetchGroup feeds a group request from clientID on one connection and a Fetch from fetchClient on another,
// sharing groups, and returns the group the Fetch exchange carries.
func fetchGroup(t *testing.T, groups *kafka.GroupNames, req kmsg.Request, clientID, fetchClient string) string {
	t.Helper()
	coord := kafka.NewDecoder(kafka.Config{Groups: groups}, func(*kafka.Exchange) { t.Error("exchange from a group request") })
	coord.Requests(kafkatest.Request(req, 1, clientID), 1)
	if coord.Err() != nil {
		t.Fatalf("coordinator connection stopped: %v", coord.Err())
	}
	got, n := "", 0
	fetch := kafka.NewDecoder(kafka.Config{Groups: groups}, func(ex *kafka.Exchange) { got, n = ex.Group, n+1 })
	freq, fresp := kafkatest.Fetch(12, 5, fetchClient, "orders", kafkatest.Batch{Records: 2}.Encode())
	fetch.Requests(freq, 2)
	fetch.Responses(fresp, 3)
	if n != 1 || fetch.Err() != nil {
		t.Fatalf("%d fetch exchanges, error %v", n, fetch.Err())
	}
	return got
}

// TestGroupIDs checks that the group id of every group request, in classic and flexible versions, names the
// Fetch exchanges of the same client id on another connection.
func TestGroupIDs(t *testing.T) {
	versions := map[int16][]int16{
		kafka.APIJoinGroup:              {0, 5, 6, 9},
		kafka.APISyncGroup:              {0, 3, 4, 5},
		kafka.APIHeartbeat:              {0, 3, 4},
		kafka.APILeaveGroup:             {0, 3, 4, 5},
		kafka.APIOffsetCommit:           {2, 7, 8, 9},
		kafka.APIOffsetFetch:            {1, 5, 6, 7, 8, 9},
		kafka.APIConsumerGroupHeartbeat: {0},
	}
	for key, vs := range versions {
		for _, v := range vs {
			req := groupRequest(key, v, "billing")
			t.Run(kmsg.NameForKey(key)+"/v"+strconv.Itoa(int(v)), func(t *testing.T) {
				if got := fetchGroup(t, kafka.NewGroupNames(8), req, "checkout", "checkout"); got != "billing" {
					t.Errorf("fetch group %q, want billing", got)
				}
			})
		}
	}
}

// TestGroupIDsNotReported checks the cases that must leave a Fetch without a group.
func TestGroupIDsNotReported(t *testing.T) {
	long := strings.Repeat("g", kafka.MaxGroupIDLen+1)
	cases := []struct {
		name                string
		req                 kmsg.Request
		client, fetchClient string
	}{
		{"other client id", groupRequest(kafka.APIJoinGroup, 9, "billing"), "checkout", "shipping"},
		{"group id too long", groupRequest(kafka.APIHeartbeat, 4, long), "checkout", "checkout"},
		{"client id too long", groupRequest(kafka.APIHeartbeat, 4, "billing"), strings.Repeat("c", kafka.MaxClientIDLen+1), strings.Repeat("c", kafka.MaxClientIDLen+1)},
		{"empty group", groupRequest(kafka.APIOffsetFetch, 5, ""), "checkout", "checkout"},
		{"empty client id", groupRequest(kafka.APIOffsetFetch, 5, "billing"), "", ""},
		{"offset fetch without groups", kmsg.NewPtrOffsetFetchRequest(), "checkout", "checkout"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if r, ok := c.req.(*kmsg.OffsetFetchRequest); ok && c.name == "offset fetch without groups" {
				r.Version = 8
			}
			if got := fetchGroup(t, kafka.NewGroupNames(8), c.req, c.client, c.fetchClient); got != "" {
				t.Errorf("fetch group %q, want none", got)
			}
		})
	}
}

// TestGroupNamesBounded checks that GroupNames keeps its capacity of client ids, dropping the least recently
// named, and that a client that changes group is renamed.
func TestGroupNamesBounded(t *testing.T) {
	g := kafka.NewGroupNames(2)
	g.Put([]byte("a"), []byte("ga"))
	g.Put([]byte("b"), []byte("gb"))
	g.Put([]byte("a"), []byte("ga2")) // a is now the most recent
	g.Put([]byte("c"), []byte("gc"))  // evicts b
	for client, want := range map[string]string{"a": "ga2", "b": "", "c": "gc"} {
		if got := g.Lookup(client); got != want {
			t.Errorf("Lookup(%q) = %q, want %q", client, got, want)
		}
	}
	for i := 0; i < 1000; i++ {
		g.Put([]byte{byte(i), byte(i >> 8)}, []byte("g"))
	}
	if g.Len() != 2 {
		t.Errorf("%d client ids held, want 2", g.Len())
	}
}

// fetchTopic feeds a Fetch request and its response carrying records and returns the one topic reported
// (ok false if none).
func fetchTopic(t *testing.T, version int16, records []byte, now uint64) (kafka.Topic, bool) {
	t.Helper()
	var got kafka.Topic
	n := 0
	d := kafka.NewDecoder(kafka.Config{}, func(ex *kafka.Exchange) {
		n++
		got = ex.Topics[0]
		got.Partitions, got.Headers, got.Contexts = nil, nil, nil
	})
	req, resp := kafkatest.Fetch(version, 3, "checkout", "orders", records)
	d.Requests(req, now-1)
	d.Responses(resp, now)
	if d.Err() != nil {
		t.Fatalf("decoder stopped: %v", d.Err())
	}
	return got, n == 1
}

func join(batches ...[]byte) []byte {
	var b []byte
	for _, x := range batches {
		b = append(b, x...)
	}
	return b
}

// TestFetchBatchHeaders checks what Fetch topics take from batch headers: timestamps (CreateTime and
// LogAppendTime), control batches (transaction markers) left out of counts, offsets and timestamps,
// transactional and idempotent batches counted normally, and legacy (magic v0/v1) messages counted as
// undecoded.
func TestFetchBatchHeaders(t *testing.T) {
	const ts = 1_700_000_000_000
	cases := []struct {
		name    string
		records []byte
		want    kafka.Topic // Records, Batches, Undecoded, FirstOffset, timestamps, Transactional
		none    bool        // no topic reported
	}{
		{"create time", kafkatest.Batch{BaseOffset: 4, Records: 3, FirstTimestamp: ts, MaxTimestamp: ts + 40}.Encode(),
			kafka.Topic{Records: 3, Batches: 1, FirstOffset: 4, OldestTimestamp: ts, NewestTimestamp: ts + 40}, false},
		{"two batches", join(kafkatest.Batch{BaseOffset: 9, Records: 1, FirstTimestamp: ts + 100, MaxTimestamp: ts + 100}.Encode(),
			kafkatest.Batch{BaseOffset: 10, Records: 2, FirstTimestamp: ts + 50, MaxTimestamp: ts + 300}.Encode()),
			kafka.Topic{Records: 3, Batches: 2, FirstOffset: 9, OldestTimestamp: ts + 50, NewestTimestamp: ts + 300}, false},
		{"log append time", kafkatest.Batch{Records: 2, Attributes: 0x08, FirstTimestamp: ts, MaxTimestamp: ts + 900}.Encode(),
			kafka.Topic{Records: 2, Batches: 1, OldestTimestamp: ts + 900, NewestTimestamp: ts + 900}, false},
		{"no timestamps", kafkatest.Batch{Records: 1, FirstTimestamp: -1, MaxTimestamp: -1}.Encode(),
			kafka.Topic{Records: 1, Batches: 1}, false},
		{"transactional then commit marker", join(
			kafkatest.Batch{BaseOffset: 10, Records: 3, Attributes: 0x10, ProducerID: 7, ProducerEpoch: 1, FirstTimestamp: ts, MaxTimestamp: ts}.Encode(),
			kafkatest.Batch{BaseOffset: 13, Records: 1, Attributes: 0x30, ProducerID: 7, ProducerEpoch: 1, FirstTimestamp: ts + 5000, MaxTimestamp: ts + 5000}.Encode()),
			kafka.Topic{Records: 3, Batches: 1, FirstOffset: 10, OldestTimestamp: ts, NewestTimestamp: ts, Transactional: true}, false},
		{"marker before records", join(
			kafkatest.Batch{BaseOffset: 2, Records: 1, Attributes: 0x30, ProducerID: 7, FirstTimestamp: ts - 5000, MaxTimestamp: ts - 5000}.Encode(),
			kafkatest.Batch{BaseOffset: 3, Records: 2, FirstTimestamp: ts, MaxTimestamp: ts}.Encode()),
			kafka.Topic{Records: 2, Batches: 1, FirstOffset: 3, OldestTimestamp: ts, NewestTimestamp: ts}, false},
		{"only a marker", kafkatest.Batch{BaseOffset: 2, Records: 1, Attributes: 0x30, ProducerID: 7, FirstTimestamp: ts, MaxTimestamp: ts}.Encode(),
			kafka.Topic{}, true},
		{"idempotent", kafkatest.Batch{BaseOffset: 1, Records: 4, ProducerID: 42, ProducerEpoch: 0}.Encode(),
			kafka.Topic{Records: 4, Batches: 1, FirstOffset: 1}, false},
		{"magic v0", join(kafkatest.LegacyMessage(0, 5), kafkatest.LegacyMessage(0, 6)),
			kafka.Topic{Records: 2, Batches: 2, Undecoded: 2, FirstOffset: 5}, false},
		{"magic v1", join(kafkatest.LegacyMessage(1, 5), kafkatest.LegacyMessage(1, 6), kafkatest.LegacyMessage(1, 7)),
			kafka.Topic{Records: 3, Batches: 3, Undecoded: 3, FirstOffset: 5}, false},
		{"magic v1 then v2", join(kafkatest.LegacyMessage(1, 5), kafkatest.Batch{BaseOffset: 6, Records: 2, FirstTimestamp: ts, MaxTimestamp: ts}.Encode()),
			kafka.Topic{Records: 3, Batches: 2, Undecoded: 1, FirstOffset: 5, OldestTimestamp: ts, NewestTimestamp: ts}, false},
	}
	for _, c := range cases {
		for _, v := range []int16{4, 11, 12, 16} {
			t.Run(c.name+"/v"+strconv.Itoa(int(v)), func(t *testing.T) {
				got, ok := fetchTopic(t, v, c.records, 1e18)
				if ok == c.none {
					t.Fatalf("topic reported: %v, want %v", ok, !c.none)
				}
				if g, w := headerFacts(got), headerFacts(c.want); !c.none && g != w {
					t.Errorf("got  %+v\nwant %+v", g, w)
				}
			})
		}
	}
}

// facts are the fields of a Topic that batch headers give.
type facts struct {
	Records, Batches, Undecoded      int
	FirstOffset                      int64
	OldestTimestamp, NewestTimestamp int64
	Transactional                    bool
}

func headerFacts(t kafka.Topic) facts {
	return facts{t.Records, t.Batches, t.Undecoded, t.FirstOffset, t.OldestTimestamp, t.NewestTimestamp, t.Transactional}
}
