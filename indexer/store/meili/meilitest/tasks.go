package meilitest

import (
	"fmt"
	"net/http"
	"time"
)

// task is an asynchronous operation. apply runs on the worker with s.mu held.
type task struct {
	UID        int            `json:"uid"`
	BatchUID   *int           `json:"batchUid"`
	IndexUID   string         `json:"indexUid"`
	Status     string         `json:"status"`
	Type       string         `json:"type"`
	CanceledBy *int           `json:"canceledBy"`
	Details    map[string]any `json:"details"`
	Error      *apiError      `json:"error"`
	Duration   *string        `json:"duration"`
	EnqueuedAt time.Time      `json:"enqueuedAt"`
	StartedAt  *time.Time     `json:"startedAt"`
	FinishedAt *time.Time     `json:"finishedAt"`

	apply func(*task) *apiError
}

// enqueue registers a task and answers 202 with its summary, as Meilisearch does for every write.
func (s *Server) enqueue(w http.ResponseWriter, uid, typ string, details map[string]any, apply func(*task) *apiError) error {
	s.mu.Lock()
	t := &task{
		UID: len(s.tasks), IndexUID: uid, Status: "enqueued", Type: typ, Details: details,
		EnqueuedAt: time.Now().UTC(), apply: apply,
	}
	select {
	case s.pending <- t:
		s.tasks = append(s.tasks, t)
		s.mu.Unlock()
	default:
		s.mu.Unlock()
		return errorf(http.StatusServiceUnavailable, "too_many_tasks", "meilitest: task queue is full")
	}
	writeJSON(w, http.StatusAccepted, map[string]any{
		"taskUid": t.UID, "indexUid": uid, "status": "enqueued", "type": typ,
		"enqueuedAt": t.EnqueuedAt.Format(time.RFC3339Nano),
	})
	return nil
}

// worker processes tasks one at a time, in order.
func (s *Server) worker() {
	defer s.wg.Done()
	for {
		select {
		case <-s.done:
			return
		case t := <-s.pending:
			if s.opts.TaskDelay > 0 {
				select {
				case <-time.After(s.opts.TaskDelay):
				case <-s.done:
					return
				}
			}
			s.run(t)
		}
	}
}

func (s *Server) run(t *task) {
	s.mu.Lock()
	defer s.mu.Unlock()
	start := time.Now().UTC()
	t.StartedAt = &start
	batch := t.UID
	t.BatchUID = &batch
	t.Status = "processing"
	if err := t.apply(t); err != nil {
		t.Status, t.Error = "failed", err
	} else {
		t.Status = "succeeded"
	}
	end := time.Now().UTC()
	t.FinishedAt = &end
	d := fmt.Sprintf("PT%.6fS", end.Sub(start).Seconds())
	t.Duration = &d
	t.apply = nil
}

func (s *Server) getTask(w http.ResponseWriter, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	n, ok := parseUint(id)
	if !ok {
		return errorf(http.StatusBadRequest, "invalid_task_uids", "Invalid value in parameter `taskUid`: could not parse `%s` as a positive integer", id)
	}
	if n >= len(s.tasks) {
		return errorf(http.StatusNotFound, "task_not_found", "Task `%d` not found.", n)
	}
	writeJSON(w, http.StatusOK, s.tasks[n])
	return nil
}
