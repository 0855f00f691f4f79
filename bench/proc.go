package bench

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// What the harness reads of processes from Linux's /proc: peak RSS, CPU time,
// and which process listens on the agent's port (devconsul.Agent does not
// expose its pid).

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat: 100
// on every Linux architecture Go supports.
const clockTicks = 100

// vmHWM is the peak RSS (VmHWM) of process pid ("self" for this one), in
// bytes; 0 if unknown.
func vmHWM(pid string) int64 {
	f, err := os.Open("/proc/" + pid + "/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	scanner := bufio.NewScanner(f)
	for scanner.Scan() {
		if rest, ok := strings.CutPrefix(scanner.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err == nil {
				return kb * 1024
			}
		}
	}
	return 0
}

// cpuTime is the user plus system CPU time process pid ("self") has used.
func cpuTime(pid string) (time.Duration, error) {
	stat, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0, err
	}
	// "PID (comm) S ppid …": the command may contain spaces and parentheses.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("unexpected /proc/%s/stat", pid)
	}
	fields := strings.Fields(string(stat[i+1:]))
	// fields[0] is the state (field 3 of stat(5)); utime and stime are
	// fields 14 and 15.
	if len(fields) < 13 {
		return 0, fmt.Errorf("unexpected /proc/%s/stat", pid)
	}
	utime, err1 := strconv.ParseInt(fields[11], 10, 64)
	stime, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return time.Duration(utime+stime) * time.Second / clockTicks, nil
}

// cpuMeter measures the CPU share of one process over a window.
type cpuMeter struct {
	pid   string
	cpu   time.Duration
	start time.Time
	err   error
}

func startCPU(pid int) cpuMeter {
	if pid <= 0 {
		return cpuMeter{err: errors.New("pid unknown")}
	}
	m := cpuMeter{pid: strconv.Itoa(pid), start: time.Now()}
	m.cpu, m.err = cpuTime(m.pid)
	return m
}

// percent is the CPU used since start, in percent of one core (as top
// shows it), and the window.
func (m cpuMeter) percent() (float64, time.Duration, error) {
	if m.err != nil {
		return 0, 0, m.err
	}
	now, err := cpuTime(m.pid)
	if err != nil {
		return 0, 0, err
	}
	window := time.Since(m.start)
	return 100 * float64(now-m.cpu) / float64(window), window, nil
}

// listenerPID finds the process listening on the TCP port of url (the
// agent's HTTP API), through /proc/net/tcp{,6} and the processes' fds.
func listenerPID(rawURL string) (int, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return 0, err
	}
	port, err := strconv.Atoi(u.Port())
	if err != nil {
		return 0, fmt.Errorf("no port in %q", rawURL)
	}
	var inode string
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		data, err := os.ReadFile(table)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n")[1:] {
			f := strings.Fields(line)
			// sl local_address rem_address st … inode (field 9); st 0A is LISTEN.
			if len(f) < 10 || f[3] != "0A" {
				continue
			}
			_, hexPort, ok := strings.Cut(f[1], ":")
			if p, err := strconv.ParseInt(hexPort, 16, 32); ok && err == nil && int(p) == port {
				inode = f[9]
			}
		}
	}
	if inode == "" {
		return 0, fmt.Errorf("nothing listens on port %d", port)
	}
	want := "socket:[" + inode + "]"
	fds, _ := filepath.Glob("/proc/[0-9]*/fd/*")
	for _, fd := range fds {
		if link, err := os.Readlink(fd); err == nil && link == want {
			return strconv.Atoi(strings.Split(fd, "/")[2])
		}
	}
	return 0, fmt.Errorf("no process holds the socket listening on port %d", port)
}
