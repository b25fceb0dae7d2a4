// Package kafka runs a real Apache Kafka broker and the Kafka clients people run, for tests: StartBroker starts a
// single-node KRaft broker (broker and controller in one JVM) on free loopback ports, with the address it
// advertises to clients configurable (BrokerConfig.AdvertisedAddr), so that a test can put a proxy such as
// Envoy in front of it: clients bootstrap to the proxy, and every broker connection the metadata names goes
// through the proxy too. RunJava and RunPython run the official Java client (kafka-clients) and librdkafka
// (confluent-kafka) as subprocesses that produce or consume with the options a test gives on the command
// line (compression, idempotence, transactions, record headers, classic or KIP-848 consumer groups) and
// return the records they acknowledged or received.
//
// A proxy in front of the broker, e.g. Envoy's tcp_proxy with the network filter:
//
//	port, _ := kafka.FreePort()                 // the proxy's listener, known before the broker starts
//	proxy := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
//	b := kafka.StartBroker(t, kafka.BrokerConfig{AdvertisedAddr: proxy, NumPartitions: 3})
//	// start the proxy on proxy, forwarding to b.Addr
//	b.CreateTopic(t, "orders", 3, nil)          // helpers use b.InternalAddr: no proxy needed
//	acks := kafka.RunJava(t, proxy, "produce", "--topic", "orders", "--count", "10", "--key", "order",
//		"--header", "traceparent=00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "--compression", "zstd")
//	recs := kafka.RunPython(t, proxy, "consume", "--topic", "orders", "--group", "g", "--count", "10",
//		"--group-protocol", "consumer")
//
// Everything runs from what `make tools` installs, pinned, under .tools (scripts/install-kafka.sh): the broker
// jars, the kafka-clients jars and the confluent-kafka wheel. A test that needs them and cannot find them
// fails, naming `make tools`; it is never skipped.
package kafka

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/meshtrace/meshtrace/testenv/artifact"
)

// Version is the Apache Kafka version of the broker and of the Java client (kafka-clients) `make tools`
// installs.
const Version = "4.4.0"

// ConfluentKafkaVersion is the version of the confluent-kafka Python package `make tools` installs; its wheel
// bundles librdkafka (2.16.0 in this release).
const ConfluentKafkaVersion = "2.16.1"

// Environment variables that override where the tools are found; unset, they are looked up under the module
// root's .tools, where `make tools` installs them.
const (
	// BrokerLibsEnv names a directory holding the broker's jars (default .tools/kafka-<Version>/libs).
	BrokerLibsEnv = "MESHTRACE_KAFKA_LIBS"
	// ClientLibsEnv names a directory holding kafka-clients and its runtime jars (default
	// .tools/kafka-clients-<Version>/libs).
	ClientLibsEnv = "MESHTRACE_KAFKA_CLIENT_LIBS"
	// PythonPathEnv names the directory confluent-kafka is installed in (default
	// .tools/confluent-kafka-<ConfluentKafkaVersion>).
	PythonPathEnv = "MESHTRACE_CONFLUENT_KAFKA"
	// PythonEnv names the Python interpreter (default python3).
	PythonEnv = "PYTHON"
	// JavaHomeEnv is the usual JAVA_HOME: when set, its bin/java and bin/javac are used, else those on PATH.
	JavaHomeEnv = "JAVA_HOME"
)

// BrokerLibs returns the directory of the broker's jars, failing with a hint to run `make tools` when it has
// no kafka_2.13 jar.
func BrokerLibs() (string, error) {
	return toolDir(BrokerLibsEnv, filepath.Join("kafka-"+Version, "libs"), "kafka_2.13-"+Version+".jar")
}

// ClientLibs returns the directory of kafka-clients and its runtime jars, failing with a hint to run `make
// tools` when it has no kafka-clients jar.
func ClientLibs() (string, error) {
	return toolDir(ClientLibsEnv, filepath.Join("kafka-clients-"+Version, "libs"), "kafka-clients-"+Version+".jar")
}

// PythonPath returns the directory confluent-kafka is installed in, failing with a hint to run `make tools`
// when it has no confluent_kafka package.
func PythonPath() (string, error) {
	return toolDir(PythonPathEnv, "confluent-kafka-"+ConfluentKafkaVersion, "confluent_kafka")
}

// toolDir returns $env, else .tools/rel under the module root, once it holds want.
func toolDir(env, rel, want string) (string, error) {
	dir := os.Getenv(env)
	if dir == "" {
		root, err := artifact.ModuleRoot()
		if err != nil {
			return "", fmt.Errorf("kafka: %w (set %s or run `make tools`)", err, env)
		}
		dir = filepath.Join(root, ".tools", rel)
	}
	if _, err := os.Stat(filepath.Join(dir, want)); err != nil {
		return "", fmt.Errorf("kafka: %s not found in %s (%s unset or wrong): run `make tools`", want, dir, env)
	}
	return dir, nil
}

// javaTool returns the path of java or javac: $JAVA_HOME/bin/NAME, else NAME on PATH.
func javaTool(name string) (string, error) {
	if home := os.Getenv(JavaHomeEnv); home != "" {
		p := filepath.Join(home, "bin", name)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("kafka: %s not found (JAVA_HOME or PATH): install a JDK 17 or run `make tools`", name)
	}
	return p, nil
}

// sourceDir returns testenv/kafka's directory in the module (where java/ and python/ are).
func sourceDir() (string, error) {
	root, err := artifact.ModuleRoot()
	if err != nil {
		return "", fmt.Errorf("kafka: %w", err)
	}
	return filepath.Join(root, "testenv", "kafka"), nil
}
