package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/excalibur/consul-elect/consul"
	"github.com/excalibur/consul-elect/internal/registry"
	"github.com/excalibur/consul-elect/messages"
)

const switchoverSynopsis = "consul-elect switchover --resource NAME [flags] [--to ID] [--yes] [--timeout D]"

// switchoverHelp follows the synopsis in switchover --help.
const switchoverHelp = `
Hands leadership over on purpose, safely: the leader stops its command
(SIGTERM, then SIGKILL after its --kill-grace), then releases the lock, and
the target takes it while the other candidates hold back. The target is --to,
else the live, healthy candidate of highest priority other than the leader.
switchover waits until the target leads and prints who leads then.

Nothing is changed, and switchover exits 1, when nobody leads or the target is
not a live, healthy candidate for the resource. It exits 1 too if the target
does not lead within --timeout.`

// defaultSwitchoverTimeout is --timeout unless set: the leader's drain (its
// --kill-grace, 5s by default, and the kill itself, drainSlack) and the
// target's acquisition, with room for a kill grace of up to 20s.
const defaultSwitchoverTimeout = 30 * time.Second

func switchoverCommand(env *cli, args []string) error {
	var f commonFlags
	var to string
	var yes bool
	var timeout time.Duration
	fs := newFlagSet("switchover")
	f.register(fs)
	fs.StringVar(&to, "to", "", "`ID` of the candidate to hand over to, a live and healthy one (default: the healthy candidate of highest priority other than the leader)")
	fs.BoolVar(&yes, "yes", false, "do not ask for confirmation")
	fs.DurationVar(&timeout, "timeout", defaultSwitchoverTimeout, "how long to wait for the target to lead, the leader's drain (its --kill-grace) included; exit 1 after it")
	if err := parseFlags(env, fs, switchoverSynopsis+"\n"+switchoverHelp, args); err != nil {
		return err
	}
	if err := noArgs(fs.Args()); err != nil {
		return err
	}
	var more []error
	if timeout <= 0 {
		more = append(more, fmt.Errorf("--timeout is %s; it must be positive", timeout))
	}
	if err := f.check(flagErrors(f.options().Validate()), more...); err != nil {
		return err
	}
	client, err := f.client()
	if err != nil {
		return err
	}
	defer client.Close()

	// The plan, refused before the question when it cannot be carried out.
	readCtx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	key := f.key()
	entry, exists, _, err := readKey(readCtx, client, key, 0, 0)
	if err != nil {
		return fmt.Errorf("cannot read %s from Consul at %s: %w", key, f.consulAddress(), err)
	}
	leader, err := stateOf(f.resource, entry, exists)
	if err != nil {
		return err
	}
	if leader.Session == "" {
		return refused(key, messages.ErrNoLeader)
	}
	registered, err := readCandidates(readCtx, client, f.prefix)
	if err != nil {
		return fmt.Errorf("cannot read the candidates of %s from Consul at %s: %w", key, f.consulAddress(), err)
	}
	candidates := registry.Live(registered, f.resource)
	target, err := registry.Target(candidates, leader.LeaderID, to)
	if err != nil {
		return refused(key, err)
	}
	c := candidates[slices.IndexFunc(candidates, func(c messages.Candidate) bool { return c.ID == target })]
	fmt.Fprintf(env.stdout, "%s is led by %s (node %s, fencing token %d).\nSwitching over: %s stops its command, then releases the lock, and %s (priority %d, node %s) takes over.\n",
		key, leader.LeaderID, leader.Node, leader.FencingToken, leader.LeaderID, target, c.Priority, c.Node)
	if err := confirmed(env, yes); err != nil {
		return err
	}

	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	// The target confirmed, not whoever ranks first by now.
	_, term, err := registry.RequestHandover(ctx, client, f.prefix, f.resource, target)
	if err != nil {
		if errors.Is(err, messages.ErrNoLeader) || errors.Is(err, messages.ErrNoCandidate) {
			return refused(key, err)
		}
		return fmt.Errorf("cannot ask %s for a switchover of %s: %w", leader.LeaderID, key, err)
	}
	now, err := awaitNextTerm(ctx, client, f.resource, key, term.FencingToken)
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("%s did not lead %s within %s (--timeout); run status to see who leads now", target, key, timeout)
	case err != nil:
		return fmt.Errorf("switchover of %s asked; cannot tell who leads now: %w", key, err)
	case now.LeaderID != target:
		return fmt.Errorf("switchover of %s asked, but %s took over instead of %s", key, now.LeaderID, target)
	}
	fmt.Fprintf(env.stdout, "%s now leads %s (node %s, session %s, fencing token %d).\n", now.LeaderID, key, now.Node, now.Session, now.FencingToken)
	return nil
}

// refused is a switchover that cannot be carried out, of which nothing was
// changed: err wraps messages.ErrNoLeader or messages.ErrNoCandidate.
func refused(key string, err error) error {
	return fmt.Errorf("cannot switch %s over: %w; nothing was changed", key, err)
}

// awaitNextTerm watches key with blocking queries until a term later than
// the one of fencing token after holds it, and returns that term.
func awaitNextTerm(ctx context.Context, client *consul.Client, resource, key string, after uint64) (leaderState, error) {
	var index uint64
	for retries := 0; ; {
		entry, exists, next, err := readKey(ctx, client, key, index, watchWait)
		if err != nil {
			if ctx.Err() != nil || !consul.Retryable(err) {
				return leaderState{}, err
			}
			wait := retryWait(retries)
			retries++
			select {
			case <-ctx.Done():
				return leaderState{}, ctx.Err()
			case <-time.After(wait):
			}
			continue
		}
		retries, index = 0, next
		state, err := stateOf(resource, entry, exists)
		if err != nil {
			return leaderState{}, err
		}
		if state.Session != "" && state.FencingToken > after {
			return state, nil
		}
	}
}
