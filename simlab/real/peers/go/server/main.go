// simlab's /work in Go's net/http: a goroutine per connection, GOMAXPROCS threads running them.
//
// Usage: server -port P -backlog B (the backend's port in SIMLAB_BACKEND_PORT).
// net/http times a connection's first request header from accept, and a later
// one from the end of the previous response when there is no IdleTimeout; the
// load generator holds idle connections for the whole run, so both are an hour.
//
// Go has no per-goroutine CPU clock, so the burn spins on its OS thread's CPU
// clock, counting only the stretches that began and ended on one thread (burnCPU):
// the burn is then the goroutine's own CPU time, as in the other runtimes, and
// stretches when its thread is descheduled. The clock is clock_gettime(CLOCK_THREAD_CPUTIME_ID), the
// scheduler's exact count (what Java's ThreadMXBean reads). getrusage(RUSAGE_THREAD)
// was tried first: it reports a tick-sampled split of that count, adjusted to stay
// monotonic, which here lagged so far that a 1 ms burn took 3 ms.
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"log"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

const (
	maxCPUMs           = 60_000
	maxIOMs            = 600_000
	maxCalls           = 1_000
	clockThreadCPUTime = 3 // CLOCK_THREAD_CPUTIME_ID, which package syscall does not name
)

// Decimal numbers only: strconv.ParseFloat would also take "0x1p3", "Inf" and "NaN".
var number = regexp.MustCompile(`^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$`)

type work struct {
	cpuMs    float64
	delaysUs []int64
	parallel bool
}

func parseNumber(text, name string, high float64) (float64, error) {
	if !number.MatchString(text) {
		return 0, fmt.Errorf("%s must be a number", name)
	}
	v, _ := strconv.ParseFloat(text, 64)
	if v < 0 || v > high {
		return 0, fmt.Errorf("%s must be between 0 and %g", name, high)
	}
	return v, nil
}

// parseWork validates a query as simlab/real/protocol.py's parse_work does.
func parseWork(query string) (work, error) {
	params, err := url.ParseQuery(query)
	if err != nil {
		return work{}, errors.New("malformed query")
	}
	last := func(key, fallback string) (string, bool) {
		if v, ok := params[key]; ok && len(v) > 0 {
			return v[len(v)-1], true
		}
		return fallback, false
	}
	for key := range params {
		switch key {
		case "cpu_ms", "io_ms", "calls", "fanout":
		default:
			return work{}, fmt.Errorf("unknown parameter %s", key)
		}
	}
	calls := 0.0
	if text, ok := last("calls", ""); ok {
		if calls, err = parseNumber(text, "calls", maxCalls); err != nil {
			return work{}, err
		}
	}
	if calls != math.Floor(calls) {
		return work{}, errors.New("calls must be an integer")
	}
	fanout, _ := last("fanout", "sequential")
	if fanout != "sequential" && fanout != "parallel" {
		return work{}, errors.New("fanout must be sequential or parallel")
	}
	rawIO, _ := last("io_ms", "0")
	var io []float64
	for _, x := range strings.Split(rawIO, ",") {
		v, err := parseNumber(x, "io_ms", maxIOMs)
		if err != nil {
			return work{}, err
		}
		io = append(io, v)
	}
	n := int(calls)
	if len(io) != 1 && len(io) != n {
		return work{}, errors.New("io_ms must be one value or one per call")
	}
	w := work{delaysUs: make([]int64, n), parallel: fanout == "parallel"}
	for k := range w.delaysUs {
		ms := io[0]
		if len(io) > 1 {
			ms = io[k]
		}
		w.delaysUs[k] = int64(ms * 1000)
	}
	if text, ok := last("cpu_ms", ""); ok {
		if w.cpuMs, err = parseNumber(text, "cpu_ms", maxCPUMs); err != nil {
			return work{}, err
		}
	}
	return w, nil
}

func threadCPU() time.Duration {
	var ts syscall.Timespec
	_, _, errno := syscall.Syscall(syscall.SYS_CLOCK_GETTIME, clockThreadCPUTime, uintptr(unsafe.Pointer(&ts)), 0)
	if errno != 0 {
		panic(errno)
	}
	return time.Duration(ts.Nano())
}

var sink atomic.Int64

