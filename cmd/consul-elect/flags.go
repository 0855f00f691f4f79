package main

import (
	"cmp"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"regexp"
	"slices"
	"strings"

	"github.com/excalibur/consul-elect/actors"
	"github.com/excalibur/consul-elect/consul"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// defaultAddress is where Consul is looked for when neither --address nor
// CONSUL_HTTP_ADDR says.
const defaultAddress = "http://localhost:8500"

// commonFlags are the flags of run, status, watch and release.
type commonFlags struct {
	address    string
	token      string
	tokenFile  string
	datacenter string
	prefix     string
	resource   string
	logFlags
}

// logFlags are the logging flags, which demo has too.
type logFlags struct {
	logLevel  string
	logFormat string
}

func (c *commonFlags) register(fs *flag.FlagSet) {
	c.registerAllButResource(fs)
	fs.StringVar(&c.resource, "resource", "", "name of the resource to elect a leader for (required)")
}

// registerAllButResource registers the common flags but --resource, for
// list, which shows every resource.
func (c *commonFlags) registerAllButResource(fs *flag.FlagSet) {
	fs.StringVar(&c.address, "address", "", "Consul's HTTP address: host:port, http://host:port, https://host:port or unix:///path (default $CONSUL_HTTP_ADDR, else "+defaultAddress+")")
	fs.StringVar(&c.token, "token", "", "ACL token (default $CONSUL_HTTP_TOKEN); prefer --token-file: a flag shows in ps")
	fs.StringVar(&c.tokenFile, "token-file", "", "file holding the ACL token (default $CONSUL_HTTP_TOKEN_FILE)")
	fs.StringVar(&c.datacenter, "datacenter", "", "datacenter to elect in (default the agent's own)")
	fs.StringVar(&c.prefix, "prefix", actors.DefaultKeyPrefix, "key prefix: the lock key is <prefix>/<resource>")
	c.logFlags.register(fs, "info")
}

func (l *logFlags) register(fs *flag.FlagSet, defaultLevel string) {
	fs.StringVar(&l.logLevel, "log-level", defaultLevel, "debug, info, warn or error; logs go to stderr")
	fs.StringVar(&l.logFormat, "log-format", "console", "json or console")
}

// options are the engine options these flags describe, DefaultOptions for
// the rest: Options.Validate is the one check of what they share with the
// Go API.
func (c *commonFlags) options() actors.Options {
	opts := actors.DefaultOptions()
	opts.ConsulAddress = c.address
	opts.Token = c.token
	opts.TokenFile = c.tokenFile
	opts.Datacenter = c.datacenter
	opts.KeyPrefix = c.prefix
	return opts
}

// validate checks the flags of status, watch, release and switchover
// before anything talks to Consul; each problem names its flag.
func (c *commonFlags) validate() error { return c.check(flagErrors(c.options().Validate())) }

// validateAllButResource is validate for list, which has no --resource.
func (c *commonFlags) validateAllButResource() error {
	return joinUsage(slices.Concat(flagErrors(c.options().Validate()), c.commandLineErrors()))
}

// check joins optionErrs, Options.Validate's errors for the options built
// from these flags (see flagErrors), with what only the command line has:
// --resource, a readable --token-file, the log flags, and more (problems of
// a command's own flags). Each problem names its flag.
func (c *commonFlags) check(optionErrs []error, more ...error) error {
	var errs []error
	switch {
	case c.resource == "":
		errs = append(errs, errors.New("--resource is required"))
	default:
		if err := actors.ValidateResource(c.resource); err != nil {
			errs = append(errs, fmt.Errorf("--resource: %v", err))
		}
	}
	return joinUsage(slices.Concat(errs, optionErrs, c.commandLineErrors(), more))
}

// commandLineErrors are the problems of the common flags but --resource that
// Options.Validate does not see: an unreadable --token-file, the log flags.
func (c *commonFlags) commandLineErrors() []error {
	var errs []error
	if c.tokenFile != "" {
		if _, err := os.ReadFile(c.tokenFile); err != nil {
			errs = append(errs, fmt.Errorf("--token-file: %v", err))
		}
	}
	if err := c.logFlags.validate(); err != nil {
		errs = append(errs, err)
	}
	return errs
}

// optionFlags names the flag that sets each option, for Options.Validate's
// errors. optionNames matches whole words, longest first, so that
// FastFailoverTTL is never read as FastFailover nor TokenFile as Token.
var (
	optionFlags = map[string]string{
		"SessionTTL":      "--ttl",
		"LockDelay":       "--lock-delay",
		"SelfFenceMargin": "--kill-grace",
		"FastFailoverTTL": "--fast-failover-ttl",
		"FastFailover":    "--fast-failover",
		"HealthCheckID":   "--health-check",
		"CandidateID":     "--id",
		"KeyPrefix":       "--prefix",
		"Datacenter":      "--datacenter",
		"ConsulAddress":   "--address",
		"TokenFile":       "--token-file",
		"Token":           "--token",
		"Service.Name":    "--service",
		"Service.Port":    "--service-port",
		"Service":         "--service",
		// Validate's hint for Go callers; the flags' defaults are theirs.
		"DefaultOptions sets": "default",
	}
	optionNames = regexp.MustCompile(`\b(` + strings.Join(quoted(byLengthDown(optionFlags)), "|") + `)\b`)
)

// quoted is names, each quoted for a regular expression.
func quoted(names []string) []string {
	for i, name := range names {
		names[i] = regexp.QuoteMeta(name)
	}
	return names
}

func byLengthDown(m map[string]string) []string {
	names := slices.Collect(maps.Keys(m))
	slices.SortFunc(names, func(a, b string) int { return cmp.Or(len(b)-len(a), strings.Compare(a, b)) })
	return names
}

// flagErrors is each of Options.Validate's errors with the options named by
// their flags.
func flagErrors(err error) []error {
	if err == nil {
		return nil
	}
	errs := []error{err}
	if joined, ok := err.(interface{ Unwrap() []error }); ok {
		errs = joined.Unwrap()
	}
	out := make([]error, len(errs))
	for i, err := range errs {
		out[i] = errors.New(optionNames.ReplaceAllStringFunc(err.Error(), func(name string) string { return optionFlags[name] }))
	}
	return out
}

func (l *logFlags) validate() error {
	var errs []error
	if _, err := zapcore.ParseLevel(l.logLevel); err != nil || l.logLevel == "" {
		errs = append(errs, fmt.Errorf("--log-level %q: use debug, info, warn or error", l.logLevel))
	}
	if l.logFormat != "json" && l.logFormat != "console" {
		errs = append(errs, fmt.Errorf("--log-format %q: use json or console", l.logFormat))
	}
	return joinUsage(errs)
}

// joinUsage turns flag problems into one usage error, or nil.
func joinUsage(errs []error) error {
	if len(errs) == 0 {
		return nil
	}
	msgs := make([]string, len(errs))
	for i, err := range errs {
		msgs[i] = err.Error()
	}
	return &usageError{msg: strings.Join(msgs, "; ")}
}

// key is the lock key of the resource.
func (c *commonFlags) key() string { return c.prefix + "/" + c.resource }

// consulAddress is the address in effect, for messages.
func (c *commonFlags) consulAddress() string {
	if c.address != "" {
		return c.address
	}
	if env := os.Getenv("CONSUL_HTTP_ADDR"); env != "" {
		return env
	}
	return defaultAddress
}

// newLogger returns a zap logger writing to w at the flags' level and format.
func (l *logFlags) newLogger(w io.Writer) *zap.Logger {
	level, _ := zapcore.ParseLevel(l.logLevel) // validated
	config := zap.NewProductionEncoderConfig()
	config.EncodeTime = zapcore.ISO8601TimeEncoder
	var encoder zapcore.Encoder
	if l.logFormat == "json" {
		encoder = zapcore.NewJSONEncoder(config)
	} else {
		config.EncodeLevel = zapcore.CapitalLevelEncoder
		encoder = zapcore.NewConsoleEncoder(config)
	}
	return zap.New(zapcore.NewCore(encoder, zapcore.AddSync(w), level))
}

// newFlagSet returns the flag set of a subcommand. Its errors are returned,
// not printed: parseFlags turns them into usage errors.
func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet("consul-elect "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

// parseFlags parses args. --help prints the usage to stdout and ends the
// command with exit code 0.
func parseFlags(env *cli, fs *flag.FlagSet, synopsis string, args []string) error {
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprintf(env.stdout, "Usage: %s\n\nFlags:\n", synopsis)
		printFlags(env.stdout, fs)
		return &exitCodeError{code: exitOK}
	}
	if err != nil {
		// The flag package names flags with one dash; users type two.
		msg := strings.NewReplacer("flag -", "flag --", "defined: -", "defined: --").Replace(err.Error())
		return &usageError{msg: msg}
	}
	return nil
}

// printFlags lists flags with the double dash this tool documents.
func printFlags(w io.Writer, fs *flag.FlagSet) {
	fs.VisitAll(func(f *flag.Flag) {
		kind, usage := flag.UnquoteUsage(f)
		line := "  --" + f.Name
		if kind != "" {
			line += " " + kind
		}
		if f.DefValue != "" && f.DefValue != "false" && !strings.Contains(usage, "(default") {
			usage += fmt.Sprintf(" (default %s)", f.DefValue)
		}
		fmt.Fprintf(w, "%s\n        %s\n", line, usage)
	})
}

// client builds the Consul client these flags describe; bad settings (a
// missing CA file, say) are usage errors.
func (f *commonFlags) client() (*consul.Client, error) {
	client, err := consul.NewClient(f.options().ConsulConfig())
	if err != nil {
		return nil, usagef("Consul client settings (CONSUL_* variables): %v", err)
	}
	return client, nil
}

// parse parses the arguments of a command that takes flags only (status,
// watch, release) and checks the common flags.
func (f *commonFlags) parse(env *cli, fs *flag.FlagSet, synopsis string, args []string) error {
	if err := parseFlags(env, fs, synopsis, args); err != nil {
		return err
	}
	if err := noArgs(fs.Args()); err != nil {
		return err
	}
	return f.validate()
}
