package main

import (
	"fmt"
	"os"
	"runtime/metrics"
	"runtime/pprof"
	"strconv"
	"strings"
)

// rssMB reads a memory figure of this process from /proc/self/status
// (VmRSS: now; VmHWM: peak since start or since resetPeakRSS), in MiB; 0
// where /proc is not available.
func rssMB(field string) float64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		rest, ok := strings.CutPrefix(line, field+":")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			return 0
		}
		kb, _ := strconv.ParseFloat(f[0], 64)
		return kb / 1024
	}
	return 0
}

// resetPeakRSS resets VmHWM to the current RSS (Linux ≥ 4.0), so that the
// peak measured covers only what follows: the service's phases, not the raw
// baseline before them.
func resetPeakRSS() {
	_ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
}

// startProfile starts a CPU profile to file.mode when file is set and
// returns the function that stops it. The heap's allocation profile is
// written at both ends (file.mode.allocs0, file.mode.allocs), so that
// `go tool pprof -sample_index=alloc_space -diff_base file.mode.allocs0
// feedsim file.mode.allocs` shows what the profiled phases allocated.
func startProfile(file, mode string) func() {
	if file == "" {
		return func() {}
	}
	f, err := os.Create(file + "." + mode)
	if err != nil {
		fmt.Fprintf(os.Stderr, "feedsim: cpuprofile: %v\n", err)
		return func() {}
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		fmt.Fprintf(os.Stderr, "feedsim: cpuprofile: %v\n", err)
		f.Close()
		return func() {}
	}
	writeAllocs(file + "." + mode + ".allocs0")
	return func() {
		pprof.StopCPUProfile()
		f.Close()
		writeAllocs(file + "." + mode + ".allocs")
	}
}

// writeAllocs writes the heap's allocation profile so far to file.
func writeAllocs(file string) {
	f, err := os.Create(file)
	if err == nil {
		err = pprof.Lookup("allocs").WriteTo(f, 0)
		f.Close()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "feedsim: allocation profile: %v\n", err)
	}
}

// liveHeapMB returns the Go heap's live bytes as of the last collection
// (runtime/metrics /gc/heap/live:bytes), in MB: unlike RSS it does not count
// garbage waiting for the next collection or memory not yet returned to the
// system, so it shows whether what the process keeps grows.
func liveHeapMB() float64 {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return float64(s[0].Value.Uint64()) / (1 << 20)
}
