#!/usr/bin/env bash
# install-kafka.sh KAFKA_VERSION CONFLUENT_KAFKA_VERSION TOOLS
#
# Installs what testenv/kafka runs against a real Apache Kafka broker:
#   TOOLS/kafka-KAFKA_VERSION/libs          the broker (org.apache.kafka:kafka_2.13) and its runtime jars
#   TOOLS/kafka-clients-KAFKA_VERSION/libs  org.apache.kafka:kafka-clients and its runtime jars (the Java client)
#   TOOLS/confluent-kafka-CONFLUENT_KAFKA_VERSION   the confluent-kafka wheel (librdkafka bundled), pip --target
# Maven fetches from Maven Central through a local repository in TOOLS/m2 (nothing goes to ~/.m2); the jars and
# versions are the ones testenv/kafka/pom.xml and testenv/kafka/java/pom.xml pin. Each part writes a marker
# holding its versions and the pom's checksum when it is complete, so a rerun with nothing changed is a no-op
# (a fraction of a second), and a changed pom or version installs that part again.
set -euo pipefail

if [[ $# -ne 3 ]]; then
	echo "usage: $0 KAFKA_VERSION CONFLUENT_KAFKA_VERSION TOOLS" >&2
	exit 2
fi
kafka_version=$1
ck_version=$2
tools=$3
root=$(cd "$(dirname "$0")/.." && pwd)

log() { echo ">> kafka: $*"; }

need_debian() { # need_debian COMMAND PACKAGE: installs PACKAGE when COMMAND is missing
	command -v "$1" >/dev/null 2>&1 && return 0
	local sudo=()
	[[ $(id -u) -ne 0 ]] && sudo=(sudo)
	log "installing Debian package $2 (for $1)"
	"${sudo[@]}" apt-get update -qq
	DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "$2"
}

# maven_part NAME POM DIR: copies POM's runtime dependencies into DIR/libs unless DIR's marker matches.
maven_part() {
	local name=$1 pom=$2 dir=$3 want
	want="$name $kafka_version $(sha256sum "$pom" | cut -d' ' -f1)"
	if [[ -f $dir/.installed && $(cat "$dir/.installed") == "$want" ]]; then
		log "$name $kafka_version already installed at $dir"
		return 0
	fi
	need_debian java openjdk-17-jre-headless
	need_debian mvn maven
	log "mvn dependency:copy-dependencies ($name $kafka_version) -> $dir/libs"
	rm -rf "$dir"
	mkdir -p "$dir"
	local mvnlog=$tools/m2/$name.log
	mkdir -p "$tools/m2"
	if ! mvn -B -Dstyle.color=never -Dmaven.repo.local="$tools/m2" -f "$pom" \
		dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$dir/libs" >"$mvnlog" 2>&1; then
		tail -n 40 "$mvnlog" >&2
		echo "install-kafka: mvn failed (log: $mvnlog)" >&2
		exit 1
	fi
	if ! ls "$dir/libs/$name-$kafka_version.jar" >/dev/null 2>&1; then
		echo "install-kafka: $dir/libs/$name-$kafka_version.jar missing after mvn" >&2
		exit 1
	fi
	echo "$want" >"$dir/.installed"
	log "$name $kafka_version: $(ls "$dir/libs" | wc -l) jars"
}

maven_part kafka_2.13 "$root/testenv/kafka/pom.xml" "$tools/kafka-$kafka_version"
maven_part kafka-clients "$root/testenv/kafka/java/pom.xml" "$tools/kafka-clients-$kafka_version"
need_debian javac openjdk-17-jdk-headless # testenv/kafka compiles its Java client with javac

ckdir=$tools/confluent-kafka-$ck_version
python=${PYTHON:-python3}
want="confluent-kafka $ck_version"
if [[ -f $ckdir/.installed && $(cat "$ckdir/.installed") == "$want" ]]; then
	log "confluent-kafka $ck_version already installed at $ckdir"
	exit 0
fi
if ! "$python" -m pip --version >/dev/null 2>&1; then
	need_debian pip3 python3-pip
	python=python3
fi
log "pip install confluent-kafka==$ck_version -> $ckdir"
rm -rf "$ckdir"
mkdir -p "$ckdir"
"$python" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --no-deps \
	--only-binary=:all: --target "$ckdir" "confluent-kafka==$ck_version"
got=$(PYTHONPATH=$ckdir "$python" -c 'import confluent_kafka as c; print(c.__version__, c.libversion()[0])')
log "confluent-kafka, librdkafka: $got"
echo "$want" >"$ckdir/.installed"
