package brokertest

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/wardgate/wardgate/certs/certstest"
	"github.com/wardgate/wardgate/internal/testnet"
)

// Rabbit is a running RabbitMQ node with the MQTT plugin on a TLS
// listener that requires client certificates and logs users in by their
// certificate's common name.
type Rabbit struct {
	Port int
	URL  string
	dir  string
	bin  string
	env  []string
	t    testing.TB
	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// RabbitDefinitions returns the users and permissions of
// docs/security-team.md: each user may publish under wardgate/v1/<its
// name>/ and read its commands; "central" reads and writes everything.
// MQTT topic levels are AMQP routing-key words (/ becomes .).
func RabbitDefinitions(gateways ...string) map[string]any {
	var users, perms, topics []map[string]any
	configure := "^mqtt-subscription-.*"
	add := func(name, write, read string) {
		users = append(users, map[string]any{"name": name, "password_hash": "", "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": []string{}})
		perms = append(perms, map[string]any{"user": name, "vhost": "/", "configure": configure, "write": ".*", "read": ".*"})
		topics = append(topics, map[string]any{"user": name, "vhost": "/", "exchange": "amq.topic", "write": write, "read": read})
	}
	for _, gw := range gateways {
		add(gw, `^wardgate\.v1\.{username}\..*`, `^wardgate\.v1\.{username}\.cmd$`)
	}
	// central also declares and binds its shared ingest queue (wardgate-*).
	configure = "^(mqtt-subscription-.*|wardgate-.*)$"
	add("central", `^wardgate\.v1\..*`, `^wardgate\.v1\..*`)
	return map[string]any{
		"vhosts":            []map[string]any{{"name": "/"}},
		"users":             users,
		"permissions":       perms,
		"topic_permissions": topics,
	}
}

// StartRabbit starts a RabbitMQ node (slow: 10-30 s) for gateways.
func StartRabbit(t testing.TB, pki *certstest.MiniPKI, gateways ...string) *Rabbit {
	t.Helper()
	need(t, "rabbitmq-server")
	bin := "/usr/lib/rabbitmq/bin/rabbitmq-server" // the real script, not Debian's su wrapper
	if !fileExists(bin) {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s missing", bin)
		}
		t.Skipf("%s missing", bin)
	}
	dir := t.TempDir()
	srv := pki.Server(t)
	certFile, keyFile := srv.WriteFiles(t, dir, "server")
	root := pki.WriteRoot(t, dir)
	defs, _ := json.MarshalIndent(RabbitDefinitions(gateways...), "", "  ")
	defsFile := filepath.Join(dir, "definitions.json")
	if err := os.WriteFile(defsFile, defs, 0o600); err != nil {
		t.Fatal(err)
	}
	port, amqp, dist, epmd := testnet.FreePort(t), testnet.FreePort(t), testnet.FreePort(t), testnet.FreePort(t)
	conf := rabbitConf(amqp, port, root, certFile, keyFile, defsFile) + "log.file.level = info\n"
	confFile := filepath.Join(dir, "rabbitmq.conf")
	if err := os.WriteFile(confFile, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	plugins := filepath.Join(dir, "enabled_plugins")
	if err := os.WriteFile(plugins, []byte("[rabbitmq_mqtt].\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(),
		"HOME="+dir,
		"RABBITMQ_NODENAME=wgtest"+strconv.Itoa(port)+"@localhost",
		"RABBITMQ_NODE_IP_ADDRESS=127.0.0.1",
		"RABBITMQ_NODE_PORT="+strconv.Itoa(amqp),
		"RABBITMQ_DIST_PORT="+strconv.Itoa(dist),
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
	r := &Rabbit{Port: port, URL: fmt.Sprintf("ssl://127.0.0.1:%d", port), dir: dir, bin: bin, env: env, t: t}
	r.Start()
	t.Cleanup(func() {
		r.Stop()
		// The node's epmd was started for this test on its own port.
		k := exec.Command("epmd", "-kill")
		k.Env = env
		_ = k.Run()
		if t.Failed() {
			logTails(t, dir)
		}
	})
	return r
}

// logTails logs the last 3,000 bytes of each of a node's log files.
func logTails(t testing.TB, dir string) {
	logs, _ := filepath.Glob(filepath.Join(dir, "log", "*.log"))
	for _, l := range logs {
		b, _ := os.ReadFile(l)
		if len(b) > 3000 {
			b = b[len(b)-3000:]
		}
		t.Logf("%s (tail):\n%s", l, b)
	}
}

// Start starts (or restarts) the node and waits for the MQTT listener.
func (r *Rabbit) Start() {
	r.t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd != nil {
		return
	}
	cmd := exec.Command(r.bin)
	cmd.Env = r.env
	cmd.Dir = r.dir
	out, err := os.OpenFile(filepath.Join(r.dir, "stdout.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		r.t.Fatal(err)
	}
	defer out.Close()
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		r.t.Fatalf("start rabbitmq: %v", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	r.cmd, r.done = cmd, done
	if err := waitListening("127.0.0.1:"+strconv.Itoa(r.Port), done, 3*time.Minute); err != nil {
		b, _ := os.ReadFile(filepath.Join(r.dir, "stdout.log"))
		r.t.Fatalf("rabbitmq did not start: %v\n%s", err, b)
	}
}

// Stop stops the node (SIGTERM runs rabbitmqctl stop), then kills what is
// left of its process group.
func (r *Rabbit) Stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd == nil {
		return
	}
	pgid := r.cmd.Process.Pid
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.done:
	case <-time.After(30 * time.Second):
	}
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	<-r.done
	r.cmd = nil
}

// rabbitConf is the part of rabbitmq.conf every test node shares: AMQP on
// loopback, MQTT over TLS only with client-certificate login (the
// certificate's CN is the user), and the definitions to load.
func rabbitConf(amqp, mqtt int, root, certFile, keyFile, defsFile string) string {
	return fmt.Sprintf(`listeners.tcp.default = 127.0.0.1:%d
mqtt.listeners.tcp = none
mqtt.listeners.ssl.default = 127.0.0.1:%d
mqtt.allow_anonymous = false
mqtt.ssl_cert_login = true
mqtt.vhost = /
mqtt.exchange = amq.topic
ssl_cert_login_from = common_name
ssl_options.cacertfile = %s
ssl_options.certfile = %s
ssl_options.keyfile = %s
ssl_options.verify = verify_peer
ssl_options.fail_if_no_peer_cert = true
ssl_options.depth = 3
load_definitions = %s
`, amqp, mqtt, root, certFile, keyFile, defsFile)
}
