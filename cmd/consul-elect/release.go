package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

const releaseSynopsis = "consul-elect release --resource NAME [flags] [--destroy-session] [--yes]"

// releaseTimeout bounds the whole operation once confirmed.
const releaseTimeout = 30 * time.Second

func releaseCommand(env *cli, args []string) error {
	var f commonFlags
	var destroy, yes bool
	fs := newFlagSet("release")
	f.register(fs)
	fs.BoolVar(&destroy, "destroy-session", false, "destroy the holder's session instead: it loses every key it holds, and they stay locked for its lock-delay")
	fs.BoolVar(&yes, "yes", false, "do not ask for confirmation")
	if err := f.parse(env, fs, releaseSynopsis, args); err != nil {
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
	entry, exists, err := client.Get(readCtx, key)
	if err != nil {
		return fmt.Errorf("cannot read %s from Consul at %s: %w", key, f.consulAddress(), err)
	}
	if !exists || entry.Session == "" {
		fmt.Fprintf(env.stdout, "%s: nobody holds it; nothing to release\n", key)
		return nil
	}
	holder := "session " + entry.Session
	if state, err := stateOf(f.resource, entry, exists); err == nil {
		holder = fmt.Sprintf("%s (node %s, session %s)", state.LeaderID, state.Node, state.Session)
	}

	var held []string
	if destroy {
		if held, err = client.KeysHeldBy(readCtx, entry.Session); err != nil {
			return fmt.Errorf("cannot list the keys session %s holds: %w", entry.Session, err)
		}
		fmt.Fprintf(env.stdout, "%s is held by %s.\nDestroying the session releases every key it holds (of those this token can read), and Consul keeps them locked for the session's lock-delay:\n", key, holder)
		for _, k := range held {
			fmt.Fprintf(env.stdout, "  %s\n", k)
		}
	} else {
		fmt.Fprintf(env.stdout, "%s is held by %s.\nReleasing it ends that leadership; the candidates then campaign again.\n", key, holder)
	}
	if !yes && !confirm(env, "Proceed?") {
		return errors.New("not confirmed; nothing was changed (--yes skips the question)")
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
	released, err := client.ReleaseHeldBy(ctx, entry)
	if err != nil {
		return fmt.Errorf("cannot release %s: %w", key, err)
	}
	if !released {
		return fmt.Errorf("%s was no longer held by session %s; nothing was changed (run status to see who leads now)", key, entry.Session)
	}
	fmt.Fprintf(env.stdout, "Released %s, held by %s.\n", key, holder)
	return nil
}

// confirm asks question on stdout and reads the answer from stdin.
func confirm(env *cli, question string) bool {
	fmt.Fprintf(env.stdout, "%s [y/N] ", question)
	answer, _ := bufio.NewReader(env.stdin).ReadString('\n')
	fmt.Fprintln(env.stdout) // the answer may not have been echoed (not a terminal)
	switch strings.ToLower(strings.TrimSpace(answer)) {
	case "y", "yes":
		return true
	}
	return false
}
