package wasmhost

import (
	"fmt"
	"time"
)

// Root is a root (plugin) context. Every Host has one, created by Load; Host.AddRoot creates more in
// the same VM, as Envoy does when filters with the same code, vm_id and VM configuration share a VM
// (for example an HTTP and a network filter from one image, told apart by "plugin_root_id").
type Root struct {
	h            *Host
	id           uint32
	pluginConfig []byte
	props        map[string][]byte // root properties, above the host-wide ones

	alive        bool
	configuring  bool // inside proxy_on_configure, where the plugin configuration is readable
	doneStarted  bool // proxy_on_done ran
	doneFinished bool // and returned true
	doneCalled   bool // the plugin called proxy_done
	tickPeriod   time.Duration
}

// AddRoot creates another root context in the VM with its own plugin configuration and properties
// (which take precedence over Config.Properties, e.g. "plugin_root_id"), and runs proxy_on_vm_start and
// proxy_on_configure on it as Envoy does for each root context.
func (h *Host) AddRoot(pluginConfig []byte, props map[string][]byte) (*Root, error) {
	r := &Root{h: h, id: h.nextID, pluginConfig: pluginConfig, props: props}
	h.nextID++
	if _, err := h.call(fnContextCreate, r, nil, uint64(r.id), 0); err != nil {
		return nil, err
	}
	r.alive = true
	h.roots = append(h.roots, r)
	if ok, err := h.call(fnVMStart, r, nil, uint64(r.id), uint64(len(h.cfg.VMConfig))); err != nil {
		return nil, err
	} else if ok == 0 {
		return nil, fmt.Errorf("wasmhost: proxy_on_vm_start returned false%s", h.problemLogs())
	}
	r.configuring = true
	ok, err := h.call(fnConfigure, r, nil, uint64(r.id), uint64(len(pluginConfig)))
	r.configuring = false
	if err != nil {
		return nil, err
	}
	if ok == 0 {
		return nil, fmt.Errorf("wasmhost: proxy_on_configure returned false%s", h.problemLogs())
	}
	return r, nil
}

// ID returns the root context id (the first root of a Host has id 1).
func (r *Root) ID() uint32 { return r.id }

// NewHTTPStream creates an HTTP context under this root; see Host.NewHTTPStream.
func (r *Root) NewHTTPStream(props map[string][]byte) *HTTPStream {
	s := &HTTPStream{}
	s.init(r, props)
	return s
}

// NewConnection creates a network context under this root; see Host.NewConnection.
func (r *Root) NewConnection(props map[string][]byte) (*Connection, Action, error) {
	c := &Connection{}
	c.init(r, props)
	a, err := c.callAction(fnNewConnection, uint64(c.id))
	return c, a, err
}

// Tick calls proxy_on_tick on this root, whatever its tick period, then Host.Flush.
func (r *Root) Tick() error {
	if err := r.tick(); err != nil {
		return err
	}
	return r.h.Flush()
}

func (r *Root) tick() error {
	if !r.alive {
		return nil
	}
	_, err := r.h.call(fnTick, r, nil, uint64(r.id))
	return err
}

// TickPeriod is the period this root last set with proxy_set_tick_period_milliseconds.
func (r *Root) TickPeriod() time.Duration { return r.tickPeriod }

// Done starts the shutdown of the root context with proxy_on_done, once. It reports whether the plugin
// finished at once; if not, it finishes later by calling proxy_done (see DoneCalled), typically after
// the responses to its last HTTP calls, which the test can still deliver. Envoy waits for that before
// deleting the root context.
func (r *Root) Done() (finished bool, err error) {
	if r.doneStarted {
		return r.doneFinished || r.doneCalled, r.h.err
	}
	r.doneStarted = true
	res, err := r.h.call(fnDone, r, nil, uint64(r.id))
	r.doneFinished = res != 0
	return r.doneFinished, err
}

// DoneCalled reports whether the plugin called proxy_done, ending a shutdown Done left unfinished.
func (r *Root) DoneCalled() bool { return r.doneCalled }

// close runs proxy_on_done (unless Done ran) and proxy_on_delete.
func (r *Root) close() error {
	if !r.alive || r.h.err != nil {
		return nil
	}
	if _, err := r.Done(); err != nil {
		return err
	}
	r.alive = false
	_, err := r.h.call(fnDelete, r, nil, uint64(r.id))
	return err
}
