// The Go goroutines of experiments/callbacks_vs_coroutines.py: pending ones on
// GOMAXPROCS = cores threads, hops on one (GOMAXPROCS = 1).
//
// Usage: coats pending N    N goroutines each asleep for an hour, holding its index
//        coats hops C K MS  warm up, print READY, wait for a line on stdin, then rounds of C
//                           concurrent goroutines each passing K times through the
//                           scheduler (runtime.Gosched) until MS milliseconds have
//                           passed; print DONE with the rounds and the wall time, and
//                           hold until stopped.
package main

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

var sink int64

func ready(t0 time.Time) {
	fmt.Printf("READY {\"create_s\": %g}\n", time.Since(t0).Seconds())
}

func chain(k int) int {
	for i := 0; i < k; i++ {
		runtime.Gosched()
	}
	return k
}

func round(c, k int) {
	var wg sync.WaitGroup
	wg.Add(c)
	for i := 0; i < c; i++ {
		go func() {
			defer wg.Done()
			atomic.AddInt64(&sink, int64(chain(k)))
		}()
	}
	wg.Wait()
}

func rounds(c, k int, limit time.Duration) int {
	t0 := time.Now()
	n := 0
	for time.Since(t0) < limit {
		round(c, k)
		n++
	}
	return n
}

func main() {
	args := make([]int, 0, 3)
	for _, a := range os.Args[2:] {
		v, err := strconv.Atoi(a)
		if err != nil {
			panic(err)
		}
		args = append(args, v)
	}
	switch os.Args[1] {
	case "pending":
		t0 := time.Now()
		for i := 0; i < args[0]; i++ {
			go func(i int) {
				time.Sleep(time.Hour)
				atomic.AddInt64(&sink, int64(i))
			}(i)
		}
		ready(t0)
	case "hops":
		// One scheduler thread, as one event loop: a hop's CPU is then the
		// scheduler's own work, not idle Ps spinning in search of goroutines.
		runtime.GOMAXPROCS(1)
		c, k, limit := args[0], args[1], time.Duration(args[2])*time.Millisecond
		rounds(c, k, limit) // warm-up
		ready(time.Now())
		// The measurer reads the CPU count, then sends a line: the rounds start after it.
		if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
			panic(err)
		}
		t0 := time.Now()
		n := rounds(c, k, limit)
		fmt.Printf("DONE {\"rounds\": %d, \"wall_s\": %g}\n", n, time.Since(t0).Seconds())
	default:
		panic("unknown mode " + os.Args[1])
	}
	time.Sleep(time.Hour)
}
