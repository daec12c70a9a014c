package main

import (
	"strings"
	"testing"
)

func TestCheckServerVersion(t *testing.T) {
	for _, tc := range []struct {
		version string
		ok      bool
	}{
		{"2.15.2", true}, {"2.12.0", true}, {"3.0.0", true},
		{"2.11.9", false}, {"2.9.10", false}, {"1.4.1", false}, {"", false}, {"dev", false},
	} {
		err := checkServerVersion(tc.version)
		if (err == nil) != tc.ok {
			t.Errorf("checkServerVersion(%q) = %v, want ok %v", tc.version, err, tc.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "NATS_URL") {
			t.Errorf("checkServerVersion(%q): %v does not name NATS_URL", tc.version, err)
		}
	}
}
