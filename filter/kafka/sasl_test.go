package kafka_test

import (
	"errors"
	"strconv"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/meshtrace/meshtrace/filter/kafka"
	"github.com/meshtrace/meshtrace/filter/kafka/kafkatest"
)

// saslTraffic returns an ApiVersions exchange, a SaslHandshake (v1) and the SaslAuthenticate round trips of
// mechanism (PLAIN: one, SCRAM: two) at this SaslAuthenticate version, as client and broker bytes.
func saslTraffic(mechanism string, authVersion int16) (requests, responses []byte) {
	corr := int32(0)
	add := func(req kmsg.Request, resp kmsg.Response) {
		requests = append(requests, kafkatest.Request(req, corr, kafkatest.ClientID)...)
		responses = append(responses, kafkatest.Response(resp, corr)...)
		corr++
	}
	av := kmsg.NewPtrApiVersionsRequest()
	av.Version, av.ClientSoftwareName, av.ClientSoftwareVersion = 3, "kgo", "1.0"
	avr := av.ResponseKind().(*kmsg.ApiVersionsResponse)
	avr.ApiKeys = append(avr.ApiKeys, kmsg.ApiVersionsResponseApiKey{ApiKey: 0, MaxVersion: 13})
	add(av, avr)

	hs := kmsg.NewPtrSASLHandshakeRequest()
	hs.Version, hs.Mechanism = 1, mechanism
	hsr := hs.ResponseKind().(*kmsg.SASLHandshakeResponse)
	hsr.SupportedMechanisms = []string{"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"}
	add(hs, hsr)

	tokens := [][]byte{[]byte("\x00checkout\x00s3cret")}
	if mechanism != "PLAIN" {
		tokens = [][]byte{[]byte("n,,n=checkout,r=fyko+d2lbbFgONRv9qkxdawL"),
			[]byte("c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=")}
	}
	for _, tok := range tokens {
		a := kmsg.NewPtrSASLAuthenticateRequest()
		a.Version, a.SASLAuthBytes = authVersion, tok
		ar := a.ResponseKind().(*kmsg.SASLAuthenticateResponse)
		ar.SASLAuthBytes = []byte("r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096")
		ar.SessionLifetimeMillis = 3600000
		add(a, ar)
	}
	return requests, responses
}

// TestSASLThenProduce checks that the SASL frames of PLAIN and SCRAM authentication (SaslHandshake,
// SaslAuthenticate, in classic and flexible versions) are skipped without stopping the decoder, and that the
// Produce sent in clear afterwards is decoded.
func TestSASLThenProduce(t *testing.T) {
	for _, mech := range []string{"PLAIN", "SCRAM-SHA-512"} {
		for _, v := range []int16{0, 1, 2} {
			t.Run(mech+"/v"+strconv.Itoa(int(v)), func(t *testing.T) {
				reqs, resps := saslTraffic(mech, v)
				preq, presp := kafkatest.Produce(9, 100, kafkatest.ClientID, "orders", kafkatest.Batch{Records: 3}.Encode())
				var got []kafka.Topic
				d := kafka.NewDecoder(kafka.Config{}, func(ex *kafka.Exchange) {
					if ex.APIKey != kafka.APIProduce || !ex.Answered {
						t.Errorf("exchange api key %d answered %v", ex.APIKey, ex.Answered)
					}
					got = append(got, ex.Topics...)
				})
				// request, response, request, ... as the client and broker take turns
				d.Requests(reqs, 1)
				d.Responses(resps, 2)
				d.Requests(preq, 3)
				d.Responses(presp, 4)
				if d.Err() != nil {
					t.Fatalf("decoder stopped: %v", d.Err())
				}
				if len(got) != 1 || got[0].Name != "orders" || got[0].Records != 3 || len(got[0].Contexts) != 3 {
					t.Fatalf("got %+v, want one topic orders with 3 records and 3 contexts", got)
				}
			})
		}
	}
}

