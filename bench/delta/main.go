// Command delta benchmarks internal/delta against Debian's xdelta3, bsdiff and zstd
// --patch-from on the firmware pairs listed in a pairs.txt, and prints a Markdown table.
//
// Usage, from the repository root:
//
//	go run ./bench/delta [-data ../shared/data/firmware] [-timeout 10m]
//
// Every encode and apply runs in a child process (ours by re-executing this program with the
// hidden "encode" and "apply" subcommands), so that the peak RSS reported is the child's
// rusage Maxrss. The images are read where they are and never copied; patches and outputs go
// to a temporary directory. Nothing touches the network.
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/rampart-iot/rampart/internal/delta"
)

func main() {
	if len(os.Args) > 1 && (os.Args[1] == "encode" || os.Args[1] == "apply") {
		if err := child(os.Args[1], os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	data := flag.String("data", "../shared/data/firmware", "directory holding pairs.txt and the images")
	timeout := flag.Duration("timeout", 10*time.Minute, "limit for each encode or apply")
	window := flag.Int("window", 0, "EncodeOptions.WindowSize for ours (0: default)")
	flag.Parse()
	if err := run(*data, *timeout, *window); err != nil {
		fmt.Fprintln(os.Stderr, "delta:", err)
		os.Exit(1)
	}
}

// child is the hidden subcommand: encode OLD NEW PATCH WINDOW, or apply OLD PATCH OUT.
func child(cmd string, args []string) error {
	ctx := context.Background()
	old, err := os.Open(args[0])
	if err != nil {
		return err
	}
	defer old.Close()
	st, err := old.Stat()
	if err != nil {
		return err
	}
	if cmd == "encode" {
		nw, err := os.Open(args[1])
		if err != nil {
			return err
		}
		defer nw.Close()
		w, err := strconv.Atoi(args[3])
		if err != nil {
			return err
		}
		return writeFile(args[2], func(f io.Writer) error {
			return delta.Encode(ctx, old, st.Size(), nw, f, delta.EncodeOptions{WindowSize: w})
		})
	}
	p, err := os.Open(args[1])
	if err != nil {
		return err
	}
	defer p.Close()
	return writeFile(args[2], func(f io.Writer) error {
		return delta.Apply(ctx, old, st.Size(), p, f)
	})
}

func writeFile(name string, fn func(io.Writer) error) error {
	f, err := os.Create(name)
	if err != nil {
		return err
	}
	if err := fn(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

type pair struct{ name, old, new string }

func readPairs(dir string) ([]pair, error) {
	f, err := os.Open(filepath.Join(dir, "pairs.txt"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var ps []pair
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 3 || strings.HasPrefix(fs[0], "#") {
			continue
		}
		ps = append(ps, pair{fs[0], filepath.Join(dir, fs[1]), filepath.Join(dir, fs[2])})
	}
	return ps, sc.Err()
}

// result is one method on one pair.
type result struct {
	patch            int64
	enc, app         time.Duration
	encRSS, applyRSS int64 // KiB
	ok               bool
	err              error
}

// tool describes how to encode and apply with one method; %o old, %n new, %p patch, %r out.
type tool struct {
	label      string
	enc, apply []string
}

func tools(self string, oldSize, newSize int64, window int) []tool {
	wlog := 10
	for int64(1)<<wlog < max(oldSize, newSize) && wlog < 31 {
		wlog++
	}
	b := strconv.FormatInt(max(oldSize, 64<<20), 10)
	w := "--long=" + strconv.Itoa(wlog)
	return []tool{
		{"ours", []string{self, "encode", "%o", "%n", "%p", strconv.Itoa(window)}, []string{self, "apply", "%o", "%p", "%r"}},
		{"xdelta3-9", []string{"xdelta3", "-q", "-f", "-e", "-9", "-S", "lzma", "-A", "-B", b, "-s", "%o", "%n", "%p"}, []string{"xdelta3", "-q", "-f", "-d", "-B", b, "-s", "%o", "%p", "%r"}},
		{"xdelta3-9-nosec", []string{"xdelta3", "-q", "-f", "-e", "-9", "-S", "none", "-A", "-B", b, "-s", "%o", "%n", "%p"}, []string{"xdelta3", "-q", "-f", "-d", "-B", b, "-s", "%o", "%p", "%r"}},
		{"bsdiff", []string{"bsdiff", "%o", "%n", "%p"}, []string{"bspatch", "%o", "%r", "%p"}},
		{"zstd-pf-19", []string{"zstd", "-q", "-f", "-T1", "-19", w, "--patch-from=%o", "-o", "%p", "%n"}, []string{"zstd", "-q", "-f", "-d", w, "--patch-from=%o", "-o", "%r", "%p"}},
	}
}

func run(dir string, timeout time.Duration, window int) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	pairs, err := readPairs(dir)
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "bench-delta-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	load, _ := os.ReadFile("/proc/loadavg")
	fmt.Printf("# bench/delta: %s, window %d, loadavg at start %s\n\n", time.Now().UTC().Format(time.RFC3339), window, strings.Join(strings.Fields(string(load))[:3], " "))
	fmt.Println("| pair | new bytes | ours | xdelta3-9 | xdelta3-9-nosec | bsdiff | zstd-pf-19 | ours % of best peer | ours enc s | ours apply s | ours apply MiB | peers' apply MiB (xd/xd-ns/bs/zpf) | identical |")
	fmt.Println("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|")
	for _, p := range pairs {
		os1, err1 := os.Stat(p.old)
		ns, err2 := os.Stat(p.new)
		if err := errors.Join(err1, err2); err != nil {
			fmt.Fprintln(os.Stderr, "skip", p.name, err)
			continue
		}
		fmt.Fprintln(os.Stderr, "==", p.name)
		res := map[string]result{}
		ts := tools(self, os1.Size(), ns.Size(), window)
		for _, t := range ts {
			res[t.label] = measure(work, p, t, timeout)
			r := res[t.label]
			fmt.Fprintf(os.Stderr, "   %-16s patch %9d enc %6.2fs %6.1f MiB apply %6.2fs %6.1f MiB ok %v err %v\n", t.label, r.patch, r.enc.Seconds(), float64(r.encRSS)/1024, r.app.Seconds(), float64(r.applyRSS)/1024, r.ok, r.err)
		}
		best := int64(0)
		for _, t := range ts[1:] {
			if r := res[t.label]; r.err == nil && r.ok && (best == 0 || r.patch < best) {
				best = r.patch
			}
		}
		ours := res["ours"]
		var cells []string
		var rss []string
		identical := "yes"
		for _, t := range ts {
			r := res[t.label]
			switch {
			case r.err != nil:
				cells = append(cells, "FAIL")
			default:
				cells = append(cells, strconv.FormatInt(r.patch, 10))
			}
			if t.label != "ours" {
				rss = append(rss, fmt.Sprintf("%.1f", float64(r.applyRSS)/1024))
			}
			if !r.ok {
				identical = "NO: " + t.label
			}
		}
		pct := "-"
		if best > 0 && ours.err == nil {
			pct = fmt.Sprintf("%.1f", 100*float64(ours.patch)/float64(best))
		}
		fmt.Printf("| %s | %d | %s | %s | %.2f | %.2f | %.1f | %s | %s |\n", p.name, ns.Size(), strings.Join(cells, " | "), pct,
			ours.enc.Seconds(), ours.app.Seconds(), float64(ours.applyRSS)/1024, strings.Join(rss, " / "), identical)
	}
	return nil
}

// measure encodes and applies with one tool and checks the output.
func measure(work string, p pair, t tool, timeout time.Duration) result {
	patch, out := filepath.Join(work, "patch"), filepath.Join(work, "out")
	os.Remove(patch)
	os.Remove(out)
	subst := func(args []string) []string {
		r := strings.NewReplacer("%o", p.old, "%n", p.new, "%p", patch, "%r", out)
		s := make([]string, len(args))
		for i, a := range args {
			s[i] = r.Replace(a)
		}
		return s
	}
	var res result
	if res.enc, res.encRSS, res.err = runChild(subst(t.enc), timeout); res.err != nil {
		res.err = fmt.Errorf("encode: %w", res.err)
		return res
	}
	st, err := os.Stat(patch)
	if err != nil {
		res.err = err
		return res
	}
	res.patch = st.Size()
	if res.app, res.applyRSS, res.err = runChild(subst(t.apply), timeout); res.err != nil {
		res.err = fmt.Errorf("apply: %w", res.err)
		return res
	}
	res.ok, res.err = sameFile(out, p.new)
	return res
}

// runChild runs args and returns its wall time and peak RSS in KiB.
func runChild(args []string, timeout time.Duration) (time.Duration, int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	start := time.Now()
	err := cmd.Run()
	d := time.Since(start)
	if err != nil {
		return d, 0, fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, stderr.String())
	}
	ru, _ := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	if ru == nil {
		return d, 0, nil
	}
	return d, int64(ru.Maxrss), nil // Linux: KiB
}

// sameFile compares two files in small chunks: the children are forked from this process, and
// Linux counts the parent's peak RSS at fork into the child's Maxrss, so this process stays small.
func sameFile(a, b string) (bool, error) {
	fa, err := os.Open(a)
	if err != nil {
		return false, err
	}
	defer fa.Close()
	fb, err := os.Open(b)
	if err != nil {
		return false, err
	}
	defer fb.Close()
	ra, rb := bufio.NewReaderSize(fa, 64<<10), bufio.NewReaderSize(fb, 64<<10)
	x, y := make([]byte, 32<<10), make([]byte, 32<<10)
	for {
		n, errA := io.ReadFull(ra, x)
		m, errB := io.ReadFull(rb, y)
		if n != m || !bytes.Equal(x[:n], y[:m]) {
			return false, nil
		}
		if errA != nil || errB != nil {
			return errors.Is(errA, io.ErrUnexpectedEOF) || errors.Is(errA, io.EOF), nil
		}
	}
}
