package brokertest

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wardgate/wardgate/certs/certstest"
	"github.com/wardgate/wardgate/internal/testnet"
)

// IngestQueue is the quorum queue of a RabbitCluster: bound to amq.topic
// with wardgate.v1.# (every MQTT message of every gateway), consumed by
// central instances over AMQP 0-9-1, so they share the ingest and each
// message is delivered to one of them.
const IngestQueue = "wardgate-ingest"

// RabbitCluster is two RabbitMQ nodes on loopback clustered by classic
// peer discovery, each with the MQTT plugin on its own TLS listener, and
// the IngestQueue (a quorum queue with a member on each node).
type RabbitCluster struct {
	Nodes [2]*Rabbit
	// AMQP are the nodes' AMQP 0-9-1 URLs (plain, loopback; user central
	// with password "central").
	AMQP [2]string
	// AMQPS are the same over TLS (amqps://, the test PKI's localhost
	// server certificate): a client certificate logs in with SASL
	// EXTERNAL as its common name, as central does in production.
	AMQPS [2]string
}

// StartRabbitCluster starts the cluster (slow: a minute or more on a busy
// machine) for gateways. Both nodes share an Erlang cookie and an epmd.
func StartRabbitCluster(t testing.TB, pki *certstest.MiniPKI, gateways ...string) *RabbitCluster {
	t.Helper()
	need(t, "rabbitmq-server")
	bin := "/usr/lib/rabbitmq/bin/rabbitmq-server"
	if !fileExists(bin) {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s missing", bin)
		}
		t.Skipf("%s missing", bin)
	}
	base := t.TempDir()
	srv := pki.Server(t)
	certFile, keyFile := srv.WriteFiles(t, base, "server")
	root := pki.WriteRoot(t, base)
	defs := RabbitDefinitions(gateways...)
	// central logs in over AMQP with a password (loopback only).
	for _, u := range defs["users"].([]map[string]any) {
		if u["name"] == "central" {
			u["password"] = "central"
			delete(u, "password_hash")
		}
	}
	defs["queues"] = []map[string]any{{"name": IngestQueue, "vhost": "/", "durable": true, "auto_delete": false,
		"arguments": map[string]any{"x-queue-type": "quorum", "x-quorum-initial-group-size": 2}}}
	defs["bindings"] = []map[string]any{{"source": "amq.topic", "vhost": "/", "destination": IngestQueue,
		"destination_type": "queue", "routing_key": "wardgate.v1.#", "arguments": map[string]any{}}}
	defsJSON, _ := json.MarshalIndent(defs, "", "  ")
	defsFile := filepath.Join(base, "definitions.json")
	if err := os.WriteFile(defsFile, defsJSON, 0o600); err != nil {
		t.Fatal(err)
	}
	epmd := testnet.FreePort(t)
	cookie := fmt.Sprintf("WARDGATETEST%d", epmd)
	var names [2]string
	var mqtt, amqp, amqps, dist [2]int
	for i := range 2 {
		mqtt[i], amqp[i], amqps[i], dist[i] = testnet.FreePort(t), testnet.FreePort(t), testnet.FreePort(t), testnet.FreePort(t)
		names[i] = fmt.Sprintf("wg%c%d@localhost", 'a'+i, epmd)
	}
	c := &RabbitCluster{}
	for i := range 2 {
		dir := filepath.Join(base, fmt.Sprintf("node%d", i+1))
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, ".erlang.cookie"), []byte(cookie), 0o400); err != nil {
			t.Fatal(err)
		}
		conf := rabbitConf(amqp[i], mqtt[i], root, certFile, keyFile, defsFile) + fmt.Sprintf(`loopback_users = none
listeners.ssl.default = 127.0.0.1:%d
auth_mechanisms.1 = PLAIN
auth_mechanisms.2 = AMQPLAIN
auth_mechanisms.3 = EXTERNAL
cluster_formation.peer_discovery_backend = classic_config
cluster_formation.classic_config.nodes.1 = %s
cluster_formation.classic_config.nodes.2 = %s
cluster_partition_handling = ignore
log.file.level = info
`, amqps[i], names[0], names[1])
		confFile := filepath.Join(dir, "rabbitmq.conf")
		if err := os.WriteFile(confFile, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		plugins := filepath.Join(dir, "enabled_plugins")
		if err := os.WriteFile(plugins, []byte("[rabbitmq_mqtt,rabbitmq_auth_mechanism_ssl].\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		env := append(os.Environ(),
			"HOME="+dir,
			"RABBITMQ_NODENAME="+names[i],
			"RABBITMQ_NODE_IP_ADDRESS=127.0.0.1",
			"RABBITMQ_NODE_PORT="+strconv.Itoa(amqp[i]),
			"RABBITMQ_DIST_PORT="+strconv.Itoa(dist[i]),
			"ERL_EPMD_PORT="+strconv.Itoa(epmd),
			"ERL_EPMD_ADDRESS=127.0.0.1",
			"RABBITMQ_MNESIA_BASE="+filepath.Join(dir, "mnesia"),
			"RABBITMQ_LOG_BASE="+filepath.Join(dir, "log"),
			"RABBITMQ_CONFIG_FILE="+confFile,
			"RABBITMQ_ADVANCED_CONFIG_FILE="+filepath.Join(dir, "advanced.config"),
			"RABBITMQ_CONF_ENV_FILE="+filepath.Join(dir, "rabbitmq-env.conf"),
			"RABBITMQ_ENABLED_PLUGINS_FILE="+plugins,
			"RABBITMQ_PID_FILE="+filepath.Join(dir, "rabbit.pid"),
		)
		c.Nodes[i] = &Rabbit{Port: mqtt[i], URL: fmt.Sprintf("ssl://127.0.0.1:%d", mqtt[i]), dir: dir, bin: bin, env: env, t: t}
		c.AMQP[i] = fmt.Sprintf("amqp://central:central@127.0.0.1:%d/", amqp[i])
		c.AMQPS[i] = fmt.Sprintf("amqps://127.0.0.1:%d/", amqps[i])
	}
	// Both nodes boot together: classic peer discovery makes the second
	// one join the first (whichever wins the boot race).
	done := make(chan struct{}, 2)
	for _, n := range c.Nodes {
		go func() { n.Start(); done <- struct{}{} }()
	}
	<-done
	<-done
	t.Cleanup(func() {
		for _, n := range c.Nodes {
			n.Stop()
		}
		k := exec.Command("epmd", "-kill")
		k.Env = c.Nodes[0].env
		_ = k.Run()
		if t.Failed() {
			for _, n := range c.Nodes {
				logTails(t, n.dir)
			}
		}
	})
	return c
}

