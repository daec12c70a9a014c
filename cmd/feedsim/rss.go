package main

import (
	"fmt"
	"os"
	"runtime"
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
// returns the function that stops it.
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
	return func() { pprof.StopCPUProfile(); f.Close() }
}

// writeHeapProfile collects garbage, then writes the heap profile (objects
// live now, and where they were allocated) to FILE.<mode>.<events>, so that
// the memory of the projector can be told from the embedded nats-server's in
// one process: go tool pprof -sample_index=inuse_space -top FILE.
func writeHeapProfile(file, mode string, events uint64) {
	if file == "" {
		return
	}
	runtime.GC()
	f, err := os.Create(fmt.Sprintf("%s.%s.%d", file, mode, events))
	if err != nil {
		fmt.Fprintf(os.Stderr, "feedsim: memprofile: %v\n", err)
		return
	}
	defer f.Close()
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		fmt.Fprintf(os.Stderr, "feedsim: memprofile: %v\n", err)
	}
}