// burnCPU spins until this goroutine has used ms milliseconds of CPU: its OS
// thread's CPU clock from one read to the next, counted where both reads and
// the spinning between them were on one thread (a thread id read on each side
// of every clock read), so the scheduler may move the goroutine mid-burn (a
// stretch it moved is not counted, about 5 us lost a move). Not locked to its
// thread: a locked goroutine preempted mid-burn keeps its thread parked with it
// while the scheduler starts another for its P (about 230 OS threads at 1,024
// clients with 4 ms burns, 6 December).
func burnCPU(ms float64) {
	if ms <= 0 {
		return
	}
	left := time.Duration(ms * float64(time.Millisecond))
	before := syscall.Gettid()
	t := threadCPU()
	after := syscall.Gettid()
	x := int64(0)
	for left > 0 {
		for i := int64(0); i < 10000; i++ { // ~5 us of spinning between clock reads
			x += i
		}
		nextBefore := syscall.Gettid()
		next := threadCPU()
		nextAfter := syscall.Gettid()
		if before == after && nextBefore == nextAfter && after == nextBefore {
			left -= next - t
		}
		before, t, after = nextBefore, next, nextAfter
	}
	sink.Store(x)
}

// backend is a pool of connections to simlab's backend, as database/sql keeps:
// a request takes an idle one or dials, and gives it back when done.
type backend struct {
	addr string
	idle chan *backendConn
	ids  atomic.Int64
}

type backendConn struct {
	conn net.Conn
	in   *bufio.Reader
}

func (b *backend) call(delaysUs []int64, parallel bool) error {
	if len(delaysUs) == 0 {
		return nil
	}
	var c *backendConn
	select {
	case c = <-b.idle:
	default:
		conn, err := net.Dial("tcp", b.addr)
		if err != nil {
			return err
		}
		c = &backendConn{conn: conn, in: bufio.NewReader(conn)}
	}
	batches := [][]int64{delaysUs} // parallel: every call written at once, then every answer read
	if !parallel {
		batches = nil
		for _, d := range delaysUs {
			batches = append(batches, []int64{d})
		}
	}
	for _, batch := range batches {
		var lines []byte
		for _, d := range batch {
			lines = fmt.Appendf(lines, "%d %d\n", b.ids.Add(1), d)
		}
		if _, err := c.conn.Write(lines); err != nil {
			c.conn.Close()
			return err
		}
		for range batch {
			if _, err := c.in.ReadString('\n'); err != nil {
				c.conn.Close()
				return err
			}
		}
	}
	select {
	case b.idle <- c:
	default:
		c.conn.Close() // more idle connections than the pool keeps
	}
	return nil
}

func reply(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write([]byte(body))
}

func main() {
	port := flag.Int("port", 8080, "port on 127.0.0.1")
	backlog := flag.Int("backlog", 4096, "listen backlog (the kernel caps it at somaxconn)")
	flag.Parse()
	b := &backend{addr: "127.0.0.1:" + os.Getenv("SIMLAB_BACKEND_PORT"), idle: make(chan *backendConn, 1024)}

	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			reply(w, http.StatusMethodNotAllowed, "only GET is served\n")
			return
		}
		if r.URL.Path != "/work" {
			reply(w, http.StatusNotFound, "only /work is served\n")
			return
		}
		job, err := parseWork(r.URL.RawQuery)
		if err != nil {
			reply(w, http.StatusBadRequest, err.Error()+"\n")
			return
		}
		t0 := time.Now()
		burnCPU(job.cpuMs)
		if err := b.call(job.delaysUs, job.parallel); err != nil {
			reply(w, http.StatusBadGateway, "backend: "+err.Error()+"\n")
			return
		}
		w.Header().Set("x-service-us", strconv.FormatInt(time.Since(t0).Microseconds(), 10))
		reply(w, http.StatusOK, "ok\n")
	})

	// net.Listen has no backlog parameter; a ListenConfig's Control cannot set it
	// either, so listen(2) is called here on a socket bound by hand.
	ln, err := listen(*port, *backlog)
	if err != nil {
		log.Fatal(err)
	}
	server := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: time.Hour,
		IdleTimeout:       time.Hour,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          log.New(os.Stderr, "", 0),
	}
	log.Fatal(server.Serve(ln))
}

func listen(port, backlog int) (net.Listener, error) {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	_ = syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1)
	addr := &syscall.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}}
	if err := syscall.Bind(fd, addr); err != nil {
		syscall.Close(fd)
		return nil, err
	}
	if err := syscall.Listen(fd, backlog); err != nil {
		syscall.Close(fd)
		return nil, err
	}
	f := os.NewFile(uintptr(fd), "listener")
	defer f.Close()
	return net.FileListener(f)
}
