package ingestbench

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/meshtrace/meshtrace/testenv/meilisearch"
)

// meiliTasks summarises the server's finished tasks per index ("meshtrace-spans: 12 tasks, 100000 docs,
// 20.1s busy; ..."), or says why it could not.
func meiliTasks(ctx context.Context, client *http.Client, ms *meilisearch.Server) string {
	type stats struct {
		tasks, docs int
		busy        time.Duration
	}
	per := map[string]*stats{}
	var order []string
	for from := -1; ; {
		u := ms.URL + "/tasks?limit=1000"
		if from >= 0 {
			u += "&from=" + strconv.Itoa(from)
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return err.Error()
		}
		req.Header.Set("Authorization", "Bearer "+ms.Key)
		resp, err := client.Do(req)
		if err != nil {
			return err.Error()
		}
		var page struct {
			Results []struct {
				IndexUID string `json:"indexUid"`
				Duration string `json:"duration"`
				Details  struct {
					ReceivedDocuments int `json:"receivedDocuments"`
				} `json:"details"`
			} `json:"results"`
			Next *int `json:"next"`
		}
		err = json.NewDecoder(resp.Body).Decode(&page)
		resp.Body.Close()
		if err != nil {
			return "decoding /tasks: " + err.Error()
		}
		for _, t := range page.Results {
			st := per[t.IndexUID]
			if st == nil {
				st = &stats{}
				per[t.IndexUID] = st
				order = append(order, t.IndexUID)
			}
			st.tasks++
			st.docs += t.Details.ReceivedDocuments
			st.busy += isoDuration(t.Duration)
		}
		if page.Next == nil {
			break
		}
		from = *page.Next
	}
	var parts []string
	for _, ix := range order {
		st := per[ix]
		parts = append(parts, fmt.Sprintf("%s: %d tasks, %d docs, %.1fs busy", ix, st.tasks, st.docs, st.busy.Seconds()))
	}
	return strings.Join(parts, "; ")
}

// isoDuration parses the "PT1.5S" / "PT2M3.1S" durations of Meilisearch's task list (0 if unparsable).
func isoDuration(s string) time.Duration {
	rest, ok := strings.CutPrefix(s, "PT")
	if !ok {
		return 0
	}
	var d time.Duration
	for _, unit := range []struct {
		suffix string
		scale  time.Duration
	}{{"H", time.Hour}, {"M", time.Minute}, {"S", time.Second}} {
		i := strings.Index(rest, unit.suffix)
		if i < 0 {
			continue
		}
		f, err := strconv.ParseFloat(rest[:i], 64)
		if err != nil {
			return 0
		}
		d += time.Duration(f * float64(unit.scale))
		rest = rest[i+1:]
	}
	return d
}
