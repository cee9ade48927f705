// The Go units of `simlab measure memory --runtime go`: N idle goroutines, or N idle
// goroutines each holding a connection, held until the lab stops the process.
//
// Usage: memunits goroutine N | memunits goroutine-connection N
//
// goroutine-connection prints "PORT p", and the lab opens N connections to it;
// each accepted connection gets a goroutine blocked reading it through a 4 KiB
// bufio.Reader, as net/http's per-connection goroutine does. Once all N are up,
// it prints "READY {"create_s": ...}" (the time taken to create them).
package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"time"
)

func main() {
	kind := os.Args[1]
	n, err := strconv.Atoi(os.Args[2])
	if err != nil {
		panic(err)
	}
	var started sync.WaitGroup
	started.Add(n)
	gate := make(chan struct{})
	var t0 time.Time
	switch kind {
	case "goroutine":
		t0 = time.Now()
		for k := 0; k < n; k++ {
			go func() {
				started.Done()
				<-gate
			}()
		}
	case "goroutine-connection":
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			panic(err)
		}
		fmt.Printf("PORT %d\n", ln.Addr().(*net.TCPAddr).Port)
		for k := 0; k < n; k++ {
			conn, err := ln.Accept()
			if err != nil {
				panic(err)
			}
			if k == 0 {
				t0 = time.Now()
			}
			go func(c net.Conn) {
				started.Done()
				_, _ = bufio.NewReaderSize(c, 4096).ReadByte()
			}(conn)
		}
		ln.Close()
	default:
		panic("unknown unit " + kind)
	}
	started.Wait()
	fmt.Printf("READY {\"create_s\": %.9f}\n", time.Since(t0).Seconds())
	// Until the lab stops the process. (Sleeping, not blocking on a channel: with
	// every goroutine blocked on one, the runtime would call it a deadlock.)
	for {
		time.Sleep(time.Hour)
	}
}
