package main

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/excalibur/consul-elect/actors"
	"github.com/excalibur/consul-elect/consul"
	"github.com/excalibur/consul-elect/internal/registry"
)

const listSynopsis = "consul-elect list [flags] [--json]"

// listHelp follows the synopsis in list --help.
const listHelp = `
Shows every resource under --prefix: its leader (node, since, fencing token,
metadata) and its live candidates, highest priority first. A resource nobody
leads shows no leader. It reads Consul twice, whatever the number of
resources: the lock keys, then the candidate registry.`

func listCommand(env *cli, args []string) error {
	var f commonFlags
	var asJSON bool
	fs := newFlagSet("list")
	f.registerAllButResource(fs)
	fs.BoolVar(&asJSON, "json", false, "print one JSON array, an object per resource with the keys of status --json (candidates included)")
	if err := parseFlags(env, fs, listSynopsis+"\n"+listHelp, args); err != nil {
		return err
	}
	if err := noArgs(fs.Args()); err != nil {
		return err
	}
	if err := f.validateAllButResource(); err != nil {
		return err
	}
	client, err := f.client()
	if err != nil {
		return err
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	keys, _, err := client.ListPrefix(ctx, f.prefix+"/", 0, 0)
	if err != nil {
		return fmt.Errorf("cannot read %s/ from Consul at %s: %w", f.prefix, f.consulAddress(), err)
	}
	registered, err := readCandidates(ctx, client, f.prefix)
	if err != nil {
		return fmt.Errorf("cannot read the candidates of %s from Consul at %s: %w", f.prefix, f.consulAddress(), err)
	}
	states, err := resourcesOf(f.prefix, keys, registered)
	if err != nil {
		return err
	}
	if asJSON {
		return json.NewEncoder(env.stdout).Encode(states)
	}
	return printList(env, f.prefix, states)
}

// resourcesOf is every resource of prefix, sorted by name: those with a
// consul-elect lock key among keys (the entries under <prefix>/), held or
// not, and those that live candidates campaign for. Keys under the prefix
// that are not lock keys (deeper paths, other applications' flags) are left
// out.
func resourcesOf(prefix string, keys, registered []consul.Entry) ([]resourceState, error) {
	leaders := map[string]leaderState{}
	for _, e := range keys {
		resource := strings.TrimPrefix(e.Key, prefix+"/")
		if actors.ValidateResource(resource) != nil || e.Flags != consul.KeyFlags {
			continue
		}
		state, err := stateOf(resource, e, true)
		if err != nil {
			return nil, err
		}
		leaders[resource] = state
	}
	for _, c := range registry.Live(registered, "") {
		for _, resource := range c.Resources {
			if _, ok := leaders[resource]; !ok {
				leaders[resource] = leaderState{Resource: resource, Metadata: map[string]string{}}
			}
		}
	}
	states := []resourceState{} // [] when there is none
	for _, resource := range slices.Sorted(maps.Keys(leaders)) {
		states = append(states, withCandidates(leaders[resource], registered))
	}
	return states, nil
}

// printList prints one row per resource.
func printList(env *cli, prefix string, states []resourceState) error {
	if len(states) == 0 {
		_, err := fmt.Fprintf(env.stdout, "no resources under %s/\n", prefix)
		return err
	}
	table := tabwriter.NewWriter(env.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(table, "RESOURCE\tLEADER\tNODE\tSINCE\tFENCING TOKEN\tMETADATA\tCANDIDATES")
	for _, s := range states {
		leader, node, since, token, metadata := "-", "-", "-", "-", "-"
		if s.Session != "" {
			leader, node, token = s.LeaderID, s.Node, fmt.Sprint(s.FencingToken)
			if t, err := time.Parse(time.RFC3339Nano, s.Since); err == nil {
				since = t.Format(time.RFC3339)
			}
		}
		if len(s.Metadata) > 0 {
			pairs := make([]string, 0, len(s.Metadata))
			for _, k := range slices.Sorted(maps.Keys(s.Metadata)) {
				pairs = append(pairs, k+"="+quoteIfNeeded(s.Metadata[k]))
			}
			metadata = strings.Join(pairs, " ")
		}
		fmt.Fprintf(table, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.Resource, leader, node, since, token, metadata, candidateList(s.Candidates))
	}
	return table.Flush()
}

// candidateList is candidates on one line, highest priority first:
// "c(10) a(5) b(0, unhealthy)".
func candidateList(candidates []candidateState) string {
	if len(candidates) == 0 {
		return "-"
	}
	names := make([]string, len(candidates))
	for i, c := range candidates {
		if c.Healthy {
			names[i] = fmt.Sprintf("%s(%d)", c.ID, c.Priority)
		} else {
			names[i] = fmt.Sprintf("%s(%d, unhealthy)", c.ID, c.Priority)
		}
	}
	return strings.Join(names, " ")
}
