package kafka

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// LogFile is the name of the broker's log (its stdout and stderr, Log4j 2 at INFO) in Broker.Dir.
const LogFile = "kafka.log"

// BrokerConfig configures one broker. The zero value is ready to use.
type BrokerConfig struct {
	// AdvertisedAddr is the host:port the broker names for itself in metadata answered on its client listener
	// (Broker.Addr), i.e. the address clients that bootstrap there are told to connect to: a proxy's listener
	// in front of Broker.Addr, so every connection a client opens goes through the proxy. It must be known
	// before the broker starts (pick the proxy's port first, e.g. with FreePort). Empty: Broker.Addr itself.
	AdvertisedAddr string
	// Port is the client listener's port on 127.0.0.1; 0 chooses a free one.
	Port int
	// NumPartitions is num.partitions, the partitions of an auto-created topic (default 1).
	NumPartitions int
	// AutoCreateTopics is auto.create.topics.enable (default false: tests create their topics, CreateTopic).
	AutoCreateTopics bool
	// SASL, when set, makes the client listener SASL_PLAINTEXT with its users; the internal listener stays
	// PLAINTEXT for the helpers of this package.
	SASL *SASL
	// Properties are added to server.properties last, overriding what StartBroker writes, e.g.
	// "message.max.bytes": "2097152" or "group.consumer.heartbeat.interval.ms": "1000".
	Properties map[string]string
	// MaxHeap is the JVM's -Xmx (default "256m": the broker idles at about 150 MB of heap in tests).
	MaxHeap string
	// JVMArgs are extra JVM arguments, before the main class; they win over StartBroker's. The broker runs
	// with the serial collector and C1 only (-XX:TieredStopAtLevel=1), which starts it about a third faster
	// on 2 cores; -XX:TieredStopAtLevel=4 brings C2 back for a load test.
	JVMArgs []string
	// StartTimeout bounds formatting the storage plus waiting until the broker answers metadata (default 90s).
	StartTimeout time.Duration
	// StopTimeout bounds the wait after SIGTERM before the broker is killed (default 15s).
	StopTimeout time.Duration
}

// SASL is the client listener's authentication: PLAIN users (checked by the broker's PlainLoginModule) and
// SCRAM-SHA-256 users (their credentials written into the metadata when the storage is formatted).
type SASL struct {
	// Plain maps PLAIN user names to passwords.
	Plain map[string]string
	// SCRAM maps SCRAM-SHA-256 user names to passwords.
	SCRAM map[string]string
}

// properties returns the broker settings that put the client listener behind SASL.
func (a *SASL) properties() map[string]string {
	var users strings.Builder
	for _, name := range slices.Sorted(maps.Keys(a.Plain)) {
		fmt.Fprintf(&users, " user_%s=%q", name, a.Plain[name])
	}
	return map[string]string{
		"listener.security.protocol.map":                      "CLIENT:SASL_PLAINTEXT,INTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT",
		"sasl.enabled.mechanisms":                             "PLAIN,SCRAM-SHA-256",
		"listener.name.client.plain.sasl.jaas.config":         "org.apache.kafka.common.security.plain.PlainLoginModule required" + users.String() + ";",
		"listener.name.client.scram-sha-256.sasl.jaas.config": "org.apache.kafka.common.security.scram.ScramLoginModule required;",
	}
}

// formatArgs returns the storage tool's --add-scram arguments for the SCRAM users.
func (a *SASL) formatArgs() []string {
	var args []string
	for _, name := range slices.Sorted(maps.Keys(a.SCRAM)) {
		args = append(args, "--add-scram", fmt.Sprintf("SCRAM-SHA-256=[name=%s,password=%s]", name, a.SCRAM[name]))
	}
	return args
}

// Broker is a running single-node KRaft broker (process.roles=broker,controller). It has three listeners on
// 127.0.0.1: the client listener Addr, which advertises AdvertisedAddr; the internal listener InternalAddr,
// which advertises itself (inter-broker traffic such as transaction markers, and the helpers of this package,
// so they work with no proxy up); and the controller listener.
type Broker struct {
	// Addr is the client listener, host:port: what a proxy in front of the broker connects to.
	Addr string
	// AdvertisedAddr is the address metadata on Addr names for the broker (BrokerConfig.AdvertisedAddr, or Addr).
	AdvertisedAddr string
	// InternalAddr is a listener that advertises itself: clients bootstrapped here talk to the broker directly.
	InternalAddr string
	// ClusterID is the KRaft cluster id the storage was formatted with.
	ClusterID string
	// Dir holds server.properties, the log4j2 configuration, the data (data/) and the log (LogFile).
	Dir string
	// PID is the broker's process id.
	PID int
	// StartupTime is how long StartBroker took: formatting the storage, starting the JVM and waiting until
	// the broker answered a metadata request.
	StartupTime time.Duration
	// FormatTime is the part of StartupTime that formatting the storage took (a JVM of its own).
	FormatTime time.Duration

	cfg      BrokerConfig
	cmd      *exec.Cmd
	done     chan struct{} // closed when the process has exited
	waitErr  error         // valid after done is closed
	stopOnce sync.Once
}

