package devconsul

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
)

// Ports are drawn from below Linux's ephemeral range (32768–60999 by
// default). The kernel hands out ephemeral ports to outgoing connections,
// including Consul's own, so a port picked from that range could be taken
// by some connection while an agent is down for Restart, which must reuse
// its ports.
const (
	portMin = 20000
	portMax = 32000
)

// freePorts picks four distinct ports that are currently free on loopback.
func freePorts() (ports, error) {
	sets, err := freePortSets(1)
	if err != nil {
		return ports{}, err
	}
	return sets[0], nil
}

// freePortSets picks n sets of four ports, all distinct and currently free on
// loopback. Serf uses both TCP and UDP on its ports, so those are checked for
// both. The probes are released before returning, so a race with another
// process remains possible; Start retries when Consul reports the port taken.
func freePortSets(n int) ([]ports, error) {
	var closers []func()
	defer func() {
		for _, c := range closers {
			c()
		}
	}()
	pick := func(udp bool) (int, error) {
		for range 200 {
			port := portMin + rand.IntN(portMax-portMin)
			addr := loopback(port)
			l, err := net.Listen("tcp", addr)
			if err != nil {
				continue
			}
			if !udp {
				closers = append(closers, func() { _ = l.Close() })
				return port, nil
			}
			pc, err := net.ListenPacket("udp", addr)
			if err != nil {
				_ = l.Close()
				continue
			}
			// Held open until every set is chosen, so none repeats.
			closers = append(closers, func() { _ = l.Close(); _ = pc.Close() })
			return port, nil
		}
		return 0, errors.New("no free port in " + strconv.Itoa(portMin) + "–" + strconv.Itoa(portMax))
	}
	sets := make([]ports, n)
	for i := range sets {
		p := &sets[i]
		var err error
		if p.http, err = pick(false); err != nil {
			return nil, fmt.Errorf("devconsul: %w", err)
		}
		if p.serfLAN, err = pick(true); err != nil {
			return nil, fmt.Errorf("devconsul: %w", err)
		}
		if p.serfWAN, err = pick(true); err != nil {
			return nil, fmt.Errorf("devconsul: %w", err)
		}
		if p.server, err = pick(false); err != nil {
			return nil, fmt.Errorf("devconsul: %w", err)
		}
	}
	return sets, nil
}
