package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/excalibur/consul-elect/consul"
)

const releaseSynopsis = "consul-elect release --resource NAME [flags] [--destroy-session] [--yes]"

// releaseHelp follows the synopsis in release --help.
const releaseHelp = `
Releases the lock on behalf of its holder, for a holder that is stuck. It is
not a handover: the term ends in Consul at once, but the holder hears of it
only with its next blocking query, and until it has stopped its command, that
command may still run while another candidate's starts. To move leadership
safely (the leader stops its command first, then releases, and the target
takes over), use consul-elect switchover.`

// releaseTimeout bounds the whole operation once confirmed.
const releaseTimeout = 30 * time.Second

func releaseCommand(env *cli, args []string) error {
	var f commonFlags
	var destroy, yes bool
	fs := newFlagSet("release")
	f.register(fs)
	fs.BoolVar(&destroy, "destroy-session", false, "destroy the holder's session instead: it loses every key it holds, and they stay locked for its lock-delay")
	fs.BoolVar(&yes, "yes", false, "do not ask for confirmation")
	if err := f.parse(env, fs, releaseSynopsis+"\n"+releaseHelp, args); err != nil {
		return err
	}
	client, err := f.client()
	if err != nil {
		return err
	}
	defer client.Close()

	readCtx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	key := f.key()
	entry, exists, _, err := readKey(readCtx, client, key, 0, 0)
	if err != nil {
		return fmt.Errorf("cannot read %s from Consul at %s: %w", key, f.consulAddress(), err)
	}
	if !exists || entry.Session == "" {
		fmt.Fprintf(env.stdout, "%s: nobody holds it; nothing to release\n", key)
		return nil
	}
	if !destroy && entry.Flags != consul.KeyFlags {
		return foreignKey(entry)
	}
	holder := "session " + entry.Session
	if state, err := stateOf(f.resource, entry, exists); err == nil {
		holder = fmt.Sprintf("%s (node %s, session %s)", state.LeaderID, state.Node, state.Session)
	}

	var held []string
	if destroy {
		if held, err = keysHeldBy(readCtx, client, entry.Session); err != nil {
			return fmt.Errorf("cannot list the keys session %s holds: %w", entry.Session, err)
		}
		fmt.Fprintf(env.stdout, "%s is held by %s.\nDestroying the session releases every key it holds (of those this token can read), and Consul keeps them locked for the session's lock-delay:\n", key, holder)
		for _, k := range held {
			fmt.Fprintf(env.stdout, "  %s\n", k)
		}
	} else {
		fmt.Fprintf(env.stdout, "%s is held by %s.\nReleasing it ends that leadership at once; the candidates then campaign again. The holder hears of it only with its next blocking query: its command may still run while another candidate's starts (consul-elect switchover hands over safely).\n", key, holder)
	}
	if err := confirmed(env, yes); err != nil {
		return err
	}

	ctx, cancel := context.WithTimeout(context.Background(), releaseTimeout)
	defer cancel()
	if destroy {
		if err := client.DestroySession(ctx, entry.Session); err != nil {
			return fmt.Errorf("cannot destroy session %s: %w", entry.Session, err)
		}
		fmt.Fprintf(env.stdout, "Destroyed session %s; released %d key(s): %s\n", entry.Session, len(held), strings.Join(held, ", "))
		return nil
	}
	// Release unlocks the key only while entry.Session holds it, but does
	// not say whether it did: read it again first, so that a holder that
	// changed while the operator was asked is reported, not released.
	now, exists, _, err := readKey(ctx, client, key, 0, 0)
	if err != nil {
		return fmt.Errorf("cannot release %s: %w", key, err)
	}
	if !exists || now.Session != entry.Session {
		return fmt.Errorf("%s was no longer held by session %s; nothing was changed (run status to see who leads now)", key, entry.Session)
	}
	if now.Flags != consul.KeyFlags {
		return foreignKey(now)
	}
	// The value is written back, marked released (no lock-delay applies),
	// with consul-elect's flags.
	if err := client.Release(ctx, key, now.Session, consul.ReleasedValue(now.Value)); err != nil {
		return fmt.Errorf("cannot release %s: %w", key, err)
	}
	fmt.Fprintf(env.stdout, "Released %s, held by %s.\n", key, holder)
	return nil
}

// foreignKey refuses to release a key that is not consul-elect's: releasing
// writes consul-elect's flags, which would change the other application's.
func foreignKey(e consul.Entry) error {
	return fmt.Errorf("%s is held by session %s but is not a consul-elect key (flags %#x): something else uses this path; nothing was changed (--destroy-session ends the holder's session instead)",
		e.Key, e.Session, e.Flags)
}

// keysHeldBy lists, sorted, every key held by session among those the token
// may read. Consul keeps no index from sessions to keys, so it reads the
// whole KV store: an operator's question, not one for a hot path.
func keysHeldBy(ctx context.Context, client *consul.Client, session string) ([]string, error) {
	entries, _, err := client.ListPrefix(ctx, "", 0, 0)
	if err != nil {
		return nil, err
	}
	var keys []string
	for _, e := range entries {
		if e.Session == session {
			keys = append(keys, e.Key)
		}
	}
	slices.Sort(keys)
	return keys, nil
}

// confirmed asks the operator, on stdout, to confirm what was just described,
// unless yes (--yes), and reads the answer from stdin. Anything but y or yes
// (an empty stdin included) is an error that ends the command with nothing
// changed.
func confirmed(env *cli, yes bool) error {
	if yes {
		return nil
	}
	fmt.Fprint(env.stdout, "Proceed? [y/N] ")
	answer, _ := bufio.NewReader(env.stdin).ReadString('\n')
	fmt.Fprintln(env.stdout) // the answer may not have been echoed (not a terminal)
	switch strings.ToLower(strings.TrimSpace(answer)) {
	case "y", "yes":
		return nil
	}
	return errors.New("not confirmed; nothing was changed (--yes skips the question)")
}