// StartBroker formats a KRaft storage directory in t.TempDir(), starts the broker (kafka.Kafka) in a JVM and
// waits until it answers a metadata request on its internal and client listeners; it fails the test, with the
// tail of the log, when that does not happen. The broker is stopped in t.Cleanup (SIGTERM, then SIGKILL after
// BrokerConfig.StopTimeout), and the log's tail is printed when the test has failed.
func StartBroker(t testing.TB, cfg BrokerConfig) *Broker {
	t.Helper()
	libs, err := BrokerLibs()
	if err != nil {
		t.Fatal(err)
	}
	java, err := javaTool("java")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.NumPartitions <= 0 {
		cfg.NumPartitions = 1
	}
	if cfg.MaxHeap == "" {
		cfg.MaxHeap = "256m"
	}
	if cfg.StartTimeout <= 0 {
		cfg.StartTimeout = 90 * time.Second
	}
	if cfg.StopTimeout <= 0 {
		cfg.StopTimeout = 15 * time.Second
	}
	dir := t.TempDir()
	// Free ports are found by binding :0 and closing, so another process may take one before the broker
	// binds it: a start that fails that way is retried on new ports.
	var b *Broker
	for attempt := 0; ; attempt++ {
		b, err = start(java, libs, dir, cfg)
		if err == nil || !errors.Is(err, errAddrInUse) || attempt == 2 || cfg.Port != 0 {
			break
		}
		_ = os.RemoveAll(filepath.Join(dir, "data"))
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		begin := time.Now()
		if err := b.Stop(); err != nil {
			// Not a failure of the test: the broker is gone either way. The log shows where it hung.
			t.Logf("kafka: %v; broker log %s (tail):\n%s", err, b.LogPath(), b.LogTail(40))
		} else {
			t.Logf("kafka: broker stopped in %v", time.Since(begin).Round(time.Millisecond))
		}
		if t.Failed() {
			t.Logf("kafka: broker log %s (tail):\n%s", b.LogPath(), b.LogTail(60))
		}
	})
	t.Logf("kafka: broker %s started in %v (storage format %v; client listener %s advertising %s, internal %s)",
		Version, b.StartupTime.Round(time.Millisecond), b.FormatTime.Round(time.Millisecond), b.Addr,
		b.AdvertisedAddr, b.InternalAddr)
	return b
}

var errAddrInUse = errors.New("address in use")

