package consul

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"
)

// Config says how to reach Consul. Empty fields fall back to the CONSUL_*
// environment variables exactly as api.DefaultConfig does (CONSUL_HTTP_ADDR,
// CONSUL_HTTP_TOKEN, CONSUL_HTTP_TOKEN_FILE, CONSUL_HTTP_SSL, CONSUL_CACERT,
// CONSUL_CAPATH, CONSUL_CLIENT_CERT, CONSUL_CLIENT_KEY,
// CONSUL_TLS_SERVER_NAME, CONSUL_HTTP_SSL_VERIFY), then to
// http://localhost:8500.
type Config struct {
	Address    string // host:port, http://host:port, https://host:port or unix:///path
	Datacenter string
	Token      string
	TokenFile  string
	TLS        TLSConfig
	// MaxConnections bounds the requests in flight from this client to the
	// agent at once, blocking queries included, and the connections it
	// keeps open (0: no bound). Blocking queries take at most
	// MaxConnections−2 of them, so that writes always have a slot, and
	// renewals always have one (see budget): a user that keeps k blocking
	// queries waiting needs k+2 or more, or the later ones wait their turn.
	MaxConnections int
	// WrapTransport, when set, wraps the HTTP transport (to count or
	// instrument requests).
	WrapTransport func(http.RoundTripper) http.RoundTripper
}

// TLSConfig configures HTTPS to the agent.
type TLSConfig struct {
	CAFile             string
	CAPath             string
	CertFile           string
	KeyFile            string
	ServerName         string
	InsecureSkipVerify bool
}

// Client is a Consul client for the election engine. It is safe for
// concurrent use.
type Client struct {
	api       *api.Client
	transport *http.Transport // under WrapTransport and the budget
	batch     *batcher
}

// ValidateAddress checks an address in any form CONSUL_HTTP_ADDR accepts.
func ValidateAddress(addr string) error {
	if addr == "" {
		return nil
	}
	if strings.Contains(addr, "://") {
		u, err := url.Parse(addr)
		if err != nil {
			return fmt.Errorf("%q is not a valid address: %v", addr, err)
		}
		switch u.Scheme {
		case "http", "https":
			if u.Host == "" {
				return fmt.Errorf("%q has no host", addr)
			}
		case "unix":
			if u.Path == "" {
				return fmt.Errorf("%q has no socket path", addr)
			}
		default:
			return fmt.Errorf("%q has scheme %q; use http, https or unix", addr, u.Scheme)
		}
		return nil
	}
	if strings.ContainsAny(addr, " /") {
		return fmt.Errorf("%q is not host:port", addr)
	}
	return nil
}

// NewClient builds a client. It sends nothing: an unreachable Consul shows at
// the first request.
func NewClient(cfg Config) (*Client, error) {
	if cfg.MaxConnections < 0 {
		return nil, fmt.Errorf("MaxConnections is %d; it must be 0 (no bound) or more", cfg.MaxConnections)
	}
	conf := api.DefaultConfig()
	if cfg.Address != "" {
		if err := ValidateAddress(cfg.Address); err != nil {
			return nil, fmt.Errorf("ConsulAddress: %w", err)
		}
		conf.Address = cfg.Address
		if !strings.Contains(cfg.Address, "://") && conf.Scheme == "https" {
			// A bare host:port keeps CONSUL_HTTP_SSL's scheme, as the
			// Consul CLI does.
			conf.Address = "https://" + cfg.Address
		}
	}
	if cfg.Datacenter != "" {
		conf.Datacenter = cfg.Datacenter
	}
	if cfg.Token != "" || cfg.TokenFile != "" {
		conf.Token, conf.TokenFile = cfg.Token, cfg.TokenFile
	}
	if conf.TokenFile != "" {
		if _, err := os.ReadFile(conf.TokenFile); err != nil {
			return nil, fmt.Errorf("TokenFile: %w", err)
		}
	}
	tls := cfg.TLS
	for _, f := range []struct {
		name, value string
		into        *string
	}{
		{"TLS.CAFile", tls.CAFile, &conf.TLSConfig.CAFile},
		{"TLS.CAPath", tls.CAPath, &conf.TLSConfig.CAPath},
		{"TLS.CertFile", tls.CertFile, &conf.TLSConfig.CertFile},
		{"TLS.KeyFile", tls.KeyFile, &conf.TLSConfig.KeyFile},
	} {
		if f.value != "" {
			*f.into = f.value
		}
		if *f.into != "" {
			if _, err := os.Stat(*f.into); err != nil {
				return nil, fmt.Errorf("%s: %w", f.name, err)
			}
		}
	}
	if tls.ServerName != "" {
		conf.TLSConfig.Address = tls.ServerName
	}
	if tls.InsecureSkipVerify {
		conf.TLSConfig.InsecureSkipVerify = true
	}
	transport := conf.Transport
	if socket, ok := strings.CutPrefix(conf.Address, "unix://"); ok {
		// api.NewClient would replace any HttpClient with one of its own
		// (without keep-alive) for a unix:// address; this one dials the
		// socket itself, so that WrapTransport and MaxConnections apply
		// there too. The host is a placeholder: every request goes to the
		// socket.
		transport.Proxy = nil
		transport.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		}
		conf.Address, conf.Scheme = "localhost", "http"
	}
	if strings.HasPrefix(conf.Address, "https://") {
		conf.Scheme = "https"
	}
	// The agent gzips every answer the client accepts gzipped. Over loopback
	// that costs it far more CPU than it saves: a watch reads a whole shard
	// after every change.
	transport.DisableCompression = onThisHost(conf.Address)
	if n := cfg.MaxConnections; n > 0 {
		// The budget bounds the requests; these bound the connections
		// under them, idle ones included (the agent counts those too), and
		// keep them open for reuse.
		transport.MaxConnsPerHost, transport.MaxIdleConnsPerHost = n, n
	}
	httpClient, err := api.NewHttpClient(transport, conf.TLSConfig)
	if err != nil {
		return nil, fmt.Errorf("consul TLS settings: %w", err)
	}
	if cfg.WrapTransport != nil {
		httpClient.Transport = cfg.WrapTransport(httpClient.Transport)
	}
	if n := cfg.MaxConnections; n > 0 {
		httpClient.Transport = &budgeted{budget: newBudget(n), next: httpClient.Transport}
	}
	httpClient.Transport = &streamed{next: httpClient.Transport}
	conf.HttpClient = httpClient
	client, err := api.NewClient(conf)
	if err != nil {
		return nil, fmt.Errorf("consul client: %w", err)
	}
	return &Client{api: client, transport: transport, batch: newBatcher(client)}, nil
}

