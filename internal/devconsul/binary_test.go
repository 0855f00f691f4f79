package devconsul

import (
	"strings"
	"testing"
)

func TestVersionDefaultsToConsulVersionAndTakesTheEnvironments(t *testing.T) {
	t.Setenv(VersionEnv, "")
	if v := Version(); v != ConsulVersion {
		t.Fatalf("Version() = %q without %s; want %q", v, VersionEnv, ConsulVersion)
	}
	for env, want := range map[string]string{"v1.15.6": "v1.15.6", "1.13.9": "v1.13.9", " v1.15.6\n": "v1.15.6"} {
		t.Setenv(VersionEnv, env)
		if v := Version(); v != want {
			t.Errorf("Version() = %q with %s=%q; want %q", v, VersionEnv, env, want)
		}
	}
}

func TestToolModuleKeepsConsulsRequirementsAndExcludesButNotItsReplaces(t *testing.T) {
	upstream := `module github.com/hashicorp/consul

go 1.20

replace (
	github.com/hashicorp/consul/api => ./api
	github.com/hashicorp/consul/sdk => ./sdk
)

replace github.com/hashicorp/consul/proto-public => ./proto-public

exclude (
	github.com/hashicorp/go-msgpack v1.1.5 // has breaking changes and must be avoided
)

require (
	github.com/hashicorp/consul/api v1.21.1
	github.com/hashicorp/consul/sdk v0.14.1
)
`
	want := `module consul-elect-tools/consul

go 1.26

require github.com/hashicorp/consul v1.15.6




exclude (
	github.com/hashicorp/go-msgpack v1.1.5 // has breaking changes and must be avoided
)

require (
	github.com/hashicorp/consul/api v1.21.1
	github.com/hashicorp/consul/sdk v0.14.1
)
`
	if got := string(toolGoModFrom([]byte(upstream), "v1.15.6")); strings.TrimSpace(got) != strings.TrimSpace(want) {
		t.Fatalf("tools go.mod:\n%s\nwant:\n%s", got, want)
	}
}
