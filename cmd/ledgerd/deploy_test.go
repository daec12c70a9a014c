package main

import (
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"gopkg.in/yaml.v3"
)

// composeFile is the part of docker-compose.yml these tests check.
type composeFile struct {
	Services map[string]composeService `yaml:"services"`
	Volumes  map[string]any            `yaml:"volumes"`
	Secrets  map[string]struct {
		File string `yaml:"file"`
	} `yaml:"secrets"`
}

type composeService struct {
	Image       string            `yaml:"image"`
	Build       any               `yaml:"build"`
	Command     []string          `yaml:"command"`
	Environment map[string]string `yaml:"environment"`
	Ports       []string          `yaml:"ports"`
	Volumes     []string          `yaml:"volumes"`
	Secrets     []string          `yaml:"secrets"`
	DependsOn   map[string]struct {
		Condition string `yaml:"condition"`
	} `yaml:"depends_on"`
	Healthcheck struct {
		Test []string `yaml:"test"`
	} `yaml:"healthcheck"`
}

func loadCompose(t *testing.T) composeFile {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot(t), "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var c composeFile
	if err := yaml.Unmarshal(data, &c); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	return c
}

// namedVolume reports whether a service mounts a declared named volume at
// path.
func namedVolume(c composeFile, s composeService, path string) bool {
	for _, v := range s.Volumes {
		parts := strings.Split(v, ":")
		if len(parts) >= 2 && parts[1] == path {
			_, declared := c.Volumes[parts[0]]
			return declared
		}
	}
	return false
}

// TestComposeFile checks, without a Docker engine, that docker-compose.yml
// has what a production-shaped deployment needs: three NATS nodes with
// JetStream data on volumes, Postgres on a volume, two or more ledgerd
// instances started after healthy dependencies, with settings ledgerd
// itself accepts, and health checks everywhere.
func TestComposeFile(t *testing.T) {
	c := loadCompose(t)
	natsNodes := []string{"nats-1", "nats-2", "nats-3"}
	for _, name := range natsNodes {
		s, ok := c.Services[name]
		if !ok {
			t.Fatalf("service %s missing", name)
		}
		if !strings.HasPrefix(s.Image, "nats:") {
			t.Errorf("%s: image %q, want nats:…", name, s.Image)
		}
		if !slices.Contains(s.Command, "/etc/nats/nats.conf") {
			t.Errorf("%s: command %v does not load /etc/nats/nats.conf", name, s.Command)
		}
		if !slices.Contains(s.Volumes, "./deploy/nats.conf:/etc/nats/nats.conf:ro") {
			t.Errorf("%s: deploy/nats.conf not mounted: %v", name, s.Volumes)
		}
		if !namedVolume(c, s, "/data") {
			t.Errorf("%s: JetStream store /data is not on a declared volume: %v", name, s.Volumes)
		}
		if s.Environment["SERVER_NAME"] != name {
			t.Errorf("%s: SERVER_NAME %q", name, s.Environment["SERVER_NAME"])
		}
		if !strings.Contains(strings.Join(s.Healthcheck.Test, " "), ":8222/healthz") {
			t.Errorf("%s: health check %v does not probe :8222/healthz", name, s.Healthcheck.Test)
		}
	}

	pg, ok := c.Services["postgres"]
	if !ok {
		t.Fatal("service postgres missing")
	}
	if !strings.HasPrefix(pg.Image, "postgres:") || !namedVolume(c, pg, "/var/lib/postgresql/data") {
		t.Errorf("postgres: image %q volumes %v: want postgres:… with its data on a declared volume", pg.Image, pg.Volumes)
	}
	if !slices.Contains(pg.Healthcheck.Test, "pg_isready") {
		t.Errorf("postgres: health check %v, want pg_isready", pg.Healthcheck.Test)
	}

	var ledgerds []string
	for name := range c.Services {
		if strings.HasPrefix(name, "ledgerd") {
			ledgerds = append(ledgerds, name)
		}
	}
	slices.Sort(ledgerds)
	if len(ledgerds) < 2 {
		t.Fatalf("ledgerd services %v: want two or more", ledgerds)
	}
	instances, hostPorts := map[string]bool{}, map[string]bool{}
	partitions := map[int]bool{}
	for _, name := range ledgerds {
		s := c.Services[name]
		if s.Build == nil {
			t.Errorf("%s: not built from the Dockerfile", name)
		}
		for _, dep := range append(slices.Clone(natsNodes), "postgres") {
			if s.DependsOn[dep].Condition != "service_healthy" {
				t.Errorf("%s: depends_on %s: condition %q, want service_healthy", name, dep, s.DependsOn[dep].Condition)
			}
		}
		if got := strings.Join(s.Healthcheck.Test, " "); got != "CMD /ledgerd healthcheck" {
			t.Errorf("%s: health check %q, want CMD /ledgerd healthcheck", name, got)
		}
		published := false
		for _, p := range s.Ports {
			host, container, _ := strings.Cut(p, ":")
			if container == "8080" {
				published = true
				if hostPorts[host] {
					t.Errorf("%s: host port %s published twice", name, host)
				}
				hostPorts[host] = true
			}
		}
		if !published {
			t.Errorf("%s: HTTP (dashboard) port 8080 not published: %v", name, s.Ports)
		}
		cfg, err := parseConfig(nil, func(k string) string { return s.Environment[k] }, io.Discard)
		if err != nil {
			t.Errorf("%s: ledgerd refuses its environment: %v", name, err)
			continue
		}
		if cfg.Partitions < 2 || cfg.Replicas != 3 || cfg.DatabaseURL == "" {
			t.Errorf("%s: partitions %d, replicas %d, database %q: want ≥2, 3 and Postgres", name, cfg.Partitions, cfg.Replicas, cfg.DatabaseURL)
		}
		if !strings.HasPrefix(cfg.HTTPAddr, "0.0.0.0:8080") {
			t.Errorf("%s: LEDGER_HTTP_ADDR %q: must listen on all interfaces, port 8080", name, cfg.HTTPAddr)
		}
		// Beyond loopback ledgerd refuses to start without tokens: the file
		// must come from a declared secret, and the example it is made from
		// must be a token file ledgerd accepts.
		secret, found := strings.CutPrefix(cfg.TokensFile, "/run/secrets/")
		if !found || !slices.Contains(s.Secrets, secret) || c.Secrets[secret].File == "" {
			t.Errorf("%s: LEDGER_TOKENS_FILE %q must be a secret the service mounts (secrets %v)", name, cfg.TokensFile, s.Secrets)
		} else {
			example := filepath.Join(repoRoot(t), c.Secrets[secret].File+".example")
			f, err := os.Open(example)
			if err != nil {
				t.Errorf("%s: %v", name, err)
			} else {
				if _, err := parseTokens(f, example); err != nil {
					t.Errorf("%s: %s is not a token file ledgerd accepts: %v", name, example, err)
				}
				f.Close()
			}
		}
		for _, node := range natsNodes {
			if !strings.Contains(cfg.NATSURL, "nats://"+node+":4222") {
				t.Errorf("%s: NATS_URL %q lacks %s", name, cfg.NATSURL, node)
			}
		}
		if !strings.Contains(cfg.DatabaseURL, "@postgres:5432/"+pg.Environment["POSTGRES_DB"]) ||
			!strings.HasPrefix(cfg.DatabaseURL, "postgres://"+pg.Environment["POSTGRES_USER"]+":"+pg.Environment["POSTGRES_PASSWORD"]+"@") {
			t.Errorf("%s: DATABASE_URL %q does not match the postgres service's user, password and database", name, cfg.DatabaseURL)
		}
		if instances[cfg.Instance] {
			t.Errorf("%s: LEDGER_INSTANCE %q used twice", name, cfg.Instance)
		}
		instances[cfg.Instance] = true
		partitions[cfg.Partitions] = true
	}
	if len(partitions) != 1 {
		t.Errorf("ledgerd instances disagree on LEDGER_PARTITIONS: %v", partitions)
	}
}