// onThisHost reports whether address (host:port, a URL, or a unix socket
// already set to "localhost") names this host by a loopback address.
func onThisHost(address string) bool {
	if u, err := url.Parse(address); err == nil && u.Host != "" {
		address = u.Host
	}
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		host = address
	}
	ip := net.ParseIP(host)
	return host == "localhost" || ip != nil && ip.IsLoopback()
}

// Close closes idle connections to the agent.
func (c *Client) Close() {
	c.transport.CloseIdleConnections()
}

func (c *Client) query(ctx context.Context) *api.QueryOptions {
	return (&api.QueryOptions{}).WithContext(ctx)
}

func (c *Client) write(ctx context.Context) *api.WriteOptions {
	return (&api.WriteOptions{}).WithContext(ctx)
}

// blockingQuery returns options for a blocking query at index, waiting at most wait.
func (c *Client) blockingQuery(ctx context.Context, index uint64, wait time.Duration) *api.QueryOptions {
	q := &api.QueryOptions{WaitIndex: index, WaitTime: wait}
	return q.WithContext(ctx)
}

// AgentInfo is what the local agent says of itself.
type AgentInfo struct {
	Node       string
	Datacenter string
	Server     bool
}

// Agent asks the agent the client talks to for its node and datacenter. It is
// also the cheapest way to learn that Consul is reachable and the token valid.
// The agent's version tells the client how many operations a transaction may
// hold (see txnOpsFor).
func (c *Client) Agent(ctx context.Context) (AgentInfo, error) {
	self, err := readAgentSelf(ctx, c.api)
	if err != nil {
		return AgentInfo{}, err
	}
	c.batch.learnVersion(self.Config.Version)
	return AgentInfo{Node: self.Config.NodeName, Datacenter: self.Config.Datacenter, Server: self.Config.Server}, nil
}

// agentSelf is what this package reads of GET /v1/agent/self.
type agentSelf struct {
	Config struct {
		NodeName   string
		Datacenter string
		Server     bool
		Version    string // "1.14.11", without -dev or +ent (those are in other fields)
	}
}

func readAgentSelf(ctx context.Context, client *api.Client) (agentSelf, error) {
	var self agentSelf
	if _, err := client.Raw().Query("/v1/agent/self", &self, (&api.QueryOptions{}).WithContext(ctx)); err != nil {
		return agentSelf{}, wrap("read agent", err)
	}
	return self, nil
}

// ServerNode returns the name of a Consul server node in datacenter dc: a
// session in a remote datacenter must name a node registered there.
func (c *Client) ServerNode(ctx context.Context, dc string) (string, error) {
	q := c.query(ctx)
	q.Datacenter = dc
	servers, _, err := c.api.Catalog().Service("consul", "", q)
	if err != nil {
		return "", wrap("find a server node in datacenter "+dc, err)
	}
	if len(servers) == 0 {
		return "", &Error{Op: "find a server node in datacenter " + dc, Err: fmt.Errorf("no Consul server registered")}
	}
	return servers[0].Node, nil
}