// TestProduceBatchHeaders checks the batch header facts of Produce requests: transactional batches are
// flagged, idempotent ones are not, and legacy messages count as undecoded.
func TestProduceBatchHeaders(t *testing.T) {
	cases := []struct {
		name    string
		records []byte
		want    facts
	}{
		{"transactional", kafkatest.Batch{Records: 2, Attributes: 0x10, ProducerID: 9, ProducerEpoch: 3, FirstTimestamp: 5, MaxTimestamp: 6}.Encode(),
			facts{Records: 2, Batches: 1, OldestTimestamp: 5, NewestTimestamp: 6, Transactional: true}},
		{"idempotent", kafkatest.Batch{Records: 2, ProducerID: 9, ProducerEpoch: 3}.Encode(), facts{Records: 2, Batches: 1}},
		{"magic v1", kafkatest.LegacyMessage(1, 0), facts{Records: 1, Batches: 1, Undecoded: 1}},
		{"magic v0", join(kafkatest.LegacyMessage(0, 0), kafkatest.LegacyMessage(0, 1)), facts{Records: 2, Batches: 2, Undecoded: 2}},
	}
	for _, c := range cases {
		for _, v := range []int16{3, 8, 9, 12} {
			t.Run(c.name+"/v"+strconv.Itoa(int(v)), func(t *testing.T) {
				req, resp := kafkatest.Produce(v, 1, kafkatest.ClientID, "orders", c.records)
				var got []facts
				d := kafka.NewDecoder(kafka.Config{}, func(ex *kafka.Exchange) {
					for _, tp := range ex.Topics {
						got = append(got, headerFacts(tp))
					}
				})
				d.Requests(req, 1)
				d.Responses(resp, 2)
				if d.Err() != nil {
					t.Fatalf("decoder stopped: %v", d.Err())
				}
				if len(got) != 1 || got[0] != c.want {
					t.Fatalf("got %+v, want %+v", got, c.want)
				}
			})
		}
	}
}

// TestLegacyCutByFrameLimit checks that a legacy message cut by the frame limit counts as one undecoded
// record, and that the rest of the frame is skipped.
func TestLegacyCutByFrameLimit(t *testing.T) {
	var msgs []byte
	for i := 0; i < 50; i++ {
		msgs = append(msgs, kafkatest.LegacyMessage(1, int64(i))...)
	}
	req, resp := kafkatest.Fetch(4, 1, kafkatest.ClientID, "orders", msgs)
	var got kafka.Topic
	d := kafka.NewDecoder(kafka.Config{MaxFrameBytes: 300}, func(ex *kafka.Exchange) { got = ex.Topics[0] })
	d.Requests(req, 1)
	d.Responses(resp, 2)
	if d.Err() != nil || got.Records == 0 || got.Records >= 50 || got.Undecoded != got.Records {
		t.Fatalf("got %d records, %d undecoded, error %v; want a few, all undecoded", got.Records, got.Undecoded, d.Err())
	}
}

// TestSASLHandshakeV0 checks the limit docs/network-filter.md states: after SaslHandshake v0 the client sends
// raw SASL tokens, which are not Kafka frames, and decoding stops.
func TestSASLHandshakeV0(t *testing.T) {
	hs := kmsg.NewPtrSASLHandshakeRequest()
	hs.Version, hs.Mechanism = 0, "PLAIN"
	token := []byte("\x00checkout\x00s3cret")
	raw := append([]byte{0, 0, 0, byte(len(token))}, token...)
	d := kafka.NewDecoder(kafka.Config{}, func(*kafka.Exchange) {})
	d.Requests(kafkatest.Request(hs, 0, kafkatest.ClientID), 1)
	if d.Err() != nil {
		t.Fatalf("stopped on the handshake: %v", d.Err())
	}
	d.Requests(raw, 2)
	if !errors.Is(d.Err(), kafka.ErrNotKafka) {
		t.Fatalf("Err() = %v after a raw SASL token, want ErrNotKafka", d.Err())
	}
}