// start formats the storage and runs the broker, waiting until it is ready.
func start(java, libs, dir string, cfg BrokerConfig) (*Broker, error) {
	begin := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), cfg.StartTimeout)
	defer cancel()
	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	port := cfg.Port
	if port == 0 {
		port = ports[2]
	}
	id, err := clusterID()
	if err != nil {
		return nil, err
	}
	b := &Broker{
		Addr:           hostPort(port),
		AdvertisedAddr: cfg.AdvertisedAddr,
		InternalAddr:   hostPort(ports[0]),
		ClusterID:      id,
		Dir:            dir,
		cfg:            cfg,
		done:           make(chan struct{}),
	}
	if b.AdvertisedAddr == "" {
		b.AdvertisedAddr = b.Addr
	}
	props := b.properties(hostPort(ports[1]))
	if err := os.WriteFile(filepath.Join(dir, "server.properties"), []byte(props), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "log4j2.yaml"), []byte(log4j2Config), 0o644); err != nil {
		return nil, err
	}
	jvm := []string{
		"-Xms32m", "-Xmx" + cfg.MaxHeap, "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-XX:+ExitOnOutOfMemoryError",
		"-Djava.awt.headless=true", "-Dlog4j2.configurationFile=" + filepath.Join(dir, "log4j2.yaml"),
		"-cp", filepath.Join(libs, "*"),
	}

	// Format: a static quorum (controller.quorum.voters), so no --standalone.
	formatArgs := []string{"kafka.tools.StorageTool", "format",
		"--cluster-id", id, "--config", filepath.Join(dir, "server.properties"), "--ignore-formatted"}
	if cfg.SASL != nil {
		formatArgs = append(formatArgs, cfg.SASL.formatArgs()...)
	}
	format := exec.CommandContext(ctx, java, slices.Concat(jvm, formatArgs)...)
	if out, err := format.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("kafka: formatting the storage: %v\n%s", err, tail(out, 30))
	}
	b.FormatTime = time.Since(begin)

	logf, err := os.Create(b.LogPath())
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	args := slices.Concat(jvm, cfg.JVMArgs, []string{"kafka.Kafka", filepath.Join(dir, "server.properties")})
	b.cmd = exec.Command(java, args...)
	b.cmd.Dir = dir
	b.cmd.Stdout, b.cmd.Stderr = logf, logf
	b.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := b.cmd.Start(); err != nil {
		return nil, fmt.Errorf("kafka: starting the broker: %w", err)
	}
	b.PID = b.cmd.Process.Pid
	go func() {
		b.waitErr = b.cmd.Wait()
		close(b.done)
	}()
	if err := b.waitReady(ctx); err != nil {
		_ = b.Stop()
		logTail := b.LogTail(40)
		if strings.Contains(logTail, "ddress already in use") {
			err = fmt.Errorf("%w: %v", errAddrInUse, err)
		}
		return nil, fmt.Errorf("kafka: broker not ready: %w\n--- %s (tail) ---\n%s", err, b.LogPath(), logTail)
	}
	b.StartupTime = time.Since(begin)
	return b, nil
}

// properties renders server.properties, with the controller listener on controllerAddr.
func (b *Broker) properties(controllerAddr string) string {
	p := map[string]string{
		"process.roles":                    "broker,controller",
		"node.id":                          "1",
		"controller.quorum.voters":         "1@" + controllerAddr,
		"listeners":                        "CLIENT://" + b.Addr + ",INTERNAL://" + b.InternalAddr + ",CONTROLLER://" + controllerAddr,
		"advertised.listeners":             "CLIENT://" + b.AdvertisedAddr + ",INTERNAL://" + b.InternalAddr,
		"listener.security.protocol.map":   "CLIENT:PLAINTEXT,INTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT",
		"inter.broker.listener.name":       "INTERNAL",
		"controller.listener.names":        "CONTROLLER",
		"log.dirs":                         filepath.Join(b.Dir, "data"),
		"num.partitions":                   strconv.Itoa(b.cfg.NumPartitions),
		"auto.create.topics.enable":        strconv.FormatBool(b.cfg.AutoCreateTopics),
		"default.replication.factor":       "1",
		"min.insync.replicas":              "1",
		"offsets.topic.replication.factor": "1",
		// One partition each for the internal topics: a test's broker has few groups and transactions, and
		// creating 50 partitions on the first group or transaction costs seconds on a 2-core machine.
		"offsets.topic.num.partitions":                     "1",
		"transaction.state.log.num.partitions":             "1",
		"transaction.state.log.replication.factor":         "1",
		"transaction.state.log.min.isr":                    "1",
		"share.coordinator.state.topic.replication.factor": "1",
		"share.coordinator.state.topic.min.isr":            "1",
		"share.coordinator.state.topic.num.partitions":     "1",
		"group.initial.rebalance.delay.ms":                 "0",
		"num.network.threads":                              "2",
		"num.io.threads":                                   "2",
		"num.recovery.threads.per.data.dir":                "1",
	}
	if b.cfg.SASL != nil {
		maps.Copy(p, b.cfg.SASL.properties())
	}
	maps.Copy(p, b.cfg.Properties)
	var s strings.Builder
	s.WriteString("# Written by testenv/kafka.StartBroker.\n")
	for _, k := range slices.Sorted(maps.Keys(p)) {
		fmt.Fprintf(&s, "%s=%s\n", k, p[k])
	}
	return s.String()
}

// log4j2Config logs the broker at INFO to stdout (the log file), without the full configuration dumps, and
// without Log4j's shutdown hook, which would stop the logging before the broker's own hook logs its shutdown.
const log4j2Config = `Configuration:
  shutdownHook: disable
  Appenders:
    Console:
      name: STDOUT
      PatternLayout:
        pattern: "[%d] %p %m (%c)%n"
  Loggers:
    Logger:
      - name: org.apache.kafka.common.config.AbstractConfig
        level: WARN
      - name: state.change.logger
        level: WARN
      - name: kafka.request.logger
        level: WARN
    Root:
      level: INFO
      AppenderRef:
        - ref: STDOUT
`