// Kill kills the node at once (SIGKILL to its process group), as a crash.
func (r *Rabbit) Kill() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd == nil {
		return
	}
	_ = syscall.Kill(-r.cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-r.done:
	case <-time.After(10 * time.Second):
	}
	r.cmd = nil
	// The start script dies first; the Erlang VM's listeners close a
	// moment later. A restart must not mistake them for the new node's.
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(r.Port), 200*time.Millisecond)
		if err != nil {
			return
		}
		c.Close()
	}
}

// Ctl runs rabbitmqctl against the node with its environment and returns
// its combined output.
func (r *Rabbit) Ctl(args ...string) (string, error) {
	cmd := exec.Command("/usr/lib/rabbitmq/bin/rabbitmqctl", append([]string{"-n", nodeName(r.env)}, args...)...)
	cmd.Env = r.env
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func nodeName(env []string) string {
	for i := len(env) - 1; i >= 0; i-- {
		if v, ok := strings.CutPrefix(env[i], "RABBITMQ_NODENAME="); ok {
			return v
		}
	}
	return ""
}

// LogLines returns up to max lines of the node's logs that contain any of
// words (for a test to report why the node refused something).
func (r *Rabbit) LogLines(max int, words ...string) []string {
	logs, _ := filepath.Glob(filepath.Join(r.dir, "log", "*.log"))
	var out []string
	for _, l := range logs {
		b, _ := os.ReadFile(l)
		for _, line := range strings.Split(string(b), "\n") {
			for _, w := range words {
				if strings.Contains(line, w) && len(out) < max {
					out = append(out, line)
					break
				}
			}
		}
	}
	return out
}