// TestNATSConfig parses deploy/nats.conf with nats-server's own parser, as
// each node would: JetStream with fsync on every write, a cluster routed to
// the three compose services, and the ports the compose file relies on.
func TestNATSConfig(t *testing.T) {
	t.Setenv("SERVER_NAME", "nats-2")
	opts, err := server.ProcessConfigFile(filepath.Join(repoRoot(t), "deploy", "nats.conf"))
	if err != nil {
		t.Fatalf("deploy/nats.conf: %v", err)
	}
	if opts.ServerName != "nats-2" || !opts.JetStream || !opts.SyncAlways || opts.StoreDir != "/data" {
		t.Errorf("server_name %q jetstream %v sync_always %v store_dir %q: want nats-2, true, true, /data",
			opts.ServerName, opts.JetStream, opts.SyncAlways, opts.StoreDir)
	}
	if opts.Port != 4222 || opts.HTTPPort != 8222 || opts.Cluster.Port != 6222 || opts.Cluster.Name == "" {
		t.Errorf("ports client %d http %d cluster %d (name %q): want 4222, 8222, 6222 and a cluster name",
			opts.Port, opts.HTTPPort, opts.Cluster.Port, opts.Cluster.Name)
	}
	var hosts []string
	for _, r := range opts.Routes {
		hosts = append(hosts, r.Host)
	}
	slices.Sort(hosts)
	if want := []string{"nats-1:6222", "nats-2:6222", "nats-3:6222"}; !slices.Equal(hosts, want) {
		t.Errorf("routes %v, want %v", hosts, want)
	}
}

// TestDockerfile checks the image recipe: a build stage and a final stage,
// a static (CGO off) build of ./cmd/ledgerd, a non-root user, and the
// health check the compose file also uses.
func TestDockerfile(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(repoRoot(t), "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	froms := regexp.MustCompile(`(?m)^FROM\s+(\S+)`).FindAllStringSubmatch(text, -1)
	if len(froms) < 2 {
		t.Fatalf("%d FROM lines: want a multi-stage build", len(froms))
	}
	if !regexp.MustCompile(`CGO_ENABLED=0[^\n]*go build[^\n]*\./cmd/ledgerd`).MatchString(text) {
		t.Error("no CGO_ENABLED=0 go build of ./cmd/ledgerd: the binary must be static")
	}
	final := text[strings.LastIndex(text, "\nFROM "):]
	user := regexp.MustCompile(`(?m)^USER\s+(\S+)`).FindStringSubmatch(final)
	if user == nil || user[1] == "root" || strings.HasPrefix(user[1], "0:") || user[1] == "0" {
		t.Errorf("final stage USER %v: want a non-root user", user)
	}
	if !strings.Contains(final, `ENTRYPOINT ["/ledgerd"]`) || !strings.Contains(final, `CMD ["/ledgerd", "healthcheck"]`) {
		t.Error("final stage: want ENTRYPOINT [\"/ledgerd\"] and HEALTHCHECK CMD [\"/ledgerd\", \"healthcheck\"]")
	}
}