// waitReady waits until a metadata request answers on the internal listener and a TCP connection opens on
// the client listener (whose metadata may name a proxy that is not up yet).
func (b *Broker) waitReady(ctx context.Context) error {
	var last error
	for {
		select {
		case <-b.done:
			return fmt.Errorf("the broker exited: %v", b.waitErr)
		default:
		}
		if last = b.ping(ctx); last == nil {
			var d net.Dialer
			c, err := d.DialContext(ctx, "tcp", b.Addr)
			if err == nil {
				c.Close()
				return nil
			}
			last = err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), last)
		case <-b.done:
			return fmt.Errorf("the broker exited: %v", b.waitErr)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// ping sends one metadata request to the internal listener.
func (b *Broker) ping(ctx context.Context) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", b.InternalAddr)
	if err != nil {
		return err
	}
	c.Close()
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.InternalAddr), kgo.RequestRetries(0))
	if err != nil {
		return err
	}
	defer cl.Close()
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := kmsg.NewPtrMetadataRequest().RequestWith(pctx, cl)
	if err != nil {
		return err
	}
	if len(resp.Brokers) == 0 {
		return errors.New("metadata names no broker yet")
	}
	return nil
}

// NewClient returns a franz-go client bootstrapped to InternalAddr (so it talks to the broker directly, whatever
// AdvertisedAddr is), with opts added; it is closed in t.Cleanup.
func (b *Broker) NewClient(t testing.TB, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(b.InternalAddr)}, opts...)...)
	if err != nil {
		t.Fatalf("kafka: franz-go client: %v", err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// Stop stops the broker: SIGTERM to its process group (a controlled shutdown), then SIGKILL when it has not
// exited after BrokerConfig.StopTimeout. It is idempotent; t.Cleanup calls it.
func (b *Broker) Stop() error {
	var err error
	b.stopOnce.Do(func() {
		if b.cmd == nil || b.cmd.Process == nil {
			return
		}
		select {
		case <-b.done:
			return
		default:
		}
		_ = syscall.Kill(-b.PID, syscall.SIGTERM)
		select {
		case <-b.done:
		case <-time.After(b.cfg.StopTimeout):
			_ = syscall.Kill(-b.PID, syscall.SIGKILL)
			<-b.done
			err = fmt.Errorf("kafka: the broker ignored SIGTERM for %v and was killed", b.cfg.StopTimeout)
		}
	})
	return err
}

// Exited reports whether the broker process has exited.
func (b *Broker) Exited() bool {
	select {
	case <-b.done:
		return true
	default:
		return false
	}
}

// LogPath returns the path of the broker's log.
func (b *Broker) LogPath() string { return filepath.Join(b.Dir, LogFile) }

// LogTail returns the last n lines of the broker's log.
func (b *Broker) LogTail(n int) string {
	data, err := os.ReadFile(b.LogPath())
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	return tail(data, n)
}

// tail returns the last n lines of data.
func tail(data []byte, n int) string {
	lines := bytes.Split(bytes.TrimRight(data, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago (bound and closed), e.g. for the
// proxy listener a broker's AdvertisedAddr names.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// freePorts returns n distinct free ports, holding each open until all are chosen.
func freePorts(n int) ([]int, error) {
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func hostPort(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// clusterID returns a random KRaft cluster id: 16 bytes, URL-safe base64 without padding (as
// `kafka-storage random-uuid` prints). Like Kafka's Uuid.randomUuid it never starts with '-', which the
// storage tool's command line would take for an option (one id in 64 did).
func clusterID() (string, error) {
	for {
		var u [16]byte
		if _, err := rand.Read(u[:]); err != nil {
			return "", err
		}
		u[6] = u[6]&0x0f | 0x40 // a version-4 UUID, as Kafka's Uuid.randomUuid
		u[8] = u[8]&0x3f | 0x80
		if id := base64.RawURLEncoding.EncodeToString(u[:]); id[0] != '-' {
			return id, nil
		}
	}
}

// adminClient returns a franz-go client bootstrapped to InternalAddr, for the helpers of this package.
func (b *Broker) adminClient() (*kgo.Client, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.InternalAddr))
	if err != nil {
		return nil, fmt.Errorf("kafka: franz-go client: %w", err)
	}
	return cl, nil
}
